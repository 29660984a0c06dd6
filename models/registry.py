"""A local, file-based model registry with versions, aliases, traffic routes and integrity checks.

Layout (``root`` defaults to ``model_registry/``)::

    <root>/<name>/<version>/model.txt       the artifact (LightGBM text: no code runs on load)
    <root>/<name>/<version>/manifest.json   version, feature names and order, metrics,
                                            training window, sha256 of the artifact
    <root>/<name>/aliases.json              {"production": 3, ...}
    <root>/<name>/routes.json               traffic routes (:class:`Routes`), when set
    <root>/<name>/deleted.json              versions deleted so far (their numbers are never reused)

References: ``name@alias`` (e.g. ``fraud_model@production``), ``name/version``
(e.g. ``fraud_model/3``), a bare ``name`` (its ``production`` alias), and the
MLflow forms ``models:/name/version`` and ``models:/name@alias``.

Every file is written atomically (a temporary file renamed over the old one), so a
reader (a running flow) sees the old or the new content, never half of it. Changes
to a model's aliases, routes and versions are serialised by a lock file
(``<root>/<name>/.lock``), so two commands cannot lose each other's change.

>>> import tempfile
>>> reg = Registry(tempfile.mkdtemp())
>>> v = reg.publish("m", b"artifact", {"feature_names": ["a"]}, alias="production")
>>> art, manifest = reg.load("m@production")
>>> art, manifest["version"], manifest["sha256"][:12]
(b'artifact', 1, 'c7c5c1d70c5d')
>>> v2 = reg.publish("m", b"candidate", {"feature_names": ["a"]})
>>> reg.set_routes("m", Routes.parse("m/1:90,m/2:10"))
>>> reg.routes("m").route("customer-42") in (0, 1)
True
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = [
    "Registry",
    "RegistryError",
    "IntegrityError",
    "RoutesError",
    "Routes",
    "parse_ref",
    "format_ref",
    "canonical_ref",
    "bucket",
    "compare_metrics",
    "render_comparison",
    "BUCKETS",
]

ARTIFACT = "model.txt"
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
ROUTES = "routes.json"
DELETED = "deleted.json"

#: Keys are hashed to one of this many buckets: route shares have a resolution of 0.01 %.
BUCKETS = 10_000


class RegistryError(LookupError):
    """A model reference that cannot be resolved; the message says which and where."""


class IntegrityError(RegistryError):
    """An artifact whose bytes do not match its manifest: refused."""


class RoutesError(RegistryError, ValueError):
    """A traffic-routes spec or value that is wrong; the message names the bad part.

    Both a :class:`RegistryError` and a :class:`ValueError`, so either ``except`` catches it.
    """


# --- references ------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9_.-]+"
_REF = re.compile(rf"^(?:models:/)?(?P<name>{_NAME})(?:@(?P<alias>{_NAME})|/(?P<version>\d+))?$")
_ALIAS = re.compile(rf"^{_NAME}$")


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``(name, alias, version)`` of a reference; a bare name means ``@production``.

    >>> parse_ref("fraud_model/3"), parse_ref("fraud_model")
    (('fraud_model', None, 3), ('fraud_model', 'production', None))
    >>> parse_ref("models:/fraud_model/3"), parse_ref("models:/fraud_model@champion")
    (('fraud_model', None, 3), ('fraud_model', 'champion', None))
    >>> parse_ref("models:/fraud_model/Production")
    Traceback (most recent call last):
    ...
    models.registry.RegistryError: bad model reference 'models:/fraud_model/Production': use name@alias, name/version, models:/name/version or models:/name@alias (MLflow stages are not supported: use an alias)
    """
    m = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if not m:
        hint = " (MLflow stages are not supported: use an alias)" if str(ref).strip().startswith("models:/") else ""
        raise RegistryError(
            f"bad model reference {ref!r}: use name@alias, name/version, "
            f"models:/name/version or models:/name@alias{hint}"
        )
    version = m["version"]
    alias = m["alias"] or (None if version else "production")
    return m["name"], alias, int(version) if version else None


def format_ref(name: str, alias: str | None = None, version: int | None = None) -> str:
    """The canonical text of a reference: ``name/version`` or ``name@alias``.

    >>> format_ref(*parse_ref("models:/fraud_model/3")), format_ref(*parse_ref("fraud_model"))
    ('fraud_model/3', 'fraud_model@production')
    """
    return f"{name}/{version}" if version is not None else f"{name}@{alias or 'production'}"


def canonical_ref(ref: str) -> str:
    """``ref`` in its canonical form (see :func:`format_ref`).

    >>> canonical_ref(" models:/m@candidate ")
    'm@candidate'
    """
    return format_ref(*parse_ref(ref))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- traffic routes -------------------------------------------------------------------

_DECIDE_SALT = b"streamscore:dec"  # blake2b personalisation (<= 16 bytes): the two draws are independent
_SHADOW_SALT = b"streamscore:shd"
_WEIGHT = re.compile(r"^(?P<ref>.+?)(?::(?P<weight>[^:/]*))?$")


def bucket(key: str, salt: bytes = _DECIDE_SALT) -> int:
    """The bucket ``0 .. BUCKETS-1`` of ``key``: blake2b of its UTF-8 bytes, the same in
    every process, machine and Python run (unlike ``hash()``).

    >>> bucket("customer-42"), bucket("customer-42"), bucket("customer-42", _SHADOW_SALT)
    (8872, 8872, 5705)
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, person=salt).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _number(text: str, where: str) -> float:
    body = text.strip().removesuffix("%").strip()
    try:
        value = float(body)
    except ValueError:
        raise RoutesError(f"{where}: weight {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise RoutesError(f"{where}: weight {text!r} must be a positive number")
    return value


def _entries(spec: str, what: str) -> list[tuple[str, float | None]]:
    """``[(canonical ref, weight or None), ...]`` of a spec ``ref[:weight],...``."""
    out: list[tuple[str, float | None]] = []
    for i, part in enumerate(spec.split(","), 1):
        where = f"{what} spec {spec!r}, entry {i} {part.strip()!r}"
        if not part.strip():
            raise RoutesError(f"{what} spec {spec!r}: entry {i} is empty")
        m = _WEIGHT.match(part.strip())
        assert m is not None  # the pattern matches any non-empty text
        try:
            ref = canonical_ref(m["ref"])
        except RegistryError as exc:
            raise RoutesError(f"{where}: {exc}") from None
        weight = m["weight"]
        if weight is not None and not weight.strip():
            raise RoutesError(f"{where}: nothing after ':' (give a weight such as {m['ref']}:10, or drop the ':')")
        out.append((ref, None if weight is None else _number(weight, where)))
    return out


@dataclass(frozen=True)
class Routes:
    """How a model's events are scored: who **decides** each key's status, and who
    **shadows** it (scores it too, for comparison only, never deciding).

    ``decide``: ``(ref, weight)`` pairs; weights are normalised to fractions summing to 1.
    ``shadow``: ``(ref, share)`` pairs; ``share`` is the fraction (0..1] of keys it scores.
    In a spec string (:meth:`parse`) both are written as numbers: decide weights are
    relative (``90,10`` = ``9,1``), shadow shares are **percent** (``:5`` = 5 % of keys).

    A key's decider is drawn by hashing the key to one of :data:`BUCKETS` buckets
    (:meth:`route`); shadows by hashing it again with another salt (:meth:`shadowed`),
    so a key's shadowing is independent of its decider. Both are sticky (the same key
    always gets the same answer, in every process) and monotone: moving a split from
    90/10 to 80/20 moves only keys from the first model to the second, and a shadow
    raised from 5 % to 10 % keeps its 5 %. Shadow sets are nested: with two shadows at
    10 % and 5 %, the 5 % keys are among the 10 % ones.

    >>> r = Routes.parse("fraud_model/3:90,fraud_model/4:10", "fraud_model/5:5")
    >>> r.decide, r.shadow
    ((('fraud_model/3', 0.9), ('fraud_model/4', 0.1)), (('fraud_model/5', 0.05),))
    >>> r.route("customer-42"), r.shadowed("customer-42")
    (0, [])
    >>> Routes.from_json(r.to_json()) == r
    True
    >>> Routes.parse("fraud_model/3:2,fraud_model/4:1").decide[1]
    ('fraud_model/4', 0.333333)
    >>> Routes.parse("fraud_model/3,fraud_model/4")
    Traceback (most recent call last):
    ...
    models.registry.RoutesError: decide spec 'fraud_model/3,fraud_model/4': give every entry a weight (ref:weight) when splitting between several models
    """

    decide: tuple[tuple[str, float], ...]
    shadow: tuple[tuple[str, float], ...] = ()
    _bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _shadow_bounds: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decide = _checked_pairs(self.decide, "decide")
        shadow = _checked_pairs(self.shadow, "shadow")
        if not decide:
            raise RoutesError("decide: at least one model must decide")
        total = sum(w for _, w in decide)
        decide = tuple((ref, round(w / total, 6)) for ref, w in decide)
        for ref, share in shadow:
            if share > 1:
                raise RoutesError(f"shadow {ref}: share {share} is over 1 (shares are fractions 0..1 of the keys)")
        _no_repeats(decide, shadow)
        bounds: list[int] = []
        cum = 0.0
        for i, (ref, w) in enumerate(decide):
            cum += w
            bound = BUCKETS if i == len(decide) - 1 else round(cum * BUCKETS)
            if bound <= (bounds[-1] if bounds else 0):
                raise RoutesError(f"decide {ref}: weight {w:.6g} is below the routing resolution 1/{BUCKETS}")
            bounds.append(bound)
        shadow_bounds = tuple((ref, round(s * BUCKETS)) for ref, s in shadow)
        for ref, b in shadow_bounds:
            if b == 0:
                raise RoutesError(f"shadow {ref}: share is below the routing resolution 1/{BUCKETS}")
        object.__setattr__(self, "decide", decide)
        object.__setattr__(self, "shadow", shadow)
        object.__setattr__(self, "_bounds", tuple(bounds))
        object.__setattr__(self, "_shadow_bounds", shadow_bounds)

    @classmethod
    def parse(cls, decide_spec: str, shadow_spec: str = "") -> "Routes":
        """Routes from specs such as ``"fraud_model/3:90,fraud_model/4:10"`` (decide: any
        positive weights, normalised; one ref without a weight = 100 %) and
        ``"fraud_model/5:5"`` (shadow: percent of keys, 0 < p <= 100; no weight = 100 %).
        A weight may end in ``%``. References take every form :func:`parse_ref` reads.

        >>> Routes.parse("models:/fraud_model@production").decide
        (('fraud_model@production', 1.0),)
        >>> Routes.parse("fraud_model/3:90,fraud_model/4:ten")
        Traceback (most recent call last):
        ...
        models.registry.RoutesError: decide spec 'fraud_model/3:90,fraud_model/4:ten', entry 2 'fraud_model/4:ten': weight 'ten' is not a number
        """
        if not decide_spec.strip():
            raise RoutesError("decide spec is empty: name at least one model, e.g. fraud_model/3")
        entries = _entries(decide_spec, "decide")
        if len(entries) > 1 and any(w is None for _, w in entries):
            raise RoutesError(
                f"decide spec {decide_spec!r}: give every entry a weight (ref:weight) when splitting between several models"
            )
        decide = tuple((ref, 1.0 if w is None else w) for ref, w in entries)
        shadow: list[tuple[str, float]] = []
        if shadow_spec.strip():
            for ref, pct in _entries(shadow_spec, "shadow"):
                pct = 100.0 if pct is None else pct
                if pct > 100:
                    raise RoutesError(f"shadow spec {shadow_spec!r}, {ref}: {pct:g} % is over 100 % of the keys")
                shadow.append((ref, round(pct / 100, 6)))
        return cls(decide, tuple(shadow))

    def route(self, key: str) -> int:
        """Index into :attr:`decide` of the model deciding ``key``: deterministic, sticky.

        >>> r = Routes.parse("m/1:50,m/2:50")
        >>> [r.route(k) for k in ("a", "b", "c", "d")], r.route("a") == r.route("a")
        ([0, 0, 1, 1], True)
        """
        if len(self._bounds) == 1:
            return 0
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, person=_DECIDE_SALT).digest()
        return bisect_right(self._bounds, int.from_bytes(digest, "big") % BUCKETS)

    def shadowed(self, key: str) -> list[str]:
        """The shadow refs that also score ``key`` (each one for its share of keys).

        >>> Routes.parse("m/1", "m/2:100,m/3:0.01").shadowed("a")
        ['m/2']
        """
        if not self._shadow_bounds:
            return []
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, person=_SHADOW_SALT).digest()
        b = int.from_bytes(digest, "big") % BUCKETS
        return [ref for ref, bound in self._shadow_bounds if b < bound]

    def refs(self) -> tuple[str, ...]:
        """Every reference, deciders first.

        >>> Routes.parse("m/1:9,m/2:1", "m@candidate").refs()
        ('m/1', 'm/2', 'm@candidate')
        """
        return tuple(ref for ref, _ in self.decide) + tuple(ref for ref, _ in self.shadow)

    def specs(self) -> tuple[str, str]:
        """``(decide_spec, shadow_spec)`` that :meth:`parse` turns back into these routes.

        >>> Routes.parse("m/1:3,m/2:1", "m/3:2.5").specs()
        ('m/1:75,m/2:25', 'm/3:2.5')
        >>> Routes.parse(*Routes.parse("m/1:3,m/2:1", "m/3:2.5").specs()) == Routes.parse("m/1:3,m/2:1", "m/3:2.5")
        True
        """
        return (
            ",".join(f"{ref}:{_pct(w)}" for ref, w in self.decide),
            ",".join(f"{ref}:{_pct(s)}" for ref, s in self.shadow),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"decide": [{"ref", "weight"}], "shadow": [{"ref", "share"}]}``."""
        return {
            "decide": [{"ref": ref, "weight": w} for ref, w in self.decide],
            "shadow": [{"ref": ref, "share": s} for ref, s in self.shadow],
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (what ``routes.json`` holds).

        >>> Routes.parse("m/1").to_json()
        '{"decide": [{"ref": "m/1", "weight": 1.0}], "shadow": []}'
        """
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> "Routes":
        """Routes from :meth:`to_json` text (or its parsed dict); checked as on construction.

        >>> Routes.from_json('{"decide": [{"ref": "m/1", "weight": 2}]}').decide
        (('m/1', 1.0),)
        >>> Routes.from_json('{"decide": [{"model": "m/1"}]}')
        Traceback (most recent call last):
        ...
        models.registry.RoutesError: routes JSON: decide entry 1 {'model': 'm/1'}: expected {"ref": ..., "weight": ...}
        """
        try:
            obj = json.loads(data) if isinstance(data, (str, bytes)) else data
        except json.JSONDecodeError as exc:
            raise RoutesError(f"routes JSON is not valid JSON: {exc}") from None
        if not isinstance(obj, Mapping) or not isinstance(obj.get("decide"), builtins.list):
            raise RoutesError('routes JSON: expected an object {"decide": [...], "shadow": [...]}')
        shadow = obj.get("shadow")
        shadow = [] if shadow is None else shadow
        if not isinstance(shadow, builtins.list):
            raise RoutesError(f"routes JSON: shadow must be a list, got {shadow!r}")
        return cls(_json_pairs(obj["decide"], "decide", "weight"), _json_pairs(shadow, "shadow", "share"))


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100, 4):g}"


def _json_pairs(items: builtins.list[Any], what: str, number: str) -> tuple[tuple[str, float], ...]:
    out = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, Mapping) or "ref" not in item or number not in item:
            raise RoutesError(f'routes JSON: {what} entry {i} {item!r}: expected {{"ref": ..., "{number}": ...}}')
        out.append((item["ref"], item[number]))
    return tuple(out)


def _checked_pairs(pairs: Any, what: str) -> tuple[tuple[str, float], ...]:
    """Canonical refs and float weights; names the entry that is wrong."""
    out = []
    for i, pair in enumerate(pairs, 1):
        try:
            ref, weight = pair
        except (TypeError, ValueError):
            raise RoutesError(f"{what} entry {i} {pair!r}: expected (ref, weight)") from None
        try:
            ref = canonical_ref(ref)
        except RegistryError as exc:
            raise RoutesError(f"{what} entry {i}: {exc}") from None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise RoutesError(f"{what} {ref}: weight {weight!r} must be a positive number")
        out.append((ref, float(weight)))
    return tuple(out)


def _no_repeats(decide: tuple[tuple[str, float], ...], shadow: tuple[tuple[str, float], ...]) -> None:
    seen: dict[str, str] = {}
    for role, pairs in (("decide", decide), ("shadow", shadow)):
        for ref, _ in pairs:
            if ref in seen:
                raise RoutesError(f"{ref} is listed twice (in {seen[ref]} and {role}): name each model once")
            seen[ref] = role


# --- comparing metrics ---------------------------------------------------------------

#: Metrics shown first, in this order (others follow, sorted).
METRIC_ORDER = (
    "roc_auc", "pr_auc", "recall_at_critical", "precision_at_critical",
    "recall_at_warning", "precision_at_warning", "events", "positives",
)


def compare_metrics(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{metric: {"a", "b", "diff"}}`` over both metric sets (``diff`` = b - a, when both are numbers).

    >>> compare_metrics({"roc_auc": 0.98, "events": 10}, {"roc_auc": 0.99})
    {'roc_auc': {'a': 0.98, 'b': 0.99, 'diff': 0.01}, 'events': {'a': 10, 'b': None, 'diff': None}}
    """
    keys = [k for k in METRIC_ORDER if k in a or k in b]
    keys += sorted((set(a) | set(b)) - set(keys))
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        va, vb = a.get(k), b.get(k)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        out[k] = {"a": va, "b": vb, "diff": round(vb - va, 6) if numbers else None}  # type: ignore[operator]
    return out


def render_comparison(metrics: Mapping[str, Mapping[str, Any]], label_a: str, label_b: str) -> str:
    """A small text table of :func:`compare_metrics` (threshold settings left out).

    >>> print(render_comparison(compare_metrics({"roc_auc": 0.98}, {"roc_auc": 0.99}), "m/1", "m/2"))
    metric         m/1       m/2      diff
    roc_auc     0.9800    0.9900   +0.0100
    """
    rows = [(k, v) for k, v in metrics.items() if not k.startswith("threshold_")]
    width = max([len("metric"), *(len(k) for k, _ in rows)]) + 2
    cols = max(9, len(label_a) + 1, len(label_b) + 1)
    lines = [f"{'metric':<{width}}{label_a:>{cols}} {label_b:>{cols}} {'diff':>9}"]
    for k, v in rows:
        diff = "" if v["diff"] is None else (f"{v['diff']:+.4f}" if isinstance(v["diff"], float) else f"{v['diff']:+d}")
        lines.append(f"{k:<{width}}{_cell(v['a']):>{cols}} {_cell(v['b']):>{cols}} {diff:>9}")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# --- the registry --------------------------------------------------------------------


class Registry:
    """Versioned model artifacts, aliases and traffic routes under ``root``."""

    def __init__(self, root: str | Path = "model_registry") -> None:
        self.root = Path(root)

    # versions and manifests

    def names(self) -> builtins.list[str]:
        """Model names that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> builtins.list[int]:
        """The version numbers of ``name`` (folders named by a number; one whose manifest
        is missing still counts, so loading it says what is wrong)."""
        d = self.root / name
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and p.is_dir())

    def publish(
        self, name: str, artifact: bytes, manifest: dict[str, Any], alias: str | None = None
    ) -> int:
        """Store a new version; returns its number (never one used before, even if deleted).
        The manifest gains version, name, created_at, artifact file name and sha256."""
        _check_name(name, "model name")
        with self._locked(name, create=True):
            version = max([*self.versions(name), *self._deleted_versions(name)], default=0) + 1
            d = self.root / name / str(version)
            d.mkdir(parents=True, exist_ok=False)
            full = {
                **manifest,
                "name": name,
                "version": version,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "artifact": ARTIFACT,
                "sha256": sha256_hex(artifact),
            }
            _atomic_write(d / ARTIFACT, artifact)
            _atomic_write(d / MANIFEST, json.dumps(full, indent=2, sort_keys=True).encode())
            if alias:
                self._set_alias(name, alias, version)
        return version

    def resolve(self, ref: str) -> tuple[str, int]:
        """``(name, version)`` a reference points at."""
        name, alias, version = parse_ref(ref)
        if version is None:
            aliases = self.aliases(name)
            if alias not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise RegistryError(
                    f"model {name!r} has no alias {alias!r} in {self.root} (aliases: {known}); "
                    f"train one with `python -m models.train`"
                )
            version = aliases[alias]
        if version not in self.versions(name):
            raise RegistryError(f"model {name!r} has no version {version} in {self.root}")
        return name, version

    def manifest(self, ref: str) -> dict[str, Any]:
        """The stored manifest of ``ref`` (the artifact is not read; :meth:`load` verifies it)."""
        name, version = self.resolve(ref)
        return self._manifest(name, version)

    def load(self, ref: str) -> tuple[bytes, dict[str, Any]]:
        """Artifact bytes and manifest of ``ref``, after checking the sha256."""
        name, version = self.resolve(ref)
        d = self.root / name / str(version)
        manifest = self._manifest(name, version)
        artifact = d / str(manifest.get("artifact", ARTIFACT))
        try:
            data = artifact.read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{artifact}: missing (the manifest names it)") from None
        digest = sha256_hex(data)
        if digest != manifest.get("sha256"):
            raise IntegrityError(
                f"{d / ARTIFACT}: sha256 {digest} does not match the manifest's "
                f"{manifest.get('sha256')}; the artifact was changed after publishing, refusing to load it"
            )
        return data, manifest

    def list(self, name: str) -> builtins.list[dict[str, Any]]:
        """A summary of every version of ``name``, oldest first: ``ref``, ``version``,
        ``created_at``, ``metrics``, ``training_window``, ``evaluation_window``, ``aliases``
        (those pointing at it) and ``routes`` (``{"decide": weight}`` / ``{"shadow": share}``
        when the routes use it, else ``{}``).

        >>> import tempfile
        >>> reg = Registry(tempfile.mkdtemp())
        >>> _ = [reg.publish("m", b"x", {"metrics": {"roc_auc": 0.9}}) for _ in range(2)]
        >>> reg.set_alias("m", "production", 1)
        >>> reg.set_routes("m", Routes.parse("m@production", "m/2:10"))
        >>> [(s["ref"], s["aliases"], s["routes"]) for s in reg.list("m")]
        [('m/1', ['production'], {'decide': 1.0}), ('m/2', [], {'shadow': 0.1})]
        """
        usage = self._usage(name)
        out = []
        for version in self.versions(name):
            m = self._manifest(name, version)
            aliases, routes = usage.get(version, ([], {}))
            out.append({
                "name": name,
                "version": version,
                "ref": format_ref(name, version=version),
                "created_at": m.get("created_at"),
                "metrics": m.get("metrics", {}),
                "training_window": m.get("training_window"),
                "evaluation_window": m.get("evaluation_window"),
                "sha256": m.get("sha256"),
                "aliases": aliases,
                "routes": routes,
            })
        return out

    def delete(self, name: str, version: int) -> None:
        """Remove ``name/version``. Refused (:class:`RegistryError` naming each user) while an
        alias points at it or the routes use it. Its number is recorded in ``deleted.json``
        and never given to another version."""
        with self._locked(name):
            if version not in self.versions(name):
                raise RegistryError(f"model {name!r} has no version {version} in {self.root}")
            users = [f"alias {name}@{a}" for a, v in sorted(self.aliases(name).items()) if v == version]
            routes = self.routes(name)
            for role, pairs in (("decide", routes.decide if routes else ()), ("shadow", routes.shadow if routes else ())):
                for ref, w in pairs:
                    if self._try_resolve(ref) == (name, version):
                        users.append(f"routes ({role} {ref} {_pct(w)} %, {self.root / name / ROUTES})")
            if users:
                raise RegistryError(
                    f"refusing to delete {name}/{version} in {self.root}: used by {'; '.join(users)}. "
                    f"Move the alias (streamscore models alias / unalias) or change the routes "
                    f"(streamscore models routes) first"
                )
            manifest = self._manifest(name, version)
            d = self.root / name / str(version)
            doomed = d.with_name(f".deleting-{version}-{uuid.uuid4().hex[:8]}")
            os.replace(d, doomed)  # the version disappears at once for readers
            deleted = self._deleted(name) + [{
                "version": version,
                "sha256": manifest.get("sha256"),
                "created_at": manifest.get("created_at"),
                "deleted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }]
            _atomic_write(self.root / name / DELETED, json.dumps(deleted, indent=2).encode())
            shutil.rmtree(doomed)

    def compare(self, ref_a: str, ref_b: str) -> dict[str, Any]:
        """The evaluation metrics of two versions side by side, with ``diff`` = b - a.

        Each manifest's metrics were measured on its own evaluation window
        (``same_evaluation_window`` says whether they are the same). When one was
        published by ``models.train`` with a ``baseline`` evaluation of the other on its
        window (``streamscore train``), ``same_window`` holds that like-for-like comparison.
        """
        (na, va), (nb, vb) = self.resolve(ref_a), self.resolve(ref_b)
        ma, mb = self._manifest(na, va), self._manifest(nb, vb)
        out: dict[str, Any] = {
            "a": _brief(ma),
            "b": _brief(mb),
            "same_evaluation_window": ma.get("evaluation_window") == mb.get("evaluation_window"),
            "metrics": compare_metrics(ma.get("metrics", {}), mb.get("metrics", {})),
        }
        for older, newer, flip in ((ma, mb, False), (mb, ma, True)):
            base = newer.get("baseline") or {}
            if base.get("ref") == format_ref(older["name"], version=older["version"]) and "metrics" in base:
                pair = (base["metrics"], newer["metrics"])
                out["same_window"] = {
                    "evaluation_window": newer.get("evaluation_window"),
                    "metrics": compare_metrics(*(pair[::-1] if flip else pair)),
                }
        return out

    # aliases

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of ``name`` (empty when it has none); a damaged file is
        a :class:`RegistryError` naming it."""
        path = self.root / name / ALIASES
        try:
            aliases = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path}: not valid JSON ({exc}); fix it or point the alias again with "
                                f"`streamscore models alias`") from None
        if not isinstance(aliases, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in aliases.values()):
            raise RegistryError(f"{path}: expected a JSON object of alias -> version number")
        return aliases

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``name@alias`` (any alias name) at an existing version."""
        with self._locked(name):
            self._set_alias(name, alias, version)

    def remove_alias(self, name: str, alias: str) -> int:
        """Remove ``name@alias``; returns the version it pointed at. Refused while the
        routes name ``name@alias``."""
        with self._locked(name):
            aliases = self.aliases(name)
            if alias not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise RegistryError(f"model {name!r} has no alias {alias!r} in {self.root} (aliases: {known})")
            routes = self.routes(name)
            ref = format_ref(name, alias=alias)
            if routes and ref in routes.refs():
                raise RegistryError(
                    f"refusing to remove {ref}: the routes of {name!r} use it ({self.root / name / ROUTES}); "
                    f"change the routes first"
                )
            version = aliases.pop(alias)
            _atomic_write(self.root / name / ALIASES, json.dumps(aliases, indent=2).encode())
            return version

    # routes

    def routes(self, name: str) -> Routes | None:
        """The traffic routes of ``name``, or ``None`` when none are set (the flow then
        scores every event with its configured reference)."""
        path = self.root / name / ROUTES
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Routes.from_json(data)
        except RoutesError as exc:
            raise RoutesError(f"{path}: {exc}") from None

    def set_routes(self, name: str, routes: Routes) -> None:
        """Store the routes of ``name`` after checking that every reference is one of
        its versions or aliases and resolves now."""
        with self._locked(name):
            for ref in routes.refs():
                ref_name = parse_ref(ref)[0]
                if ref_name != name:
                    raise RoutesError(f"routes of {name!r} may only name its own versions; {ref!r} is model {ref_name!r}")
                try:
                    self.resolve(ref)
                except RegistryError as exc:
                    raise RoutesError(f"routes of {name!r}: {ref} does not resolve: {exc}") from None
            _atomic_write(self.root / name / ROUTES, json.dumps(routes.to_dict(), indent=2).encode())

    def clear_routes(self, name: str) -> bool:
        """Remove the routes of ``name``; ``False`` when there were none."""
        with self._locked(name):
            try:
                (self.root / name / ROUTES).unlink()
            except FileNotFoundError:
                return False
            return True

    def state_token(self, name: str) -> str:
        """A fingerprint of what decides how ``name`` is scored: a hash of the contents of
        its ``aliases.json`` and ``routes.json``. A running flow polls it (two small file
        reads, tens of µs) and re-reads aliases and routes when it changes. Being a hash of
        the contents, it does not depend on file-system timestamps, and a change undone
        between two polls is (rightly) no change.

        >>> import tempfile
        >>> reg = Registry(tempfile.mkdtemp())
        >>> before = reg.state_token("m")
        >>> _ = reg.publish("m", b"x", {}, alias="production")
        >>> before != reg.state_token("m"), reg.state_token("m") == reg.state_token("m")
        (True, True)
        """
        h = hashlib.blake2b(digest_size=8)
        for file in (ALIASES, ROUTES):
            try:
                data = (self.root / name / file).read_bytes()
            except FileNotFoundError:
                h.update(b"-")
            else:
                h.update(len(data).to_bytes(8, "big") + data)
        return h.hexdigest()

    # internals

    def _manifest(self, name: str, version: int) -> dict[str, Any]:
        path = self.root / name / str(version) / MANIFEST
        try:
            manifest = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            if path.parent.is_dir():
                raise RegistryError(f"{path}: missing (the version folder has no manifest)") from None
            raise RegistryError(f"model {name!r} has no version {version} in {self.root}") from None
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{path}: manifest is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path}: manifest is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise RegistryError(f"{path}: manifest must be a JSON object, got {type(manifest).__name__}")
        return manifest

    def _set_alias(self, name: str, alias: str, version: int) -> None:
        _check_name(alias, "alias")
        if isinstance(version, bool) or not isinstance(version, int) or version not in self.versions(name):
            raise RegistryError(f"model {name!r} has no version {version} in {self.root}")
        aliases = self.aliases(name) | {alias: version}
        _atomic_write(self.root / name / ALIASES, json.dumps(aliases, indent=2).encode())

    def _try_resolve(self, ref: str) -> tuple[str, int] | None:
        try:
            return self.resolve(ref)
        except RegistryError:
            return None

    def _usage(self, name: str) -> dict[int, tuple[builtins.list[str], dict[str, float]]]:
        """``{version: (aliases, {role: weight})}`` of the versions something uses."""
        usage: dict[int, tuple[builtins.list[str], dict[str, float]]] = {}
        for alias, version in sorted(self.aliases(name).items()):
            usage.setdefault(version, ([], {}))[0].append(alias)
        routes = self.routes(name)
        if routes:
            for role, pairs in (("decide", routes.decide), ("shadow", routes.shadow)):
                for ref, w in pairs:
                    resolved = self._try_resolve(ref)
                    if resolved and resolved[0] == name:
                        roles = usage.setdefault(resolved[1], ([], {}))[1]
                        roles[role] = round(roles.get(role, 0.0) + w, 6)
        return usage

    def _deleted(self, name: str) -> builtins.list[dict[str, Any]]:
        path = self.root / name / DELETED
        return json.loads(path.read_text()) if path.is_file() else []

    def _deleted_versions(self, name: str) -> builtins.list[int]:
        return [int(d["version"]) for d in self._deleted(name)]

    @contextlib.contextmanager
    def _locked(self, name: str, create: bool = False) -> Iterator[None]:
        """An exclusive lock on the folder ``<root>/<name>`` for changes (POSIX ``flock`` on
        the folder itself: no lock file; no lock where there is no ``fcntl``). Unless
        ``create``, a model that does not exist is a :class:`RegistryError`."""
        d = self.root / name
        if create:
            d.mkdir(parents=True, exist_ok=True)
        elif not d.is_dir():
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"no model {name!r} in {self.root} (models: {known})")
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        fd = os.open(d, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _brief(m: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ref": format_ref(m["name"], version=m["version"]),
        "created_at": m.get("created_at"),
        "evaluation_window": m.get("evaluation_window"),
    }


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ALIAS.match(value):
        raise RegistryError(f"bad {what} {value!r}: use letters, digits, '_', '.' and '-'")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, flush it to disk, rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

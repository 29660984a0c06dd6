"""Traffic routes: how decisions split between model versions, and shadow versions scored
beside them (:class:`Routes`), by a stable hash of the event's key."""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Mapping

from models.registry.refs import RegistryError, RoutesError, canonical_ref

__all__ = ["BUCKETS", "Routes", "bucket"]

#: Keys are hashed to one of this many buckets: route shares have a resolution of 0.01 %.
BUCKETS = 10_000



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

    A version may both decide and shadow (as a SageMaker endpoint's production variant
    takes its weighted share of the traffic while a shadow variant gets a copy of it):
    ``Routes.parse("m/1:90,m/2:10", "m/2:100")`` lets ``m/2`` decide 10 % of the keys and
    score the other 90 % in shadow, beside ``m/1``'s decision. A shadow never scores the
    keys its own version decides (its score there *is* the decision): the serving side
    drops it (:meth:`models.serving.Assignment.shadows_of`, by resolved version). A
    reference listed twice in the same role is still an error.

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
    """A reference at most once per role; the same one may decide and shadow (see :class:`Routes`)."""
    for role, pairs in (("decide", decide), ("shadow", shadow)):
        seen: set[str] = set()
        for ref, _ in pairs:
            if ref in seen:
                raise RoutesError(f"{ref} is listed twice in {role}: name each model once per role")
            seen.add(ref)
    if len(decide) == 1 and decide[0][0] in {ref for ref, _ in shadow}:
        ref = decide[0][0]
        raise RoutesError(f"{ref} decides every key, so as a shadow it would score none: "
                          f"give it a decide share below 100 % or drop the shadow")

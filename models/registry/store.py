"""The registry on disk (:class:`Registry`): versioned artifacts with manifests, aliases,
routes, deletion, atomic writes and a lock."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from models.registry.compare import compare_metrics
from models.registry.refs import _ALIAS, IntegrityError, RegistryError, RoutesError, format_ref, parse_ref, sha256_hex
from models.registry.routes import Routes, _pct

__all__ = ["Registry"]

ARTIFACT = "model.txt"
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
ROUTES = "routes.json"
DELETED = "deleted.json"



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
                    f"train one with `streamscore train`"
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

    def list(self, name: str, ref: str | None = None) -> builtins.list[dict[str, Any]]:
        """A summary of every version of ``name``, oldest first: ``ref``, ``version``,
        ``created_at``, ``metrics``, ``training_window``, ``evaluation_window``, ``aliases``
        (those pointing at it), ``routes`` (``{"decide": weight}`` / ``{"shadow": share}``
        when the routes use it, else ``{}``), and what a flow does with it: ``decides``
        (the fraction of keys whose status it decides: its routes' weight, or 1.0 for the
        version ``ref`` resolves to when no routes are set; ``ref`` is the flow's
        ``model.ref``, default ``name@production``) and ``shadows`` (the fraction of the
        keys it does not decide that it scores in shadow, or ``None``).

        >>> import tempfile
        >>> reg = Registry(tempfile.mkdtemp())
        >>> _ = [reg.publish("m", b"x", {"metrics": {"roc_auc": 0.9}}) for _ in range(2)]
        >>> reg.set_alias("m", "production", 2)
        >>> [(s["ref"], s["aliases"], s["decides"]) for s in reg.list("m")]
        [('m/1', [], 0.0), ('m/2', ['production'], 1.0)]
        >>> reg.set_routes("m", Routes.parse("m/1:90,m/2:10", "m/2:20"))
        >>> [(s["ref"], s["aliases"], s["routes"], s["decides"], s["shadows"]) for s in reg.list("m")]
        [('m/1', [], {'decide': 0.9}, 0.9, None), ('m/2', ['production'], {'decide': 0.1, 'shadow': 0.2}, 0.1, 0.2)]
        """
        usage = self._usage(name)
        flow = None if self.routes(name) is not None else self._try_resolve(ref or format_ref(name))
        out = []
        for version in self.versions(name):
            m = self._manifest(name, version)
            aliases, routes = usage.get(version, ([], {}))
            decides = 1.0 if flow == (name, version) else routes.get("decide", 0.0)
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
                "decides": decides,
                "shadows": routes.get("shadow"),
            })
        return out

    def overridden(self, name: str, ref: str | None = None) -> str | None:
        """Why ``ref`` (a flow's ``model.ref``, default ``name@production``) does not decide
        alone: a sentence naming it and the routes that decide instead, or ``None`` when no
        routes are set or they decide by ``ref`` alone (a flow follows the routes, so
        moving the alias then changes no decision).

        >>> import tempfile
        >>> reg = Registry(tempfile.mkdtemp())
        >>> _ = [reg.publish("m", b"x", {}, alias="production") for _ in range(2)]
        >>> reg.overridden("m") is None
        True
        >>> reg.set_routes("m", Routes.parse("m/1:90,m/2:10"))
        >>> print(reg.overridden("m"))
        the routes of m decide (m/1 90 %, m/2 10 %), not m@production (-> m/2), which a flow would otherwise follow: moving m@production changes no decision while the routes are set (`streamscore models routes m --clear` goes back to it)
        """
        routes = self.routes(name)
        ref = format_ref(*parse_ref(ref or name))
        if routes is None or routes.decide == ((ref, 1.0),):
            return None
        target = self._try_resolve(ref)
        arrow = "" if target is None or format_ref(target[0], version=target[1]) == ref \
            else f" (-> {format_ref(target[0], version=target[1])})"
        deciders = ", ".join(f"{r} {_pct(w)} %" for r, w in routes.decide)
        change = f"moving {ref}" if "@" in ref else "a new version"
        return (f"the routes of {name} decide ({deciders}), not {ref}{arrow}, which a flow would otherwise follow: "
                f"{change} changes no decision while the routes are set "
                f"(`streamscore models routes {name} --clear` goes back to it)")

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

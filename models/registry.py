"""A local, file-based model registry with versions, aliases and integrity checks.

Layout (``root`` defaults to ``model_registry/``)::

    <root>/<name>/<version>/model.txt       the artifact (LightGBM text: no code runs on load)
    <root>/<name>/<version>/manifest.json   version, feature names and order, metrics,
                                            training window, sha256 of the artifact
    <root>/<name>/aliases.json              {"production": 3, ...}

References: ``name@alias`` (e.g. ``fraud_model@production``), ``name/version``
(e.g. ``fraud_model/3``) or a bare ``name`` (its ``production`` alias).

>>> import tempfile
>>> reg = Registry(tempfile.mkdtemp())
>>> v = reg.publish("m", b"artifact", {"feature_names": ["a"]}, alias="production")
>>> art, manifest = reg.load("m@production")
>>> art, manifest["version"], manifest["sha256"][:12]
(b'artifact', 1, 'c7c5c1d70c5d')
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["Registry", "RegistryError", "IntegrityError", "parse_ref"]

ARTIFACT = "model.txt"
MANIFEST = "manifest.json"


class RegistryError(LookupError):
    """A model reference that cannot be resolved; the message says which and where."""


class IntegrityError(RegistryError):
    """An artifact whose bytes do not match its manifest: refused."""


_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:@(?P<alias>[A-Za-z0-9_.-]+)|/(?P<version>\d+))?$")


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``(name, alias, version)`` of a reference; a bare name means ``@production``.

    >>> parse_ref("fraud_model/3"), parse_ref("fraud_model")
    (('fraud_model', None, 3), ('fraud_model', 'production', None))
    """
    m = _REF.match(ref.strip())
    if not m:
        raise RegistryError(f"bad model reference {ref!r}: use name@alias or name/version")
    version = m["version"]
    alias = m["alias"] or (None if version else "production")
    return m["name"], alias, int(version) if version else None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Registry:
    """Versioned model artifacts under ``root``."""

    def __init__(self, root: str | Path = "model_registry") -> None:
        self.root = Path(root)

    def versions(self, name: str) -> list[int]:
        d = self.root / name
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file())

    def aliases(self, name: str) -> dict[str, int]:
        path = self.root / name / "aliases.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if version not in self.versions(name):
            raise RegistryError(f"model {name!r} has no version {version} in {self.root}")
        aliases = self.aliases(name) | {alias: version}
        _atomic_write(self.root / name / "aliases.json", json.dumps(aliases, indent=2).encode())

    def publish(
        self, name: str, artifact: bytes, manifest: dict[str, Any], alias: str | None = None
    ) -> int:
        """Store a new version; returns its number. The manifest gains version,
        name, created_at, artifact file name and sha256."""
        version = max(self.versions(name), default=0) + 1
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
            self.set_alias(name, alias, version)
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

    def load(self, ref: str) -> tuple[bytes, dict[str, Any]]:
        """Artifact bytes and manifest of ``ref``, after checking the sha256."""
        name, version = self.resolve(ref)
        d = self.root / name / str(version)
        manifest = json.loads((d / MANIFEST).read_text())
        data = (d / manifest.get("artifact", ARTIFACT)).read_bytes()
        digest = sha256_hex(data)
        if digest != manifest.get("sha256"):
            raise IntegrityError(
                f"{d / ARTIFACT}: sha256 {digest} does not match the manifest's "
                f"{manifest.get('sha256')}; the artifact was changed after publishing, refusing to load it"
            )
        return data, manifest


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

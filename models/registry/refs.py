"""Model references (``name``, ``name@alias``, ``name/3``, ``models:/name@alias``) and the
registry's errors."""

from __future__ import annotations

import hashlib
import re

__all__ = ["RegistryError", "IntegrityError", "RoutesError", "parse_ref", "format_ref", "canonical_ref"]



class RegistryError(LookupError):
    """A model reference that cannot be resolved; the message says which and where."""


class IntegrityError(RegistryError):
    """An artifact whose bytes do not match its manifest: refused."""


class RoutesError(RegistryError, ValueError):
    """A traffic-routes spec or value that is wrong; the message names the bad part.

    Both a :class:`RegistryError` and a :class:`ValueError`, so either ``except`` catches it.
    """


# The errors' public home is the package (``models.registry.RegistryError``), in
# tracebacks and messages too.
RegistryError.__module__ = IntegrityError.__module__ = RoutesError.__module__ = "models.registry"


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

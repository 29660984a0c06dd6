"""What the streamscore commands share: the error line, the registry option, JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from models.registry import (
    Registry,
    RegistryError,
    parse_ref,
)

__all__ = ["REGISTRY_KEY", "fail", "registry_option", "json_option", "print_json", "open_registry", "require_model", "version_of"]

REGISTRY_KEY = "model.registry"  # the flows' setting (settings/config.py)


def fail(message: str, code: int) -> int:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    return code


def _registry_default() -> Any:
    from settings.config import setting

    return setting(REGISTRY_KEY)


def registry_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--registry", type=click.Path(path_type=Path, file_okay=False), default=_registry_default,
        show_default=f"the {REGISTRY_KEY} setting (STREAMSCORE_MODEL__REGISTRY or the settings file), model_registry",
        help="the model registry folder",
    )(f)


json_option = click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON on stdout")


def open_registry(root: Path) -> Registry:
    if not root.is_dir():
        raise RegistryError(f"registry folder {str(root)!r} does not exist (--registry or the {REGISTRY_KEY} setting)")
    return Registry(root)


def require_model(reg: Registry, name: str) -> None:
    parse_ref(name)  # a bad name is a bad reference
    if not reg.versions(name):
        known = ", ".join(reg.names()) or "none"
        raise RegistryError(f"no model {name!r} in {reg.root} (models: {known})")


def version_of(reg: Registry, name: str, text: str) -> int:
    """A version number, or the version a reference of model ``name`` resolves to."""
    if text.strip().isdigit():
        return int(text)
    ref_name, version = reg.resolve(text)
    if ref_name != name:
        raise RegistryError(f"{text!r} is a version of model {ref_name!r}, not of {name!r}")
    return version


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))

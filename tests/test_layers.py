"""The package layering (``.importlinter``): a package imports only the packages below it.

    benchmarks > cli > service > dataflows > monitoring | datagen > settings > models > features

``lint-imports`` (import-linter, in the dev extra) reads every import of the project,
those inside functions included, and fails on one that goes up a layer or across
the ``monitoring | datagen`` pair.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def test_imports_follow_the_layers() -> None:
    lint = Path(sys.executable).parent / "lint-imports"  # the venv's own, next to its python
    out = subprocess.run([str(lint), "--no-cache", "--config", str(CONFIG)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def test_every_package_is_in_the_contract() -> None:
    """A new top-level package must take a place in the layers, or nothing checks it."""
    packages = {p.rstrip("*") for p in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]}
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    roots = set(cfg["importlinter"]["root_packages"].split())
    layers = {name.strip() for line in cfg["importlinter:contract:layers"]["layers"].split("\n")
              for name in line.split("|") if name.strip()}
    assert packages == roots == layers

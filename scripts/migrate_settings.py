"""Rewrite the retired setting variables (``SCORING_*``, ``IOT_*``, ``KAFKA_CHECK_TIMEOUT_S``)
in files to the variables that replaced them, from the table in :mod:`settings.migration`.

    .venv/bin/python scripts/migrate_settings.py deploy/.env k8s/scoring.yaml     # rewrite in place
    .venv/bin/python scripts/migrate_settings.py --check deploy/.env               # list, change nothing
    .venv/bin/python scripts/migrate_settings.py --flow iot deploy/iot.env

A variable that became one key per flow (``SCORING_CRITICAL_THRESHOLD`` -> ``fraud.critical``
and ``iot.critical``) takes ``--flow``'s (default fraud). Only whole names are replaced
(``SCORING_INPUT`` never inside ``SCORING_INPUT_TOPIC``). Exit status 1 with ``--check``
when a file holds a retired name.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from settings.config import all_leaves  # noqa: E402
from settings.migration import RETIRED  # noqa: E402


def renames(flow: str = "fraud") -> dict[str, str]:
    """Old variable -> its replacement variable for ``flow``."""
    leaves = all_leaves()
    out = {}
    for old, keys in RETIRED.items():
        key = next((k for k in keys if k.startswith(f"{flow}.")), keys[0])
        out[old] = leaves[key].variables[0]  # the short name when there is one
    return out


def rewrite(text: str, table: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """``text`` with every whole old name replaced; the replacements made."""
    done: list[tuple[str, str]] = []
    names = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9_])")

    def sub(m: re.Match[str]) -> str:
        done.append((m.group(1), table[m.group(1)]))
        return table[m.group(1)]

    return pattern.sub(sub, text), done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--flow", choices=["fraud", "iot"], default="fraud",
                   help="whose key a variable that became one key per flow takes")
    p.add_argument("--check", action="store_true", help="list what would change; change nothing")
    a = p.parse_args(argv)
    table = renames(a.flow)
    found = False
    for path in a.files:
        text = path.read_text()
        new, done = rewrite(text, table)
        if not done:
            continue
        found = True
        names = sorted({f"{old} -> {new_name}" for old, new_name in done})
        print(f"{path}: {len(done)} replacement(s): {'; '.join(names)}")
        if not a.check:
            path.write_text(new)
    return 1 if a.check and found else 0


if __name__ == "__main__":
    sys.exit(main())

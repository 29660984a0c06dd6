"""The README's commands work as written.

Every ``bash`` block preceded by ``<!-- readme-test -->`` in README.md is run line by
line with bash, in a scratch folder that holds links to the project's ``.venv`` and to
the session's real Feast repo and model registry (so the commands see what ``make demo``
sets up). Each line must exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- readme-test -->"


def marked_blocks(text: str) -> list[list[str]]:
    """The command lines of every bash block right after the marker."""
    blocks = []
    for m in re.finditer(re.escape(MARK) + r"\s*```bash\n(.*?)```", text, re.S):
        lines = []
        for line in m.group(1).splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
        blocks.append(lines)
    return blocks


def test_readme_marks_the_blocks_it_runs():
    blocks = marked_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 2 and all(blocks)


@pytest.mark.parametrize("index", range(len(marked_blocks((ROOT / "README.md").read_text()))))
def test_readme_block_runs_as_written(index, fraud_env, tmp_path):
    block = marked_blocks((ROOT / "README.md").read_text())[index]
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the environment under test (make test-latest has its own)
    (tmp_path / "feature_repo").symlink_to(fraud_env.repo)
    (tmp_path / "model_registry").symlink_to(fraud_env.registry)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCORING_", "IOT_", "KAFKA_OPT_"))}
    for line in block:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, f"{line}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]

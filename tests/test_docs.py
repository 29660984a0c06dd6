"""The documentation's commands work as written.

Every ``bash`` block preceded by ``<!-- readme-test -->`` in README.md or in a page of
docs/ is run line by line with bash, in a scratch folder that holds links to the
project's ``.venv`` and to the session's real Feast repo and model registry (so the
commands see what ``make demo`` sets up; the ``fraud_env`` fixture builds them). Each
line must exit 0. One test per block: ``README.md[0]``, ``docs/iot.md[0]``, ...
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
#: README.md first, then every page of docs/ (sub-folders too), in a stable order.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


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


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


#: (page, index) of every marked block, named as the test ids show them.
CASES = [(name(page), i) for page in PAGES for i in range(len(marked_blocks(page.read_text())))]


def test_readme_marks_the_blocks_it_runs():
    blocks = marked_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 1 and all(blocks)
    # the blocks marked when the README was one page (scoring a file, the IoT flow, the
    # registry's read-only views) are still marked, wherever they moved
    assert len(CASES) >= 3


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_marker_marks_a_bash_block(page):
    """A marker that no longer precedes a bash block (a typo, a block turned into
    ``sh``) would silently stop its block from being run."""
    text = page.read_text()
    blocks = marked_blocks(text)
    markers = re.findall(r"^" + re.escape(MARK) + r"[ \t]*$", text, re.M)  # on a line of its own
    assert len(markers) == len(blocks), f"{name(page)}: a {MARK} is not followed by a ```bash block"
    assert all(blocks), f"{name(page)}: a marked block has no command"


def test_readme_links_resolve():
    """README.md is not part of the docs site, so ``mkdocs build --strict`` does not check
    its links: every relative link must name a file or folder of the repository."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"[a-z]+:", link) or link.startswith("#"):
            continue
        assert (ROOT / link.split("#")[0]).exists(), f"README.md links to {link}, which does not exist"


@pytest.mark.parametrize("page,index", CASES, ids=[f"{p}[{i}]" for p, i in CASES])
def test_readme_block_runs_as_written(page, index, fraud_env, tmp_path):
    block = marked_blocks((ROOT / page).read_text())[index]
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the environment under test (make test-latest has its own)
    (tmp_path / "feature_repo").symlink_to(fraud_env.repo)
    (tmp_path / "model_registry").symlink_to(fraud_env.registry)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_OPT_"))}
    for line in block:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, f"{page}: {line}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_feast_serve_examples_name_the_store_the_flow_writes_to():
    """`feast serve` run from feature_repo/ without `-f` serves the SQLite store, not the
    Redis one that write-back fills in production."""
    found = [line for page in PAGES for line in page.read_text().splitlines() if "feast" in line and " serve" in line
             and "`feast serve`" not in line]
    assert found
    assert all("-f feature_store.redis.yaml serve" in line and "REDIS_CONNECTION_STRING=" in line for line in found), found

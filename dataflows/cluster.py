"""A Bytewax cluster's start-up step: each process's recovery partitions, created once.

    python -m dataflows.cluster init-recovery --partitions N --initial-processes P

Run by ``deploy/entrypoint.sh init-recovery`` (the Helm chart's init container, and the
local rehearsal in ``tests/deploy``) before ``bytewax.run``, with the variables Bytewax
reads: the recovery directory (``BYTEWAX_RECOVERY_DIRECTORY`` or ``-r``) and this process's
index (``-i``, ``BYTEWAX_PROCESS_ID``, or the pod ordinal from ``BYTEWAX_POD_NAME`` and
``BYTEWAX_STATEFULSET_NAME``: :func:`dataflows.placement.process_id`).

- the directory holds partitions: they are kept (a restart resumes from them); each must
  belong to a set of ``N`` (else exit 2 naming the file: a changed partition count);
- it holds none: this process creates its share, :func:`dataflows.placement.recovery_partitions`
  (partition ``k`` on process ``k % P``), with ``bytewax.recovery``'s own initialiser; a
  process added by scaling (index >= ``P``) creates none.

``N`` and ``P`` are fixed for a deployment's life: the chart derives them from the first
install's processes and workers, and ``docs/kubernetes.md`` says how to keep them when the
process count changes.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import structlog

from dataflows.placement import process_id, recovery_directory, recovery_partitions
from settings.logs import configure_logging

__all__ = ["init_recovery", "main"]

log = structlog.get_logger("dataflows.cluster")


def _part_count(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT part_count FROM parts").fetchone()
    return int(count)


def init_recovery(directory: Path, process: int, partitions: int, initial_processes: int) -> dict[str, object]:
    """Create this process's recovery partitions in ``directory`` unless it holds some
    (see the module); returns what was done. ``ValueError`` naming the file when a
    present partition belongs to another partition count."""
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    present = sorted(directory.glob("part-*.sqlite3"))
    if present:
        for p in present:
            count = _part_count(p)
            if count != partitions:
                raise ValueError(f"{p}: a partition of {count}, not --partitions {partitions}: the partition count "
                                 f"is fixed when a deployment starts (docs/kubernetes.md, Scaling)")
        return {"action": "kept", "partitions": [p.name for p in present]}
    mine = recovery_partitions(process, partitions, initial_processes)
    if mine:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".init-") as tmp:
            init_db_dir(Path(tmp), partitions)
            for k in mine:  # a rename inside one file system: a partition appears whole or not at all
                (Path(tmp) / f"part-{k}.sqlite3").rename(directory / f"part-{k}.sqlite3")
            shutil.rmtree(tmp, ignore_errors=True)
    return {"action": "created" if mine else "none (a process added after the first deployment)",
            "partitions": [f"part-{k}.sqlite3" for k in mine]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataflows.cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init-recovery", help="create this process's recovery partitions once")
    init.add_argument("--partitions", type=int, required=True, help="partitions of the deployment (fixed)")
    init.add_argument("--initial-processes", type=int, required=True,
                      help="processes of the first deployment (fixed): partition k lives on process k %% P")
    args, rest = parser.parse_known_args(argv)
    configure_logging()
    directory = recovery_directory(rest)
    try:
        index = process_id(rest)
        if directory is None:
            raise ValueError("no recovery directory: set BYTEWAX_RECOVERY_DIRECTORY (or pass -r DIR)")
        if index is None:
            raise ValueError("no process index: set BYTEWAX_PROCESS_ID, or BYTEWAX_POD_NAME and "
                             "BYTEWAX_STATEFULSET_NAME (the pod ordinal), or pass -i N")
        done = init_recovery(Path(directory), index, args.partitions, args.initial_processes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("recovery_partitions", directory=str(directory), process=index, total=args.partitions,
             initial_processes=args.initial_processes, **done)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train, evaluate and publish the fraud model: ``python -m cli.train`` (``make model``;
the same as ``streamscore train``). The work is :func:`models.train.run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.train import run
from settings.logs import configure_logging

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train, evaluate and publish the fraud model.")
    p.add_argument("--history", type=Path, default=Path("data/history.parquet"))
    p.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    p.add_argument("--registry", type=Path, default=Path("model_registry"))
    p.add_argument("--eval-fraction", type=float, default=0.3)
    p.add_argument("--no-promote", action="store_true",
                   help="publish a candidate without moving the production alias, and compare it with production")
    p.add_argument("--if-missing", action="store_true", help="do nothing when a production model exists")
    a = p.parse_args(argv)
    configure_logging()  # the command line's logs: JSON lines on stderr
    run(a.history, a.feature_repo, a.registry, a.eval_fraction, not a.no_promote, a.if_missing)


if __name__ == "__main__":
    main()

"""Write-back: the flows push each key's latest streaming features to the Feast online
store, so ``get_online_features`` (the scoring endpoint, ``feast serve``) sees them.

- :func:`write_back`: a Bytewax operator (an output, like ``op.output``): each worker
  has one :class:`~features.live.LiveWriter`, built by ``build()`` on the worker's first
  batch (never at import or flow build), fed one upstream batch at a time; at the end
  of a bounded input it writes what is left (``close``). A store that cannot be opened
  or written is logged and counted, never raised: scoring never stops for it.
- :func:`fraud_writeback` / :func:`iot_writeback`: the builders, with plain arguments
  (the Feast repo, its store YAML, the rate limit), for ``dataflows/fraud.py`` and
  ``dataflows/iot.py``:

      from dataflows.connectors.writeback import fraud_writeback, write_back
      if cfg.writeback:
          write_back("live_out", scored, fraud_writeback(cfg.feature_repo, cfg.feature_store_yaml,
                                                         cfg.writeback_min_interval_s))

- :func:`check_live_view`: the start check (the repo has the view).

Each store call is counted in ``scoring_live_rows_total{view, outcome}`` (``pushed`` /
``failed``) next to the flow's other metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, List

import bytewax.operators as op
import structlog
from bytewax.dataflow import Stream, operator
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from prometheus_client import Counter

from dataflows.resources import feature_store
from settings import environment
from features.live import (
    CUSTOMER_LIVE_PUSH,
    CUSTOMER_LIVE_VIEW,
    DEVICE_LIVE_PUSH,
    DEVICE_LIVE_VIEW,
    LiveWriter,
    device_live_row,
    feast_pusher,
    live_row,
)
from features.store import open_store

__all__ = ["write_back", "fraud_writeback", "iot_writeback", "check_live_view", "LIVE_ROWS"]

log = structlog.get_logger("dataflows.connectors.writeback")

#: Rows per store call outcome, by view.
LIVE_ROWS = Counter("scoring_live_rows_total", "Live feature rows written to the online store (or failed)",
                    ["view", "outcome"])


class _LivePartition(StatelessSinkPartition[Any]):
    """One worker's writer: built on the first batch; while it cannot be built (the
    store does not open), batches are counted as unwritten and a build is tried again
    every ``retry_s``."""

    def __init__(self, build: Callable[[], LiveWriter], step_id: str, worker: int, retry_s: float = 5.0) -> None:
        self._build = build
        self.step_id = step_id
        self.worker = worker
        self.retry_s = retry_s
        self.writer: LiveWriter | None = None
        self._next_try = 0.0
        self.unwritten = 0  # records seen while no writer could be built

    def _writer(self) -> LiveWriter | None:
        if self.writer is None and time.monotonic() >= self._next_try:
            t0 = time.perf_counter()
            try:
                self.writer = self._build()
            except Exception as exc:  # the store is not there: score on, try again later
                self._next_try = time.monotonic() + self.retry_s
                log.error("live_writer_unavailable", step=self.step_id, worker=self.worker, retry_s=self.retry_s,
                          error=f"{type(exc).__name__}: {exc}"[:500])
            else:
                log.info("live_writer_ready", step=self.step_id, worker=self.worker, view=self.writer.name,
                         min_interval_s=self.writer.min_interval_s, seconds=round(time.perf_counter() - t0, 3))
        return self.writer

    def write_batch(self, items: List[Any]) -> None:
        writer = self._writer()
        if writer is None:
            self.unwritten += len(items)
            return
        try:
            writer.write_batch(items)
        except Exception as exc:  # LiveWriter does not raise; a bug here must not stop the flow either
            self.unwritten += len(items)
            log.error("live_write_failed", step=self.step_id, worker=self.worker,
                      error=f"{type(exc).__name__}: {exc}"[:500])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.unwritten:
            log.warning("live_rows_unwritten", step=self.step_id, worker=self.worker, records=self.unwritten)


class _LiveSink(DynamicSink[Any]):
    def __init__(self, build: Callable[[], LiveWriter], retry_s: float) -> None:
        self._build = build
        self.retry_s = retry_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LivePartition:
        return _LivePartition(self._build, step_id, worker_index, self.retry_s)


@operator
def write_back(step_id: str, up: Stream[Any], build: Callable[[], LiveWriter], retry_s: float = 5.0) -> None:
    """Write each key's latest row of ``up``'s records to the online store: one
    :class:`~features.live.LiveWriter` per worker, built by ``build()`` on the worker's
    first batch, given every upstream batch (it keeps the last row per key, applies its
    rate limit and writes from its own thread: the flow never waits for the store).
    At the end of a bounded input the rows still waiting are written (at most the
    writer's ``close_timeout_s``). If ``build()`` raises (the store does not open), the
    error is logged and a build is tried again every ``retry_s``; nothing raises.

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSource, run_main
    >>> written = []
    >>> flow = Dataflow("doc")
    >>> recs = op.input("in", flow, TestingSource([{"k": "a", "t": 1.0}, {"k": "a", "t": 2.0}, {"k": "b", "t": 1.0}],
    ...                                           batch_size=10))
    >>> write_back("live", recs, lambda: LiveWriter(written.append, row=dict, key="k", time_field="t"))
    >>> from structlog.testing import capture_logs
    >>> with capture_logs():   # live_writer_ready, live_writer_closed
    ...     run_main(flow)
    >>> written   # one push: the newest row per key
    [[{'k': 'a', 't': 2.0}, {'k': 'b', 't': 1.0}]]
    """
    op.output("write", up, _LiveSink(build, retry_s))


def _observer(view: str) -> Callable[[str, int], None]:
    children = {o: LIVE_ROWS.labels(view, o) for o in ("pushed", "failed")}

    def observe(outcome: str, n: int) -> None:
        children[outcome].inc(n)

    return observe


def _writeback(view: str, push_source: str, key: str, time_field: str, row: Callable[[Any], Any],
               repo: str | Path, yaml_file: str | None, min_interval_s: float, retry_s: float,
               via_push_source: bool, close_timeout_s: float) -> Callable[[], LiveWriter]:
    def build() -> LiveWriter:
        store = open_store(repo, yaml_file, environment.variables())
        push = feast_pusher(store, view, key, time_field, push_source if via_push_source else None)
        return LiveWriter(push, row, key, time_field, min_interval_s=min_interval_s, retry_s=retry_s,
                          observe=_observer(view), name=view, close_timeout_s=close_timeout_s)

    return build


def fraud_writeback(
    repo: str | Path,
    yaml_file: str | None = None,
    min_interval_s: float = 0.0,
    *,
    retry_s: float = 5.0,
    via_push_source: bool = False,
    close_timeout_s: float = 10.0,
) -> Callable[[], LiveWriter]:
    """Builds a worker's writer of the fraud flow's scored records to Feast view
    ``customer_live`` (:func:`features.live.live_row`) of the repo ``repo``
    (``yaml_file`` in it, e.g. ``feature_store.redis.yaml``).

    The writer opens its own ``FeatureStore`` (its thread never shares the scorer's
    store connection) and writes with ``write_to_online_store``, or, with
    ``via_push_source``, ``push("customer_live_push", ...)``. ``min_interval_s``: at most
    one row per customer per that many seconds of event time (0: every batch).
    """
    return _writeback(CUSTOMER_LIVE_VIEW, CUSTOMER_LIVE_PUSH, "customer_id", "last_transaction_at", live_row,
                      repo, yaml_file, min_interval_s, retry_s, via_push_source, close_timeout_s)


def iot_writeback(
    repo: str | Path,
    yaml_file: str | None = None,
    min_interval_s: float = 0.0,
    *,
    retry_s: float = 5.0,
    via_push_source: bool = False,
    close_timeout_s: float = 10.0,
) -> Callable[[], LiveWriter]:
    """Builds a worker's writer of the IoT flow's scored readings to Feast view
    ``device_live`` (:func:`features.live.device_live_row`; drift records are not
    written). As :func:`fraud_writeback` otherwise."""
    return _writeback(DEVICE_LIVE_VIEW, DEVICE_LIVE_PUSH, "device_id", "last_reading_at", device_live_row,
                      repo, yaml_file, min_interval_s, retry_s, via_push_source, close_timeout_s)


def check_live_view(repo: str | Path, yaml_file: str | None = None, view: str = CUSTOMER_LIVE_VIEW,
                    setting: str = "writeback.enabled", where: str | None = None) -> None:
    """Start check for ``writeback.enabled = true``: the repo's registry has ``view``.
    Raises ``ValueError`` naming the setting (``setting``, the store's ``where``) and the fix."""
    where = where or (f"feast.store_yaml={yaml_file!r}" if yaml_file else f"feast.repo={str(repo)!r}")
    store = feature_store(Path(repo), yaml_file, where)
    try:
        store.get_feature_view(view)
    except Exception:
        raise ValueError(f"{setting}=true: {where} has no feature view {view!r}; "
                         f"apply feature_repo/definitions.py (`cd feature_repo && feast apply`)") from None

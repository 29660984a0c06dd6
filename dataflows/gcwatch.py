"""Garbage-collection pauses of a flow process, measured and made cheap.

A stream worker is one Python thread: while the collector runs, no event moves.
:func:`watch_gc` times every collection with :data:`gc.callbacks`, feeds the
Prometheus histogram ``scoring_gc_pause_seconds{generation}`` and logs one
``gc_pause`` line (wall time, generation, milliseconds, objects collected) for
each pause of at least ``log_ms``, so a latency tail can be laid beside the
pauses that caused it (``benchmarks.kafka_bench.live`` does), and logs a
``gc_summary`` (collections, total and longest pause per generation) at exit.

:func:`freeze_startup_objects` moves everything alive after start-up (modules,
the model, the Feast client, River's classes: hundreds of thousands of objects)
into the permanent generation (:func:`gc.freeze`), so the full collections of
a long run no longer traverse them. With ``freeze_survivors``, what survives each
full collection is frozen too: the per-key states (millions of objects that live
for hours) are then traversed once, not at every full collection, and a full
collection costs what was allocated since the last one, whatever the number of
keys. Frozen objects are still freed by reference counting when dropped (an
expired key's state is: the states hold no reference cycles, which
``tests/dataflows/test_gcwatch.py`` checks); a reference cycle among frozen
objects is reclaimed by the one full collection that traverses everything every
:data:`THAW_EVERY_S` seconds.

The callback itself only adds numbers: the histogram and the ``gc_pause`` lines are
written by :meth:`GcPauses.flush`, which the metrics call before each batch they count
(:meth:`dataflows.metrics._Metrics.defer`). A collection can start inside any allocation,
for instance while ``prometheus_client`` holds the lock of its multiprocess mode (one lock
for every metric of the process): observing a histogram from the callback then waits on
that lock forever. That deadlock happened (a flow whose environment had
``PROMETHEUS_MULTIPROC_DIR`` set, stopped inside ``MmapedValue.__init__``);
``tests/dataflows/test_gcwatch.py`` reproduces it.

>>> pauses = GcPauses(log_ms=1e9)
>>> pauses.on_gc("start", {"generation": 0})
>>> pauses.on_gc("stop", {"generation": 0, "collected": 3, "uncollectable": 0})
>>> pauses.count[0], pauses.total_s[0] >= 0.0, len(pauses.pending)
(1, True, 1)
>>> pauses.flush(); len(pauses.pending)
0
"""

from __future__ import annotations

import atexit
import gc
import time
from collections import deque
from typing import Any, Callable

import structlog

__all__ = ["GcPauses", "watch_gc", "freeze_startup_objects"]

log = structlog.get_logger("dataflows.gc")

#: a pause this long (milliseconds) or longer is logged as ``gc_pause``
LOG_MS = 20.0
#: with freezing on, every this many seconds one full collection traverses everything again
THAW_EVERY_S = 3600.0
#: pauses kept for :meth:`GcPauses.flush` at most (the oldest go first; the summary counts all)
PENDING_MAX = 100_000


class GcPauses:
    """Times collections: a :data:`gc.callbacks` callback (``on_gc``)."""

    def __init__(self, log_ms: float = LOG_MS, histogram: Any = None, freeze_survivors: bool = False,
                 thaw_every_s: float = THAW_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.log_ms = log_ms
        self.freeze_survivors = freeze_survivors
        self.thaw_every_s = thaw_every_s
        self._clock = clock
        self._thawed_at = clock()
        self.count = [0, 0, 0]
        self.total_s = [0.0, 0.0, 0.0]
        self.max_s = [0.0, 0.0, 0.0]
        self._children = [None if histogram is None else histogram.labels(generation=str(g)) for g in range(3)]
        self._t0 = 0.0
        #: ``(generation, seconds, wall time, collected)`` of pauses not yet flushed
        self.pending: deque[tuple[int, float, float, Any]] = deque(maxlen=PENDING_MAX)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        took = time.perf_counter() - self._t0
        g = info["generation"]
        self.count[g] += 1
        self.total_s[g] += took
        if took > self.max_s[g]:
            self.max_s[g] = took
        self.pending.append((g, took, time.time() - took, info.get("collected")))  # no lock, no I/O here
        if g == 2 and self.freeze_survivors:
            now = self._clock()
            if now - self._thawed_at >= self.thaw_every_s:
                # once in a while the next full collection sees everything again, so garbage
                # cycles among frozen objects (a library's, none of the flows' states) are reclaimed
                gc.unfreeze()
                self._thawed_at = now
            else:
                gc.freeze()  # what survived a full collection is not traversed again


    def flush(self) -> None:
        """Feed the pauses since the last flush to the histogram and log the long ones (never
        from inside a collection: see the module's text)."""
        pending = self.pending
        while pending:
            g, took, at, collected = pending.popleft()
            child = self._children[g]
            if child is not None:
                child.observe(took)
            if took * 1000.0 >= self.log_ms:
                log.info("gc_pause", generation=g, ms=round(took * 1000.0, 3), at=round(at, 4), collected=collected)

    def summary(self) -> dict[str, Any]:
        """Collections, total and longest pause (ms) per generation so far."""
        return {f"gen{g}": {"count": self.count[g], "total_ms": round(self.total_s[g] * 1000.0, 1),
                            "max_ms": round(self.max_s[g] * 1000.0, 1)} for g in range(3)}

    def log_summary(self) -> None:
        self.flush()
        log.info("gc_summary", frozen=gc.get_freeze_count(), **self.summary())


_WATCHER: GcPauses | None = None


def watch_gc(freeze: bool = False, log_ms: float = LOG_MS) -> GcPauses:
    """Install the process's one :class:`GcPauses` (idempotent) and return it;
    ``freeze``: freeze the start-up objects now and the survivors of every full
    collection from now on."""
    global _WATCHER
    if _WATCHER is None:
        from dataflows.metrics import METRICS

        if freeze:
            freeze_startup_objects()
        _WATCHER = GcPauses(log_ms, METRICS.gc_pause, freeze_survivors=freeze)
        METRICS.defer(_WATCHER.flush)
        gc.callbacks.append(_WATCHER.on_gc)
        atexit.register(_WATCHER.log_summary)
    return _WATCHER


def freeze_startup_objects() -> int:
    """Collect once, then move every live object to the permanent generation;
    returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

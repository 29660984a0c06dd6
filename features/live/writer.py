"""Writing live rows: batched, coalesced per key, rate-limited, retried (:class:`LiveWriter`)."""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Mapping

import structlog

from features.formats import valid_text
from features.keyhash import is_utf8
from features.live.rows import CUSTOMER_LIVE_VIEW, live_row

__all__ = ["LiveWriterStats", "LiveWriter"]

log = structlog.get_logger("features.live")


# --- writing rows ---------------------------------------------------------------------------------


class LiveWriterStats:
    """Counters of one :class:`LiveWriter`: ``records`` seen, ``rows`` made of them,
    ``invalid`` records (no row could be made, or its key holds undecodable input bytes that
    would fail every push it joins; such bytes in other text become U+FFFD; the first is logged), ``superseded``
    rows replaced by a newer row of the same key before being written, ``older`` rows
    older than the key's last queued row (not written), ``held`` rows put off by
    ``min_interval_s``, ``pushed`` rows written, ``push_calls``, ``failures`` (failed
    store calls) and ``dropped`` rows given up because more than ``max_pending`` waited."""

    __slots__ = ("records", "rows", "invalid", "superseded", "older", "held", "pushed", "push_calls", "failures",
                 "dropped")

    def __init__(self) -> None:
        for k in self.__slots__:
            setattr(self, k, 0)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


PushFn = Callable[[list[dict[str, Any]]], Any]


class LiveWriter:
    """Writes each key's latest row to the online store, batched, rate-limited, never raising.

    Args:
        push: writes a list of rows in one store call (:func:`feast_pusher`); raises on failure.
        row: record -> row or ``None`` (:func:`live_row`, :func:`device_live_row`).
        key: the row's key field (``customer_id``, ``device_id``).
        time_field: the row's event time field, epoch seconds (``last_transaction_at``).
        min_interval_s: at most one row per key per this many seconds of EVENT time, on
            the writer's event-time clock (the newest event time it has seen). ``0``
            (default): every batch's last row of every key is written. With ``> 0`` a
            row that comes sooner is held (a newer one replaces it) and queued once the
            clock reaches the key's last write + ``min_interval_s``, or at :meth:`flush` /
            :meth:`close`: nothing is lost; while events flow a key's live row lags its
            newest event by at most ``min_interval_s`` of event time.
        retry_s: after a failed store call, wait this long (wall clock) before the next.
        max_pending: rows waiting for the store at most (one per key: a newer row of a
            key replaces its waiting one); beyond, the oldest are dropped (counted).
        max_keys: keys whose last write time is remembered (the least recently written
            are forgotten first; a forgotten key's next row goes without the checks).
        background: write from a daemon thread (the flow never waits for the store);
            ``False`` writes inside :meth:`write_batch` (tests, tools).
        observe: ``observe(outcome, n)`` after each store call, ``outcome`` ``"pushed"``
            or ``"failed"`` (metrics).
        name: names the writer in logs.
        close_timeout_s: how long :meth:`close` waits for the last rows by default.

    One store call per upstream batch at most: while a call runs, the next batches'
    rows wait and go together in the next call (a newer row of a key replaces its
    waiting one). A failed call is logged once per outage (``live_push_failed``, then
    ``live_push_recovered`` with ``outage_s``), its rows are kept and retried after
    ``retry_s``. Rows older than the key's last queued row are not written: SQLite
    keeps the last write even when it is older (Redis keeps the newer), so a late
    event never rolls a key back.

    >>> written = []
    >>> w = LiveWriter(written.append, row=lambda r: r, key="k", time_field="t", background=False)
    >>> w.write_batch([{"k": "a", "t": 1.0}, {"k": "a", "t": 3.0}, {"k": "b", "t": 2.0}])
    2
    >>> w.write_batch([{"k": "a", "t": 2.0}])   # older than what was written for "a"
    0
    >>> written, w.stats.as_dict()["superseded"], w.stats.as_dict()["older"]
    ([[{'k': 'a', 't': 3.0}, {'k': 'b', 't': 2.0}]], 1, 1)
    """

    def __init__(
        self,
        push: PushFn,
        row: Callable[[Mapping[str, Any]], dict[str, Any] | None] = live_row,
        key: str = "customer_id",
        time_field: str = "last_transaction_at",
        *,
        min_interval_s: float = 0.0,
        retry_s: float = 5.0,
        max_pending: int = 1_000_000,
        max_keys: int = 1_000_000,
        background: bool = True,
        observe: Callable[[str, int], Any] | None = None,
        name: str = CUSTOMER_LIVE_VIEW,
        close_timeout_s: float = 10.0,
    ) -> None:
        if not min_interval_s >= 0:
            raise ValueError(f"LiveWriter: min_interval_s must be >= 0, got {min_interval_s!r}")
        self._push = push
        self._row = row
        self.key = key
        self.time_field = time_field
        self.min_interval_s = float(min_interval_s)
        self.retry_s = retry_s
        self.max_pending = max_pending
        self.max_keys = max_keys
        self.background = background
        self._observe = observe
        self.name = name
        self.close_timeout_s = close_timeout_s
        self.stats = LiveWriterStats()
        self._lock = threading.Condition()
        self._pending: dict[str, dict[str, Any]] = {}  # waiting for the store, one per key
        self._held: dict[str, dict[str, Any]] = {}  # put off by min_interval_s, one per key
        self._due: list[tuple[float, str]] = []  # heap: (event time a held row may go, key)
        self._due_of: dict[str, float] = {}  # key -> its held row's due time (older heap entries are stale)
        # key -> (event time of its last queued row, the writer's clock when it was queued)
        self._sent: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._clock = -math.inf  # the newest event time seen
        self._busy = False  # a store call is running
        self._inflight = 0  # rows of the running store call
        self._retry_at = 0.0
        self._failing_since: float | None = None
        self._flush_now = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._invalid_logged = False

    # -- the stream side ---------------------------------------------------------------

    def write_batch(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Take one upstream batch of records; returns how many rows were queued for
        the store. Never raises for a bad record (counted in ``invalid``)."""
        latest: dict[str, dict[str, Any]] = {}
        st = self.stats
        key_f, time_f = self.key, self.time_field
        for rec in records:
            st.records += 1
            try:
                row = self._row(rec)
                if row is not None:
                    k, t = row[key_f], float(row[time_f])
                    if isinstance(k, str) and not is_utf8(k):  # undecodable input bytes: the store's keys are UTF-8
                        raise ValueError(f"key {key_f} {valid_text(k)!r} holds bytes that are not UTF-8 (lone surrogates)")
                    for name, v in row.items():  # other text with such bytes: U+FFFD, as in the JSON
                        if isinstance(v, str) and not v.isascii():
                            row[name] = valid_text(v)
            except Exception as exc:  # a record we cannot read must not stop the flow
                st.invalid += 1
                if not self._invalid_logged:
                    self._invalid_logged = True
                    log.warning("live_row_invalid", view=self.name, error=f"{type(exc).__name__}: {exc}"[:300])
                continue
            if row is None:
                continue
            st.rows += 1
            have = latest.get(k)
            if have is not None:
                st.superseded += 1
                if have[time_f] > t:
                    continue
            latest[k] = row
        queued = 0
        with self._lock:
            for row in latest.values():  # the clock: the newest event time of the batches seen
                if row[time_f] > self._clock:
                    self._clock = row[time_f]
            for k, row in latest.items():
                queued += self._accept(k, row)
            self._release_due()
            waiting = bool(self._pending)
            if waiting:
                self._lock.notify_all()
        if waiting:
            if self.background:
                self._ensure_thread()
            else:
                self._push_pending(force=False)
        return queued

    def _accept(self, k: str, row: dict[str, Any]) -> int:
        t = row[self.time_field]
        sent = self._sent.get(k)
        held = self._held.get(k)
        # a held row is never older than the queued one
        newest = held[self.time_field] if held is not None else None if sent is None else sent[0]
        if newest is not None and t < newest:
            self.stats.older += 1
            return 0
        if self.min_interval_s and sent is not None and self._clock < sent[1] + self.min_interval_s:
            if held is None:
                due = sent[1] + self.min_interval_s
                self._due_of[k] = due
                heapq.heappush(self._due, (due, k))
            else:
                self.stats.superseded += 1
            self._held[k] = row
            self.stats.held += 1
            return 0
        if held is not None:
            del self._held[k]  # this newer row goes instead (its heap entry is now stale)
            del self._due_of[k]
            self.stats.superseded += 1
        self._queue(k, row)
        return 1

    def _queue(self, k: str, row: dict[str, Any]) -> None:
        pending = self._pending
        if k in pending:
            del pending[k]  # keep the dict in the order keys were last queued
            self.stats.superseded += 1
        pending[k] = row
        sent = self._sent
        sent[k] = (row[self.time_field], self._clock)
        sent.move_to_end(k)
        while len(sent) > self.max_keys:
            sent.popitem(last=False)
        while len(pending) > self.max_pending:
            pending.pop(next(iter(pending)))
            self.stats.dropped += 1

    def _release_due(self, everything: bool = False) -> None:
        """Queue the held rows whose interval has passed in event time (all with ``everything``)."""
        due = self._due
        while due and (everything or due[0][0] <= self._clock):
            when, k = heapq.heappop(due)
            if self._due_of.get(k) != when:
                continue  # stale: that held row went already
            del self._due_of[k]
            self._queue(k, self._held.pop(k))

    # -- the store side ----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"live-writer-{self.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._pending and not self._busy
                           and (self._flush_now or time.monotonic() >= self._retry_at)):
                    if self._closed:
                        return
                    wait = max(self._retry_at - time.monotonic(), 0.01) if self._pending else None
                    self._lock.wait(timeout=wait)
            self._push_pending(force=True)

    def _push_pending(self, force: bool) -> bool:
        """One store call with every pending row; False when it failed (its rows wait for a retry)."""
        with self._lock:
            if self._busy:
                return False
            if not self._pending:
                return True
            if not force and time.monotonic() < self._retry_at:
                return False
            rows, self._pending = self._pending, {}
            self._busy = True
            self._inflight = len(rows)
            self._flush_now = False
        t0 = time.monotonic()
        error: Exception | None = None
        try:
            self._push(list(rows.values()))
        except Exception as exc:  # the store is down or refused the rows: log, count, retry later
            error = exc
        with self._lock:
            self._busy = False
            self._inflight = 0
            self.stats.push_calls += 1
            if error is None:
                self.stats.pushed += len(rows)
                if self._failing_since is not None:
                    log.warning("live_push_recovered", view=self.name, rows=len(rows),
                                outage_s=round(time.monotonic() - self._failing_since, 3),
                                failures=self.stats.failures)
                    self._failing_since = None
            else:
                self.stats.failures += 1
                for k, row in rows.items():  # kept, unless a newer row of the key came meanwhile
                    if k not in self._pending:
                        self._pending[k] = row
                while len(self._pending) > self.max_pending:
                    self._pending.pop(next(iter(self._pending)))
                    self.stats.dropped += 1
                self._retry_at = time.monotonic() + self.retry_s
                if self._failing_since is None:
                    self._failing_since = t0
                    log.error("live_push_failed", view=self.name, rows=len(rows), retry_s=self.retry_s,
                              error=f"{type(error).__name__}: {error}"[:500])
            self._lock.notify_all()
        if self._observe is not None:
            try:
                self._observe("pushed" if error is None else "failed", len(rows))
            except Exception:  # metrics never break writing
                pass
        return error is None

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write every waiting row now, held ones included (one try, even within
        ``retry_s`` of a failure); True when nothing is left. Waits at most ``timeout`` s."""
        with self._lock:
            self._release_due(everything=True)
            if not self._pending and not self._busy:
                return True
            self._flush_now = True
            self._lock.notify_all()
        if not self.background:
            return self._push_pending(force=True)
        self._ensure_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending or self._busy:
                if not self._busy and not self._flush_now:
                    return False  # the forced try failed: the rows wait for the next one
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(timeout=left)
            return True

    def close(self, timeout: float | None = -1.0) -> bool:
        """:meth:`flush` (waiting ``timeout`` s, default ``close_timeout_s``), then stop the
        background thread; True when every row was written. Logs ``live_writer_closed``
        with the counters and the rows left unwritten."""
        done = self.flush(self.close_timeout_s if timeout == -1.0 else timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            left = len(self._pending) + len(self._held) + self._inflight
        log.info("live_writer_closed", view=self.name, unwritten=left, **self.stats.as_dict())
        return done

    @property
    def waiting(self) -> int:
        """Rows not written yet: waiting, held, or in a store call that has not returned."""
        with self._lock:
            return len(self._pending) + len(self._held) + self._inflight

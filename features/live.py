"""Live features: the streams write each key's latest streaming features to the Feast
online store, and the scoring endpoint computes a new event's features from them.

Engine-free, like the rest of :mod:`features`: plain functions and one writer class.

- :func:`live_row`: a scored fraud record -> the customer's row of the Feast view
  ``customer_live`` (:data:`CUSTOMER_LIVE_FEATURES`): per window (1 h, 24 h, 7 d) the
  count, sum, population std and max of the amounts, the time, place, amount and id of
  the transaction they are as of, and its time since the one before.
- :func:`device_live_row`: a scored IoT reading -> the device's row of ``device_live``
  (every numeric streaming feature, the reading's time, score and status).
- :class:`LiveWriter`: collects rows per upstream batch, keeps the LAST row per key
  (newest event time), rate-limits per key in event time, and pushes them in ONE store
  call from a background thread. A failure is logged (structlog) and counted, never
  raised: scoring never waits for, or stops because of, the online store.
- :func:`feast_pusher`: the push function for one Feast view (``write_to_online_store``,
  or ``push`` to its push source).
- :func:`live_features`: the endpoint's streaming features of a NEW transaction from the
  customer's live row: the same keys and formulas as
  :meth:`features.transactions.CustomerFeatures.update`.

**How the endpoint's features differ from the stream's** (:func:`live_features`).
The live row is the stream's state as of the customer's last pushed transaction ``p``
(event time ``t_p``); the new transaction is at ``t`` with amount ``a``.

* ``time_since_last_transaction``, ``distance_from_previous_km``, ``speed_kmh``: from
  ``p``, by the stream's formulas (speed over at least one minute). Equal to the
  stream's when ``p`` is the customer's newest event before ``t`` (nothing newer
  scored and not yet pushed). ``None`` when ``t < t_p`` (the endpoint does not know the
  customer's event before ``t``) or there is no live row.
* Window ``H`` (1 h, 24 h, 7 d; tile ``w = H/60``): the stream reads event time
  ``(floor((t-H)/w)*w, t]``. If ``t_p`` is at or before that start, the window holds
  the new transaction alone: count 1, sum/mean/max ``a``, std 0 (exactly the stream's
  when nothing newer than ``p`` was scored). Otherwise it is ``p``'s window plus the
  new transaction: count + 1, sum + a, max(max, a), mean and std by Chan's merge of
  (count, mean, std) with ``a``. This equals the stream's (up to float rounding,
  ~1e-15 relative) when every event of ``p``'s window is still in the window at ``t``,
  e.g. when all of the customer's events of ``p``'s window are newer than ``t - H``.
  Otherwise it over-counts by the events that left the window between ``t_p`` and
  ``t`` (never under-counts: a burst is never missed), and events scored by the stream
  but not pushed yet (the stream's last batch, rows held by ``min_interval_s``, an
  outage of the store) are missing.
* ``amount_deviation``, ``amount_to_mean_ratio``: the new amount against ``p``'s 7-day
  window (the stream compares it with the other transactions of the 7-day window at
  ``t``: the same set under the condition above). ``None`` when that window is empty.
* ``late_event``: ``t`` more than ``lateness_s`` before ``t_p``.
* Idle customers: ``t - t_p > idle_expiry_s`` -> the customer starts afresh, as the
  stream's state does (first-transaction features).
* The endpoint never learns: scoring an event changes no live row (two requests for
  one customer are each computed from the same row; a batch's events of one customer
  do not see each other). Only the stream's write-back moves the row.
* The anomaly detectors (per-customer amount detector, shared HalfSpaceTrees) live in
  the stream only: the endpoint's ``anomaly_scores`` are ``null`` (warming up),
  ``anomaly_score`` is ``null`` and ``risk_score == fraud_score`` (the stream's risk can
  be higher: noisy-OR with the anomaly score).

A customer without a live row gets exactly the stream's features of a customer's
first transaction (count 1, ``time_since_last_transaction`` null, ...).

>>> row = live_row({"transaction_id": "t1", "customer_id": "C1", "timestamp": "2026-10-06T12:00:00Z",
...                 "amount": 20.0, "latitude": 40.7, "longitude": -74.0, "time_since_last_transaction": None,
...                 **{f"amount_{s}_{h}": v for h in ("1h", "24h", "7d")
...                    for s, v in (("count", 1), ("sum", 20.0), ("std", 0.0), ("max", 20.0))}})
>>> row["customer_id"], row["last_transaction_at"], row["amount_count_1h"]
('C1', 1791288000.0, 1)
>>> f = live_features(row, t=1791288000.0 + 60, amount=40.0, lat=40.7, lon=-74.0)
>>> f["amount_count_1h"], f["amount_sum_1h"], f["amount_std_1h"], f["time_since_last_transaction"]
(2, 60.0, 10.0, 60.0)
>>> live_features(None, t=0.0, amount=40.0, lat=0.0, lon=0.0)["amount_count_7d"]
1
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

import orjson
import structlog

from features.records import parse_time
from features.transactions import HORIZONS, haversine_km

__all__ = [
    "CUSTOMER_LIVE_VIEW",
    "CUSTOMER_LIVE_PUSH",
    "CUSTOMER_LIVE_SERVICE",
    "DEVICE_LIVE_VIEW",
    "DEVICE_LIVE_PUSH",
    "LIVE_STATS",
    "CUSTOMER_LIVE_FEATURES",
    "live_row",
    "device_live_row",
    "live_features",
    "LiveWriterStats",
    "LiveWriter",
    "feast_pusher",
]

log = structlog.get_logger(__name__)

#: The Feast names (``feature_repo/definitions.py``).
CUSTOMER_LIVE_VIEW = "customer_live"
CUSTOMER_LIVE_PUSH = "customer_live_push"
CUSTOMER_LIVE_SERVICE = "fraud_live"
DEVICE_LIVE_VIEW = "device_live"
DEVICE_LIVE_PUSH = "device_live_push"

#: Per window, what the live row keeps (the mean is ``sum / count``).
LIVE_STATS = ("count", "sum", "std", "max")

#: The features of ``customer_live``, in the view's order.
CUSTOMER_LIVE_FEATURES: tuple[str, ...] = (
    *(f"amount_{s}_{h}" for h in HORIZONS for s in LIVE_STATS),
    "time_since_last_transaction",
    "last_transaction_at",
    "last_latitude",
    "last_longitude",
    "last_amount",
    "last_transaction_id",
)

#: Tiles per window (``features.windows.TILES``: the stream's window start rule).
_TILES = 60


def _num(v: Any) -> float | None:
    """A finite float, else ``None`` (NaN from a store, missing, text)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --- rows written by the streams ---------------------------------------------------------


def live_row(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``customer_live`` row of a scored fraud record (a record of the fraud
    flow's ``scored`` output), or ``None`` when the record has no window features
    (an event older than the windows' retention: nothing to write).

    Keys: ``customer_id``, every name of :data:`CUSTOMER_LIVE_FEATURES`
    (``last_transaction_at`` is the event time in epoch seconds, read from the
    record's ``timestamp`` as the flow read it).
    """
    if rec.get("amount_count_7d") is None:
        return None
    row: dict[str, Any] = {"customer_id": str(rec["customer_id"])}
    for h in HORIZONS:
        row[f"amount_count_{h}"] = int(rec[f"amount_count_{h}"])
        for s in ("sum", "std", "max"):
            row[f"amount_{s}_{h}"] = _num(rec.get(f"amount_{s}_{h}"))
    row["time_since_last_transaction"] = _num(rec.get("time_since_last_transaction"))
    row["last_transaction_at"] = parse_time(rec["timestamp"])
    row["last_latitude"] = _num(rec.get("latitude"))
    row["last_longitude"] = _num(rec.get("longitude"))
    row["last_amount"] = _num(rec.get("amount"))
    row["last_transaction_id"] = str(rec.get("transaction_id", ""))
    return row


def device_live_row(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``device_live`` row of a scored IoT record: ``device_id``,
    ``last_reading_at`` (epoch s), ``anomaly_score``, ``status``, every numeric
    streaming feature by name (``dt_s``, ``temperature_mean_300s``, ...) and all of
    them as JSON in ``features_json`` (the view has columns for the default sensors
    and windows; other configurations are in the JSON). ``None`` for drift records.

    The device and the time come from the record's ``id`` (``device@time``, the
    flow's own key), so any ``IOT_KEY_FIELD`` / ``IOT_TIME_FIELD`` works.

    >>> r = device_live_row({"kind": "reading", "id": "d1@2026-10-06T12:00:00.000Z", "anomaly_score": 0.2,
    ...                      "status": "NORMAL", "features": {"dt_s": 5.0, "temperature_delta": None}})
    >>> r["device_id"], r["last_reading_at"], r["dt_s"], r["features_json"]
    ('d1', 1791288000.0, 5.0, '{"dt_s":5.0}')
    """
    if rec.get("kind", "reading") != "reading" or not isinstance(rec.get("id"), str):
        return None
    device, _, stamp = rec["id"].rpartition("@")
    if not device:
        return None
    numeric = {k: f for k, v in (rec.get("features") or {}).items() if (f := _num(v)) is not None}
    return {
        "device_id": device,
        "last_reading_at": parse_time(stamp.split("#", 1)[0]),
        "anomaly_score": _num(rec.get("anomaly_score")),
        "status": rec.get("status"),
        **numeric,
        "features_json": orjson.dumps(numeric).decode(),
    }


# --- the endpoint's features of a new transaction --------------------------------------------


def live_features(
    live: Mapping[str, Any] | None,
    t: float,
    amount: float,
    lat: float,
    lon: float,
    *,
    lateness_s: float = 600.0,
    idle_expiry_s: float = 30 * 86_400.0,
) -> dict[str, Any]:
    """The streaming features of a new transaction (time ``t``, ``amount``, place)
    from the customer's live row (``None``: no row, a first transaction), with the
    keys and formulas of :meth:`~features.transactions.CustomerFeatures.update`
    (``late_event`` included). How they differ from the stream's: see the module
    docstring.

    >>> row = {"last_transaction_at": 0.0, "last_latitude": 0.0, "last_longitude": 0.0,
    ...        "amount_count_1h": 2, "amount_sum_1h": 30.0, "amount_std_1h": 5.0, "amount_max_1h": 20.0,
    ...        "amount_count_24h": 2, "amount_sum_24h": 30.0, "amount_std_24h": 5.0, "amount_max_24h": 20.0,
    ...        "amount_count_7d": 2, "amount_sum_7d": 30.0, "amount_std_7d": 5.0, "amount_max_7d": 20.0}
    >>> f = live_features(row, t=7200.0, amount=15.0, lat=0.0, lon=0.0)   # 2 h later: the 1 h window is new
    >>> f["amount_count_1h"], f["amount_count_24h"], f["amount_mean_24h"], f["amount_deviation"]
    (1, 3, 15.0, 0.0)
    """
    t_last = _num(live.get("last_transaction_at")) if live else None
    if t_last is not None and idle_expiry_s and t - t_last > idle_expiry_s:
        t_last = None  # idle too long: the stream starts the customer afresh
    out: dict[str, Any] = {"late_event": t_last is not None and t < t_last - lateness_s}
    plat = _num(live.get("last_latitude")) if live and t_last is not None else None
    plon = _num(live.get("last_longitude")) if live and t_last is not None else None
    if t_last is not None and t >= t_last and plat is not None and plon is not None:
        dt = t - t_last
        dist = haversine_km(plat, plon, lat, lon)
        out["time_since_last_transaction"] = dt
        out["distance_from_previous_km"] = dist
        out["speed_kmh"] = dist / ((60.0 if dt < 60.0 else dt) / 3600.0)
    else:
        out["time_since_last_transaction"] = None
        out["distance_from_previous_km"] = None
        out["speed_kmh"] = None
    sqrt = math.sqrt
    prev_7d: tuple[float, float, float] | None = None  # (n, mean, std) of the 7-day window before the event
    for h, horizon in HORIZONS.items():
        n0 = s0 = sd0 = mx0 = None
        if t_last is not None:
            w = horizon / _TILES
            start = math.floor((t - horizon) / w) * w
            if t_last > start:  # the last pushed event is still in the window at t
                n0 = _num(live.get(f"amount_count_{h}"))  # type: ignore[union-attr]
                s0 = _num(live.get(f"amount_sum_{h}"))  # type: ignore[union-attr]
                sd0 = _num(live.get(f"amount_std_{h}"))  # type: ignore[union-attr]
                mx0 = _num(live.get(f"amount_max_{h}"))  # type: ignore[union-attr]
        if n0 is None or n0 < 1 or s0 is None:
            n, s, m2, hi = 1.0, amount, 0.0, amount
            if h == "7d":
                prev_7d = None
        else:
            sd0 = sd0 or 0.0
            mean0 = s0 / n0
            m2_0 = sd0 * sd0 * n0
            n = n0 + 1.0
            s = s0 + amount
            d = amount - mean0
            m2 = m2_0 + d * d * n0 / n  # Chan et al.'s merge with the one new value
            hi = amount if mx0 is None or amount > mx0 else mx0
            if h == "7d":
                prev_7d = (n0, mean0, sd0)
        out[f"amount_count_{h}"] = int(n)
        out[f"amount_sum_{h}"] = s
        out[f"amount_mean_{h}"] = s / n
        out[f"amount_std_{h}"] = sqrt(m2 / n) if m2 > 0.0 else 0.0
        out[f"amount_max_{h}"] = hi
    if prev_7d is not None:
        _, mean, sd = prev_7d
        out["amount_deviation"] = (amount - mean) / max(sd, 1.0)
        out["amount_to_mean_ratio"] = amount / max(mean, 0.01)
    else:
        out["amount_deviation"] = None
        out["amount_to_mean_ratio"] = None
    return out


# --- writing rows ---------------------------------------------------------------------------------


class LiveWriterStats:
    """Counters of one :class:`LiveWriter`: ``records`` seen, ``rows`` made of them,
    ``invalid`` records (no row could be made; the first is logged), ``superseded``
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


# --- Feast ---------------------------------------------------------------------------------------------


def feast_pusher(store: Any, view: str, key: str, time_field: str, push_source: str | None = None) -> PushFn:
    """``push(rows)``: write rows to Feast view ``view`` of ``store`` (an open
    ``FeatureStore``) in one call. Columns: ``key``, ``event_timestamp`` (from
    ``time_field``, epoch seconds) and the view's features; a feature a row lacks is
    null, a row's field the view lacks is left out.

    By default through ``store.write_to_online_store(view, df)``; with
    ``push_source``, ``store.push(push_source, df, to=PushMode.ONLINE)`` (which writes
    every view fed by that source, and re-reads the registry on every call: slower,
    and it slows the next lookups of the same store, see ``../shared/notes/feast.md``).
    """
    import pandas as pd

    fv = store.get_feature_view(view)
    names = [f.name for f in fv.features]
    columns = [key, "event_timestamp", *names]
    if push_source is not None:
        from feast.data_source import PushMode

    def push(rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        data = {key: [r[key] for r in rows],
                "event_timestamp": [datetime.fromtimestamp(r[time_field], timezone.utc) for r in rows]}
        for n in names:
            data[n] = [r.get(n) for r in rows]
        df = pd.DataFrame(data, columns=columns)
        if push_source is None:
            store.write_to_online_store(view, df)
        else:
            store.push(push_source, df, to=PushMode.ONLINE)

    return push

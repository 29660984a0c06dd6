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

from features.live.endpoint import live_features
from features.live.feast import feast_pusher
from features.live.rows import (
    CUSTOMER_LIVE_FEATURES,
    CUSTOMER_LIVE_PUSH,
    CUSTOMER_LIVE_SERVICE,
    CUSTOMER_LIVE_VIEW,
    DEVICE_LIVE_PUSH,
    DEVICE_LIVE_VIEW,
    LIVE_STATS,
    device_live_row,
    live_row,
)
from features.live.writer import LiveWriter, LiveWriterStats

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

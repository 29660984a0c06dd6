"""The live rows the streams write for the endpoint: the Feast names, the customer's row
(:func:`live_row`) and the device's (:func:`device_live_row`)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import orjson

from features.records import parse_time
from features.transactions import (
    HORIZONS,
)

__all__ = ["CUSTOMER_LIVE_VIEW", "CUSTOMER_LIVE_PUSH", "CUSTOMER_LIVE_SERVICE", "DEVICE_LIVE_VIEW", "DEVICE_LIVE_PUSH", "LIVE_STATS", "CUSTOMER_LIVE_FEATURES", "live_row", "device_live_row"]



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
    flow's own key), so any ``STREAMSCORE_IOT__KEY_FIELD`` / ``STREAMSCORE_IOT__TIME_FIELD`` works.

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

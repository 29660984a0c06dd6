"""Card transactions: validation, per-customer streaming features, derived features.

Everything here is plain Python, shared by the dataflow and by offline training
(``models.train`` replays history through :class:`CustomerFeatures`, so the
model sees exactly what the stream computes).

>>> tx = validate_transaction({
...     "transaction_id": "t1", "customer_id": "C1", "merchant_id": "M1",
...     "amount": 25.0, "merchant_category": "grocery",
...     "timestamp": "2026-10-06T12:00:00Z", "latitude": 40.7, "longitude": -74.0})
>>> state = CustomerFeatures()
>>> f = state.update(tx["_t"], tx["amount"], tx["latitude"], tx["longitude"])
>>> f["amount_count_1h"], f["time_since_last_transaction"]
(1, None)
>>> f = state.update(tx["_t"] + 60, 500.0, 40.7, -74.0)
>>> f["amount_count_1h"], f["time_since_last_transaction"], f["amount_max_24h"]
(2, 60.0, 500.0)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from features.validation import ValidationError, as_number, as_text, decode, parse_timestamp
from features.windows import EventTimeHistory

__all__ = [
    "HORIZONS",
    "STREAM_FEATURES",
    "validate_transaction",
    "CustomerFeatures",
    "haversine_km",
    "derived_features",
    "DERIVED_FEATURES",
]

#: Rolling windows over event time, name -> seconds.
HORIZONS: dict[str, float] = {"1h": 3_600.0, "24h": 86_400.0, "7d": 604_800.0}
_STATS = ("count", "sum", "mean", "std", "max")

#: Names of the features :meth:`CustomerFeatures.update` returns, in order.
STREAM_FEATURES: tuple[str, ...] = (
    "time_since_last_transaction",
    *(f"amount_{s}_{h}" for h in HORIZONS for s in _STATS),
    "amount_deviation",
    "amount_to_mean_ratio",
    "distance_from_previous_km",
    "speed_kmh",
)

_TEXT_FIELDS = ("transaction_id", "customer_id", "merchant_id", "merchant_category")


def validate_transaction(raw: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Decode and validate one transaction; returns the normalised event.

    Known fields are normalised (numbers from text, ids as text); unknown
    fields are carried through unchanged. ``_t`` holds the event time in epoch
    seconds. Raises :class:`ValidationError` naming the field at fault.
    """
    ev = decode(raw)
    for f in _TEXT_FIELDS:
        ev[f] = as_text(ev, f)
    amount = as_number(ev, "amount")
    if amount <= 0:
        raise ValidationError(f"field 'amount': must be > 0, got {amount!r}")
    ev["amount"] = amount
    ev["latitude"] = as_number(ev, "latitude", -90.0, 90.0)
    ev["longitude"] = as_number(ev, "longitude", -180.0, 180.0)
    if "timestamp" not in ev or ev["timestamp"] in (None, ""):
        raise ValidationError("field 'timestamp': missing")
    ev["_t"] = parse_timestamp(ev["timestamp"])
    if "is_fraud" in ev:
        ev["is_fraud"] = parse_label(ev["is_fraud"], "is_fraud")
    return ev


_TRUE, _FALSE = ("1", "1.0", "true", "yes"), ("0", "0.0", "false", "no")


def parse_label(value: Any, field: str) -> int | None:
    """A 0/1 label from a bool, a number or text; ``None`` when missing (null, empty, NaN).

    >>> [parse_label(v, "y") for v in (True, 0, 1.0, "0.0", " Yes ", "", float("nan"), None)]
    [1, 0, 1, 0, 1, None, None, None]
    >>> parse_label("maybe", "y")
    Traceback (most recent call last):
    ...
    features.validation.ValidationError: field 'y': expected a 0/1 label, got 'maybe'
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "" or text == "nan":
            return None
        if text in _TRUE:
            return 1
        if text in _FALSE:
            return 0
    raise ValidationError(f"field {field!r}: expected a 0/1 label, got {value!r}")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres.

    >>> round(haversine_km(40.71, -74.01, 51.51, -0.13))
    5570
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


class CustomerFeatures:
    """Streaming features of one customer, exact for events up to ``lateness_s`` late.

    Windows count the current transaction: ``amount_count_1h`` is the number of
    the customer's transactions in ``(t - 1h, t]``. ``amount_deviation`` and
    ``amount_to_mean_ratio`` compare the amount with the customer's other
    transactions in the last 7 days. Speed uses the previous transaction in
    event time, with at least one minute between them.

    State: a few parallel lists bounded by the longest horizon plus the
    lateness and by ``max_events``; :meth:`snapshot` is plain data.
    """

    __slots__ = ("history", "lateness_s")

    def __init__(self, lateness_s: float = 600.0, max_events: int = 512) -> None:
        self.lateness_s = float(lateness_s)
        self.history = EventTimeHistory(
            max(HORIZONS.values()) + self.lateness_s, ("amount", "lat", "lon"), max_events
        )

    def update(self, t: float, amount: float, lat: float, lon: float) -> dict[str, Any]:
        """Add a transaction and return its features (``None`` where undefined).

        ``late_event`` is True when the event is more than ``lateness_s``
        behind the newest one seen: its windows may miss evicted events.
        """
        h = self.history
        late = h.is_late(t, self.lateness_s)
        idx = h.insert(t, {"amount": amount, "lat": lat, "lon": lon})
        times = h.times
        out: dict[str, Any] = {"late_event": late}
        prev = h.previous(idx)  # None for the first event, or one not kept (idx == -1)
        if prev is not None:
            dt = t - times[prev]
            dist = haversine_km(h.columns["lat"][prev], h.columns["lon"][prev], lat, lon)
            out["time_since_last_transaction"] = dt
            out["distance_from_previous_km"] = dist
            out["speed_kmh"] = dist / (max(dt, 60.0) / 3600.0)
        else:
            out["time_since_last_transaction"] = None
            out["distance_from_previous_km"] = None
            out["speed_kmh"] = None
        for name, horizon in HORIZONS.items():
            s = h.stats("amount", t, horizon) if idx >= 0 else None
            if s is None or s.count == 0:  # only when the event itself was not kept
                out.update({f"amount_{k}_{name}": None for k in _STATS})
                continue
            out[f"amount_count_{name}"] = s.count
            out[f"amount_sum_{name}"] = s.sum
            out[f"amount_mean_{name}"] = s.mean
            out[f"amount_std_{name}"] = s.std
            out[f"amount_max_{name}"] = s.max
        n = out["amount_count_7d"]
        if n is not None and n > 1:
            # Leave the current transaction out: compare it with the others.
            others = n - 1
            mean = (out["amount_sum_7d"] - amount) / others
            var_all = out["amount_std_7d"] ** 2
            sq_all = (var_all + out["amount_mean_7d"] ** 2) * n
            var = max((sq_all - amount * amount) / others - mean * mean, 0.0)
            out["amount_deviation"] = (amount - mean) / max(math.sqrt(var), 1.0)
            out["amount_to_mean_ratio"] = amount / max(mean, 0.01)
        else:
            out["amount_deviation"] = None
            out["amount_to_mean_ratio"] = None
        return out

    def snapshot(self) -> tuple:
        """Plain-data state for Bytewax snapshots."""
        return (self.lateness_s, self.history.snapshot())

    @classmethod
    def restore(cls, snap: tuple) -> "CustomerFeatures":
        """Inverse of :meth:`snapshot`."""
        lateness_s, hist = snap
        obj = cls.__new__(cls)
        obj.lateness_s = lateness_s
        obj.history = EventTimeHistory.restore(hist)
        return obj


#: Features computed after the Feast lookup, from the event and its profile.
DERIVED_FEATURES: tuple[str, ...] = (
    "distance_from_home_km",
    "amount_to_profile_ratio",
)


def derived_features(event: Mapping[str, Any], profile: Mapping[str, Any]) -> dict[str, float | None]:
    """Features that need both the event and the Feast customer profile.

    >>> derived_features({"amount": 50.0, "latitude": 40.71, "longitude": -74.01},
    ...                  {"home_latitude": 40.71, "home_longitude": -74.01, "avg_transaction_amount": 25.0})
    {'distance_from_home_km': 0.0, 'amount_to_profile_ratio': 2.0}
    """
    home_lat, home_lon = profile.get("home_latitude"), profile.get("home_longitude")
    avg = profile.get("avg_transaction_amount")
    return {
        "distance_from_home_km": (
            haversine_km(home_lat, home_lon, event["latitude"], event["longitude"])
            if home_lat is not None and home_lon is not None
            else None
        ),
        "amount_to_profile_ratio": event["amount"] / avg if avg else None,
    }

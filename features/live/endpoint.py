"""The streaming features of a new transaction from its customer's live row, with the
stream's own formulas (:func:`live_features`)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from features.live.rows import _num
from features.transactions import (
    HORIZONS,
    IDLE_EXPIRY_S,
    LATENESS_S,
    amount_deviation,
    amount_to_mean_ratio,
    haversine_km,
    speed_kmh,
)
from features.windows import TILES

__all__ = ["live_features"]



# --- the endpoint's features of a new transaction --------------------------------------------


def live_features(
    live: Mapping[str, Any] | None,
    t: float,
    amount: float,
    lat: float,
    lon: float,
    *,
    lateness_s: float = LATENESS_S,
    idle_expiry_s: float = IDLE_EXPIRY_S,
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
        out["speed_kmh"] = speed_kmh(dist, dt)
    else:
        out["time_since_last_transaction"] = None
        out["distance_from_previous_km"] = None
        out["speed_kmh"] = None
    sqrt = math.sqrt
    prev_7d: tuple[float, float, float] | None = None  # (n, mean, std) of the 7-day window before the event
    for h, horizon in HORIZONS.items():
        n0 = s0 = sd0 = mx0 = None
        if t_last is not None:
            w = horizon / TILES
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
        out["amount_deviation"] = amount_deviation(amount, mean, sd)
        out["amount_to_mean_ratio"] = amount_to_mean_ratio(amount, mean)
    else:
        out["amount_deviation"] = None
        out["amount_to_mean_ratio"] = None
    return out

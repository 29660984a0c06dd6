"""Card transactions: the typed event, its parser, per-customer streaming features.

- :class:`Transaction`: one validated transaction as it travels through the flow:
  the validated fields, the event time ``t``, the ``arrival`` time, the input as
  received (``fields``: every field, extra ones included, carried into the output
  record) and the slots the steps fill (streaming features, detector scores).
- :func:`parse_transaction`: raw input (JSON text or bytes, CSV or Parquet row) ->
  :class:`Transaction`, or :class:`~features.records.ValidationError` naming the field.
- :class:`CustomerFeatures`: rolling event-time features of one customer (tiled
  windows: bounded cost and memory per customer, stated exactness, late events
  land in their tiles).
- :func:`derived_features`: features that need the event and its Feast profile.

Everything here is plain Python, shared by the dataflow and by offline training
(``models.train`` parses history with :func:`parse_transaction` and replays it
through :class:`CustomerFeatures`, so the model sees exactly what the stream computes).

>>> tx = parse_transaction({
...     "transaction_id": "t1", "customer_id": "C1", "merchant_id": "M1", "amount": "25.0",
...     "merchant_category": "grocery", "timestamp": "2026-10-06T12:00:00Z",
...     "latitude": 40.7, "longitude": -74.0, "channel": "web"}, arrival=0.0)
>>> tx.amount, tx.t, tx.fields["channel"]
(25.0, 1791288000.0, 'web')
>>> state = CustomerFeatures(lateness_s=600)
>>> f = state.update(tx.t, tx.amount, tx.latitude, tx.longitude)
>>> f["amount_count_1h"], f["time_since_last_transaction"]
(1, None)
>>> f = state.update(tx.t + 60, 500.0, 40.7, -74.0)
>>> f["amount_count_1h"], f["time_since_last_transaction"], f["amount_max_24h"]
(2, 60.0, 500.0)
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Mapping, Sequence, Union

import msgspec
import numpy as np

from features.defaults import IDLE_EXPIRY_S, LATENESS_S, MAX_AMOUNT, MIN_AMOUNT
from features.records import ValidationError, decode, parse_time
from features.windows import TiledWindows

__all__ = [
    "Transaction",
    "parse_transaction",
    "parse_label",
    "MAX_AMOUNT",
    "MIN_AMOUNT",
    "HORIZONS",
    "STREAM_FEATURES",
    "CustomerFeatures",
    "haversine_km",
    "derived_features",
    "derived_features_many",
    "home_of",
    "profile_ratio",
    "DERIVED_FEATURES",
    "speed_kmh",
    "amount_deviation",
    "amount_to_mean_ratio",
    "LATENESS_S",
    "IDLE_EXPIRY_S",
]



class Transaction(msgspec.Struct, gc=False, repr_omit_defaults=True):
    """One validated transaction (see :func:`parse_transaction`).

    The validated fields are typed (ids are text, coordinates and amount floats),
    ``t`` is the event time and ``arrival`` the time it entered the flow (epoch
    seconds), ``is_fraud`` the 0/1 label (``None`` when absent or empty) and
    ``fields`` the input exactly as received: the scorer starts the output record
    from it, so every extra field survives. The steps fill the rest:

    * ``features``: streaming features (:meth:`CustomerFeatures.update`);
    * ``amount_score``, ``amount_warming``: the customer's amount detector;
    * ``anomaly_scores``, ``anomaly_score``, ``anomaly_warming_up``: the detectors'
      scores (``None`` where warming up) and their combination (``None`` when no
      detector is warm yet);
    * ``shard_input``: the shared detector's input, worked out in the customer step's
      compiled call (``models.fraud.state.shard_row``'s values, NaN: missing; ``None``:
      not computed, the shard step reads the features).

    Not tracked by the garbage collector (``gc=False``): it never takes part in
    a reference cycle, and a stream creates millions of them.
    """

    transaction_id: str
    customer_id: str
    merchant_id: str
    merchant_category: str
    amount: float
    latitude: float
    longitude: float
    t: float
    arrival: float = 0.0
    is_fraud: int | None = None
    fields: dict[str, Any] = {}
    features: dict[str, Any] = {}
    amount_score: float | None = None
    amount_warming: bool = True
    anomaly_scores: dict[str, float | None] = {}
    anomaly_score: float | None = None
    anomaly_warming_up: bool = True
    shard_input: list[float] | None = None


_Id = Union[Annotated[str, msgspec.Meta(min_length=1)], int]
_RANGES: dict[str, tuple[float, float]] = {
    "amount": (MIN_AMOUNT, MAX_AMOUNT),
    "latitude": (-90.0, 90.0),
    "longitude": (-180.0, 180.0),
}


class _Schema(msgspec.Struct, gc=False):
    """The checked part of the input; msgspec validates it in C (``strict=False``
    accepts numeric text, as CSV cells are)."""

    transaction_id: _Id
    customer_id: _Id
    merchant_id: _Id
    merchant_category: _Id
    amount: float  # bounds are arguments of parse_transaction, checked after
    latitude: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    longitude: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]


_ID_FIELDS = ("transaction_id", "customer_id", "merchant_id", "merchant_category")
_convert = msgspec.convert
_SCHEMA_FIELDS = _Schema.__struct_fields__


def parse_transaction(
    raw: Any,
    arrival: float = 0.0,
    *,
    min_amount: float = MIN_AMOUNT,
    max_amount: float = MAX_AMOUNT,
    max_future_s: float | None = None,
) -> Transaction:
    """Decode and validate one transaction.

    ``raw`` is JSON text or bytes, or a mapping (CSV or Parquet row); ``arrival``
    is when it entered the flow (epoch seconds). Required: ``transaction_id``,
    ``customer_id``, ``merchant_id``, ``merchant_category`` (non-empty text or an
    integer; integers become text; booleans, floats, lists and objects are refused),
    ``amount`` (a finite number, > ``min_amount`` (default 0) and at most
    ``max_amount`` (default :data:`MAX_AMOUNT`, 1e9: a larger amount is refused as
    absurd)), ``latitude`` in [-90, 90], ``longitude`` in [-180, 180] (finite numbers,
    or numeric text without spaces; ``"NaN"``, ``"Infinity"`` and ``1e400`` are
    refused) and ``timestamp`` (read by :func:`features.records.parse_time`; with
    ``max_future_s``, a time more than that many seconds after ``arrival`` is
    refused; ``None``, the default for offline use, checks no such bound).
    ``is_fraud``, when present, is read by :func:`parse_label`. Other fields are
    kept, unchanged, in ``fields``. The flow passes the bounds from its settings
    (``STREAMSCORE_FRAUD__MIN_AMOUNT``, ``STREAMSCORE_FRAUD__MAX_AMOUNT``, ``STREAMSCORE_STATE__MAX_FUTURE_S``).

    Raises :class:`~features.records.ValidationError` whose message names the field.

    >>> tx = parse_transaction(b'{"transaction_id": 7, "customer_id": "C1", "merchant_id": "M1",'
    ...     b' "merchant_category": "gas", "amount": 9.5, "latitude": 1, "longitude": 2,'
    ...     b' "timestamp": "2026-10-06T00:00:00Z", "error": "none"}', arrival=5.0)
    >>> tx.transaction_id, tx.latitude, tx.arrival, tx.fields["error"]
    ('7', 1.0, 5.0, 'none')
    >>> row = {"transaction_id": "t", "customer_id": "C1", "merchant_id": "M1",
    ...     "merchant_category": "gas", "amount": "twelve", "latitude": 1, "longitude": 2,
    ...     "timestamp": "2026-10-06T00:00:00Z"}
    >>> parse_transaction(row)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'amount': expected a number, got 'twelve'
    >>> parse_transaction({**row, "amount": 0.5}, min_amount=1.0)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'amount': must be > 1, got 0.5
    >>> parse_transaction({**row, "amount": 5}, arrival=1791244800.0 - 7200, max_future_s=3600)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'timestamp': 2026-10-06T00:00:00.000Z is too far in the future (later than 2026-10-05T23:00:00.000Z)
    """
    d = decode(raw)
    try:
        s = _convert(d, _Schema, strict=False)
    except Exception:  # whatever the validator raises: the reason is ours (_explain)
        raise _explain(d, min_amount, max_amount) from None
    amount = s.amount
    if not min_amount < amount <= max_amount:  # NaN fails too
        raise _amount_error(d.get("amount"), amount, min_amount, max_amount)
    ts = d.get("timestamp")
    if ts is None or ts == "":
        raise ValidationError("field 'timestamp': missing")
    t = parse_time(ts, "timestamp", None if max_future_s is None else arrival + max_future_s)
    tid, cid, mid, cat = s.transaction_id, s.customer_id, s.merchant_id, s.merchant_category
    return Transaction(
        tid if isinstance(tid, str) else str(tid),
        cid if isinstance(cid, str) else str(cid),
        mid if isinstance(mid, str) else str(mid),
        cat if isinstance(cat, str) else str(cat),
        amount, s.latitude, s.longitude, t, arrival,
        parse_label(d["is_fraud"], "is_fraud") if "is_fraud" in d else None,
        d,
    )


def _amount_error(value: Any, number: float, lo: float, hi: float) -> ValidationError:
    """The error for an amount outside ``(lo, hi]`` or not finite (cold path)."""
    if not math.isfinite(number):
        return ValidationError(f"field 'amount': expected a finite number, got {value!r:.64}")
    if number <= lo:
        return ValidationError(f"field 'amount': must be > {lo:g}, got {value!r:.64}")
    return ValidationError(f"field 'amount': {number!r} is over {hi:g}, refused as absurd")


def _explain(d: Mapping[str, Any], min_amount: float = MIN_AMOUNT,
             max_amount: float = MAX_AMOUNT) -> ValidationError:
    """The error for an input the schema refused, naming the first bad field and what was
    wrong (cold path). Worked out from the input by the rules of :class:`_Schema`, never
    from the validator's message text: fields present in the input come first, in its
    order, then the missing ones."""
    present = [f for f in d if f in _SCHEMA_FIELDS]
    for field in present + [f for f in _SCHEMA_FIELDS if f not in d]:
        error = _field_error(field, d.get(field), min_amount, max_amount)
        if error is not None:
            return error
    return ValidationError(f"fields {list(_SCHEMA_FIELDS)!r}: refused by the schema")  # not reached


def _field_error(field: str, value: Any, min_amount: float, max_amount: float) -> ValidationError | None:
    """What is wrong with one schema field's value, or ``None`` if it is valid."""
    if value is None or value == "":
        return ValidationError(f"field {field!r}: missing")
    if field in _ID_FIELDS:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return None
        return ValidationError(f"field {field!r}: expected text, got {value!r:.64}")
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value) if value == value.strip() else None
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return ValidationError(f"field {field!r}: expected a number, got {value!r:.64}")
    if not math.isfinite(number):
        return ValidationError(f"field {field!r}: expected a finite number, got {value!r}")
    if field == "amount":
        return None if min_amount < number <= max_amount else _amount_error(value, float(number), min_amount, max_amount)
    lo, hi = _RANGES[field]
    if lo <= number <= hi:
        return None
    return ValidationError(f"field {field!r}: {float(number)!r} is outside [{lo:g}, {hi:g}]")


_TRUE, _FALSE = ("1", "1.0", "true", "yes"), ("0", "0.0", "false", "no")


def parse_label(value: Any, field: str = "is_fraud") -> int | None:
    """A 0/1 label from a bool, a number or text; ``None`` when missing (null, empty, NaN).

    >>> [parse_label(v, "y") for v in (True, 0, 1.0, "0.0", " Yes ", "", float("nan"), None)]
    [1, 0, 1, 0, 1, None, None, None]
    >>> parse_label("maybe", "y")
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'y': expected a 0/1 label, got 'maybe'
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
    raise ValidationError(f"field {field!r}: expected a 0/1 label, got {value!r:.64}")


#: Rolling windows over event time, name -> seconds.
HORIZONS: dict[str, float] = {"1h": 3_600.0, "24h": 86_400.0, "7d": 604_800.0}
_STATS = ("count", "sum", "mean", "std", "max")

#: Names of the model features :meth:`CustomerFeatures.update` returns, in order
#: (it also returns ``late_event``, which is not a model feature).
STREAM_FEATURES: tuple[str, ...] = (
    "time_since_last_transaction",
    *(f"amount_{s}_{h}" for h in HORIZONS for s in _STATS),
    "amount_deviation",
    "amount_to_mean_ratio",
    "distance_from_previous_km",
    "speed_kmh",
)


#: Window feature names in the order :meth:`CustomerFeatures.update` returns them.
_WINDOW_NAMES: tuple[str, ...] = tuple(f"amount_{k}_{h}" for h in HORIZONS for k in _STATS)
#: The window features of an event older than the retention (not stored).
_NO_WINDOWS: dict[str, None] = dict.fromkeys((*_WINDOW_NAMES, "amount_deviation", "amount_to_mean_ratio"))
#: Every key :meth:`CustomerFeatures.update` returns, in its order.
_FEATURE_NAMES: tuple[str, ...] = ("late_event", "time_since_last_transaction", "distance_from_previous_km",
                                   "speed_kmh", *_NO_WINDOWS)
assert len(HORIZONS) == 3 and len(_STATS) == 5  # feature_dict and the compiled step take them by position


def feature_dict(late: float, dt: float, dist: float, speed: float,
                 c1: float, s1: float, m1: float, d1: float, h1: float,
                 c2: float, s2: float, m2: float, d2: float, h2: float,
                 c3: float, s3: float, m3: float, d3: float, h3: float,
                 deviation: float, ratio: float, *_: float) -> dict[str, Any]:
    """The features of one transaction (:meth:`CustomerFeatures.update`'s dict, in
    :data:`_FEATURE_NAMES` order) from a row of the compiled step
    (:func:`features.transaction_kernel.feature_rows`: NaN for ``None``; a NaN count: the
    event was not stored, no window features); columns after the features are ignored."""
    if c1 != c1:  # older than the retention: not stored
        out = {"late_event": late == 1.0, "time_since_last_transaction": None if dt != dt else dt,
               "distance_from_previous_km": None if dist != dist else dist,
               "speed_kmh": None if speed != speed else speed}
        out.update(_NO_WINDOWS)
        return out
    return {
        "late_event": late == 1.0, "time_since_last_transaction": None if dt != dt else dt,
        "distance_from_previous_km": None if dist != dist else dist, "speed_kmh": None if speed != speed else speed,
        "amount_count_1h": int(c1), "amount_sum_1h": s1, "amount_mean_1h": m1, "amount_std_1h": d1,
        "amount_max_1h": h1,
        "amount_count_24h": int(c2), "amount_sum_24h": s2, "amount_mean_24h": m2, "amount_std_24h": d2,
        "amount_max_24h": h2,
        "amount_count_7d": int(c3), "amount_sum_7d": s3, "amount_mean_7d": m3, "amount_std_7d": d3,
        "amount_max_7d": h3,
        "amount_deviation": None if deviation != deviation else deviation,
        "amount_to_mean_ratio": None if ratio != ratio else ratio,
    }


#: Columns of a row of the compiled step (features.transaction_kernel.FEATURE_COLUMNS).
_COLUMNS = 21


def _features_kernel(*args: Any) -> int:
    """The compiled step (:func:`features.transaction_kernel.features_kernel`, imported on first
    use: numba loads only where features are computed); after the first call, that function."""
    global _features_kernel
    from features.transaction_kernel import features_kernel

    _features_kernel = features_kernel
    return features_kernel(*args)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres.

    >>> round(haversine_km(40.71, -74.01, 51.51, -0.13))
    5570
    """
    return _haversine(lat1, lon1, lat2, lon2, 2.0)


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float, two: float) -> float:
    """:func:`haversine_km`, the squares taken as ``x ** two`` (``two`` = 2.0): the one formula,
    for Python and for the compiled step (:mod:`features.transaction_kernel`), which passes 2.0
    at run time. Python's ``x ** 2`` is the C library's ``pow``, and a compiler that sees a
    constant 2 makes it ``x * x``, which differs in the last bit for about 0.1% of values."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** two + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** two
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def speed_kmh(distance_km: float, dt_s: float) -> float:
    """Speed between two events, km/h; a gap under a minute counts as a minute, so two
    events seconds apart do not make an absurd speed.

    >>> speed_kmh(10.0, 1800.0), speed_kmh(1.0, 0.0)
    (20.0, 60.0)
    """
    return distance_km / ((60.0 if dt_s < 60.0 else dt_s) / 3600.0)


def amount_deviation(amount: float, mean: float, std: float) -> float:
    """How many standard deviations (at least 1) ``amount`` is above the customer's mean.

    >>> amount_deviation(30.0, 10.0, 5.0), amount_deviation(12.0, 10.0, 0.0)
    (4.0, 2.0)
    """
    return (amount - mean) / max(std, 1.0)


def amount_to_mean_ratio(amount: float, mean: float) -> float:
    """``amount`` over the customer's mean (a mean under 0.01 counts as 0.01).

    >>> amount_to_mean_ratio(30.0, 10.0)
    3.0
    """
    return amount / max(mean, 0.01)


class CustomerFeatures:
    """Streaming features of one customer over event time, by tiled windows
    (:class:`~features.windows.TiledWindows`): cost per event and memory do not
    grow with the customer's rate, and no window is capped.

    Windows count the current transaction: ``amount_count_1h`` counts the
    customer's transactions in the window of ``t``. Each horizon ``H`` (1 h,
    24 h, 7 d) has 60 tiles of ``H / 60`` (1 min, 24 min, 168 min): the window
    read is ``(floor((t - H) / w) * w, t]``, i.e. at least ``H`` and less than
    ``H + w`` of event time; exactly ``(t - H, t]`` when ``t`` is a multiple of
    ``w`` (see :mod:`features.windows` for the full rule). ``amount_deviation``
    and ``amount_to_mean_ratio`` compare the amount with the customer's other
    transactions in the 7-day window (the current one removed by an exact
    reverse Welford step, not by subtracting squares). Speed uses the previous
    transaction in event time, with at least one minute between them.

    An event up to ``lateness_s`` late lands in its tiles (later windows are as
    in order) and its own windows end at its time. Later than that it is
    flagged ``late_event``; more than 7 days + ``lateness_s`` behind the newest
    it is not stored (window features ``None``).

    Args:
        lateness_s: how late an event may arrive and still be in every window.
        max_events: cap on the exact recent events kept (for the previous
            transaction and the end of a late event's window), not on the
            windows. A late event older than every kept event gets ``None``
            for ``time_since_last_transaction``, distance and speed.

    :meth:`snapshot` is the learned state only (plain data); :meth:`load` puts it
    into features built from the current configuration.

    >>> a = CustomerFeatures(lateness_s=600)
    >>> _ = a.update(0.0, 10.0, 40.7, -74.0)
    >>> b = CustomerFeatures(lateness_s=60)
    >>> b.load(a.snapshot())
    >>> b.update(30.0, 20.0, 40.7, -74.0) == a.update(30.0, 20.0, 40.7, -74.0)
    True
    >>> b.lateness_s
    60.0
    """

    __slots__ = ("windows",)

    def __init__(self, lateness_s: float = LATENESS_S, max_events: int = 512) -> None:
        if lateness_s < 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s!r}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events!r}")
        self.windows = TiledWindows(
            tuple(HORIZONS.values()), ("amount",), float(lateness_s), extra_fields=("lat", "lon"),
            max_tail=int(max_events),
        )

    @property
    def lateness_s(self) -> float:
        return self.windows.spec.lateness

    def update(self, t: float, amount: float, lat: float, lon: float) -> dict[str, Any]:
        """Add a transaction and return its features (``None`` where undefined):
        :meth:`update_rows` of one.

        ``late_event`` is True when the event is more than ``lateness_s``
        behind the newest one seen: its windows may miss evicted events.
        """
        return self.update_rows([(t, amount, lat, lon)])[0]

    def update_many(self, T: Sequence[float], amounts: Sequence[float], lats: Sequence[float],
                    lons: Sequence[float]) -> list[dict[str, Any]]:
        """:meth:`update` for a batch of the customer's transactions, in order, given as
        columns: :meth:`update_rows`."""
        return self.update_rows(list(zip(T, amounts, lats, lons)))

    def update_rows(self, rows: Sequence[tuple[float, float, float, float]]) -> list[dict[str, Any]]:
        """:meth:`update` for a batch of the customer's transactions ``(t, amount, lat, lon)``,
        in order, with one compiled call (:func:`features.transaction_kernel.features_kernel`:
        the windows' insert and every feature, one array in, one out); a batch split anywhere
        gives the same features."""
        if not rows:
            return []
        out = np.empty((len(rows), _COLUMNS))
        w = self.windows
        w.run(_features_kernel, np.array(rows, dtype=np.float64), w.params, 2.0, out)
        return [feature_dict(*r) for r in out.tolist()]

    def snapshot(self) -> tuple:
        """The learned state as plain data (tiles and the exact tail); no configuration."""
        return self.windows.snapshot()

    def load(self, snap: tuple) -> None:
        """Put :meth:`snapshot` output into these features (kept under this
        object's horizons, lateness and cap; see :meth:`~features.windows.TiledWindows.load`)."""
        self.windows.load(snap)


#: Features computed after the Feast lookup, from the event and its profile.
DERIVED_FEATURES: tuple[str, ...] = (
    "distance_from_home_km",
    "amount_to_profile_ratio",
)


def home_of(profile: Mapping[str, Any]) -> tuple[float, float] | None:
    """The profile's home ``(latitude, longitude)``, or ``None`` when it has none a distance can
    be measured from: missing, not numbers, not finite, or outside [-90, 90] / [-180, 180]
    (stored data is input too: one bad row must not fail every batch of its customer).

    >>> home_of({"home_latitude": 40.7, "home_longitude": -74}), home_of({"home_latitude": float("inf"), "home_longitude": 0.0})
    ((40.7, -74.0), None)
    """
    try:
        lat, lon = float(profile.get("home_latitude")), float(profile.get("home_longitude"))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    (lo_lat, hi_lat), (lo_lon, hi_lon) = _RANGES["latitude"], _RANGES["longitude"]  # the events' bounds
    return (lat, lon) if lo_lat <= lat <= hi_lat and lo_lon <= lon <= hi_lon else None  # NaN fails both


def profile_ratio(amount: float, avg: Any) -> float | None:
    """``amount`` over the profile's average amount, or ``None`` when that average is not a
    finite number above 0."""
    if type(avg) is int:
        try:
            avg = float(avg)
        except OverflowError:
            return None
    if type(avg) is float and 0.0 < avg < math.inf:
        return amount / avg
    return None


def derived_features(event: "Mapping[str, Any] | Transaction", profile: Mapping[str, Any]) -> dict[str, float | None]:
    """Features that need both the event (``amount``, ``latitude``, ``longitude``)
    and the Feast customer profile (a :class:`Transaction` may stand for the event): the
    distance from its home (:func:`home_of`) and the ratio to its average amount
    (:func:`profile_ratio`); ``None`` where the profile has no usable value.

    >>> derived_features({"amount": 50.0, "latitude": 40.71, "longitude": -74.01},
    ...                  {"home_latitude": 40.71, "home_longitude": -74.01, "avg_transaction_amount": 25.0})
    {'distance_from_home_km': 0.0, 'amount_to_profile_ratio': 2.0}
    """
    if isinstance(event, Transaction):
        amount, lat, lon = event.amount, event.latitude, event.longitude
    else:
        amount, lat, lon = event["amount"], event["latitude"], event["longitude"]
    home = home_of(profile)
    return {
        "distance_from_home_km": haversine_km(home[0], home[1], lat, lon) if home is not None else None,
        "amount_to_profile_ratio": profile_ratio(amount, profile.get("avg_transaction_amount")),
    }


def derived_features_many(txs: Sequence[Transaction], profiles: Sequence[Mapping[str, Any]]) -> list[dict[str, float | None]]:
    """:func:`derived_features` of each transaction and its profile, the same values: the
    distances from home in one compiled call (:func:`features.transaction_kernel.haversine_rows`,
    the same formula and floats) for the rows whose four coordinates are finite numbers,
    the others (a missing home: ``None``; a NaN, an odd type) as :func:`derived_features` makes them.

    >>> tx = parse_transaction({"transaction_id": 1, "customer_id": "C1", "merchant_id": "M1",
    ...     "merchant_category": "gas", "amount": 50, "latitude": 40.71, "longitude": -74.01, "timestamp": 0})
    >>> derived_features_many([tx, tx], [{"home_latitude": 40.71, "home_longitude": -74.01,
    ...                                    "avg_transaction_amount": 25.0}, {}])
    [{'distance_from_home_km': 0.0, 'amount_to_profile_ratio': 2.0}, \
{'distance_from_home_km': None, 'amount_to_profile_ratio': None}]
    """
    n = len(txs)
    if len(profiles) != n:
        raise ValueError(f"derived_features_many: {len(profiles)} profiles for {n} transactions")
    home_lat = [p.get("home_latitude") for p in profiles]
    home_lon = [p.get("home_longitude") for p in profiles]
    lat, lon = [tx.latitude for tx in txs], [tx.longitude for tx in txs]
    distance: list[float | None]
    try:
        coords = np.array([home_lat, home_lon, lat, lon], dtype=np.float64)  # None: NaN
    except (TypeError, ValueError, OverflowError):  # a value that is no float: row by row
        coords = np.full((4, n), np.nan)
    with np.errstate(invalid="ignore"):  # a home as home_of takes it, and a finite event position
        ok = (np.isfinite(coords).all(axis=0) & (np.abs(coords[0]) <= _RANGES["latitude"][1])
              & (np.abs(coords[1]) <= _RANGES["longitude"][1]))
    if ok.any():
        from features.transaction_kernel import haversine_rows  # lazy: numba only where features are made

        out = np.full(n, np.nan)
        haversine_rows(coords, ok, 2.0, out)
        distance = out.tolist()
    else:
        distance = [None] * n
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            distance[i] = derived_features(txs[i], profiles[i])["distance_from_home_km"]
    return [{"distance_from_home_km": d, "amount_to_profile_ratio": profile_ratio(tx.amount, avg)}
            for tx, d, avg in zip(txs, distance, [p.get("avg_transaction_amount") for p in profiles])]

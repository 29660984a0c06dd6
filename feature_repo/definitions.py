"""Feast definitions: entities, feature views and the services the scorers use.

Backed by Parquet files under ``data/`` written by ``python -m datagen.transactions
dataset`` (and ``python -m datagen.sensors`` for devices). Each row is a daily,
point-in-time snapshot; ``get_historical_features`` joins the latest snapshot at
or before each training event.

Live views (``customer_live``, ``device_live``, at the end) are written by the flows
(``STREAMSCORE_WRITEBACK__ENABLED=true``) through push sources, never materialized, and read by the
scoring endpoint through the ``fraud_live`` service.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING,
                  description="A card holder")
device = Entity(name="device", join_keys=["device_id"], value_type=ValueType.STRING,
                description="A sensor device")
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING,
                  description="A card acceptor")

customer_profile_source = FileSource(
    name="customer_profile_source",
    path="data/customer_profile.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
merchant_risk_source = FileSource(
    name="merchant_risk_source",
    path="data/merchant_risk.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=365),
    schema=[
        Field(name="avg_transaction_amount", dtype=Float64, description="mean amount, 30 days before the snapshot"),
        Field(name="transaction_frequency", dtype=Float64, description="transactions per day, 30 days"),
        Field(name="home_latitude", dtype=Float64),
        Field(name="home_longitude", dtype=Float64),
    ],
    source=customer_profile_source,
    online=True,
    tags={"owner": "fraud"},
)

merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    ttl=timedelta(days=365),
    schema=[
        Field(name="merchant_risk_score", dtype=Float64, description="0 (safe) .. 1 (risky)"),
        Field(name="chargeback_rate", dtype=Float64),
    ],
    source=merchant_risk_source,
    online=True,
    tags={"owner": "fraud"},
)

fraud_scoring = FeatureService(
    name="fraud_scoring",
    features=[customer_profile, merchant_risk],
    description="Online features the fraud scorer looks up per event",
)


device_profile_source = FileSource(
    name="device_profile_source",
    path="data/device_profile.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

device_profile = FeatureView(
    name="device_profile",
    entities=[device],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="site", dtype=String),
        Field(name="model", dtype=String, description="hardware model"),
        Field(name="firmware_version", dtype=String),
    ],
    source=device_profile_source,
    online=True,
    tags={"owner": "iot"},
)

iot_scoring = FeatureService(
    name="iot_scoring",
    features=[device_profile],
    description="Device metadata the IoT scorer attaches to readings (optional)",
)


# --- live features: written by the streams, read by the scoring endpoint ---------------------
#
# The fraud flow pushes each customer's latest streaming features (features/live.py
# ``live_row``, dataflows/connectors/writeback.py ``write_back``); the IoT flow the same per device.
# Push sources need a batch source that exists when the repo is applied: an empty Parquet
# file with the schema, created here when missing (``feature_repo/data`` is not versioned).
# Nothing is ever materialized from it: the online rows come from the streams alone.

_DATA = Path(__file__).resolve().parent / "data"

#: The live window features of a customer, per horizon: count, sum, population std, max.
LIVE_HORIZONS = ("1h", "24h", "7d")


def _empty_parquet(name: str, key: str, columns: dict) -> str:
    """``data/<name>.parquet`` with no rows (created when missing); the path Feast reads."""
    path = _DATA / f"{name}.parquet"
    if not path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        _DATA.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([(key, pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC")),
                            *((c, t) for c, t in columns.items())])
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(schema.empty_table(), tmp)
        os.replace(tmp, path)  # atomic: two applies at once never see half a file
    return f"data/{name}.parquet"


def _arrow(dtype):  # the Parquet column type of a Feast type
    import pyarrow as pa

    return {Float64: pa.float64(), Int64: pa.int64(), String: pa.string()}[dtype]


customer_live_fields = [
    *(Field(name=f"amount_{stat}_{h}", dtype=Int64 if stat == "count" else Float64,
            description=f"{stat} of amount over {h} of event time, the last event included")
      for h in LIVE_HORIZONS for stat in ("count", "sum", "std", "max")),
    Field(name="time_since_last_transaction", dtype=Float64, description="s between the last two transactions"),
    Field(name="last_transaction_at", dtype=Float64, description="event time of the last transaction, epoch s"),
    Field(name="last_latitude", dtype=Float64),
    Field(name="last_longitude", dtype=Float64),
    Field(name="last_amount", dtype=Float64),
    Field(name="last_transaction_id", dtype=String, description="the transaction these values are as of"),
]

customer_live_push = PushSource(
    name="customer_live_push",
    batch_source=FileSource(
        name="customer_live_source",
        path=_empty_parquet("customer_live", "customer_id", {f.name: _arrow(f.dtype) for f in customer_live_fields}),
        timestamp_field="event_timestamp",
    ),
)

customer_live = FeatureView(
    name="customer_live",
    entities=[customer],
    ttl=timedelta(days=8),  # the 7-day window + a day; Feast does not enforce it online (the endpoint ages rows itself)
    schema=customer_live_fields,
    source=customer_live_push,
    online=True,
    tags={"owner": "fraud", "written_by": "dataflows.fraud write_back"},
)

fraud_live = FeatureService(
    name="fraud_live",
    features=[customer_profile, merchant_risk, customer_live],
    description="What the scoring endpoint reads: the profiles and each customer's live streaming features",
)

#: The device features written by the IoT flow under the default STREAMSCORE_IOT__SENSOR_FIELDS and
#: STREAMSCORE_IOT__WINDOWS_S (other configurations: every numeric feature is in ``features_json``).
_SENSORS, _WINDOWS = ("temperature", "humidity", "pressure"), ("300s", "3600s")
device_live_fields = [
    Field(name="last_reading_at", dtype=Float64, description="event time of the last reading, epoch s"),
    Field(name="anomaly_score", dtype=Float64),
    Field(name="status", dtype=String),
    Field(name="features_json", dtype=String, description="every numeric feature of the last reading, JSON"),
    Field(name="dt_s", dtype=Float64),
    Field(name="late_s", dtype=Float64),
    *(Field(name=f"{s}_delta", dtype=Float64) for s in _SENSORS),
    *(Field(name=f"{s}_{stat}_{w}", dtype=Float64)
      for s in _SENSORS for w in _WINDOWS for stat in ("mean", "std", "min", "max")),
]

device_live_push = PushSource(
    name="device_live_push",
    batch_source=FileSource(
        name="device_live_source",
        path=_empty_parquet("device_live", "device_id", {f.name: _arrow(f.dtype) for f in device_live_fields}),
        timestamp_field="event_timestamp",
    ),
)

device_live = FeatureView(
    name="device_live",
    entities=[device],
    ttl=timedelta(days=8),
    schema=device_live_fields,
    source=device_live_push,
    online=True,
    tags={"owner": "iot", "written_by": "dataflows.iot write_back"},
)

iot_live = FeatureService(
    name="iot_live",
    features=[device_profile, device_live],
    description="Device metadata and each device's live streaming features",
)

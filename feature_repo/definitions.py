"""Feast definitions: entities, feature views and the services the scorers use.

Backed by Parquet files under ``data/`` written by ``python -m datagen.transactions
dataset`` (and ``python -m datagen.sensors`` for devices). Each row is a daily,
point-in-time snapshot; ``get_historical_features`` joins the latest snapshot at
or before each training event.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

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

"""IoT sensor anomaly scoring: ``python -m bytewax.run dataflows.iot:flow``.

    input -> validate --(bad)------------------------------------------------> dead_letter
               |
               +-> key by device -> device_scoring (rolling features, per-sensor detectors, drift)
                   |                    +--(drift records)--------------------------> alerts
                   +-> key by shard -> shard_scoring (shared multivariate detector, combine, status)
                       -> device_profile (Feast, when the repo defines it)
                       -> scored; the non-NORMAL ones also -> alerts

Fields are configurable (``IOT_KEY_FIELD``, ``IOT_TIME_FIELD``, ``IOT_SENSOR_FIELDS``);
sources and sinks are the fraud flow's (``SCORING_*``, see :class:`dataflows.config.IoTConfig`).
"""

from __future__ import annotations

import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows.config import IoTConfig, main_flow
from dataflows.io import make_source
from dataflows.operators import dead_letter_key, stateful_object, validate, write
from dataflows.scoring import device_profile_enricher
from features.readings import validate_reading
from features.sensors import SensorConfig, shard_of
from models.iot_steps import DeviceStep, ShardStep, detector_version, drift_record
from models.sensor_scoring import ScoringConfig
from models.status import NORMAL, Thresholds


def scoring_config(cfg: IoTConfig) -> ScoringConfig:
    """The detector configuration the flow's settings describe."""
    features = SensorConfig(key_field=cfg.key_field, time_field=cfg.time_field, sensors=cfg.sensors,
                            windows_s=cfg.windows_s, lateness_s=cfg.lateness_s)
    return ScoringConfig(features=features, n_shards=cfg.shards)


def generated_readings(cfg: IoTConfig):
    """The generator source: synthetic readings with labelled faults."""
    from datagen.sensors import generate_readings

    return generate_readings(devices=cfg.devices, readings=cfg.io.generator_events, seed=cfg.io.seed,
                             sensors=cfg.sensors)


def build_flow(cfg: IoTConfig) -> Dataflow:
    """The IoT scoring dataflow for ``cfg``; nothing is opened until it runs."""
    scoring = scoring_config(cfg)
    thresholds = Thresholds(cfg.critical, cfg.warning)
    version = detector_version(scoring)
    flow = Dataflow("iot_scoring")
    raw = op.input("input", flow, make_source(cfg.io, lambda: generated_readings(cfg)))
    readings = validate("validate", raw, lambda r: validate_reading(r, scoring.features, time.time()))

    by_device = op.key_on("by_device", readings.oks, lambda e: e["_device"])
    devices = op.key_rm("unkey_device", stateful_object(
        "device_scoring", by_device,
        lambda: DeviceStep(scoring), lambda snap: DeviceStep.restore(snap, scoring), DeviceStep.update,
    ))
    drifts = op.flat_map("drift_records", devices, lambda d: [drift_record(x, version) for x in d[2]])

    by_shard = op.key_on("by_shard", op.map("device_result", devices, lambda d: (d[0], d[1])),
                         lambda d: str(shard_of(d[0]["_device"], cfg.shards)))
    scored = op.key_rm("unkey_shard", stateful_object(
        "shard_scoring", by_shard,
        lambda: ShardStep(scoring, thresholds=thresholds),
        lambda snap: ShardStep.restore(snap, scoring, thresholds), ShardStep.update,
    ))
    scored = op.flat_map_batch("device_profile", scored, device_profile_enricher(cfg))
    alerts = op.merge("alerts", op.filter("alerts_only", scored, lambda r: r["status"] != NORMAL), drifts)

    write("scored_out", scored, cfg.io, "scored", lambda r: r["id"])
    write("alerts_out", alerts, cfg.io, "alerts", lambda r: r["id"])
    event_id = lambda e: f"{e[cfg.key_field]}@{e[cfg.time_field]}"  # noqa: E731
    write("dead_letter_out", readings.errs, cfg.io, "dead_letter", dead_letter_key(event_id))
    return flow


flow = main_flow(build_flow, IoTConfig.from_env)

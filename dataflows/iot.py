"""IoT sensor anomaly scoring: ``python -m bytewax.run dataflows.iot:flow``.

    input -> key by device (read from the raw message) --(no device: bad)-------> dead_letter
               |                                                                   ^
               +-> device_scoring --(bad, duplicate id)----------------------------+
                   (validate, then windows, per-sensor detectors, drift; idle devices expire)
                   |                    +--(drift records)------------------------------> alerts
                   +-> key by shard -> shard_scoring (shared detector, warm-up rule, status)
                       -> device_profile (Feast, unless iot.device_profile = false)
                       -> scored; the non-NORMAL ones (and updates of repeats after a resume) also -> alerts
                       -> inference log (Parquet by date)
                       -> live features to Feast (writeback.enabled)

From the shard step on, an item is one shard's batch of scored readings, as columns
(:class:`models.iot.ScoredReadings`): enrichment, outputs, metrics and the inference log
take it whole. Each step is a class of :mod:`features.sensors` and :mod:`models.iot`; this file
only wires them. Fields are configurable (``[iot]``: ``key_field``, ``time_field``,
``sensor_fields``); sources and sinks are the fraud flow's (``[io]``, ``[kafka]``; the
topics ``[iot.topics]``; see :class:`settings.config.IoTConfig`). Importing this module
opens nothing.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows.connectors import registry as wire
from dataflows.connectors.inputs import read_input
from dataflows.connectors.inference_log import log_inference
from dataflows.connectors.outputs import write
from dataflows.connectors.writeback import iot_writeback, write_back
from dataflows.operators import key_raw, score_batches, split_dead_letters, stateful_object
from dataflows.placement import enough_shards, shard_keys, total_workers
from dataflows.scoring import device_profile_enricher, iot_dead_letter_key, iot_scoring_config, reading_parser
from dataflows.startup import check_iot, start
from features.keyhash import entity_reader
from models.status import Thresholds
from settings.config import IoTConfig

__all__ = ["build_flow", "get_flow"]



def _generated(cfg: IoTConfig) -> Iterable[Any]:
    from datagen.sensors import generate_readings  # lazy: importing a flow loads no generator (tests/dataflows/test_startup.py)

    return generate_readings(devices=cfg.devices, readings=cfg.io.generator_events, seed=cfg.io.seed,
                             sensors=cfg.sensors)


def build_flow(cfg: IoTConfig) -> Dataflow:
    """The IoT scoring dataflow for ``cfg``; nothing is opened until it runs."""
    from models.iot import DeviceState, ShardState, log_spec  # lazy: pulls river (~6 s)

    sc = iot_scoring_config(cfg)
    thresholds = Thresholds(cfg.critical, cfg.warning)
    flow = Dataflow("iot_scoring")
    raw = read_input("input", flow, cfg.io, lambda: _generated(cfg), lambda: wire.input_decoder(cfg))
    # Keyed by device before parsing: the message crosses to the device's worker, which parses it.
    parse = reading_parser(cfg)
    by_device = key_raw("validate", raw, entity_reader(cfg.key_field, numbers=True), parse,
                        entity=lambda r: r.device, entity_name=cfg.key_field)
    devices = split_dead_letters("new_or_duplicate", op.key_rm("unkey_device", stateful_object(
        "device_scoring", by_device.oks, lambda: DeviceState(sc), None, DeviceState.score_batch,
        expire_after_s=sc.idle_expiry_s or None, check_every_s=cfg.idle_check_s, parse=parse)))
    duplicates = devices.errs
    devices = devices.oks
    drifts = op.flat_map("drift_records", devices, lambda d: d.drifts)

    keys = shard_keys(sc.n_shards)  # one per shard, spread over the workers (dataflows/placement.py)
    by_shard = op.key_on("by_shard", devices, lambda d: keys[d.shard])
    # Downstream of the shard step an item is a whole scored batch (models.iot.ScoredReadings):
    # the enrichment, outputs, metrics and the inference log work on its columns, per batch.
    scored = op.key_rm("unkey_shard", stateful_object(
        "shard_scoring", by_shard, lambda: ShardState(sc, thresholds), None, ShardState.score_batches))
    profiled = split_dead_letters("profiled_or_failed",
                                  score_batches("device_profile", scored, device_profile_enricher(cfg), lambda r: r))
    scored = profiled.oks
    if cfg.writeback:  # each device's latest features -> Feast device_live
        write_back("live_out", op.flat_map("records", scored, _records), iot_writeback(
            cfg.feature_repo, cfg.feature_store_yaml, cfg.writeback_min_interval_s))
    alerts = op.merge("alerts", op.filter("alerts_only", scored, _has_alerts), drifts)

    if cfg.io.log_enabled:
        log_inference("inference_log", scored, cfg.io.log_dir, log_spec(sc), parts=total_workers(sys.argv) or 1,
                      max_rows=cfg.io.inference_log_max_rows, flush_s=cfg.io.inference_log_flush_s)

    letters = wire.encoder_of(cfg, "dead_letter")  # None: JSON
    write("scored_out", scored, cfg.io, "scored", lambda r: r["id"], wire.encoder_of(cfg, "scored"), letters)
    write("alerts_out", alerts, cfg.io, "alerts", lambda r: r["id"], wire.encoder_of(cfg, "alerts"))
    write("dead_letter_out", op.merge("dead_letters", by_device.errs, duplicates, profiled.errs), cfg.io, "dead_letter",
          iot_dead_letter_key(cfg), letters, letters)
    return flow


def _has_alerts(batch: Any) -> bool:
    return bool(batch.alert_rows())


def _records(batch: Any) -> list[dict]:
    return batch.records()


def _warm_up() -> None:
    from models.iot import warm_up  # lazy: pulls river (~6 s)

    warm_up()


def get_flow() -> Dataflow:
    """Read the settings, check what the run needs, build the flow, then load the compiled
    kernels and move everything built so far out of the garbage collector's way
    (:func:`dataflows.startup.settle`)."""
    return start("iot", lambda: enough_shards(IoTConfig.from_env()), check_iot, build_flow, warm=(_warm_up,))


def __getattr__(name: str) -> Any:
    if name == "flow":  # `python -m bytewax.run dataflows.iot:flow` builds it on demand
        return get_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

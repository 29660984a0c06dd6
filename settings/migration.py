"""The retired environment variables and the settings they became.

Up to this layout every setting was a flat variable (``SCORING_*``, ``IOT_*``,
``KAFKA_CHECK_TIMEOUT_S``). Each is now a key of the settings file, with a
systematic variable (``STREAMSCORE_<SECTION>__<KEY>``) or a short one for the
handful a deployment sets. A retired variable that is still set is an error
naming what it became (:mod:`settings.config`); this table is also the migration
guide in ``docs/configuration.md`` (``streamscore config --reference``).

A variable that meant the same for both flows but is now flow policy became two
keys (``SCORING_CRITICAL_THRESHOLD`` -> ``fraud.critical`` and ``iot.critical``).
"""

from __future__ import annotations

__all__ = ["RETIRED"]

#: old variable -> the key(s) it became
RETIRED: dict[str, tuple[str, ...]] = {
    # [io]
    "SCORING_SOURCE": ("io.source",),
    "SCORING_INPUT": ("io.input",),
    "SCORING_GENERATOR_EVENTS": ("io.generator_events",),
    "SCORING_SEED": ("io.generator_seed",),
    "SCORING_GENERATOR_BAD_RATE": ("io.generator_bad_rate",),
    "SCORING_OUTPUT": ("io.output",),
    "SCORING_OUTPUT_DIR": ("io.output_dir",),
    "SCORING_BATCH_SIZE": ("io.batch_size",),
    "SCORING_REPLACE_OUTPUTS": ("io.replace_outputs",),
    # [kafka], [fraud.topics], [iot.topics]
    "SCORING_INPUT_TOPIC": ("fraud.topics.input", "iot.topics.input"),
    "SCORING_SCORED_TOPIC": ("fraud.topics.scored", "iot.topics.scored"),
    "SCORING_ALERTS_TOPIC": ("fraud.topics.alerts", "iot.topics.alerts"),
    "SCORING_DEAD_LETTER_TOPIC": ("fraud.topics.dead_letter", "iot.topics.dead_letter"),
    "SCORING_KAFKA_TAIL": ("kafka.tail",),
    "SCORING_KAFKA_START": ("kafka.start",),
    "SCORING_KAFKA_GROUP": ("kafka.group",),
    "KAFKA_CHECK_TIMEOUT_S": ("kafka.check_timeout_s",),
    # [fraud], [iot]: flow policy
    "SCORING_CRITICAL_THRESHOLD": ("fraud.critical", "iot.critical"),
    "SCORING_WARNING_THRESHOLD": ("fraud.warning", "iot.warning"),
    "SCORING_IDLE_EXPIRY_S": ("fraud.idle_expiry_s", "iot.idle_expiry_s"),
    "SCORING_ANOMALY_WEIGHT": ("fraud.anomaly_weight",),
    "SCORING_EXPLAIN": ("fraud.explain",),
    "SCORING_MIN_AMOUNT": ("fraud.min_amount",),
    "SCORING_MAX_AMOUNT": ("fraud.max_amount",),
    "SCORING_SCORE_DRIFT_THRESHOLD": ("fraud.score_drift_threshold",),
    "SCORING_SCORE_DRIFT_DELTA": ("fraud.score_drift_delta",),
    "SCORING_SCORE_DRIFT_MIN_INSTANCES": ("fraud.score_drift_min_instances",),
    "IOT_KEY_FIELD": ("iot.key_field",),
    "IOT_TIME_FIELD": ("iot.time_field",),
    "IOT_SENSOR_FIELDS": ("iot.sensor_fields",),
    "IOT_WINDOWS_S": ("iot.windows_s",),
    "IOT_GENERATOR_DEVICES": ("iot.generator_devices",),
    "IOT_DEVICE_PROFILE": ("iot.device_profile",),
    # [feast]
    "SCORING_FEATURE_REPO": ("feast.repo",),
    "SCORING_FEATURE_STORE_YAML": ("feast.store_yaml",),
    "SCORING_FEATURE_SERVICE": ("feast.fraud_service",),
    "SCORING_LIVE_FEATURE_SERVICE": ("feast.live_service",),
    "SCORING_LOOKUP_TTL_S": ("feast.lookup_ttl_s",),
    "SCORING_LOOKUP_TIMEOUT_S": ("feast.lookup_timeout_s",),
    "SCORING_LOOKUP_RETRY_S": ("feast.lookup_retry_s",),
    "SCORING_LOOKUP_FAILURES": ("feast.lookup_failures",),
    # [model]
    "SCORING_MODEL": ("model.ref",),
    "SCORING_MODEL_REGISTRY": ("model.registry",),
    "SCORING_MODEL_ROUTES": ("model.routes",),
    "SCORING_MODEL_SHADOW": ("model.shadow",),
    "SCORING_MODEL_POLL_S": ("model.poll_s",),
    # [state]
    "SCORING_ALLOWED_LATENESS_S": ("state.lateness_s",),
    "SCORING_MAX_FUTURE_S": ("state.max_future_s",),
    "SCORING_DEDUP_HORIZON_S": ("state.dedup_horizon_s",),
    "SCORING_DEDUP_MAX_IDS": ("state.dedup_max_ids",),
    "SCORING_IDLE_CHECK_S": ("state.idle_check_s",),
    "SCORING_DETECTOR_SHARDS": ("state.detector_shards",),
    # [inference_log]
    "SCORING_INFERENCE_LOG": ("inference_log.enabled",),
    "SCORING_INFERENCE_LOG_DIR": ("inference_log.dir",),
    "SCORING_INFERENCE_LOG_APPEND": ("inference_log.append",),
    "SCORING_INFERENCE_LOG_MAX_ROWS": ("inference_log.max_rows",),
    "SCORING_INFERENCE_LOG_FLUSH_S": ("inference_log.flush_s",),
    # [writeback]
    "SCORING_WRITEBACK": ("writeback.enabled",),
    "SCORING_WRITEBACK_MIN_INTERVAL_S": ("writeback.min_interval_s",),
    # [serve]
    "SCORING_API_KEYS": ("serve.api_keys",),
    "SCORING_API_MAX_BYTES": ("serve.max_bytes",),
    "SCORING_API_MAX_BATCH": ("serve.max_batch",),
    "SCORING_API_HOST": ("serve.host",),
    "SCORING_API_PORT": ("serve.port",),
    # [log]
    "SCORING_LOG_LEVEL": ("log.level",),
}

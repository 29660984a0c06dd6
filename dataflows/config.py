"""Typed configuration read from environment variables, with defaults that run locally.

Every dataflow has one config object built by ``from_env()``. A bad value fails
with :class:`ConfigError` naming the variable, the value and what was expected.

>>> cfg = FraudConfig.from_env({"SCORING_GENERATOR_EVENTS": "500"})
>>> cfg.io.source, cfg.io.generator_events, str(cfg.io.output_dir)
('generator', 500, 'output/fraud')
>>> FraudConfig.from_env({"SCORING_SOURCE": "ftp"})
Traceback (most recent call last):
...
dataflows.config.ConfigError: SCORING_SOURCE='ftp': expected one of generator, file, kafka
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

C = TypeVar("C")
F = TypeVar("F")

__all__ = ["ConfigError", "IOConfig", "KafkaConfig", "FraudConfig", "IoTConfig", "Env", "main_flow"]


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


class Env:
    """Typed reads from an environment mapping, with errors naming the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def str(self, name: str, default: str) -> str:
        value = self.environ.get(name, "")
        return value.strip() if value.strip() else default

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self.str(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name}={value}: must be >= {minimum}")
        return value

    def float(self, name: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
        raw = self.str(name, str(default))
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{name}={value}: must be within [{lo}, {hi}]")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.str(name, "true" if default else "false").lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")

    def prefixed(self, prefix: str) -> dict[str, str]:
        """Variables starting with ``prefix``, prefix removed, lower-cased, ``_`` -> ``.``.

        ``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL`` -> ``{"security.protocol": "SASL_SSL"}``.
        """
        return {
            k[len(prefix):].lower().replace("_", "."): v
            for k, v in self.environ.items()
            if k.startswith(prefix) and len(k) > len(prefix)
        }


@dataclass(frozen=True)
class KafkaConfig:
    """Kafka connection and topics (``SCORING_SOURCE=kafka`` / ``SCORING_OUTPUT=kafka``)."""

    bootstrap_servers: str = "localhost:9092"
    input_topic: str = "transactions"
    scored_topic: str = "scored-transactions"
    alerts_topic: str = "fraud-alerts"
    dead_letter_topic: str = "transactions-dead-letter"
    tail: bool = True
    check_timeout_s: float = 10.0
    #: extra librdkafka settings from ``KAFKA_OPT_*`` (may hold secrets: never log values)
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Env, topics: dict[str, str]) -> "KafkaConfig":
        return cls(
            bootstrap_servers=env.str("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            input_topic=env.str("SCORING_INPUT_TOPIC", topics["input"]),
            scored_topic=env.str("SCORING_SCORED_TOPIC", topics["scored"]),
            alerts_topic=env.str("SCORING_ALERTS_TOPIC", topics["alerts"]),
            dead_letter_topic=env.str("SCORING_DEAD_LETTER_TOPIC", topics["dead_letter"]),
            tail=env.bool("SCORING_KAFKA_TAIL", True),
            check_timeout_s=env.float("KAFKA_CHECK_TIMEOUT_S", 10.0, lo=0.1),
            options=env.prefixed("KAFKA_OPT_"),
        )

    def redacted_options(self) -> dict[str, str]:
        """Option names with values hidden, for logs."""
        return {k: "***" for k in self.options}


@dataclass(frozen=True)
class IOConfig:
    """Where events come from and where results go; shared by every dataflow."""

    source: str = "generator"
    input_path: Path | None = None
    generator_events: int = 20_000
    seed: int = 42
    bad_rate: float = 0.002
    output: str = "file"
    output_dir: Path = Path("output")
    batch_size: int = 1000
    kafka: KafkaConfig = field(default_factory=KafkaConfig)

    @classmethod
    def from_env(cls, env: Env, default_output_dir: str, topics: dict[str, str]) -> "IOConfig":
        source = env.choice("SCORING_SOURCE", "generator", ("generator", "file", "kafka"))
        input_raw = env.str("SCORING_INPUT", "")
        if source == "file" and not input_raw:
            raise ConfigError("SCORING_SOURCE=file needs SCORING_INPUT=<path to .jsonl, .csv or .parquet>")
        input_path = Path(input_raw) if input_raw else None
        if input_path is not None and input_path.suffix.lower() not in (".jsonl", ".json", ".csv", ".parquet"):
            raise ConfigError(f"SCORING_INPUT={input_raw!r}: expected a .jsonl, .csv or .parquet file")
        return cls(
            source=source,
            input_path=input_path,
            generator_events=env.int("SCORING_GENERATOR_EVENTS", cls.generator_events, minimum=0),
            seed=env.int("SCORING_SEED", cls.seed),
            bad_rate=env.float("SCORING_GENERATOR_BAD_RATE", cls.bad_rate, lo=0.0, hi=1.0),
            output=env.choice("SCORING_OUTPUT", "file", ("file", "kafka")),
            output_dir=Path(env.str("SCORING_OUTPUT_DIR", default_output_dir)),
            batch_size=env.int("SCORING_BATCH_SIZE", cls.batch_size, minimum=1),
            kafka=KafkaConfig.from_env(env, topics),
        )


def thresholds(env: Env) -> tuple[float, float]:
    """``(critical, warning)`` status thresholds, checked to be in order."""
    critical = env.float("SCORING_CRITICAL_THRESHOLD", 0.8, lo=0.0, hi=1.0)
    warning = env.float("SCORING_WARNING_THRESHOLD", 0.5, lo=0.0, hi=1.0)
    if warning > critical:
        raise ConfigError(f"SCORING_WARNING_THRESHOLD={warning} is above SCORING_CRITICAL_THRESHOLD={critical}")
    return critical, warning


@dataclass(frozen=True)
class FraudConfig:
    """Configuration of ``dataflows.fraud``."""

    io: IOConfig
    feature_repo: Path = Path("feature_repo")
    feature_service: str = "fraud_scoring"
    feature_store_yaml: str | None = None
    model: str = "fraud_model@production"
    model_registry: Path = Path("model_registry")
    critical: float = 0.8
    warning: float = 0.5
    anomaly_weight: float = 0.4
    lateness_s: float = 600.0
    lookup_ttl_s: float = 300.0
    shards: int = 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "FraudConfig":
        env = Env(environ)
        topics = {
            "input": "transactions",
            "scored": "scored-transactions",
            "alerts": "fraud-alerts",
            "dead_letter": "transactions-dead-letter",
        }
        critical, warning = thresholds(env)
        return cls(
            io=IOConfig.from_env(env, "output/fraud", topics),
            feature_repo=Path(env.str("SCORING_FEATURE_REPO", "feature_repo")),
            feature_service=env.str("SCORING_FEATURE_SERVICE", "fraud_scoring"),
            feature_store_yaml=env.str("SCORING_FEATURE_STORE_YAML", "") or None,
            model=env.str("SCORING_MODEL", "fraud_model@production"),
            model_registry=Path(env.str("SCORING_MODEL_REGISTRY", "model_registry")),
            critical=critical,
            warning=warning,
            anomaly_weight=env.float("SCORING_ANOMALY_WEIGHT", 0.4, lo=0.0, hi=1.0),
            lateness_s=env.float("SCORING_ALLOWED_LATENESS_S", 600.0, lo=0.0),
            lookup_ttl_s=env.float("SCORING_LOOKUP_TTL_S", 300.0, lo=0.0),
            shards=env.int("SCORING_DETECTOR_SHARDS", 4, minimum=1),
        )


def main_flow(build: Callable[[C], F], config: Callable[[], C]) -> F:
    """Build a module-level ``flow``; a configuration or broker problem exits
    with a one-line error instead of a traceback (or a hang)."""
    from dataflows.kafka import KafkaUnavailable

    try:
        return build(config())
    except (ConfigError, KafkaUnavailable) as exc:
        raise SystemExit(f"error: {exc}") from None


@dataclass(frozen=True)
class IoTConfig:
    """Configuration of ``dataflows.iot``: which fields hold the key, the time and
    the sensors, the detector settings, and the statuses' thresholds."""

    io: IOConfig
    key_field: str = "device_id"
    time_field: str = "timestamp"
    sensors: tuple[str, ...] = ("temperature", "humidity", "pressure")
    windows_s: tuple[float, ...] = (300.0, 3600.0)
    lateness_s: float = 600.0
    shards: int = 4
    critical: float = 0.8
    warning: float = 0.5
    devices: int = 50
    feature_repo: Path = Path("feature_repo")
    feature_store_yaml: str | None = None
    device_profile: bool = True
    lookup_ttl_s: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "IoTConfig":
        env = Env(environ)
        topics = {
            "input": "iot-readings",
            "scored": "scored-readings",
            "alerts": "iot-alerts",
            "dead_letter": "iot-readings-dead-letter",
        }
        sensors = tuple(s.strip() for s in env.str("IOT_SENSOR_FIELDS", "temperature,humidity,pressure").split(","))
        if not all(sensors) or len(set(sensors)) != len(sensors):
            raise ConfigError(f"IOT_SENSOR_FIELDS={','.join(sensors)!r}: expected distinct, comma-separated names")
        key_field = env.str("IOT_KEY_FIELD", "device_id")
        time_field = env.str("IOT_TIME_FIELD", "timestamp")
        clash = {key_field, time_field} & set(sensors)
        if clash:
            raise ConfigError(f"IOT_SENSOR_FIELDS: {sorted(clash)} is also the key or time field")
        raw_windows = env.str("IOT_WINDOWS_S", "300,3600")
        try:
            windows = tuple(float(w) for w in raw_windows.split(","))
        except ValueError:
            raise ConfigError(f"IOT_WINDOWS_S={raw_windows!r}: expected comma-separated seconds") from None
        if any(w <= 0 for w in windows):
            raise ConfigError(f"IOT_WINDOWS_S={raw_windows!r}: windows must be > 0 seconds")
        critical, warning = thresholds(env)
        return cls(
            io=IOConfig.from_env(env, "output/iot", topics),
            key_field=key_field,
            time_field=time_field,
            sensors=sensors,
            windows_s=windows,
            lateness_s=env.float("SCORING_ALLOWED_LATENESS_S", 600.0, lo=0.0),
            shards=env.int("SCORING_DETECTOR_SHARDS", 4, minimum=1),
            critical=critical,
            warning=warning,
            devices=env.int("IOT_GENERATOR_DEVICES", 50, minimum=1),
            feature_repo=Path(env.str("SCORING_FEATURE_REPO", "feature_repo")),
            feature_store_yaml=env.str("SCORING_FEATURE_STORE_YAML", "") or None,
            device_profile=env.bool("IOT_DEVICE_PROFILE", True),
            lookup_ttl_s=env.float("SCORING_LOOKUP_TTL_S", 300.0, lo=0.0),
        )

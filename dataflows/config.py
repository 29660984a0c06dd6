"""Typed configuration read from environment variables, with defaults that run locally.

Every dataflow has one frozen config object built by ``from_env()``, with
pydantic-settings. Each field names its variable (``validation_alias``); an
empty variable means "unset" (the default). Every bad variable is reported in
ONE :class:`ConfigError` naming the variable, its value and what was expected.

>>> cfg = FraudConfig.from_env({"SCORING_GENERATOR_EVENTS": "500"})
>>> cfg.io.source, cfg.io.generator_events, str(cfg.io.output_dir), cfg.log_level
('generator', 500, 'output/fraud', 'INFO')
>>> FraudConfig.from_env({"SCORING_SOURCE": "ftp"})
Traceback (most recent call last):
...
dataflows.config.ConfigError: SCORING_SOURCE='ftp': expected one of generator, file, kafka
>>> FraudConfig.from_env({"SCORING_SOURCE": "ftp", "SCORING_BATCH_SIZE": "x"})
Traceback (most recent call last):
...
dataflows.config.ConfigError: 2 bad settings: SCORING_SOURCE='ftp': expected one of generator, file, kafka; SCORING_BATCH_SIZE='x': expected an integer

This module imports nothing from the project and nothing heavy (no Bytewax,
Kafka client, Feast or pandas), so reading a configuration is cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping, Self, Sequence

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

__all__ = [
    "ConfigError",
    "KafkaConfig",
    "IOConfig",
    "FraudConfig",
    "IoTConfig",
    "LOG_LEVELS",
    "parse_log_level",
]

#: ``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL`` -> librdkafka ``security.protocol``
KAFKA_OPT_PREFIX = "KAFKA_OPT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
INPUT_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_SECRET = "***"


class ConfigError(ValueError):
    """Configuration values that cannot be used: one line per bad variable.

    ``problems`` holds the lines; the message is the single line, or
    ``"N bad settings: "`` followed by all of them.

    >>> str(ConfigError(["A='1': expected x", "B='2': expected y"]))
    "2 bad settings: A='1': expected x; B='2': expected y"
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} bad settings: " + "; ".join(self.problems)
        super().__init__(message)


def parse_log_level(value: str | None, name: str = "SCORING_LOG_LEVEL") -> str:
    """A log level name, upper-cased; empty or None means INFO.

    >>> parse_log_level("debug"), parse_log_level(None)
    ('DEBUG', 'INFO')
    >>> parse_log_level("loud")
    Traceback (most recent call last):
    ...
    dataflows.config.ConfigError: SCORING_LOG_LEVEL='loud': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL
    """
    level = (value or "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


# --- field types --------------------------------------------------------------


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _names(value: Any) -> Any:
    """``"a, b,c"`` -> ``("a", "b", "c")``: distinct, non-empty names."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        return value  # pydantic reports the type
    names = tuple(s.strip() if isinstance(s, str) else s for s in names)
    if not all(names) or len(set(names)) != len(names):
        raise PydanticCustomError("names", "expected distinct, comma-separated names")
    return names


def _seconds(value: Any) -> Any:
    """``"300,3600"`` -> ``(300.0, 3600.0)``: each a number of seconds > 0."""
    if not isinstance(value, str):
        return value
    try:
        seconds = tuple(float(s) for s in value.split(","))
    except ValueError:
        raise PydanticCustomError("seconds", "expected comma-separated seconds") from None
    if any(not s > 0 or s == float("inf") for s in seconds):
        raise PydanticCustomError("seconds", "expected comma-separated seconds, each > 0")
    return seconds


# choices are matched case-insensitively
Source = Annotated[Literal["generator", "file", "kafka"], BeforeValidator(_lower)]
Output = Annotated[Literal["file", "kafka"], BeforeValidator(_lower)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]
KafkaStart = Annotated[Literal["earliest", "latest", "committed"], BeforeValidator(_lower)]
Explain = Annotated[Literal["alerts", "critical", "none"], BeforeValidator(_lower)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Seconds = Annotated[tuple[float, ...], BeforeValidator(_seconds)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


def _var(name: str, default: Any, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name``."""
    return Field(default, validation_alias=name, **kwargs)


# --- reading the environment ----------------------------------------------------


def _nested(field: FieldInfo) -> type[BaseSettings] | None:
    """The settings class of a nested config field (``io``, ``kafka``), else None."""
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseSettings) else None


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (never ``os.environ``)
    that also fills nested config fields (``io``, ``kafka``) from the same flat
    variables, and ``KafkaConfig.options`` from ``KAFKA_OPT_*``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True, env_prefix="", env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Only the field's variable (``validation_alias``), never one named like the
        field; nested configs and ``options`` are filled by :meth:`__call__`."""
        var = field.validation_alias
        if _nested(field) or not isinstance(var, str):
            return None, field_name, False
        return self.env_vars.get(var), var, False

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        """The variable's text as is: no JSON decoding (lists are comma-separated)."""
        return value

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for name, field in self.settings_cls.model_fields.items():
            nested = _nested(field)
            if nested is not None:
                data[name] = _MappingEnvSource(nested, self._environ)()
        if issubclass(self.settings_cls, KafkaConfig):
            data["options"] = kafka_options(self._environ)
        return data


def kafka_options(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka settings from ``KAFKA_OPT_*``: prefix removed, lower-cased, ``_`` -> ``.``.

    >>> kafka_options({"KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_OPT_": "x", "OTHER": "y"})
    {'security.protocol': 'SASL_SSL'}
    """
    n = len(KAFKA_OPT_PREFIX)
    return {
        k[n:].lower().replace("_", "."): v
        for k, v in environ.items()
        if k.startswith(KAFKA_OPT_PREFIX) and len(k) > n and v != ""
    }


def _clean(environ: Mapping[str, str], defaults: Mapping[str, str]) -> dict[str, str]:
    """``defaults`` overridden by the non-empty variables of ``environ``, values stripped
    (``KAFKA_OPT_*`` values are kept as given: they may be secrets)."""
    env = dict(defaults)
    for key, value in environ.items():
        if key.startswith(KAFKA_OPT_PREFIX):
            if value != "":
                env[key] = value
        elif value.strip():
            env[key] = value.strip()
    return env


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
}


def _variable(model: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The variable an error's location points at (a field validated by its
    default is located by its name, not its variable)."""
    var = "configuration"
    for part in loc:
        if not isinstance(part, str):
            continue
        var = part
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.validation_alias == part), None)
        if field is None:
            continue
        if isinstance(field.validation_alias, str):
            var = field.validation_alias
        model = _nested(field) or model
    return var


def _problems(model: type[BaseSettings], exc: ValidationError, environ: Mapping[str, str]) -> list[str]:
    """One line per error: ``VAR='value': what was expected``; secrets are never shown."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        var = _variable(model, err["loc"])
        template = _EXPECTED.get(err["type"])
        if err["type"] == "literal_error":  # ctx: "'file' or 'kafka'"
            expected = "expected one of " + ", ".join(re.findall(r"'([^']*)'", err["ctx"]["expected"]))
        else:
            expected = template.format(**err.get("ctx", {})) if template else err["msg"]
        value = _SECRET if var == "options" or var.startswith(KAFKA_OPT_PREFIX) else environ.get(var)
        problems.append(f"{var}={value!r}: {expected}" if value is not None else f"{var}: {expected}")
    return problems


class _Settings(BaseSettings):
    """Frozen settings whose fields name their variables. Constructing one directly
    uses only the arguments (tests, tools); :meth:`from_env` reads the environment."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=True,
        env_ignore_empty=True,
        populate_by_name=True,  # KafkaConfig(bootstrap_servers=...) as well as the variables
        allow_inf_nan=False,
        hide_input_in_errors=True,  # a raw ValidationError never shows values either
    )

    #: variable defaults of this flow (output folder, topics), below the environment
    _env_defaults: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # type: ignore[no-untyped-def]
        """Only the constructor's arguments: no implicit ``os.environ`` or ``.env`` file."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read from ``environ`` (default ``os.environ``); raises :class:`ConfigError`
        listing every bad variable."""
        env = _clean(os.environ if environ is None else environ, cls._env_defaults)
        data = _MappingEnvSource(cls, env)()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_problems(cls, exc, env)) from None

    def describe(self) -> dict[str, Any]:
        """Non-secret settings, JSON-ready, for a start-up log line."""
        out = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, _Settings):
                out[name] = value.describe()
        return out


# --- Kafka and I/O: shared by every flow -----------------------------------------


class KafkaConfig(_Settings):
    """Kafka connection and topics (``SCORING_SOURCE=kafka`` / ``SCORING_OUTPUT=kafka``).

    ``options`` are extra librdkafka settings from ``KAFKA_OPT_*``; their values may
    be secrets and never appear in ``repr``, ``str``, :meth:`describe` or errors.

    >>> k = KafkaConfig.from_env({"KAFKA_OPT_SASL_PASSWORD": "hunter2", "SCORING_KAFKA_TAIL": "false"})
    >>> k.options, k.redacted_options(), k.tail
    ({'sasl.password': 'hunter2'}, {'sasl.password': '***'}, False)
    >>> "hunter2" in repr(k) + str(k) + str(k.describe())
    False
    """

    bootstrap_servers: str = _var("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    input_topic: str = _var("SCORING_INPUT_TOPIC", "transactions")
    scored_topic: str = _var("SCORING_SCORED_TOPIC", "scored-transactions")
    alerts_topic: str = _var("SCORING_ALERTS_TOPIC", "fraud-alerts")
    dead_letter_topic: str = _var("SCORING_DEAD_LETTER_TOPIC", "transactions-dead-letter")
    tail: bool = _var("SCORING_KAFKA_TAIL", True)
    start: KafkaStart = _var("SCORING_KAFKA_START", "earliest")
    group: str = _var("SCORING_KAFKA_GROUP", "streamscore")
    check_timeout_s: float = _var("KAFKA_CHECK_TIMEOUT_S", 10.0, ge=0.1)
    #: extra librdkafka settings from ``KAFKA_OPT_*`` (may hold secrets: never log values)
    options: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    def redacted_options(self) -> dict[str, str]:
        """Option names with values hidden, for logs."""
        return {k: _SECRET for k in self.options}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.redacted_options()}


class IOConfig(_Settings):
    """Where events come from and where results go; shared by every dataflow.

    ``replace_outputs`` (``SCORING_REPLACE_OUTPUTS``, default true): a run truncates
    the output files an earlier run left in its folder; false: a folder holding
    output files is refused.

    >>> IOConfig.from_env({"SCORING_SOURCE": "File", "SCORING_INPUT": "events.csv"}).source
    'file'
    >>> IOConfig.from_env({"SCORING_SOURCE": "file", "SCORING_REPLACE_OUTPUTS": "maybe"})
    Traceback (most recent call last):
    ...
    dataflows.config.ConfigError: 2 bad settings: SCORING_INPUT: required with SCORING_SOURCE=file: a .jsonl, .json, .csv or .parquet file; SCORING_REPLACE_OUTPUTS='maybe': expected true or false
    """

    source: Source = _var("SCORING_SOURCE", "generator")
    input_path: Path | None = _var("SCORING_INPUT", None, validate_default=True)
    generator_events: int = _var("SCORING_GENERATOR_EVENTS", 20_000, ge=0)
    seed: int = _var("SCORING_SEED", 42)
    bad_rate: Share = _var("SCORING_GENERATOR_BAD_RATE", 0.002)
    output: Output = _var("SCORING_OUTPUT", "file")
    output_dir: Path = _var("SCORING_OUTPUT_DIR", Path("output"))
    batch_size: int = _var("SCORING_BATCH_SIZE", 1000, ge=1)
    replace_outputs: bool = _var("SCORING_REPLACE_OUTPUTS", True)
    #: the inference log (Parquet by date): unset = on with file outputs, off with Kafka outputs
    inference_log: bool | None = _var("SCORING_INFERENCE_LOG", None)
    #: its folder (default <SCORING_OUTPUT_DIR>/inference_log); it grows across runs
    inference_log_dir: Path | None = _var("SCORING_INFERENCE_LOG_DIR", None)
    #: false: a new run starts the flow's log afresh (as its other outputs); true: the log grows across runs
    inference_log_append: bool = _var("SCORING_INFERENCE_LOG_APPEND", False)
    #: a log file holds at most this many rows
    inference_log_max_rows: int = _var("SCORING_INFERENCE_LOG_MAX_ROWS", 100_000, ge=1)
    #: log rows wait at most this many seconds before they are written (and at every snapshot)
    inference_log_flush_s: float = _var("SCORING_INFERENCE_LOG_FLUSH_S", 10.0, gt=0.0)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)

    @property
    def log_enabled(self) -> bool:
        """Whether the flow writes the inference log (see ``SCORING_INFERENCE_LOG``)."""
        return self.output == "file" if self.inference_log is None else self.inference_log

    @property
    def log_dir(self) -> Path:
        return self.inference_log_dir or self.output_dir / "inference_log"

    @field_validator("input_path")
    @classmethod
    def _input_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        kinds = "a .jsonl, .json, .csv or .parquet file"
        if path is None:
            if info.data.get("source") == "file":
                raise PydanticCustomError("input", f"required with SCORING_SOURCE=file: {kinds}")
        elif path.suffix.lower() not in INPUT_SUFFIXES:
            raise PydanticCustomError("input", f"expected {kinds}")
        return path


# --- the flows ---------------------------------------------------------------------


class _FlowConfig(_Settings):
    """What every flow has: its I/O, log level, Feast repo, thresholds, detector shards."""

    io: IOConfig
    log_level: LogLevel = _var("SCORING_LOG_LEVEL", "INFO")
    feature_repo: Path = _var("SCORING_FEATURE_REPO", Path("feature_repo"))
    feature_store_yaml: str | None = _var("SCORING_FEATURE_STORE_YAML", None)
    critical: Share = _var("SCORING_CRITICAL_THRESHOLD", 0.8)
    warning: Share = _var("SCORING_WARNING_THRESHOLD", 0.5)
    lateness_s: float = _var("SCORING_ALLOWED_LATENESS_S", 600.0, ge=0.0)
    lookup_ttl_s: float = _var("SCORING_LOOKUP_TTL_S", 300.0, ge=0.0)
    lookup_timeout_s: float = _var("SCORING_LOOKUP_TIMEOUT_S", 1.0, gt=0.0)
    lookup_retry_s: float = _var("SCORING_LOOKUP_RETRY_S", 5.0, ge=0.0)
    lookup_failures: int = _var("SCORING_LOOKUP_FAILURES", 3, ge=1)
    shards: int = _var("SCORING_DETECTOR_SHARDS", 4, ge=1)
    #: event times more than this many seconds after their arrival are refused (dead letter)
    max_future_s: float = _var("SCORING_MAX_FUTURE_S", 86_400.0, ge=0.0)
    #: an event id seen again for the same key within this much event time is a duplicate (0: off)
    dedup_horizon_s: float = _var("SCORING_DEDUP_HORIZON_S", 3_600.0, ge=0.0)
    #: ... and among the key's last this many ids (0: off)
    dedup_max_ids: int = _var("SCORING_DEDUP_MAX_IDS", 256, ge=0)
    #: a key idle this long in event time is dropped and starts afresh (0: keep every key forever)
    idle_expiry_s: float = _var("SCORING_IDLE_EXPIRY_S", 30 * 86_400.0, ge=0.0)
    #: wall-clock seconds between a key's idle checks at most (expiry itself follows event time)
    idle_check_s: float = _var("SCORING_IDLE_CHECK_S", 3600.0, gt=0.0)
    #: write each key's latest streaming features to the Feast online store (customer_live / device_live)
    writeback: bool = _var("SCORING_WRITEBACK", False)
    #: at most one live row per key per this many seconds of event time (0: every batch)
    writeback_min_interval_s: float = _var("SCORING_WRITEBACK_MIN_INTERVAL_S", 0.0, ge=0.0)

    @field_validator("warning")
    @classmethod
    def _warning_not_above_critical(cls, warning: float, info: ValidationInfo) -> float:
        critical = info.data.get("critical")
        if critical is not None and warning > critical:
            raise PydanticCustomError(
                "thresholds", "must not be above SCORING_CRITICAL_THRESHOLD={critical}", {"critical": critical})
        return warning


class FraudConfig(_FlowConfig):
    """Configuration of ``dataflows.fraud`` (``SCORING_*``, ``KAFKA_*``).

    >>> cfg = FraudConfig.from_env({"SCORING_SOURCE": "kafka", "SCORING_CRITICAL_THRESHOLD": "0.9",
    ...                             "SCORING_LOG_LEVEL": "debug", "SCORING_SEED": ""})
    >>> cfg.io.source, cfg.io.kafka.input_topic, cfg.critical, cfg.log_level, cfg.io.seed
    ('kafka', 'transactions', 0.9, 'DEBUG', 42)
    >>> FraudConfig.from_env({"SCORING_WARNING_THRESHOLD": "0.9", "SCORING_DETECTOR_SHARDS": "0"})
    Traceback (most recent call last):
    ...
    dataflows.config.ConfigError: 2 bad settings: SCORING_WARNING_THRESHOLD='0.9': must not be above SCORING_CRITICAL_THRESHOLD=0.8; SCORING_DETECTOR_SHARDS='0': must be >= 1
    """

    _env_defaults: ClassVar[Mapping[str, str]] = {
        "SCORING_OUTPUT_DIR": "output/fraud",
        "SCORING_INPUT_TOPIC": "transactions",
        "SCORING_SCORED_TOPIC": "scored-transactions",
        "SCORING_ALERTS_TOPIC": "fraud-alerts",
        "SCORING_DEAD_LETTER_TOPIC": "transactions-dead-letter",
        "SCORING_KAFKA_GROUP": "streamscore-fraud",
    }

    feature_service: str = _var("SCORING_FEATURE_SERVICE", "fraud_scoring")
    model: str = _var("SCORING_MODEL", "fraud_model@production")
    model_registry: Path = _var("SCORING_MODEL_REGISTRY", Path("model_registry"))
    #: traffic split, e.g. ``fraud_model/3:90,fraud_model/4:10`` (default: the registry's routes, else SCORING_MODEL)
    model_routes: str = _var("SCORING_MODEL_ROUTES", "")
    #: shadow versions and the percent of customers they score, e.g. ``fraud_model@staging:10``
    model_shadow: str = _var("SCORING_MODEL_SHADOW", "")
    #: seconds between two looks at the registry for alias / route changes (0: never)
    model_poll_s: float = _var("SCORING_MODEL_POLL_S", 10.0, ge=0.0)
    anomaly_weight: Share = _var("SCORING_ANOMALY_WEIGHT", 0.4)
    explain: Explain = _var("SCORING_EXPLAIN", "alerts")
    #: drift of each model version's score stream (PageHinkley, rises): threshold (0: off), delta, warm-up
    score_drift_threshold: float = _var("SCORING_SCORE_DRIFT_THRESHOLD", 20.0, ge=0.0)
    score_drift_delta: float = _var("SCORING_SCORE_DRIFT_DELTA", 0.02, ge=0.0)
    score_drift_min_instances: int = _var("SCORING_SCORE_DRIFT_MIN_INSTANCES", 200, ge=1)
    #: amounts must be > this (exclusive) and <= SCORING_MAX_AMOUNT; others are dead letters
    min_amount: float = _var("SCORING_MIN_AMOUNT", 0.0, ge=0.0)
    max_amount: float = _var("SCORING_MAX_AMOUNT", 1e9, gt=0.0)

    @field_validator("model")
    @classmethod
    def _model_ref(cls, ref: str) -> str:
        from models.registry import RegistryError, canonical_ref

        try:
            return canonical_ref(ref)
        except RegistryError as exc:
            raise PydanticCustomError("model", str(exc)) from None

    @field_validator("model_routes", "model_shadow")
    @classmethod
    def _routes_spec(cls, spec: str, info: ValidationInfo) -> str:
        from models.registry import RegistryError, Routes

        if spec.strip():
            try:
                if info.field_name == "model_routes":
                    Routes.parse(spec)
                else:
                    Routes.parse("m/1", spec)
            except (RegistryError, ValueError) as exc:
                raise PydanticCustomError("routes", str(exc)) from None
        return spec.strip()

    @field_validator("max_amount")
    @classmethod
    def _max_above_min(cls, max_amount: float, info: ValidationInfo) -> float:
        low = info.data.get("min_amount")
        if low is not None and max_amount <= low:
            raise PydanticCustomError("amounts", "must be above SCORING_MIN_AMOUNT={low}", {"low": low})
        return max_amount


class IoTConfig(_FlowConfig):
    """Configuration of ``dataflows.iot``: which fields hold the key, the time and
    the sensors (``IOT_*``), the detector settings, and the statuses' thresholds;
    sources and sinks are the fraud flow's (``SCORING_*``, ``KAFKA_*``).

    >>> cfg = IoTConfig.from_env({"IOT_SENSOR_FIELDS": "t, rh", "IOT_WINDOWS_S": "60,600"})
    >>> cfg.sensors, cfg.windows_s, str(cfg.io.output_dir), cfg.io.kafka.input_topic
    (('t', 'rh'), (60.0, 600.0), 'output/iot', 'iot-readings')
    >>> IoTConfig.from_env({"IOT_SENSOR_FIELDS": "t,device_id", "IOT_WINDOWS_S": "5m"})
    Traceback (most recent call last):
    ...
    dataflows.config.ConfigError: 2 bad settings: IOT_SENSOR_FIELDS='t,device_id': 'device_id' is also IOT_KEY_FIELD or IOT_TIME_FIELD; IOT_WINDOWS_S='5m': expected comma-separated seconds
    """

    _env_defaults: ClassVar[Mapping[str, str]] = {
        "SCORING_OUTPUT_DIR": "output/iot",
        "SCORING_INPUT_TOPIC": "iot-readings",
        "SCORING_SCORED_TOPIC": "scored-readings",
        "SCORING_ALERTS_TOPIC": "iot-alerts",
        "SCORING_DEAD_LETTER_TOPIC": "iot-readings-dead-letter",
        "SCORING_KAFKA_GROUP": "streamscore-iot",
        "SCORING_IDLE_EXPIRY_S": str(7 * 86_400.0),
    }

    key_field: str = _var("IOT_KEY_FIELD", "device_id")
    time_field: str = _var("IOT_TIME_FIELD", "timestamp")
    sensors: Names = _var("IOT_SENSOR_FIELDS", ("temperature", "humidity", "pressure"))
    windows_s: Seconds = _var("IOT_WINDOWS_S", (300.0, 3600.0))
    devices: int = _var("IOT_GENERATOR_DEVICES", 50, ge=1)
    device_profile: bool = _var("IOT_DEVICE_PROFILE", True)

    @field_validator("sensors")
    @classmethod
    def _sensors_not_key_or_time(cls, sensors: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        clash = sorted({info.data.get("key_field", ""), info.data.get("time_field", "")} & set(sensors))
        if clash:
            raise PydanticCustomError("sensors", "{names} is also IOT_KEY_FIELD or IOT_TIME_FIELD",
                                      {"names": ", ".join(map(repr, clash))})
        return sensors


"""Typed configuration: a settings file by concern, environment variables over it,
defaults that run locally.

Every setting has ONE key in the settings file ``streamscore.toml`` (sections by
concern: ``[io]``, ``[kafka]``, ``[fraud]``, ``[fraud.topics]``, ``[iot]``,
``[iot.topics]``, ``[feast]``, ``[model]``, ``[state]``, ``[inference_log]``,
``[writeback]``, ``[serve]``, ``[log]``), ONE default (declared with the field,
below) and ONE systematic environment variable ``STREAMSCORE_<SECTION>__<KEY>``
that overrides the file (``fraud.topics.scored`` -> ``STREAMSCORE_FRAUD__TOPICS__SCORED``).
The few a deployment sets have short names too (:data:`SHORT_NAMES`:
``KAFKA_BOOTSTRAP_SERVERS``, ``STREAMSCORE_SOURCE``, ...); ``KAFKA_OPT_*`` are extra
librdkafka settings. The file is ``$STREAMSCORE_CONFIG``, else ``./streamscore.toml``
when it exists; no file means the defaults. An empty variable means "unset".

The Python objects keep the shape the flows use (``cfg.io.kafka.input_topic``,
``cfg.critical``); each field names its key (:func:`_key`). A key under
``{flow}`` (``{flow}.topics.input``, ``{flow}.critical``) is the running flow's:
``fraud.topics.input`` for the fraud flow and the endpoint, ``iot.topics.input``
for the IoT flow, each with its own default. ``{flow}`` in the value of
``io.output_dir`` and ``kafka.group`` is replaced by the flow's name.

Every problem is reported in ONE :class:`ConfigError`: each bad value named as it
was given (the variable, or the file's key), its value and what was expected;
every unknown key or variable with the project's prefixes (``STREAMSCORE_*`` and
the retired ``SCORING_*`` / ``IOT_*``), with a suggestion; every retired variable
with the key it became (:data:`settings.migration.RETIRED`).

>>> cfg = FraudConfig.from_env({"STREAMSCORE_IO__GENERATOR_EVENTS": "500"})
>>> cfg.io.source, cfg.io.generator_events, str(cfg.io.output_dir), cfg.log_level
('generator', 500, 'output/fraud', 'INFO')
>>> FraudConfig.from_env({"STREAMSCORE_SOURCE": "ftp"})
Traceback (most recent call last):
...
settings.config.ConfigError: STREAMSCORE_SOURCE='ftp': expected one of generator, file, kafka
>>> FraudConfig.from_env({"STREAMSCORE_SOURCE": "ftp", "STREAMSCORE_IO__BATCH_SIZE": "x"})
Traceback (most recent call last):
...
settings.config.ConfigError: 2 bad settings: STREAMSCORE_SOURCE='ftp': expected one of generator, file, kafka; STREAMSCORE_IO__BATCH_SIZE='x': expected an integer
>>> FraudConfig.from_env({"SCORING_CRITICIAL": "0.9"})
Traceback (most recent call last):
...
settings.config.ConfigError: SCORING_CRITICIAL: not a setting (SCORING_* variables are no longer read); did you mean SCORING_CRITICAL_THRESHOLD? It is now STREAMSCORE_FRAUD__CRITICAL (fraud.critical) or STREAMSCORE_IOT__CRITICAL (iot.critical)

This module imports nothing from the project at import time and nothing heavy (no
Bytewax, Kafka client, Feast or pandas), so reading a configuration is cheap.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Literal, Mapping, Self, Sequence

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from features.defaults import (
    DEDUP_HORIZON_S,
    DEDUP_MAX_IDS,
    IDLE_EXPIRY_S,
    IOT_IDLE_EXPIRY_S,
    LATENESS_S,
    MAX_AMOUNT,
    MIN_AMOUNT,
)
from settings.migration import RETIRED

__all__ = [
    "ConfigError",
    "Origin",
    "KafkaConfig",
    "IOConfig",
    "FraudConfig",
    "IoTConfig",
    "ServeConfig",
    "LOG_LEVELS",
    "SECTIONS",
    "SHORT_NAMES",
    "CONFIG_VAR",
    "DEFAULT_FILE",
    "parse_log_level",
    "env_name",
    "config_file",
    "setting",
]

#: the settings file: ``$STREAMSCORE_CONFIG``, else this file when it exists
CONFIG_VAR = "STREAMSCORE_CONFIG"
DEFAULT_FILE = Path("streamscore.toml")
#: prefix of every setting's systematic variable
PREFIX = "STREAMSCORE_"
#: variable prefixes no longer read: a variable with one is an error
RETIRED_PREFIXES = ("SCORING_", "IOT_")
#: ``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL`` -> librdkafka ``security.protocol``
KAFKA_OPT_PREFIX = "KAFKA_OPT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
INPUT_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
FLOWS = ("fraud", "iot")
_SECRET = "***"

#: The file's sections, in order, each with what it holds.
SECTIONS: dict[str, str] = {
    "io": "Where events come from and where results go (every flow).",
    "kafka": "The Kafka connection (io.source or io.output \"kafka\"). Extra librdkafka settings come from "
             "KAFKA_OPT_* variables: KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL -> security.protocol.",
    "fraud": "The fraud flow's policy (dataflows.fraud and the endpoint).",
    "registry": "The schema registry (Confluent API) of Avro and Protobuf topics (docs/schema-registry.md).",
    "fraud.topics": "The fraud flow's Kafka topics.",
    "fraud.formats": "The fraud flow's Kafka value formats: json, avro, protobuf (docs/schema-registry.md).",
    "iot": "The IoT flow's fields and policy (dataflows.iot).",
    "iot.topics": "The IoT flow's Kafka topics.",
    "iot.formats": "The IoT flow's Kafka value formats: json, avro, protobuf (docs/schema-registry.md).",
    "feast": "The Feast feature store and its lookups. A variable the store YAML names "
             "(${REDIS_CONNECTION_STRING}) is Feast's own.",
    "model": "The fraud model: registry reference, traffic routes, shadows (fraud flow and endpoint).",
    "state": "Per-key streaming state: lateness, bad times, duplicates, idle keys, detector shards.",
    "inference_log": "The inference log: every prediction, Parquet by date (docs/monitoring.md).",
    "writeback": "Each key's latest streaming features written back to Feast (customer_live / device_live).",
    "serve": "The scoring endpoint (streamscore serve).",
    "log": "Logging: one JSON object per line on stderr.",
}


class ConfigError(ValueError):
    """Configuration values that cannot be used: one line per problem.

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


def parse_log_level(value: str | None, name: str = "STREAMSCORE_LOG__LEVEL") -> str:
    """A log level name, upper-cased; empty or None means INFO.

    >>> parse_log_level("debug"), parse_log_level(None)
    ('DEBUG', 'INFO')
    >>> parse_log_level("loud")
    Traceback (most recent call last):
    ...
    settings.config.ConfigError: STREAMSCORE_LOG__LEVEL='loud': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL
    """
    level = (value or "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def env_name(key: str) -> str:
    """The systematic variable of a key.

    >>> env_name("fraud.topics.scored"), env_name("io.batch_size")
    ('STREAMSCORE_FRAUD__TOPICS__SCORED', 'STREAMSCORE_IO__BATCH_SIZE')
    """
    return PREFIX + key.upper().replace(".", "__")


# --- field types --------------------------------------------------------------


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _auto(value: Any) -> Any:
    """``"auto"`` (any case) -> None: the file's way to say "unset"."""
    return None if isinstance(value, str) and value.strip().lower() == "auto" else value


def _names(value: Any) -> Any:
    """``"a, b,c"`` or ``["a", "b", "c"]`` -> ``("a", "b", "c")``: distinct, non-empty names."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        return value  # pydantic reports the type
    names = tuple(s.strip() if isinstance(s, str) else s for s in names)
    if not all(names) or len(set(names)) != len(names):
        raise PydanticCustomError("names", "expected distinct, comma-separated names")
    return names


def _seconds(value: Any) -> Any:
    """``"300,3600"`` or ``[300, 3600]`` -> ``(300.0, 3600.0)``: each a number of seconds > 0."""
    if isinstance(value, str):
        parts: Any = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = value
    else:
        return value
    try:
        seconds = tuple(float(s) for s in parts if not isinstance(s, bool))
    except (TypeError, ValueError):
        raise PydanticCustomError("seconds", "expected comma-separated seconds") from None
    if len(seconds) != len(parts):
        raise PydanticCustomError("seconds", "expected comma-separated seconds")
    if any(not s > 0 or s == float("inf") for s in seconds):
        raise PydanticCustomError("seconds", "expected comma-separated seconds, each > 0")
    return seconds


# choices are matched case-insensitively
Source = Annotated[Literal["generator", "file", "kafka"], BeforeValidator(_lower)]
Output = Annotated[Literal["file", "kafka"], BeforeValidator(_lower)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]
KafkaStart = Annotated[Literal["earliest", "latest", "committed"], BeforeValidator(_lower)]
InputFormat = Annotated[Literal["json", "avro", "protobuf"], BeforeValidator(_lower)]
OutputFormat = Annotated[Literal["json", "avro"], BeforeValidator(_lower)]
SubjectStrategy = Annotated[Literal["topic", "record", "topic_record"], BeforeValidator(_lower)]
Explain = Annotated[Literal["alerts", "critical", "none"], BeforeValidator(_lower)]
ExplainMethod = Annotated[Literal["paths", "treeshap"], BeforeValidator(_lower)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Seconds = Annotated[tuple[float, ...], BeforeValidator(_seconds)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Auto = Annotated[bool | None, BeforeValidator(_auto)]

_NO = object()


def _key(key: str, default: Any, doc: str, *, env: str | None = None, iot: Any = _NO, **kwargs: Any) -> Any:
    """A field read from the settings file's ``key`` (``section.name``; ``{flow}.name``:
    the running flow's section), its systematic variable, and ``env`` when given
    (a short name). ``iot``: the IoT flow's own default of a ``{flow}`` key."""
    extra: dict[str, Any] = {"key": key}
    if env:
        extra["env"] = env
    if iot is not _NO:
        extra["iot"] = iot
    return Field(default, description=doc, json_schema_extra=extra, **kwargs)


def _flow_of(info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, Mapping) else {}
    return str(context.get("flow") or "fraud")


# --- where a value came from ----------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from: ``kind`` is ``default``, ``file`` (``where``:
    its path) or ``environment`` (``where``: the variable); ``key`` is the setting's."""

    key: str
    kind: Literal["default", "file", "environment"] = "default"
    where: str = ""

    @property
    def name(self) -> str:
        """The setting as the user gave it: the variable, else the key."""
        return self.where if self.kind == "environment" else self.key

    def __str__(self) -> str:
        return self.kind if self.kind == "default" else f"{self.kind} ({self.where})"


@dataclass(frozen=True)
class Leaf:
    """One setting of a configuration class: its attribute path (``("io", "kafka",
    "input_topic")``), its field and its key for the flow."""

    path: tuple[str, ...]
    field: FieldInfo
    key: str
    flow: str

    @property
    def extra(self) -> dict[str, Any]:
        return self.field.json_schema_extra if isinstance(self.field.json_schema_extra, dict) else {}

    @property
    def short(self) -> str | None:
        return self.extra.get("env")

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables that set it: the short name first, then the systematic one."""
        return tuple(v for v in (self.short, env_name(self.key)) if v)

    @property
    def default(self) -> Any:
        """The default for this flow (an unset optional: None)."""
        if self.flow in self.extra:
            return self.extra[self.flow]
        return self.field.get_default(call_default_factory=True)

    @property
    def secret(self) -> bool:
        return self.field.annotation is SecretStr


def _nested(field: FieldInfo) -> type[_Settings] | None:
    """The settings class of a nested config field (``io``, ``kafka``, ``fraud``), else None."""
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, _Settings) else None


def leaves(cls: type[_Settings], flow: str | None = None, path: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every setting of ``cls`` (nested configs included), in declaration order."""
    flow = flow or cls._flow
    for name, field in cls.model_fields.items():
        nested = _nested(field)
        if nested is not None:
            yield from leaves(nested, flow, (*path, name))
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "key" in extra:
            yield Leaf((*path, name), field, str(extra["key"]).replace("{flow}", flow), flow)


@cache
def all_leaves() -> dict[str, Leaf]:
    """Every key of every configuration (both flows and the endpoint), in section order."""
    found: dict[str, Leaf] = {}
    for cls in (FraudConfig, IoTConfig, ServeConfig):
        for leaf in leaves(cls):
            found.setdefault(leaf.key, leaf)
    order = list(SECTIONS)
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[0].rsplit(".", 1)[0])))


@cache
def _variables() -> dict[str, str]:
    """Every variable a setting reads -> its key."""
    return {var: leaf.key for leaf in all_leaves().values() for var in leaf.variables}


def _short_names() -> dict[str, str]:
    return {leaf.short: key for key, leaf in all_leaves().items() if leaf.short}


# --- reading the file and the environment -----------------------------------------


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file: ``$STREAMSCORE_CONFIG``, else ``./streamscore.toml`` when it
    exists, else None (the defaults)."""
    env = os.environ if environ is None else environ
    name = (env.get(CONFIG_VAR) or "").strip()
    if name:
        return Path(name)
    return DEFAULT_FILE if DEFAULT_FILE.is_file() else None


def _clean(environ: Mapping[str, str]) -> dict[str, str]:
    """The non-empty variables of ``environ``, values stripped (``KAFKA_OPT_*`` values
    are kept as given: they may be secrets)."""
    env = {}
    for key, value in environ.items():
        if key.startswith(KAFKA_OPT_PREFIX):
            if value != "":
                env[key] = value
        elif value.strip():
            env[key] = value.strip()
    return env


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


def _suggest(name: str, known: Sequence[str], prefix: str = "") -> str | None:
    """The closest of ``known`` to ``name``, if close enough; names with ``prefix`` are
    compared without it (a shared prefix says nothing)."""
    if prefix:
        rest = {k[len(prefix):]: k for k in known if k.startswith(prefix)}
        found = difflib.get_close_matches(name[len(prefix):], list(rest), n=1, cutoff=0.5)
        return rest[found[0]] if found else None
    found = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return found[0] if found else None


def _new_names(keys: Sequence[str]) -> str:
    """``STREAMSCORE_FRAUD__CRITICAL (fraud.critical) or ...`` for the keys an old variable became."""
    leaves_ = all_leaves()
    return " or ".join(f"{leaves_[k].variables[0]} ({k})" for k in keys)


class _Sources:
    """The file's values and the environment's variables, with the problems found
    reading them (a bad or missing file, unknown keys and variables)."""

    def __init__(self, environ: Mapping[str, str] | None, check: bool = True) -> None:
        self.env = _clean(os.environ if environ is None else environ)
        self.problems: list[str] = []
        self.file = config_file(self.env)
        self.values: dict[str, Any] = {}
        if self.file is not None:
            self._read_file(self.file)
        if check:
            self._check_variables()

    def _read_file(self, path: Path) -> None:
        if not path.is_file():
            self.problems.append(f"{CONFIG_VAR}={str(path)!r}: no such file")
            return
        try:
            doc = TomlConfigSettingsSource(_FileSettings, toml_file=path).toml_data
        except tomllib.TOMLDecodeError as exc:
            self.problems.append(f"{path}: not a valid TOML file ({exc})")
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})")
            return
        self._flatten(doc, "")

    def _flatten(self, table: Mapping[str, Any], prefix: str) -> None:
        known = all_leaves()
        for name, value in table.items():
            key = prefix + name
            if isinstance(value, dict) and key in SECTIONS:
                self._flatten(value, key + ".")
            elif key in known and not isinstance(value, dict):
                if not (isinstance(value, str) and not value.strip()):  # empty: unset, as a variable
                    self.values[key] = value
            elif key in SECTIONS:
                self.problems.append(f"{key} ({self.file}): expected a section [{key}], not a value")
            elif isinstance(value, dict):
                best = _suggest(key, list(SECTIONS))
                hint = f"; did you mean [{best}]?" if best else f" (sections: {', '.join(SECTIONS)})"
                self.problems.append(f"[{key}] ({self.file}): not a section{hint}")
            else:  # a known name in another section (misplaced), else the closest key
                same = [k for k in known if k.rsplit(".", 1)[-1] == name]
                best = same[0] if same else _suggest(key, list(known))
                hint = f"; did you mean {best}?" if best else " (see `streamscore config --reference`)"
                self.problems.append(f"{key} ({self.file}): not a setting{hint}")

    def _check_variables(self) -> None:
        known = _variables()
        for name in self.env:
            if name in known or name == CONFIG_VAR:
                continue
            if name in RETIRED:
                self.problems.append(f"{name}: no longer read; it is now {_new_names(RETIRED[name])}")
            elif name.startswith(PREFIX):
                best = _suggest(name, [*known, CONFIG_VAR], PREFIX)
                hint = f"; did you mean {best}?" if best else " (see `streamscore config --reference`)"
                self.problems.append(f"{name}: not a setting{hint}")
            elif name.startswith(RETIRED_PREFIXES):
                prefix = next(p for p in RETIRED_PREFIXES if name.startswith(p))
                best = _suggest(name, [r for r in RETIRED if r.startswith(prefix)], prefix)
                hint = (f"; did you mean {best}? It is now {_new_names(RETIRED[best])}" if best
                        else " (see the migration table in docs/configuration.md)")
                self.problems.append(f"{name}: not a setting ({prefix}* variables are no longer read){hint}")

    def value(self, leaf: Leaf) -> tuple[Any, Origin]:
        """The value of ``leaf`` and where it came from: a variable, else the file, else
        ``(_NO, default)``. Its short name and systematic variable must agree."""
        given = [(var, self.env[var]) for var in leaf.variables if var in self.env]
        if len({v for _, v in given}) > 1:
            shown = " and ".join(f"{var}={_SECRET if leaf.secret else v!r}" for var, v in given)
            self.problems.append(f"{shown}: two values for {leaf.key}; set one of them")
        if given:
            return given[0][1], Origin(leaf.key, "environment", given[0][0])
        if leaf.key in self.values:
            return self.values[leaf.key], Origin(leaf.key, "file", str(self.file))
        if leaf.flow in leaf.extra:
            return leaf.extra[leaf.flow], Origin(leaf.key)
        return _NO, Origin(leaf.key)

    def data(self, cls: type[_Settings], flow: str) -> tuple[dict[str, Any], dict[tuple[str, ...], Origin]]:
        """The nested arguments of ``cls`` (by field name) and the origin of each setting."""
        data: dict[str, Any] = {}
        origins: dict[tuple[str, ...], Origin] = {}
        for leaf in leaves(cls, flow):
            value, origin = self.value(leaf)
            origins[leaf.path] = origin
            if value is not _NO:
                _put(data, leaf.path, value)
        for path in _kafka_paths(cls):
            _put(data, (*path, "options"), kafka_options(self.env))
        return data, origins


class _FileSettings(BaseSettings):
    """What pydantic-settings' TOML source needs to read a file (the document is
    then matched to the keys here)."""

    model_config = SettingsConfigDict(extra="ignore")


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def _kafka_paths(cls: type[_Settings], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Attribute paths of the :class:`KafkaConfig` objects in ``cls`` (``("io", "kafka")``)."""
    if issubclass(cls, KafkaConfig):
        yield path
    for name, field in cls.model_fields.items():
        nested = _nested(field)
        if nested is not None:
            yield from _kafka_paths(nested, (*path, name))


def setting(key: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting's value as given (a variable's text, the file's value, else the
    default), unvalidated: for a command's default that needs nothing else. A key
    under a flow is the fraud flow's (``fraud.topics.input``).

    >>> setting("model.registry", {}), setting("log.level", {"STREAMSCORE_LOG__LEVEL": "debug"})
    (PosixPath('model_registry'), 'debug')
    """
    leaf = all_leaves()[key]
    src = _Sources(environ, check=False)
    value, _ = src.value(leaf)
    if src.problems:
        raise ConfigError(src.problems)
    return leaf.default if value is _NO else value


# --- errors ---------------------------------------------------------------------------


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "path_type": "expected a path",
    "tuple_type": "expected a list",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
}


def _problems(exc: ValidationError, origins: Mapping[tuple[str, ...], Origin], src: _Sources) -> list[str]:
    """One line per error: ``NAME='value': what was expected``, NAME the variable or the
    file's key the value came from (a default: the key and its variable); secrets are
    never shown."""
    problems = []
    by_path = {path: origin for path, origin in origins.items()}
    for err in exc.errors(include_url=False, include_input=False):
        path = tuple(p for p in err["loc"] if isinstance(p, str))
        while path and path not in by_path:  # an error inside a value (a list item)
            path = path[:-1]
        origin = by_path.get(path)
        if err["type"] == "literal_error":  # ctx: "'file' or 'kafka'"
            expected = "expected one of " + ", ".join(re.findall(r"'([^']*)'", err["ctx"]["expected"]))
        else:
            template = _EXPECTED.get(err["type"])
            expected = template.format(**err.get("ctx", {})) if template else err["msg"]
        if origin is None:
            problems.append(f"{'.'.join(path) or 'configuration'}: {expected}")
            continue
        secret = _is_secret_leaf(origin.key)
        if origin.kind == "environment":
            value = _SECRET if secret else src.env.get(origin.where)
            problems.append(f"{origin.where}={value!r}: {expected}")
        elif origin.kind == "file":
            value = _SECRET if secret else src.values.get(origin.key)
            problems.append(f"{origin.key}={value!r} ({origin.where}): {expected}")
        else:
            problems.append(f"{origin.key} ({all_leaves()[origin.key].variables[0]}): {expected}")
    return problems


def _is_secret_leaf(key: str) -> bool:
    leaf = all_leaves().get(key)
    return leaf is not None and leaf.secret


# --- the settings classes ------------------------------------------------------------


class _Settings(BaseModel):
    """Frozen settings whose fields name their keys. Constructing one directly uses
    only the arguments (tests, tools); :meth:`from_env` reads the file and the
    environment. (A plain pydantic model: the validation context, which carries the
    flow, reaches the nested configs.)"""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
        validate_default=True,  # defaults meet the cross-checks too (iot.key_field vs the sensors)
        hide_input_in_errors=True,  # a raw ValidationError never shows values either
    )

    #: the flow whose ``{flow}`` keys a class reads by default
    _flow: ClassVar[str] = "fraud"
    #: where each field's value came from (filled by :meth:`from_env`)
    _origins: dict[str, Origin] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, flow: str | None = None) -> Self:
        """Read the settings file and ``environ`` (default ``os.environ``; a mapping:
        ``os.environ`` is not read) for ``flow`` (default: the class's); raises
        :class:`ConfigError` listing every problem."""
        flow = flow or cls._flow
        src = _Sources(environ)
        data, origins = src.data(cls, flow)
        problems = list(src.problems)
        try:
            cfg = cls.model_validate(data, context={"flow": flow})
        except ValidationError as exc:
            raise ConfigError([*problems, *_problems(exc, origins, src)]) from None
        if problems:
            raise ConfigError(problems)
        for path, origin in origins.items():
            owner: Any = cfg
            for part in path[:-1]:
                owner = getattr(owner, part)
            owner._origins[path[-1]] = origin
        return cfg

    def origin(self, field: str) -> Origin:
        """Where ``field``'s value came from (directly constructed: its default)."""
        found = self._origins.get(field)
        if found is not None:
            return found
        extra = type(self).model_fields[field].json_schema_extra
        key = extra.get("key", field) if isinstance(extra, dict) else field
        return Origin(str(key).replace("{flow}", self._flow))

    def name_of(self, field: str) -> str:
        """The setting ``field`` as the user gave it, for messages: the variable that set
        it, else its key (``io.output_dir``)."""
        return self.origin(field).name

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
    """Kafka connection and the flow's topics (``io.source`` / ``io.output`` = ``kafka``).

    ``options`` are extra librdkafka settings from ``KAFKA_OPT_*``; their values may
    be secrets and never appear in ``repr``, ``str``, :meth:`describe` or errors.

    >>> k = KafkaConfig.from_env({"KAFKA_OPT_SASL_PASSWORD": "hunter2", "STREAMSCORE_KAFKA__TAIL": "false"})
    >>> k.options, k.redacted_options(), k.tail, k.group
    ({'sasl.password': 'hunter2'}, {'sasl.password': '***'}, False, 'streamscore-fraud')
    >>> "hunter2" in repr(k) + str(k) + str(k.describe())
    False
    >>> KafkaConfig.from_env({}, flow="iot").input_topic
    'iot-readings'
    """

    bootstrap_servers: str = _key("kafka.bootstrap_servers", "localhost:9092",
                                  "Kafka brokers, comma-separated host:port", env="KAFKA_BOOTSTRAP_SERVERS")
    input_topic: str = _key("{flow}.topics.input", "transactions", "the input topic",
                            env="STREAMSCORE_INPUT_TOPIC", iot="iot-readings")
    scored_topic: str = _key("{flow}.topics.scored", "scored-transactions", "every scored record",
                             env="STREAMSCORE_SCORED_TOPIC", iot="scored-readings")
    alerts_topic: str = _key("{flow}.topics.alerts", "fraud-alerts", "the non-NORMAL records and drift records",
                             env="STREAMSCORE_ALERTS_TOPIC", iot="iot-alerts")
    dead_letter_topic: str = _key("{flow}.topics.dead_letter", "transactions-dead-letter",
                                  "refused input, each with its reason", env="STREAMSCORE_DEAD_LETTER_TOPIC",
                                  iot="iot-readings-dead-letter")
    tail: bool = _key("kafka.tail", True,
                      "true: keep reading; false: stop at the end of the topic (backfills)")
    start: KafkaStart = _key("kafka.start", "earliest",
                             "where a run starts reading when recovery has no offsets: earliest, latest or "
                             "committed (the consumer group's offsets; the beginning of partitions it never read)")
    group: str = _key("kafka.group", "streamscore-{flow}",
                      "consumer group whose offsets `committed` uses, and that the flow commits its "
                      "offsets to at every snapshot (for lag tools); {flow} is the flow's name",
                      validate_default=True)
    check_timeout_s: float = _key("kafka.check_timeout_s", 10.0,
                                  "how long the start-up broker check waits, seconds", ge=0.1)
    input_format: InputFormat = _key("{flow}.formats.input", "json",
                                     "the input topic's values: json, avro or protobuf (Confluent framing: "
                                     "magic byte + schema id; needs registry.url)", env="STREAMSCORE_INPUT_FORMAT")
    output_format: OutputFormat = _key("{flow}.formats.output", "json",
                                       "the scored, alerts and dead-letter topics' values: json or avro "
                                       "(schemas registered at start; needs registry.url)",
                                       env="STREAMSCORE_OUTPUT_FORMAT")
    registry_url: str = _key("registry.url", "",
                             "schema registry (Confluent API; Apicurio: .../apis/ccompat/v7) for avro and protobuf",
                             env="SCHEMA_REGISTRY_URL", validate_default=True)
    registry_auth: SecretStr = _key("registry.auth", SecretStr(""), "HTTP basic auth of the registry, user:password",
                                    env="SCHEMA_REGISTRY_AUTH")
    subject_strategy: SubjectStrategy = _key("registry.subject_strategy", "topic",
                                             "subject of a topic's values: topic (<topic>-value), record "
                                             "(<record name>) or topic_record (<topic>-<record name>)")
    registry_timeout_s: float = _key("registry.timeout_s", 2.0,
                                     "a registry request (start checks, an uncached schema id) waits at most this, "
                                     "seconds", gt=0.0)
    registry_failures: int = _key("registry.failures", 3,
                                  "after this many lookups in a row found the registry down, ...", ge=1)
    registry_retry_s: float = _key("registry.retry_s", 5.0,
                                   "... uncached schema ids are dead letters at once for this long, seconds", ge=0.0)
    #: extra librdkafka settings from ``KAFKA_OPT_*`` (may hold secrets: never log values)
    options: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    @field_validator("group")
    @classmethod
    def _flow_name(cls, value: str, info: ValidationInfo) -> str:
        return value.replace("{flow}", _flow_of(info))

    @field_validator("registry_url")
    @classmethod
    def _registry_needed(cls, url: str, info: ValidationInfo) -> str:
        url = url.strip().rstrip("/")
        wire = [f for f in ("input_format", "output_format") if info.data.get(f, "json") != "json"]
        if wire and not url:
            raise PydanticCustomError("registry", "required when the {what} format is avro or protobuf",
                                      {"what": " and ".join(w.split("_")[0] for w in wire)})
        return url

    @property
    def uses_registry(self) -> bool:
        """Whether the input or the outputs are Avro or Protobuf."""
        return self.input_format != "json" or self.output_format != "json"

    def redacted_options(self) -> dict[str, str]:
        """Option names with values hidden, for logs."""
        return {k: _SECRET for k in self.options}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.redacted_options()}


class IOConfig(_Settings):
    """Where events come from and where results go; shared by every dataflow.

    ``replace_outputs`` (default true): a run truncates the output files an earlier
    run left in its folder; false: a folder holding output files is refused.

    >>> IOConfig.from_env({"STREAMSCORE_SOURCE": "File", "STREAMSCORE_INPUT": "events.csv"}).source
    'file'
    >>> IOConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_IO__REPLACE_OUTPUTS": "maybe"})
    Traceback (most recent call last):
    ...
    settings.config.ConfigError: 2 bad settings: io.input (STREAMSCORE_INPUT): required with io.source=file: a .jsonl, .json, .csv or .parquet file; STREAMSCORE_IO__REPLACE_OUTPUTS='maybe': expected true or false
    """

    source: Source = _key("io.source", "generator", "generator, file or kafka", env="STREAMSCORE_SOURCE")
    input_path: Path | None = _key("io.input", None, "input file for source `file`: .jsonl, .json, .csv or .parquet",
                                   env="STREAMSCORE_INPUT", validate_default=True)
    generator_events: int = _key("io.generator_events", 20_000, "number of generated events", ge=0)
    seed: int = _key("io.generator_seed", 42, "seed of the generated stream (the world is the demo's, seed 42)")
    bad_rate: Share = _key("io.generator_bad_rate", 0.002,
                           "share of generated events made malformed (shows the dead letter)")
    output: Output = _key("io.output", "file", "file or kafka", env="STREAMSCORE_OUTPUT")
    output_dir: Path = _key("io.output_dir", Path("output/{flow}"),
                            "folder of scored.jsonl, alerts.jsonl, dead_letter.jsonl; {flow} is the flow's name",
                            validate_default=True)
    batch_size: int = _key("io.batch_size", 1000, "source batch size (files, generator, Kafka)", ge=1)
    replace_outputs: bool = _key("io.replace_outputs", True,
                                 "true: a run rewrites the output files in its folder; false: refuse a folder "
                                 "holding another run's outputs")
    #: the inference log (Parquet by date): unset = on with file outputs, off with Kafka outputs
    inference_log: Auto = _key("inference_log.enabled", None,
                               "true, false or \"auto\" (unset): on with file outputs, off with Kafka outputs")
    #: its folder (default <output_dir>/inference_log); it grows across runs
    inference_log_dir: Path | None = _key("inference_log.dir", None,
                                          "its folder (unset: <io.output_dir>/inference_log)")
    #: false: a new run starts the flow's log afresh (as its other outputs); true: the log grows across runs
    inference_log_append: bool = _key("inference_log.append", False,
                                      "true: the log grows across runs; false: a new run starts it afresh, "
                                      "like the other outputs")
    #: a log file holds at most this many rows
    inference_log_max_rows: int = _key("inference_log.max_rows", 100_000, "rows per Parquet file at most", ge=1)
    #: log rows wait at most this many seconds before they are written (and at every snapshot)
    inference_log_flush_s: float = _key("inference_log.flush_s", 10.0,
                                        "seconds a row waits at most before it is written", gt=0.0)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)

    @property
    def log_enabled(self) -> bool:
        """Whether the flow writes the inference log (see ``inference_log.enabled``)."""
        return self.output == "file" if self.inference_log is None else self.inference_log

    @property
    def log_dir(self) -> Path:
        return self.inference_log_dir or self.output_dir / "inference_log"

    @field_validator("output_dir")
    @classmethod
    def _flow_folder(cls, path: Path, info: ValidationInfo) -> Path:
        return Path(str(path).replace("{flow}", _flow_of(info))) if "{flow}" in str(path) else path

    @field_validator("input_path")
    @classmethod
    def _input_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        kinds = "a .jsonl, .json, .csv or .parquet file"
        if path is None:
            if info.data.get("source") == "file":
                raise PydanticCustomError("input", f"required with io.source=file: {kinds}")
        elif path.suffix.lower() not in INPUT_SUFFIXES:
            raise PydanticCustomError("input", f"expected {kinds}")
        return path


# --- the flows ---------------------------------------------------------------------


class _FlowConfig(_Settings):
    """What every flow has: its I/O, log level, Feast repo, thresholds, state."""

    io: IOConfig
    log_level: LogLevel = _key("log.level", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL")
    feature_repo: Path = _key("feast.repo", Path("feature_repo"), "the Feast repo folder")
    feature_store_yaml: str | None = _key("feast.store_yaml", None,
                                          "another store configuration in the repo, e.g. feature_store.redis.yaml "
                                          "(unset: feature_store.yaml)", env="STREAMSCORE_FEATURE_STORE_YAML")
    critical: Share = _key("{flow}.critical", 0.8,
                           "status CRITICAL above this score (fraud: risk_score; IoT: anomaly_score)")
    warning: Share = _key("{flow}.warning", 0.5, "status WARNING above this score (at most critical)")
    lateness_s: float = _key("state.lateness_s", LATENESS_S, "out-of-order tolerance of the streaming features, seconds",
                             ge=0.0)
    lookup_ttl_s: float = _key("feast.lookup_ttl_s", 300.0, "lookup cache time-to-live, seconds", ge=0.0)
    lookup_timeout_s: float = _key("feast.lookup_timeout_s", 1.0,
                                   "a Feast lookup is given up after this many seconds; the batch is scored with "
                                   "defaults (feature_fallback: true)", gt=0.0)
    lookup_retry_s: float = _key("feast.lookup_retry_s", 5.0,
                                 "an open circuit breaker asks the store again after this many seconds", ge=0.0)
    lookup_failures: int = _key("feast.lookup_failures", 3,
                                "the circuit breaker opens after this many failures in a row (or one timeout)", ge=1)
    shards: int = _key("state.detector_shards", 4,
                       "shards of the shared anomaly detector (raised to a multiple of the run's worker count)", ge=1)
    #: event times more than this many seconds after their arrival are refused (dead letter)
    max_future_s: float = _key("state.max_future_s", 86_400.0,
                               "an event time may be at most this many seconds after its arrival (else: dead letter)",
                               ge=0.0)
    #: an event id seen again for the same key within this much event time is a duplicate (0: off)
    dedup_horizon_s: float = _key("state.dedup_horizon_s", DEDUP_HORIZON_S,
                                  "an id seen again for the same key within this much event time is a duplicate "
                                  "(dead letter step dedup); 0: off", ge=0.0)
    #: ... and among the key's last this many ids (0: off)
    dedup_max_ids: int = _key("state.dedup_max_ids", DEDUP_MAX_IDS, "... and among the key's last this many ids; 0: off", ge=0)
    #: a key idle this long in event time is dropped and starts afresh (0: keep every key forever)
    idle_expiry_s: float = _key("{flow}.idle_expiry_s", IDLE_EXPIRY_S,
                                "a key idle this long in event time is dropped and starts afresh; 0: never",
                                iot=IOT_IDLE_EXPIRY_S, ge=0.0)
    #: wall-clock seconds between a key's idle checks at most (expiry itself follows event time)
    idle_check_s: float = _key("state.idle_check_s", 3600.0,
                               "wall-clock seconds between a key's idle checks at most", gt=0.0)
    #: after start-up, move every object alive to the permanent GC generation (dataflows/gcwatch.py)
    gc_freeze: bool = _key("state.gc_freeze", True,
                           "freeze the objects alive after start-up (model, Feast client, modules) out of the "
                           "garbage collector's full collections (docs/benchmarks.md)")
    #: write each key's latest streaming features to the Feast online store (customer_live / device_live)
    writeback: bool = _key("writeback.enabled", False,
                           "write each key's latest streaming features to Feast (docs/endpoint.md)")
    #: at most one live row per key per this many seconds of event time (0: every batch)
    writeback_min_interval_s: float = _key("writeback.min_interval_s", 0.0,
                                           "at most one write per key per this much event time; 0: every batch",
                                           ge=0.0)

    @field_validator("warning")
    @classmethod
    def _warning_not_above_critical(cls, warning: float, info: ValidationInfo) -> float:
        critical = info.data.get("critical")
        if critical is not None and warning > critical:
            raise PydanticCustomError("thresholds", "must not be above {key}={critical}",
                                      {"key": f"{_flow_of(info)}.critical", "critical": critical})
        return warning


class FraudConfig(_FlowConfig):
    """Configuration of ``dataflows.fraud``.

    >>> cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_FRAUD__CRITICAL": "0.9",
    ...                             "STREAMSCORE_LOG__LEVEL": "debug", "STREAMSCORE_IO__GENERATOR_SEED": ""})
    >>> cfg.io.source, cfg.io.kafka.input_topic, cfg.critical, cfg.log_level, cfg.io.seed
    ('kafka', 'transactions', 0.9, 'DEBUG', 42)
    >>> FraudConfig.from_env({"STREAMSCORE_FRAUD__WARNING": "0.9", "STREAMSCORE_STATE__DETECTOR_SHARDS": "0"})
    Traceback (most recent call last):
    ...
    settings.config.ConfigError: 2 bad settings: STREAMSCORE_FRAUD__WARNING='0.9': must not be above fraud.critical=0.8; STREAMSCORE_STATE__DETECTOR_SHARDS='0': must be >= 1
    """

    _flow: ClassVar[str] = "fraud"

    feature_service: str = _key("feast.fraud_service", "fraud_scoring",
                                "the fraud flow's feature service (profile and merchant views)")
    model: str = _key("model.ref", "fraud_model@production", "registry reference: name@alias, name/version or name")
    model_registry: Path = _key("model.registry", Path("model_registry"), "the registry folder")
    #: traffic split, e.g. ``fraud_model/3:90,fraud_model/4:10`` (default: the registry's routes, else model.ref)
    model_routes: str = _key("model.routes", "",
                             "traffic split, e.g. fraud_model/3:90,fraud_model/4:10 (empty: the registry's routes, "
                             "else model.ref)")
    #: shadow versions and the percent of customers they score, e.g. ``fraud_model@staging:10``
    model_shadow: str = _key("model.shadow", "",
                             "shadow versions and the percent of customers each scores, e.g. fraud_model@candidate:10")
    #: seconds between two looks at the registry for alias / route changes (0: never)
    model_poll_s: float = _key("model.poll_s", 10.0,
                               "seconds between two looks at the registry for alias and route changes; 0: never",
                               ge=0.0)
    anomaly_weight: Share = _key("fraud.anomaly_weight", 0.4, "weight of anomaly_score in risk_score")
    explain: Explain = _key("fraud.explain", "alerts",
                            "which alerts get the model's top features in reasons: alerts, critical or none")
    explain_method: ExplainMethod = _key("fraud.explain_method", "paths",
                                         "how top features are found: paths (path contributions, O(depth) per "
                                         "tree for a whole batch at once) or treeshap (exact, about 20x the cost)")
    explain_budget: int = _key("fraud.explain_budget", 64,
                               "at most this many alerts of one batch get top features, CRITICAL first; the "
                               "others carry reasons_skipped (an alert storm cannot stall scoring)", ge=0)
    #: drift of each model version's score stream (PageHinkley, rises): threshold (0: off), delta, warm-up
    score_drift_threshold: float = _key("fraud.score_drift_threshold", 20.0,
                                        "streaming drift test (PageHinkley) on each model version's scores: "
                                        "threshold; 0: off", ge=0.0)
    score_drift_delta: float = _key("fraud.score_drift_delta", 0.02, "... its delta", ge=0.0)
    score_drift_min_instances: int = _key("fraud.score_drift_min_instances", 200, "... its warm-up, in scores",
                                          ge=1)
    #: amounts must be > this (exclusive) and <= max_amount; others are dead letters
    min_amount: float = _key("fraud.min_amount", MIN_AMOUNT, "amounts must be above this (else: dead letter)", ge=0.0)
    max_amount: float = _key("fraud.max_amount", MAX_AMOUNT, "... and at most this", gt=0.0)

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
            raise PydanticCustomError("amounts", "must be above fraud.min_amount={low}", {"low": low})
        return max_amount


class IoTConfig(_FlowConfig):
    """Configuration of ``dataflows.iot``: which fields hold the key, the time and the
    sensors, the detector settings and the statuses' thresholds (``[iot]``); sources,
    sinks, Feast and state are the fraud flow's sections, the topics ``[iot.topics]``.

    >>> cfg = IoTConfig.from_env({"STREAMSCORE_IOT__SENSOR_FIELDS": "t, rh", "STREAMSCORE_IOT__WINDOWS_S": "60,600"})
    >>> cfg.sensors, cfg.windows_s, str(cfg.io.output_dir), cfg.io.kafka.input_topic
    (('t', 'rh'), (60.0, 600.0), 'output/iot', 'iot-readings')
    >>> IoTConfig.from_env({"STREAMSCORE_IOT__SENSOR_FIELDS": "t,device_id", "STREAMSCORE_IOT__WINDOWS_S": "5m"})
    Traceback (most recent call last):
    ...
    settings.config.ConfigError: 2 bad settings: STREAMSCORE_IOT__SENSOR_FIELDS='t,device_id': 'device_id' is also iot.key_field or iot.time_field; STREAMSCORE_IOT__WINDOWS_S='5m': expected comma-separated seconds
    """

    _flow: ClassVar[str] = "iot"

    key_field: str = _key("iot.key_field", "device_id", "the field holding the device id")
    time_field: str = _key("iot.time_field", "timestamp", "the field holding the event time (ISO-8601 or epoch seconds)")
    sensors: Names = _key("iot.sensor_fields", ("temperature", "humidity", "pressure"),
                          "the numeric sensor fields (a list, or comma-separated)")
    windows_s: Seconds = _key("iot.windows_s", (300.0, 3600.0),
                              "event-time windows of the rolling statistics, seconds (a list, or comma-separated)")
    field_check_events: int = _key("iot.field_check_events", 1000,
                                   "a configured key, time or sensor field absent from all of the first this many "
                                   "events is logged (configured_field_absent, once per field); 0: no check",
                                   ge=0)
    devices: int = _key("iot.generator_devices", 50, "devices of the generated stream", ge=1)
    device_profile: bool = _key("iot.device_profile", True,
                                "add Feast device_profile features (feature service iot_scoring)")

    @field_validator("sensors")
    @classmethod
    def _sensors_not_key_or_time(cls, sensors: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        clash = sorted({info.data.get("key_field", ""), info.data.get("time_field", "")} & set(sensors))
        if clash:
            raise PydanticCustomError("sensors", "{names} is also iot.key_field or iot.time_field",
                                      {"names": ", ".join(map(repr, clash))})
        return sensors


# --- the endpoint ------------------------------------------------------------------


def _split_keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


class ServeConfig(_Settings):
    """The endpoint's settings (``service.app``): the fraud flow's (``fraud``) and its
    own (``[serve]``). ``serve.api_keys`` (``STREAMSCORE_API_KEYS``) is required
    (comma-separated, each at least 16 characters); keys never appear in ``repr``,
    :meth:`describe` or errors.

    >>> cfg = ServeConfig.from_env({"STREAMSCORE_API_KEYS": "k" * 16 + ", " + "j" * 20,
    ...                             "STREAMSCORE_SERVE__MAX_BATCH": "10"})
    >>> len(cfg.keys()), cfg.max_batch, cfg.fraud.model, "kkkk" in repr(cfg) + str(cfg.describe())
    (2, 10, 'fraud_model@production', False)
    >>> ServeConfig.from_env({"STREAMSCORE_API_KEYS": "k" * 16 + ",short"})
    Traceback (most recent call last):
    ...
    settings.config.ConfigError: STREAMSCORE_API_KEYS='***': each key must have at least 16 characters (1 has fewer)
    """

    _flow: ClassVar[str] = "fraud"

    fraud: FraudConfig
    #: accepted values of the X-API-Key header, comma-separated
    api_keys: SecretStr = _key("serve.api_keys", SecretStr(""),
                               "required: the accepted X-API-Key values, comma-separated, each >= 16 characters "
                               "(a secret: set it in the environment)", env="STREAMSCORE_API_KEYS",
                               validate_default=True)
    #: a request body over this many bytes is refused (413)
    max_bytes: int = _key("serve.max_bytes", 1_048_576, "a request body over this many bytes is refused (413)", ge=1)
    #: a list of more transactions than this is refused (413)
    max_batch: int = _key("serve.max_batch", 1000, "a list of more transactions than this is refused (413)", ge=1)
    #: the feature service holding customer_live (and the profile and merchant views)
    live_service: str = _key("feast.live_service", "fraud_live",
                             "the endpoint's feature service: customer_live and the profile and merchant views")
    host: str = _key("serve.host", "127.0.0.1", "interface the endpoint listens on")
    port: int = _key("serve.port", 8000, "port the endpoint listens on", ge=0, le=65535)
    workers: int = _key("serve.workers", 1, "worker processes on one port (uvicorn workers; `--workers` wins): "
                        "each builds its own Feast store and models", ge=1, le=64)

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: SecretStr) -> SecretStr:
        keys = _split_keys(value.get_secret_value())
        if not keys:
            raise PydanticCustomError("keys", "required: comma-separated API keys that clients send in X-API-Key")
        short = sum(len(k) < 16 for k in keys)
        if short:
            raise PydanticCustomError("keys", "each key must have at least 16 characters ({n} has fewer)", {"n": short})
        return value

    def keys(self) -> list[str]:
        """The accepted API keys."""
        return _split_keys(self.api_keys.get_secret_value())


#: short variable -> the key it sets
SHORT_NAMES: dict[str, str] = _short_names()

"""Configuration from the environment (settings.config) and log set-up (settings.logs).
The settings file, unknown and retired names, the reference: tests/settings/test_settings.py."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from settings.config import ConfigError, FraudConfig, IOConfig, IoTConfig, KafkaConfig, parse_log_level
from settings.logs import configure_logging

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-s3cr3t"


# --- defaults ----------------------------------------------------------------------


def test_fraud_defaults_run_locally():
    cfg = FraudConfig.from_env({})
    io = cfg.io
    assert (io.source, io.input_path, io.generator_events, io.seed, io.bad_rate) == ("generator", None, 20_000, 42, 0.002)
    assert (io.output, io.output_dir, io.batch_size, io.replace_outputs) == ("file", Path("output/fraud"), 1000, True)
    k = io.kafka
    assert (k.bootstrap_servers, k.input_topic, k.scored_topic, k.alerts_topic, k.dead_letter_topic) == (
        "localhost:9092", "transactions", "scored-transactions", "fraud-alerts", "transactions-dead-letter")
    assert (k.tail, k.check_timeout_s, k.options) == (True, 10.0, {})
    assert (cfg.feature_repo, cfg.feature_service, cfg.feature_store_yaml) == (Path("feature_repo"), "fraud_scoring", None)
    assert (cfg.model, cfg.model_registry) == ("fraud_model@production", Path("model_registry"))
    assert (cfg.critical, cfg.warning, cfg.anomaly_weight) == (0.8, 0.5, 0.4)
    assert (cfg.lateness_s, cfg.lookup_ttl_s, cfg.shards, cfg.log_level) == (600.0, 300.0, 4, "INFO")


def test_iot_defaults_run_locally():
    cfg = IoTConfig.from_env({})
    assert cfg.io.output_dir == Path("output/iot")
    k = cfg.io.kafka
    assert (k.input_topic, k.scored_topic, k.alerts_topic, k.dead_letter_topic) == (
        "iot-readings", "scored-readings", "iot-alerts", "iot-readings-dead-letter")
    assert (cfg.key_field, cfg.time_field) == ("device_id", "timestamp")
    assert cfg.sensors == ("temperature", "humidity", "pressure")
    assert cfg.windows_s == (300.0, 3600.0)
    assert (cfg.lateness_s, cfg.shards, cfg.critical, cfg.warning, cfg.devices) == (600.0, 4, 0.8, 0.5, 50)
    assert (cfg.feature_repo, cfg.feature_store_yaml, cfg.device_profile, cfg.lookup_ttl_s) == (
        Path("feature_repo"), None, True, 300.0)
    assert cfg.log_level == "INFO" and cfg.io.replace_outputs is True


def test_empty_or_blank_variables_mean_unset():
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "", "STREAMSCORE_IO__BATCH_SIZE": "  ", "STREAMSCORE_LOG__LEVEL": "",
                                "STREAMSCORE_IO__OUTPUT_DIR": "", "KAFKA_OPT_SASL_PASSWORD": ""})
    assert cfg == FraudConfig.from_env({})


def test_none_reads_os_environ_and_a_mapping_ignores_it(monkeypatch):
    monkeypatch.setenv("STREAMSCORE_IO__BATCH_SIZE", "7")
    monkeypatch.setenv("STREAMSCORE_SOURCE", "ftp")
    with pytest.raises(ConfigError, match="STREAMSCORE_SOURCE='ftp'"):
        FraudConfig.from_env()
    monkeypatch.setenv("STREAMSCORE_SOURCE", "kafka")
    assert FraudConfig.from_env().io.batch_size == 7
    assert FraudConfig.from_env({}).io.batch_size == 1000  # a mapping: os.environ is not read
    assert KafkaConfig().check_timeout_s == 10.0  # direct construction: arguments only


# --- every variable parsed -----------------------------------------------------------------

SHARED = {
    "STREAMSCORE_SOURCE": " File ",
    "STREAMSCORE_INPUT": "data/in.PARQUET",
    "STREAMSCORE_IO__GENERATOR_EVENTS": "0",
    "STREAMSCORE_IO__GENERATOR_SEED": "-3",
    "STREAMSCORE_IO__GENERATOR_BAD_RATE": "1",
    "STREAMSCORE_OUTPUT": "KAFKA",
    "STREAMSCORE_IO__OUTPUT_DIR": "out/x",
    "STREAMSCORE_IO__BATCH_SIZE": "1",
    "STREAMSCORE_IO__REPLACE_OUTPUTS": "false",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
    "STREAMSCORE_INPUT_TOPIC": "in-t",
    "STREAMSCORE_SCORED_TOPIC": "scored-t",
    "STREAMSCORE_ALERTS_TOPIC": "alerts-t",
    "STREAMSCORE_DEAD_LETTER_TOPIC": "dead-t",
    "STREAMSCORE_KAFKA__TAIL": "no",
    "STREAMSCORE_KAFKA__CHECK_TIMEOUT_S": "0.5",
    "KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL",
    "STREAMSCORE_LOG__LEVEL": "warning",
    "STREAMSCORE_FEAST__REPO": "repo",
    "STREAMSCORE_FEATURE_STORE_YAML": "feature_store.redis.yaml",
    "STREAMSCORE_FRAUD__CRITICAL": "0.9",
    "STREAMSCORE_FRAUD__WARNING": "0.9",
    "STREAMSCORE_STATE__LATENESS_S": "0",
    "STREAMSCORE_FEAST__LOOKUP_TTL_S": "1.5",
    "STREAMSCORE_STATE__DETECTOR_SHARDS": "2",
}


def check_shared(cfg: FraudConfig | IoTConfig) -> None:
    io, k = cfg.io, cfg.io.kafka
    assert (io.source, io.input_path, io.generator_events, io.seed, io.bad_rate) == (
        "file", Path("data/in.PARQUET"), 0, -3, 1.0)
    assert (io.output, io.output_dir, io.batch_size, io.replace_outputs) == ("kafka", Path("out/x"), 1, False)
    assert (k.bootstrap_servers, k.input_topic, k.scored_topic, k.alerts_topic, k.dead_letter_topic) == (
        "k1:9092,k2:9092", "in-t", "scored-t", "alerts-t", "dead-t")
    assert (k.tail, k.check_timeout_s, k.options) == (False, 0.5, {"security.protocol": "SASL_SSL"})
    assert (cfg.log_level, cfg.feature_repo, cfg.feature_store_yaml) == ("WARNING", Path("repo"), "feature_store.redis.yaml")
    assert (cfg.critical, cfg.warning, cfg.lateness_s, cfg.lookup_ttl_s, cfg.shards) == (0.9, 0.9, 0.0, 1.5, 2)


def test_every_fraud_variable_is_read():
    cfg = FraudConfig.from_env({**SHARED, "STREAMSCORE_FEAST__FRAUD_SERVICE": "svc", "STREAMSCORE_MODEL__REF": "fraud_model/3",
                                "STREAMSCORE_MODEL__REGISTRY": "reg", "STREAMSCORE_FRAUD__ANOMALY_WEIGHT": "0"})
    check_shared(cfg)
    assert (cfg.feature_service, cfg.model, cfg.model_registry, cfg.anomaly_weight) == (
        "svc", "fraud_model/3", Path("reg"), 0.0)


def test_every_iot_variable_is_read():
    shared = {**SHARED, "STREAMSCORE_IOT__CRITICAL": "0.9", "STREAMSCORE_IOT__WARNING": "0.9"}
    cfg = IoTConfig.from_env({**shared, "STREAMSCORE_IOT__KEY_FIELD": "dev", "STREAMSCORE_IOT__TIME_FIELD": "ts",
                              "STREAMSCORE_IOT__SENSOR_FIELDS": " a , b,c ", "STREAMSCORE_IOT__WINDOWS_S": "60, 1.5",
                              "STREAMSCORE_IOT__GENERATOR_DEVICES": "3", "STREAMSCORE_IOT__DEVICE_PROFILE": "off"})
    check_shared(cfg)
    assert (cfg.key_field, cfg.time_field, cfg.sensors, cfg.windows_s) == ("dev", "ts", ("a", "b", "c"), (60.0, 1.5))
    assert (cfg.devices, cfg.device_profile) == (3, False)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_input_file_suffixes(suffix):
    cfg = FraudConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": f"events{suffix}"})
    assert cfg.io.input_path == Path(f"events{suffix}")


def test_variables_named_like_fields_are_not_read():
    cfg = FraudConfig.from_env({"source": "kafka", "seed": "x", "io": "{", "kafka": "[", "options": "x"})
    assert cfg == FraudConfig.from_env({})


# --- errors ------------------------------------------------------------------------------


def test_several_bad_variables_make_one_error_naming_each():
    with pytest.raises(ConfigError) as info:
        FraudConfig.from_env({
            "STREAMSCORE_SOURCE": "ftp",
            "STREAMSCORE_IO__BATCH_SIZE": "x",
            "STREAMSCORE_IO__GENERATOR_BAD_RATE": "1.5",
            "STREAMSCORE_KAFKA__TAIL": "sometimes",
            "STREAMSCORE_KAFKA__CHECK_TIMEOUT_S": "0",
            "STREAMSCORE_STATE__DETECTOR_SHARDS": "0",
            "STREAMSCORE_FRAUD__ANOMALY_WEIGHT": "heavy",
            "STREAMSCORE_LOG__LEVEL": "loud",
            "STREAMSCORE_FRAUD__CRITICAL": "nan",
        })
    err = info.value
    assert str(err).startswith("9 bad settings: STREAMSCORE_SOURCE='ftp': expected one of generator, file, kafka; ")
    assert sorted(err.problems) == sorted([
        "STREAMSCORE_SOURCE='ftp': expected one of generator, file, kafka",
        "STREAMSCORE_IO__BATCH_SIZE='x': expected an integer",
        "STREAMSCORE_IO__GENERATOR_BAD_RATE='1.5': must be <= 1.0",
        "STREAMSCORE_KAFKA__TAIL='sometimes': expected true or false",
        "STREAMSCORE_KAFKA__CHECK_TIMEOUT_S='0': must be >= 0.1",
        "STREAMSCORE_STATE__DETECTOR_SHARDS='0': must be >= 1",
        "STREAMSCORE_FRAUD__ANOMALY_WEIGHT='heavy': expected a number",
        "STREAMSCORE_LOG__LEVEL='loud': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        "STREAMSCORE_FRAUD__CRITICAL='nan': expected a finite number",
    ])
    assert isinstance(err, ValueError) and err.__cause__ is None


def test_one_bad_variable_is_one_line():
    with pytest.raises(ConfigError) as info:
        FraudConfig.from_env({"STREAMSCORE_SOURCE": "ftp"})
    assert str(info.value) == "STREAMSCORE_SOURCE='ftp': expected one of generator, file, kafka"


@pytest.mark.parametrize("env, problem", [
    ({"STREAMSCORE_SOURCE": "file"},
     "io.input (STREAMSCORE_INPUT): required with io.source=file: a .jsonl, .json, .csv or .parquet file"),
    ({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_INPUT": "in.txt"},
     "STREAMSCORE_INPUT='in.txt': expected a .jsonl, .json, .csv or .parquet file"),
    ({"STREAMSCORE_INPUT": "in"}, "STREAMSCORE_INPUT='in': expected a .jsonl, .json, .csv or .parquet file"),
    ({"STREAMSCORE_{FLOW}__WARNING": "0.9"},
     "STREAMSCORE_{FLOW}__WARNING='0.9': must not be above {flow}.critical=0.8"),
    ({"STREAMSCORE_{FLOW}__CRITICAL": "-0.1"}, "STREAMSCORE_{FLOW}__CRITICAL='-0.1': must be >= 0.0"),
    ({"STREAMSCORE_IO__GENERATOR_EVENTS": "-1"}, "STREAMSCORE_IO__GENERATOR_EVENTS='-1': must be >= 0"),
    ({"STREAMSCORE_IO__GENERATOR_EVENTS": "1.5"}, "STREAMSCORE_IO__GENERATOR_EVENTS='1.5': expected an integer"),
    ({"STREAMSCORE_OUTPUT": "s3"}, "STREAMSCORE_OUTPUT='s3': expected one of file, kafka"),
    ({"STREAMSCORE_IO__REPLACE_OUTPUTS": "maybe"}, "STREAMSCORE_IO__REPLACE_OUTPUTS='maybe': expected true or false"),
    ({"STREAMSCORE_STATE__LATENESS_S": "-5"}, "STREAMSCORE_STATE__LATENESS_S='-5': must be >= 0.0"),
    ({"STREAMSCORE_FEAST__LOOKUP_TTL_S": "soon"}, "STREAMSCORE_FEAST__LOOKUP_TTL_S='soon': expected a number"),
])
def test_each_check(env, problem):
    """The same check in both flows; a flow's own key is ``{flow}.<name>``."""
    for flow, cls in (("fraud", FraudConfig), ("iot", IoTConfig)):
        names = {"{FLOW}": flow.upper(), "{flow}": flow}
        with pytest.raises(ConfigError) as info:
            cls.from_env({_name(k, names): v for k, v in env.items()})
        assert info.value.problems == [_name(problem, names)]


def _name(text: str, names: dict[str, str]) -> str:
    for a, b in names.items():
        text = text.replace(a, b)
    return text


@pytest.mark.parametrize("env, problem", [
    ({"STREAMSCORE_IOT__SENSOR_FIELDS": "a,a"}, "STREAMSCORE_IOT__SENSOR_FIELDS='a,a': expected distinct, comma-separated names"),
    ({"STREAMSCORE_IOT__SENSOR_FIELDS": "a,,b"}, "STREAMSCORE_IOT__SENSOR_FIELDS='a,,b': expected distinct, comma-separated names"),
    ({"STREAMSCORE_IOT__SENSOR_FIELDS": "a,timestamp"},
     "STREAMSCORE_IOT__SENSOR_FIELDS='a,timestamp': 'timestamp' is also iot.key_field or iot.time_field"),
    ({"STREAMSCORE_IOT__KEY_FIELD": "humidity"},
     "iot.sensor_fields (STREAMSCORE_IOT__SENSOR_FIELDS): 'humidity' is also iot.key_field or iot.time_field"),
    ({"STREAMSCORE_IOT__WINDOWS_S": "5m"}, "STREAMSCORE_IOT__WINDOWS_S='5m': expected comma-separated seconds"),
    ({"STREAMSCORE_IOT__WINDOWS_S": "60,0"}, "STREAMSCORE_IOT__WINDOWS_S='60,0': expected comma-separated seconds, each > 0"),
    ({"STREAMSCORE_IOT__WINDOWS_S": "60,-1"}, "STREAMSCORE_IOT__WINDOWS_S='60,-1': expected comma-separated seconds, each > 0"),
    ({"STREAMSCORE_IOT__GENERATOR_DEVICES": "0"}, "STREAMSCORE_IOT__GENERATOR_DEVICES='0': must be >= 1"),
    ({"STREAMSCORE_IOT__DEVICE_PROFILE": "2"}, "STREAMSCORE_IOT__DEVICE_PROFILE='2': expected true or false"),
])
def test_iot_checks(env, problem):
    with pytest.raises(ConfigError) as info:
        IoTConfig.from_env(env)
    assert info.value.problems == [problem]


def test_cross_checks_are_reported_along_with_the_rest():
    with pytest.raises(ConfigError) as info:
        IoTConfig.from_env({"STREAMSCORE_SOURCE": "file", "STREAMSCORE_IOT__WARNING": "0.95",
                            "STREAMSCORE_IOT__SENSOR_FIELDS": "x,x", "STREAMSCORE_IOT__WINDOWS_S": "0",
                            "STREAMSCORE_IO__GENERATOR_SEED": "s"})
    assert [p.split("=")[0].split(":")[0] for p in info.value.problems] == [
        "io.input (STREAMSCORE_INPUT)", "STREAMSCORE_IO__GENERATOR_SEED", "STREAMSCORE_IOT__WARNING",
        "STREAMSCORE_IOT__SENSOR_FIELDS", "STREAMSCORE_IOT__WINDOWS_S"]


# --- secrets -------------------------------------------------------------------------------


def test_kafka_opt_variables_become_librdkafka_options():
    cfg = FraudConfig.from_env({"KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_OPT_SASL_MECHANISM": "PLAIN",
                                "KAFKA_OPT_SASL_PASSWORD": f" {SECRET} ", "KAFKA_OPT_": "x",
                                "kafka_opt_client_id": "lower-case prefix is not the prefix"})
    assert cfg.io.kafka.options == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                    "sasl.password": f" {SECRET} "}  # secret values kept as given
    assert cfg.io.kafka.redacted_options() == {"security.protocol": "***", "sasl.mechanism": "***",
                                               "sasl.password": "***"}
    assert IoTConfig.from_env({"KAFKA_OPT_LINGER_MS": "5"}).io.kafka.options == {"linger.ms": "5"}


def test_secrets_never_in_repr_str_describe_or_errors():
    env = {"KAFKA_OPT_SASL_PASSWORD": SECRET}
    cfg = FraudConfig.from_env(env)
    assert cfg.io.kafka.options["sasl.password"] == SECRET
    for obj in (cfg, cfg.io, cfg.io.kafka):
        assert SECRET not in repr(obj) and SECRET not in str(obj)
        assert SECRET not in json.dumps(obj.describe())
        assert SECRET not in str(obj.model_dump())
    assert cfg.describe()["io"]["kafka"]["options"] == {"sasl.password": "***"}
    with pytest.raises(ConfigError) as info:
        FraudConfig.from_env({**env, "STREAMSCORE_SOURCE": "ftp", "STREAMSCORE_FRAUD__WARNING": "0.99"})
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Direct construction with a bad value: pydantic's error hides the input too.
    with pytest.raises(ValueError) as info2:
        KafkaConfig(check_timeout_s=0, options={"sasl.password": SECRET})
    assert SECRET not in str(info2.value)


def test_describe_is_json_ready_and_complete():
    d = IoTConfig.from_env({"STREAMSCORE_SOURCE": "kafka"}).describe()
    assert json.loads(json.dumps(d)) == d
    assert d["io"]["source"] == "kafka" and d["io"]["output_dir"] == "output/iot"
    assert d["io"]["kafka"]["input_topic"] == "iot-readings" and d["io"]["kafka"]["options"] == {}
    assert d["sensors"] == ["temperature", "humidity", "pressure"] and d["log_level"] == "INFO"


# --- objects -------------------------------------------------------------------------------


def test_configs_are_frozen_and_picklable():
    cfg = IoTConfig.from_env({"KAFKA_OPT_SASL_PASSWORD": SECRET})
    for obj, attr, value in ((cfg, "shards", 9), (cfg.io, "batch_size", 1), (cfg.io.kafka, "tail", False)):
        with pytest.raises(ValueError):
            setattr(obj, attr, value)
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and again.io.kafka.options == {"sasl.password": SECRET}


def test_direct_construction_keeps_working():
    kafka = KafkaConfig(bootstrap_servers="b:1", input_topic="t", options={"sasl.password": SECRET})
    io = IOConfig(source="kafka", kafka=kafka)
    assert (io.output_dir, io.batch_size, io.kafka.bootstrap_servers, io.kafka.tail) == (
        Path("output/fraud"), 1000, "b:1", True)  # {flow}: the fraud flow's, without a flow to read for
    assert io.kafka.group == "streamscore-fraud"
    cfg = FraudConfig(io=io, shards=2)
    assert cfg.shards == 2 and cfg.io.kafka.options == {"sasl.password": SECRET}


def test_kafka_and_io_configs_read_alone():
    kafka = KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:2", "STREAMSCORE_INPUT_TOPIC": "mine"})
    assert (kafka.bootstrap_servers, kafka.input_topic, kafka.scored_topic) == ("b:2", "mine", "scored-transactions")
    kafka = KafkaConfig.from_env({}, flow="iot")
    assert (kafka.input_topic, kafka.scored_topic, kafka.group) == ("iot-readings", "scored-readings", "streamscore-iot")
    io = IOConfig.from_env({"STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_IO__BATCH_SIZE": "10"})
    assert (io.source, io.batch_size, io.output_dir) == ("kafka", 10, Path("output/fraud"))
    assert IOConfig.from_env({}, flow="iot").output_dir == Path("output/iot")


def test_importing_config_is_cheap():
    code = ("import sys, settings.config, settings.reference; "
            "print(sorted(m for m in ('bytewax', 'confluent_kafka', 'feast', 'pandas') if m in sys.modules)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dataflows', 'features', 'models', 'monitoring', 'service', 'cli')))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    # nothing else of the project but its module of default numbers (which imports nothing)
    assert res.stdout.splitlines() == ["[]", "['features', 'features.defaults']"]


# --- log level and logging ------------------------------------------------------------------


@pytest.mark.parametrize("raw, level", [("debug", "DEBUG"), (" Info ", "INFO"), ("WARNING", "WARNING"),
                                        ("error", "ERROR"), ("Critical", "CRITICAL"), ("", "INFO"), (None, "INFO")])
def test_log_levels(raw, level):
    assert parse_log_level(raw) == level
    if raw is not None:
        assert FraudConfig.from_env({"STREAMSCORE_LOG__LEVEL": raw}).log_level == level
        assert IoTConfig.from_env({"STREAMSCORE_LOG__LEVEL": raw}).log_level == level


@pytest.mark.parametrize("raw", ["warn", "TRACE", "10", "fatal"])
def test_bad_log_levels(raw):
    expected = f"STREAMSCORE_LOG__LEVEL={raw!r}: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    with pytest.raises(ConfigError) as info:
        FraudConfig.from_env({"STREAMSCORE_LOG__LEVEL": raw})
    assert str(info.value) == expected
    with pytest.raises(ConfigError) as info:
        configure_logging(raw)
    assert str(info.value) == expected


LOG_SCRIPT = """
import logging, sys, structlog
from settings.logs import configure_logging
configure_logging(sys.argv[1] if len(sys.argv) > 1 else None)
log = structlog.get_logger("dataflows.test")
log.info("hello", n=1)
log.debug("debug_line")
logging.getLogger("feast.registry").warning("from %s", "stdlib")
logging.getLogger("somelib").info("stdlib_info")
logging.getLogger("feast.registry").info("feast_chatter")  # a quiet library: INFO only at DEBUG
try:
    1 / 0
except ZeroDivisionError:
    log.exception("failed")
configure_logging("ERROR")  # reconfigure: earlier loggers follow
configure_logging("ERROR")
log.warning("hidden")
logging.getLogger("other").warning("hidden")
log.error("shown")
print("handlers", len([h for h in logging.getLogger().handlers]))
"""


def run_logging(*args: str, env: dict[str, str] | None = None) -> tuple[str, list[dict]]:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "STREAMSCORE_LOG__LEVEL"}
    res = subprocess.run([sys.executable, "-c", LOG_SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**environ, **(env or {})})
    assert res.returncode == 0, res.stderr
    return res.stdout, [json.loads(line) for line in res.stderr.splitlines()]  # every line is JSON


def test_logs_are_json_lines_on_stderr_including_the_stdlib_root():
    stdout, lines = run_logging()
    assert stdout == "handlers 1\n"  # nothing but the script's own print on stdout; one handler after 3 calls
    events = [(d["event"], d["level"], d["logger"]) for d in lines]
    assert events == [("hello", "info", "dataflows.test"), ("from stdlib", "warning", "feast.registry"),
                      ("stdlib_info", "info", "somelib"), ("failed", "error", "dataflows.test"),
                      ("shown", "error", "dataflows.test")]
    assert lines[0]["n"] == 1 and "timestamp" in lines[0]
    assert "ZeroDivisionError" in lines[3]["exception"]


def test_log_level_from_argument_or_environment():
    _, lines = run_logging("debug")
    assert {"debug_line", "feast_chatter"} <= {d["event"] for d in lines}
    _, lines = run_logging(env={"STREAMSCORE_LOG__LEVEL": "warning"})
    assert [d["event"] for d in lines] == ["from stdlib", "failed", "shown"]
    # A bad STREAMSCORE_LOG__LEVEL is from_env's to report (with the other bad settings):
    # logging itself starts at INFO and prints nothing else.
    _, lines = run_logging(env={"STREAMSCORE_LOG__LEVEL": "bogus"})
    assert [d["event"] for d in lines] == ["hello", "from stdlib", "stdlib_info", "failed", "shown"]


def test_capture_logs_reaches_a_module_logger_used_before_a_reconfiguration(capsys):
    """The order dependency --dist worksteal exposed (tests/e2e/test_outages.py captured
    nothing after some earlier tests of the same worker): each configure_logging() at
    another level gives structlog a new processor list, and capture_logs() swaps the
    current one; a module logger cached on its first use (cache_logger_on_first_use)
    keeps the list of that time and logs past the capture. tests/conftest.py turns the
    cache off, so a module logger reads the current list at every call."""
    from structlog.testing import capture_logs

    from features.store import log  # a module-level logger, as every module has
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("WARNING")
        log.warning("first_use")  # its first use, under this configuration's list
        configure_logging("INFO")  # another level: a new processor list
        with capture_logs() as logs:
            log.warning("captured")
        assert [e["event"] for e in logs] == ["captured"]
    finally:
        configure_logging("INFO")
        root.setLevel(level)
        capsys.readouterr()


def test_configure_logging_is_idempotent_and_reconfigures(capsys):
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging("WARNING")
        configure_logging("WARNING")
        configure_logging()  # keeps the level configured
        assert root.level == logging.WARNING
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) <= 1
        configure_logging("DEBUG")
        assert root.level == logging.DEBUG
        structlog.get_logger("dataflows.test").debug("in_process", k="v")
        err = capsys.readouterr().err.strip().splitlines()
        assert json.loads(err[-1])["event"] == "in_process"
    finally:
        configure_logging("INFO")
        root.setLevel(level)

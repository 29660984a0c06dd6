"""The settings file (streamscore.toml), variables over it, unknown and retired names,
`streamscore config`, the generated reference, and the rule that only settings/ reads
the environment."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.config import config as config_command
from settings import reference
from settings.config import (
    ConfigError,
    FraudConfig,
    IOConfig,
    IoTConfig,
    KafkaConfig,
    ServeConfig,
    all_leaves,
    config_file,
    setting,
)
from settings.migration import RETIRED

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-s3cr3t"
KEY = "k" * 20


def write(path: Path, text: str) -> dict[str, str]:
    path.write_text(text)
    return {"STREAMSCORE_CONFIG": str(path)}


# --- the file -------------------------------------------------------------------------------


def test_the_file_sets_keys_by_section_and_variables_override_it(tmp_path):
    env = write(tmp_path / "s.toml", """
[io]
batch_size = 50
output_dir = "runs/{flow}"
[kafka]
group = "mine-{flow}"
[fraud]
critical = 0.9
[fraud.topics]
scored = "fraud-scored"
[iot]
sensor_fields = ["t", "rh"]
windows_s = [60, 600]
critical = 0.7
[iot.topics]
scored = "iot-scored"
[state]
detector_shards = 2
[inference_log]
enabled = "auto"
""")
    fraud = FraudConfig.from_env({**env, "STREAMSCORE_IO__BATCH_SIZE": "7"})
    assert (fraud.io.batch_size, fraud.io.output_dir, fraud.io.kafka.group) == (7, Path("runs/fraud"), "mine-fraud")
    assert (fraud.critical, fraud.shards, fraud.io.kafka.scored_topic, fraud.io.inference_log) == (
        0.9, 2, "fraud-scored", None)
    iot = IoTConfig.from_env({**env, "STREAMSCORE_SCORED_TOPIC": "from-env"})
    assert (iot.io.output_dir, iot.io.kafka.group, iot.critical, iot.shards) == (
        Path("runs/iot"), "mine-iot", 0.7, 2)
    assert (iot.sensors, iot.windows_s, iot.io.kafka.scored_topic) == (("t", "rh"), (60.0, 600.0), "from-env")
    # where each value came from
    assert str(fraud.io.origin("batch_size")) == "environment (STREAMSCORE_IO__BATCH_SIZE)"
    assert str(fraud.origin("critical")) == f"file ({tmp_path / 's.toml'})"
    assert str(fraud.origin("lateness_s")) == "default"
    assert fraud.io.name_of("batch_size") == "STREAMSCORE_IO__BATCH_SIZE"
    assert fraud.name_of("critical") == "fraud.critical" and iot.io.kafka.name_of("scored_topic") == "STREAMSCORE_SCORED_TOPIC"


def test_no_file_and_no_variables_are_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./streamscore.toml here
    assert config_file({}) is None
    cfg = FraudConfig.from_env({})
    assert all(str(cfg.origin(f)) == "default" for f in ("critical", "model", "shards"))
    assert (cfg.io.output_dir, cfg.io.kafka.scored_topic, cfg.idle_expiry_s) == (
        Path("output/fraud"), "scored-transactions", 30 * 86400.0)
    assert IoTConfig.from_env({}).idle_expiry_s == 7 * 86400.0


def test_the_file_in_the_working_directory_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "streamscore.toml").write_text("[io]\nbatch_size = 3\n")
    assert config_file({}) == Path("streamscore.toml")
    assert FraudConfig.from_env({}).io.batch_size == 3


def test_the_shipped_file_holds_the_defaults_commented(tmp_path):
    shipped = (ROOT / "streamscore.toml").read_text()
    assert shipped == reference.template(), "streamscore.toml is stale: streamscore config --template --update streamscore.toml"
    assert FraudConfig.from_env(write(tmp_path / "a.toml", shipped)) == FraudConfig.from_env(
        write(tmp_path / "b.toml", ""))  # everything commented out: nothing set
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", shipped, flags=re.M)
    assert uncommented.count("\n") == shipped.count("\n") and uncommented != shipped
    for cls in (FraudConfig, IoTConfig):  # uncommented, every key is at its default
        assert cls.from_env(write(tmp_path / "u.toml", uncommented)).model_dump() == cls.from_env({}).model_dump()


def test_empty_values_mean_unset_in_the_file_as_in_the_environment(tmp_path):
    env = write(tmp_path / "s.toml", '[io]\noutput_dir = ""\n[feast]\nstore_yaml = " "\n')
    cfg = FraudConfig.from_env(env)
    assert (cfg.io.output_dir, cfg.feature_store_yaml) == (Path("output/fraud"), None)


# --- errors ----------------------------------------------------------------------------------


def test_bad_values_in_the_file_name_the_key_and_the_file(tmp_path):
    env = write(tmp_path / "s.toml", '[io]\nbatch_size = "x"\n[fraud]\nwarning = 0.9\n[iot]\nwindows_s = [60, 0]\n')
    with pytest.raises(ConfigError) as info:
        FraudConfig.from_env(env)
    assert info.value.problems == [f"io.batch_size='x' ({tmp_path / 's.toml'}): expected an integer",
                                   f"fraud.warning=0.9 ({tmp_path / 's.toml'}): must not be above fraud.critical=0.8"]
    with pytest.raises(ConfigError, match=r"iot.windows_s=\[60, 0\] \(.*\): expected comma-separated seconds, each > 0"):
        IoTConfig.from_env(env)


def test_unknown_keys_and_sections_in_the_file_are_errors_with_a_suggestion(tmp_path):
    env = write(tmp_path / "s.toml", '[fraud]\ncriticial = 0.9\n[fraudd]\nx = 1\n[io]\nsource = "kafka"\n'
                                     '[fraud.topics]\nscored = "s"\nextra = 1\nbatch_size = 1\n')
    with pytest.raises(ConfigError) as info:
        IoTConfig.from_env(env)  # every flow checks the whole file
    f = tmp_path / "s.toml"
    assert info.value.problems == [
        f"fraud.criticial ({f}): not a setting; did you mean fraud.critical?",
        f"fraud.topics.extra ({f}): not a setting; did you mean fraud.topics.input?",
        f"fraud.topics.batch_size ({f}): not a setting; did you mean io.batch_size?",
        f"[fraudd] ({f}): not a section; did you mean [fraud]?",
    ]


def test_a_missing_or_broken_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^STREAMSCORE_CONFIG='.*nope.toml': no such file$"):
        FraudConfig.from_env({"STREAMSCORE_CONFIG": str(tmp_path / "nope.toml")})
    with pytest.raises(ConfigError, match=r"s.toml: not a valid TOML file \(.*line 1"):
        FraudConfig.from_env(write(tmp_path / "s.toml", "[io\n"))
    with pytest.raises(ConfigError, match=r"^io \(.*\): expected a section \[io\], not a value$"):
        FraudConfig.from_env(write(tmp_path / "s.toml", "io = 1\n"))


@pytest.mark.parametrize("name, problem", [
    ("SCORING_CRITICIAL",
     "SCORING_CRITICIAL: not a setting (SCORING_* variables are no longer read); did you mean "
     "SCORING_CRITICAL_THRESHOLD? It is now STREAMSCORE_FRAUD__CRITICAL (fraud.critical) or "
     "STREAMSCORE_IOT__CRITICAL (iot.critical)"),
    ("SCORING_CRITICAL_THRESHOLD",
     "SCORING_CRITICAL_THRESHOLD: no longer read; it is now STREAMSCORE_FRAUD__CRITICAL (fraud.critical) or "
     "STREAMSCORE_IOT__CRITICAL (iot.critical)"),
    ("SCORING_SOURCE", "SCORING_SOURCE: no longer read; it is now STREAMSCORE_SOURCE (io.source)"),
    ("KAFKA_CHECK_TIMEOUT_S",
     "KAFKA_CHECK_TIMEOUT_S: no longer read; it is now STREAMSCORE_KAFKA__CHECK_TIMEOUT_S (kafka.check_timeout_s)"),
    ("IOT_SENSOR_FIELD",
     "IOT_SENSOR_FIELD: not a setting (IOT_* variables are no longer read); did you mean IOT_SENSOR_FIELDS? "
     "It is now STREAMSCORE_IOT__SENSOR_FIELDS (iot.sensor_fields)"),
    ("STREAMSCORE_FRAUD__CRITICIAL", "STREAMSCORE_FRAUD__CRITICIAL: not a setting; did you mean STREAMSCORE_FRAUD__CRITICAL?"),
    ("STREAMSCORE_SCORED_TOPICS", "STREAMSCORE_SCORED_TOPICS: not a setting; did you mean STREAMSCORE_SCORED_TOPIC?"),
    ("STREAMSCORE_ZZZ", "STREAMSCORE_ZZZ: not a setting (see `streamscore config --reference`)"),
])
def test_unknown_and_retired_variables_are_errors(name, problem):
    for cls in (FraudConfig, IoTConfig, KafkaConfig):
        with pytest.raises(ConfigError) as info:
            cls.from_env({name: "0.9"})
        assert info.value.problems == [problem]


#: settings added after the flat variables were retired (none of them had an old name)
ADDED_SINCE = {"fraud.explain_method", "fraud.explain_budget", "state.gc_freeze", "iot.field_check_events",
               "fraud.formats.input", "fraud.formats.output", "iot.formats.input", "iot.formats.output",
               "registry.url", "registry.auth", "registry.subject_strategy", "registry.timeout_s",
               "registry.failures", "registry.retry_s", "serve.workers"}


def test_every_retired_variable_names_what_it_became():
    known = all_leaves()
    assert len(RETIRED) == 65  # the 66 variables but KAFKA_BOOTSTRAP_SERVERS, still read
    assert all(keys and all(k in known for k in keys) for keys in RETIRED.values())
    retired_keys = {k for keys in RETIRED.values() for k in keys}
    # every other key replaces an old variable, but the keys added since
    assert set(known) - retired_keys == {"kafka.bootstrap_servers", *ADDED_SINCE}


def test_an_unknown_variable_stops_a_flow_at_start_with_one_error_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SCORING_CRITICIAL": "0.9"}
    done = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.fraud:flow"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: SCORING_CRITICIAL: not a setting (SCORING_* variables are no longer read); did you mean "
                     "SCORING_CRITICAL_THRESHOLD? It is now STREAMSCORE_FRAUD__CRITICAL (fraud.critical) or "
                     "STREAMSCORE_IOT__CRITICAL (iot.critical)"], done.stderr
    (tmp_path / "streamscore.toml").write_text("[iot]\nsensor_field = ['a']\n")  # the file in the working directory
    done = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.iot:flow"], cwd=tmp_path,
                          env={**env, "SCORING_CRITICIAL": ""}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: iot.sensor_field (streamscore.toml): not a setting; did you mean iot.sensor_fields?"]


def test_a_short_name_and_its_systematic_variable_must_agree():
    same = FraudConfig.from_env({"STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_IO__SOURCE": "kafka"})
    assert same.io.source == "kafka"
    with pytest.raises(ConfigError) as info:
        FraudConfig.from_env({"STREAMSCORE_SOURCE": "kafka", "STREAMSCORE_IO__SOURCE": "file"})
    assert info.value.problems == ["STREAMSCORE_SOURCE='kafka' and STREAMSCORE_IO__SOURCE='file': "
                                   "two values for io.source; set one of them"]
    with pytest.raises(ConfigError) as info:
        ServeConfig.from_env({"STREAMSCORE_API_KEYS": KEY, "STREAMSCORE_SERVE__API_KEYS": SECRET * 2})
    assert SECRET not in str(info.value) and "STREAMSCORE_API_KEYS='***'" in str(info.value)


def test_secrets_from_the_file_are_never_shown(tmp_path):
    env = write(tmp_path / "s.toml", f'[serve]\napi_keys = "{SECRET}"\n')
    with pytest.raises(ConfigError) as info:
        ServeConfig.from_env(env)
    assert str(info.value) == (f"serve.api_keys='***' ({tmp_path / 's.toml'}): each key must have at least 16 "
                               "characters (1 has fewer)")


def test_setting_reads_one_value_without_the_rest(tmp_path):
    env = write(tmp_path / "s.toml", "[model]\nregistry = 'reg'\n")
    assert setting("model.registry", env) == "reg"
    assert setting("model.registry", {**env, "STREAMSCORE_MODEL__REGISTRY": "env-reg"}) == "env-reg"
    assert setting("fraud.topics.input", {}) == "transactions" and setting("iot.topics.input", {}) == "iot-readings"
    assert setting("log.level", {"STREAMSCORE_SOURCE": "ftp"}) == "INFO"  # other settings are not checked


# --- streamscore config ---------------------------------------------------------------------


def test_config_prints_each_setting_with_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "streamscore.toml").write_text("[fraud]\ncritical = 0.9\n")
    for k in list(__import__("os").environ):
        if k.startswith(("STREAMSCORE_", "SCORING_", "IOT_", "KAFKA_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("STREAMSCORE_SOURCE", "kafka")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9092")
    monkeypatch.setenv("KAFKA_OPT_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("KAFKA_OPT_SASL_JAAS_CONFIG", SECRET)
    monkeypatch.setenv("KAFKA_OPT_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMSCORE_API_KEYS", SECRET * 2)
    monkeypatch.setenv("STREAMSCORE_FEATURE_STORE_YAML", f"redis://user:{SECRET}@host")  # a password in a URL
    out = CliRunner().invoke(config_command, ["--flow", "serve"])
    assert out.exit_code == 0, out.output
    assert SECRET not in out.output
    lines = {line.split()[0]: line for line in out.output.splitlines()[2:]}
    assert out.output.splitlines()[0] == "settings file: streamscore.toml"
    assert lines["io.source"].split()[1:] == ['"kafka"', "environment", "(STREAMSCORE_SOURCE)"]
    assert lines["fraud.critical"].split()[1:] == ["0.9", "file", "(streamscore.toml)"]
    assert lines["fraud.warning"].split()[1:] == ["0.5", "default"]
    assert lines["serve.api_keys"].split()[1:] == ["***", "environment", "(STREAMSCORE_API_KEYS)"]
    assert lines['kafka.options."sasl.password"'].split()[1] == "***"
    assert lines['kafka.options."sasl.jaas.config"'].split()[1] == "***"
    assert lines['kafka.options."security.protocol"'].split()[1:] == ['"SASL_SSL"', "environment",
                                                                      "(KAFKA_OPT_SECURITY_PROTOCOL)"]
    assert "redis://user:***@host" in lines["feast.store_yaml"]
    assert list(lines).index("io.source") < list(lines).index("kafka.bootstrap_servers") < list(lines).index(
        "fraud.critical") < list(lines).index("serve.api_keys")  # by section
    js = CliRunner().invoke(config_command, ["--flow", "iot", "--json"])
    data = json.loads(js.output)
    rows = {r["key"]: r for r in data["settings"]}
    assert data["file"] == "streamscore.toml" and rows["iot.sensor_fields"]["value"] == ["temperature", "humidity",
                                                                                         "pressure"]
    assert rows["iot.topics.input"] == {"key": "iot.topics.input", "value": "iot-readings", "origin": "default"}
    assert "fraud.critical" not in rows and SECRET not in js.output


def test_config_reports_a_bad_setting_as_the_flow_would(monkeypatch):
    monkeypatch.setenv("SCORING_CRITICIAL", "0.9")
    out = CliRunner().invoke(config_command, [])
    assert out.exit_code != 0 and "did you mean SCORING_CRITICAL_THRESHOLD" in str(out.exception)


# --- the generated reference -------------------------------------------------------------------


def test_the_reference_in_the_docs_is_current():
    path = ROOT / "docs" / "configuration.md"
    text = path.read_text()
    assert reference.update_blocks(text) == text, (
        "docs/configuration.md is stale: streamscore config --reference --update docs/configuration.md")
    table = reference.reference_table()
    assert all(f"| `{key}` |" in table for key in all_leaves())
    assert "| `SCORING_CRITICAL_THRESHOLD` | `fraud.critical` / `iot.critical` |" in reference.migration_table()


def test_config_reference_and_template_commands(tmp_path):
    out = CliRunner().invoke(config_command, ["--reference"])
    assert out.exit_code == 0 and "| `io.source` | `STREAMSCORE_SOURCE`" in out.output
    out = CliRunner().invoke(config_command, ["--template", "--update", str(tmp_path / "s.toml")])
    assert out.exit_code == 0 and (tmp_path / "s.toml").read_text() == reference.template()
    doc = tmp_path / "c.md"
    doc.write_text("x\n" + "\n".join(f"{b}\nOLD-BLOCK\n{e}" for b, e in reference.MARKERS.values()) + "\ny\n")
    out = CliRunner().invoke(config_command, ["--reference", "--update", str(doc)])
    assert out.exit_code == 0 and reference.update_blocks(doc.read_text()) == doc.read_text()
    assert "OLD-BLOCK" not in doc.read_text()


# --- one reader of the environment ---------------------------------------------------------------

#: what reads the environment: os.environ / os.getenv, and click's envvar= (click reads it itself)
ENV_READ = re.compile(r"\bos\.environ\b|\bgetenv\s*\(|\bfrom\s+os\s+import\s+[^\n]*\benviron\b|\benvvar\s*=|"
                      r"auto_envvar_prefix")


def test_only_settings_reads_the_environment():
    """Every setting and every variable of another tool (BYTEWAX_*, a Feast YAML's ${VAR})
    is read in settings/; tests and benchmarks set up environments of their own."""
    skip = {"settings", "tests", "benchmarks", ".venv", ".tools", ".git", "site", "node_modules"}
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in skip or rel.parts[0].startswith(".") or "egg-info" in rel.parts[0]:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if ENV_READ.search(line.split("#")[0]):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []


# --- one rule, one place ---------------------------------------------------------------------------


def test_the_scoring_objects_take_every_setting_from_the_configuration():
    """dataflows.scoring passes every configured value on; the models' own defaults
    never stand in for a setting."""
    from dataflows.scoring import fraud_scoring_config, iot_scoring_config, transaction_parser

    fraud = FraudConfig.from_env({"STREAMSCORE_STATE__LATENESS_S": "61", "STREAMSCORE_STATE__DETECTOR_SHARDS": "3",
                                  "STREAMSCORE_FRAUD__CRITICAL": "0.71", "STREAMSCORE_FRAUD__WARNING": "0.31",
                                  "STREAMSCORE_FRAUD__ANOMALY_WEIGHT": "0.21", "STREAMSCORE_FRAUD__EXPLAIN": "none",
                                  "STREAMSCORE_STATE__DEDUP_HORIZON_S": "11", "STREAMSCORE_STATE__DEDUP_MAX_IDS": "7",
                                  "STREAMSCORE_FRAUD__IDLE_EXPIRY_S": "13", "STREAMSCORE_FRAUD__MIN_AMOUNT": "2",
                                  "STREAMSCORE_FRAUD__MAX_AMOUNT": "500", "STREAMSCORE_STATE__MAX_FUTURE_S": "60",
                                  "STREAMSCORE_FRAUD__EXPLAIN_METHOD": "treeshap",
                                  "STREAMSCORE_FRAUD__EXPLAIN_BUDGET": "9"})
    sc = fraud_scoring_config(fraud)
    assert (sc.lateness_s, sc.shards, sc.thresholds.critical, sc.thresholds.warning, sc.anomaly_weight, sc.explain,
            sc.dedup_horizon_s, sc.dedup_max_ids, sc.idle_expiry_s, sc.explain_method, sc.explain_budget) == (
        61, 3, 0.71, 0.31, 0.21, "none", 11, 7, 13, "treeshap", 9)
    parse = transaction_parser(fraud)  # the flow's validate step: the configured bounds
    assert (parse.__self__.min_amount, parse.__self__.max_amount, parse.__self__.max_future_s) == (2, 500, 60)
    assert parse.__self__ == sc  # one parser for the flow and FraudPipeline: FraudScoringConfig.parse
    iot = IoTConfig.from_env({"STREAMSCORE_STATE__LATENESS_S": "62", "STREAMSCORE_STATE__DETECTOR_SHARDS": "5",
                              "STREAMSCORE_IOT__KEY_FIELD": "dev", "STREAMSCORE_IOT__TIME_FIELD": "ts",
                              "STREAMSCORE_IOT__SENSOR_FIELDS": "a", "STREAMSCORE_IOT__WINDOWS_S": "60",
                              "STREAMSCORE_STATE__DEDUP_HORIZON_S": "12", "STREAMSCORE_STATE__DEDUP_MAX_IDS": "8",
                              "STREAMSCORE_IOT__IDLE_EXPIRY_S": "14"})
    ic = iot_scoring_config(iot)
    f = ic.features
    assert (f.key_field, f.time_field, f.sensors, f.windows_s, f.lateness_s) == ("dev", "ts", ("a",), (60.0,), 62)
    assert (ic.n_shards, ic.dedup_horizon_s, ic.dedup_max_ids, ic.idle_expiry_s) == (5, 12, 8, 14)


def test_the_migration_script_rewrites_whole_names_only(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import migrate_settings
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    env = tmp_path / ".env"
    env.write_text("SCORING_INPUT=a.jsonl\nSCORING_INPUT_TOPIC=t\nSCORING_CRITICAL_THRESHOLD=0.9\nMY_SCORING_INPUT=x\n")
    assert migrate_settings.main(["--check", str(env)]) == 1
    assert migrate_settings.main(["--flow", "iot", str(env)]) == 0
    assert env.read_text() == ("STREAMSCORE_INPUT=a.jsonl\nSTREAMSCORE_INPUT_TOPIC=t\nSTREAMSCORE_IOT__CRITICAL=0.9\n"
                               "MY_SCORING_INPUT=x\n")
    assert migrate_settings.main(["--check", str(env)]) == 0
    assert IOConfig.from_env({"STREAMSCORE_INPUT": "a.jsonl"}).input_path == Path("a.jsonl")


def test_avro_or_protobuf_needs_a_registry_url_and_json_stays_the_default():
    k = FraudConfig.from_env({}).io.kafka
    assert (k.input_format, k.output_format, k.registry_url, k.uses_registry) == ("json", "json", "", False)
    with pytest.raises(ConfigError, match=r"registry.url \(SCHEMA_REGISTRY_URL\): required when the input format"):
        FraudConfig.from_env({"STREAMSCORE_INPUT_FORMAT": "protobuf"})
    with pytest.raises(ConfigError, match="expected one of json, avro"):
        FraudConfig.from_env({"STREAMSCORE_OUTPUT_FORMAT": "protobuf", "SCHEMA_REGISTRY_URL": "http://r"})
    iot = IoTConfig.from_env({"STREAMSCORE_IOT__FORMATS__INPUT": "Avro", "SCHEMA_REGISTRY_URL": "http://r/",
                              "SCHEMA_REGISTRY_AUTH": "user:s3cret"}).io.kafka
    assert (iot.input_format, iot.registry_url, iot.uses_registry) == ("avro", "http://r", True)
    assert "s3cret" not in repr(iot) + str(iot.describe())

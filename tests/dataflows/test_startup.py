"""Checked at start: a wrong setting is one line naming the variable and its value,
exit status 2, before any input is read. Real Feast repo, real model registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dataflows import placement, resources

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fraud_settings(fraud_env, tmp_path, monkeypatch):
    """A valid file-to-file fraud configuration in the environment."""
    for k in list(__import__("os").environ):
        if k.startswith(("STREAMSCORE_", "SCORING_", "KAFKA_OPT_", "IOT_")):
            monkeypatch.delenv(k)
    src = tmp_path / "in.jsonl"
    src.write_text('{"transaction_id": "t1"}\n')
    env = {
        "STREAMSCORE_SOURCE": "file",
        "STREAMSCORE_INPUT": str(src),
        "STREAMSCORE_IO__OUTPUT_DIR": str(tmp_path / "out"),
        "STREAMSCORE_FEAST__REPO": str(fraud_env.repo),
        "STREAMSCORE_MODEL__REGISTRY": str(fraud_env.registry),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(resources, "_STORES", {})
    monkeypatch.setattr(resources, "_MODELS", {})
    return env


def start_errors(capsys) -> list[str]:
    from dataflows.fraud import get_flow

    with pytest.raises(SystemExit) as info:
        get_flow()
    assert info.value.code == 2
    import json

    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("error: ")]
    assert lines, err
    for line in err:  # everything else on stderr is a JSON log line
        assert line.startswith("error: ") or json.loads(line)["event"], line
    return lines


def test_a_valid_configuration_builds_and_owns_its_outputs(fraud_settings, tmp_path):
    from bytewax.dataflow import Dataflow

    from dataflows.fraud import get_flow

    out = tmp_path / "out"
    out.mkdir()
    (out / "dead_letter.jsonl").write_text('{"from": "an earlier run"}\n')
    assert isinstance(get_flow(), Dataflow)
    # every output of the run exists and is empty before the first event: nothing of the earlier run is left
    assert sorted(p.name for p in out.iterdir()) == ["alerts.jsonl", "dead_letter.jsonl", "inference_log",
                                                     "scored.jsonl"]
    assert all(p.stat().st_size == 0 for p in out.iterdir() if p.is_file())
    assert list((out / "inference_log").iterdir()) == []  # the log folder is there, empty


def test_replace_outputs_false_refuses_a_folder_with_another_runs_files(fraud_settings, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "scored.jsonl").write_text("{}\n")
    monkeypatch.setenv("STREAMSCORE_IO__REPLACE_OUTPUTS", "false")
    [line] = start_errors(capsys)
    assert f"STREAMSCORE_IO__OUTPUT_DIR={str(out)!r} holds another run's outputs (scored.jsonl)" in line
    assert (out / "scored.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize(
    "var, value, expected",
    [
        ("STREAMSCORE_FEAST__REPO", "/nonexistent/repo", "STREAMSCORE_FEAST__REPO='/nonexistent/repo': no such folder"),
        ("STREAMSCORE_FEATURE_STORE_YAML", "nope.yaml", "STREAMSCORE_FEATURE_STORE_YAML='nope.yaml': feature repo"),
        ("STREAMSCORE_FEAST__FRAUD_SERVICE", "nope", "STREAMSCORE_FEAST__FRAUD_SERVICE='nope': no such feature service (the repo has: "),
        ("STREAMSCORE_MODEL__REF", "fraud_model@nope", "STREAMSCORE_MODEL__REF='fraud_model@nope' (STREAMSCORE_MODEL__REGISTRY="),
        ("STREAMSCORE_MODEL__REF", "fraud_model/99", "STREAMSCORE_MODEL__REF='fraud_model/99'"),
        ("KAFKA_OPT_LINGR_MS", "5", "KAFKA_OPT_LINGR_MS: librdkafka has no setting 'lingr.ms'"),
    ],
)
def test_each_wrong_setting_is_one_line_naming_it(fraud_settings, monkeypatch, capsys, var, value, expected):
    monkeypatch.setenv(var, value)
    if var.startswith("KAFKA_OPT_"):
        monkeypatch.setenv("STREAMSCORE_OUTPUT", "kafka")
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    lines = start_errors(capsys)
    assert any(expected in line for line in lines), lines
    if var == "STREAMSCORE_MODEL__REF":
        assert any("models.train" in line or "streamscore train" in line for line in lines)


def test_redis_store_without_its_connection_string(fraud_settings, monkeypatch, capsys):
    monkeypatch.setenv("STREAMSCORE_FEATURE_STORE_YAML", "feature_store.redis.yaml")
    monkeypatch.delenv("REDIS_CONNECTION_STRING", raising=False)
    [line] = start_errors(capsys)
    assert "REDIS_CONNECTION_STRING: not set" in line


def test_every_problem_is_reported_at_once(fraud_settings, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("STREAMSCORE_IO__OUTPUT_DIR", str(blocker / "out"))
    monkeypatch.setenv("STREAMSCORE_MODEL__REF", "fraud_model@nope")
    monkeypatch.setenv("STREAMSCORE_INPUT", str(tmp_path / "missing.jsonl"))
    lines = start_errors(capsys)
    assert len(lines) == 3, lines
    assert "STREAMSCORE_INPUT=" in lines[0] and "no such file" in lines[0]
    assert "STREAMSCORE_IO__OUTPUT_DIR=" in lines[1] and "not a writable folder" in lines[1]
    assert "STREAMSCORE_MODEL__REF=" in lines[2]


def test_bad_settings_are_one_error(fraud_settings, monkeypatch, capsys):
    monkeypatch.setenv("STREAMSCORE_LOG__LEVEL", "bogus")
    monkeypatch.setenv("STREAMSCORE_IO__BATCH_SIZE", "many")
    [line] = start_errors(capsys)
    assert "STREAMSCORE_LOG__LEVEL" in line and "STREAMSCORE_IO__BATCH_SIZE" in line


def test_resuming_is_read_from_the_command_line_and_environment():
    assert placement.resuming(["bytewax.run", "m:flow", "-r", "rec"], {})
    assert placement.resuming(["x"], {"BYTEWAX_RECOVERY_DIRECTORY": "rec"})
    assert not placement.resuming(["bytewax.run", "m:flow"], {})


@pytest.mark.parametrize("module", ["dataflows.fraud", "dataflows.iot"])
def test_importing_a_flow_opens_nothing_and_loads_no_generator(module):
    code = (
        "import sys, time; t = time.perf_counter(); import " + module + "; "
        "heavy = [m for m in ('datagen.transactions', 'datagen.sensors', 'pandas', 'feast', 'confluent_kafka', "
        "'lightgbm', 'river', 'sklearn') if m in sys.modules]; print(heavy)"
    )
    env = {"PATH": "/usr/bin:/bin", "STREAMSCORE_SOURCE": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr == ""


def test_dataflow_api_setting_is_honoured_and_a_busy_port_is_one_warning(tmp_path):
    """``BYTEWAX_DATAFLOW_API_ENABLED=0`` serves nothing (Bytewax alone starts its API
    whenever the variable is set), and a second flow finding the port taken says so in
    one warning line instead of a Rust panic; both runs score everything."""
    import json
    import os
    import socket

    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("0.0.0.0", 0))  # another flow's API on this host
    held.listen()
    port = str(held.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "BYTEWAX_", "IOT_"))}
    env.update(STREAMSCORE_IOT__DEVICE_PROFILE="false", STREAMSCORE_IO__GENERATOR_EVENTS="300",
               STREAMSCORE_INFERENCE_LOG__ENABLED="false", BYTEWAX_DATAFLOW_API_PORT=port)
    try:
        runs = {value: subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.iot:get_flow()"], cwd=ROOT,
                                      env={**env, "BYTEWAX_DATAFLOW_API_ENABLED": value,
                                           "STREAMSCORE_IO__OUTPUT_DIR": str(tmp_path / value)},
                                      capture_output=True, text=True, timeout=180)
                for value in ("0", "1")}
    finally:
        held.close()
    for value, res in runs.items():
        assert res.returncode == 0 and "panicked" not in res.stderr, res.stderr[-2000:]
        assert (tmp_path / value / "scored.jsonl").read_bytes().count(b"\n") == 300
        busy = [e for e in map(json.loads, res.stderr.splitlines()) if e["event"] == "dataflow_api_port_busy"]
        assert len(busy) == (value == "1"), res.stderr[-2000:]
    assert f"BYTEWAX_DATAFLOW_API_PORT={port}: port in use" in runs["1"].stderr
def test_settle_warms_then_freezes_the_start_up_objects_out_of_the_collector():
    """Run in a child process: gc.freeze() is for the life of the process."""
    code = (
        "import gc\n"
        "from dataflows.startup import settle\n"
        "calls = []\n"
        "settle(lambda: calls.append(gc.get_freeze_count()))\n"
        "print(calls, gc.get_freeze_count() > 1000)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.splitlines()
    out = next(line for line in out if line.startswith("[")).split()  # the other lines: logs
    assert out == ["[0]", "True"]  # warmed before the freeze, then the objects are frozen


def test_warm_up_loads_the_device_kernels_and_leaves_no_state():
    from models.iot import warm_up

    warm_up()  # a throwaway device: nothing to check but that it runs (the kernels compile or load)

"""The ``streamscore`` command: every subcommand through click's CliRunner, and the
installed ``.venv/bin/streamscore`` as a real process. Real registries in ``tmp_path``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from cli.main import main
from models.registry import Registry, Routes

ROOT = Path(__file__).resolve().parents[2]


def window(start: str, end: str, events: int) -> dict:
    return {"start": start, "end": end, "events": events}


@pytest.fixture
def reg(tmp_path) -> Registry:
    r = Registry(tmp_path / "registry")
    for roc, alias in ((0.90, "production"), (0.92, None), (0.95, "candidate")):
        r.publish("fraud_model", f"artifact {roc}".encode(), {
            "feature_names": ["a"], "metrics": {"roc_auc": roc, "pr_auc": roc - 0.1, "events": 100},
            "training_window": window("2026-01-01T00:00:00Z", "2026-01-20T00:00:00Z", 900),
            "evaluation_window": window("2026-01-20T00:00:00Z", "2026-01-30T00:00:00Z", 100),
        }, alias=alias)
    return r


def run(reg: Registry | None, *args: str, code: int = 0):
    """Invoke ``streamscore ARGS --registry ROOT`` (the registry through its environment variable)."""
    env = {"STREAMSCORE_MODEL__REGISTRY": str(reg.root)} if reg else {}
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    if code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result


def run_json(reg: Registry, *args: str):
    return json.loads(run(reg, *args, "--json").stdout)


# --- help --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    [], ["train"], ["models"], ["models", "list"], ["models", "show"], ["models", "alias"], ["models", "unalias"],
    ["models", "compare"], ["models", "delete"], ["models", "routes"], ["replay"], ["report"],
])
def test_every_command_has_help_with_an_example(command):
    out = run(None, *command, "--help").stdout
    assert "Usage: streamscore" in out and "streamscore " in out.split("Usage:", 1)[1]
    assert "Example" in out, out


def test_a_group_without_a_command_shows_its_help():
    assert run(None).stdout.startswith("Usage: streamscore [OPTIONS] COMMAND")
    assert "alias" in run(None, "models").stdout


# --- models ------------------------------------------------------------------------------


def test_models_list(reg):
    out = run(reg, "models", "list").stdout
    assert "fraud_model" in out and "production" in out and "candidate" in out and "0.9500" in out
    rows = run_json(reg, "models", "list", "fraud_model")
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert rows[0]["aliases"] == ["production"] and rows[2]["aliases"] == ["candidate"]
    assert rows[0]["training_window"]["events"] == 900 and rows[0]["routes"] == {}
    assert run_json(reg, "models", "list") == rows  # every model
    run(reg, "models", "list", "nomodel", code=2)


def test_models_list_registry_option_and_missing_folder(reg, tmp_path):
    out = CliRunner().invoke(main, ["models", "list", "--json", "--registry", str(reg.root)])
    assert out.exit_code == 0 and len(json.loads(out.stdout)) == 3
    bad = run(None, "models", "list", "--registry", str(tmp_path / "nowhere"), code=2)
    assert "nowhere" in bad.stderr and "does not exist" in bad.stderr


def test_models_show(reg):
    out = run(reg, "models", "show", "fraud_model@candidate").stdout
    assert out.startswith("fraud_model/3") and "candidate" in out and "roc_auc" in out
    m = run_json(reg, "models", "show", "models:/fraud_model/1")
    assert m["version"] == 1 and m["aliases"] == ["production"] and m["routes"] == {}
    assert m["metrics"]["roc_auc"] == 0.9 and len(m["sha256"]) == 64
    err = run(reg, "models", "show", "fraud_model@staging", code=2).stderr
    assert "no alias 'staging'" in err


def test_models_alias_promote_and_roll_back(reg):
    assert "fraud_model@production -> fraud_model/3 (was fraud_model/1)" in \
        run(reg, "models", "alias", "fraud_model", "production", "3").stdout
    assert reg.resolve("fraud_model") == ("fraud_model", 3)
    run(reg, "models", "alias", "fraud_model", "production", "fraud_model/1")  # roll back by reference
    run(reg, "models", "alias", "fraud_model", "previous", "models:/fraud_model@candidate")
    assert reg.aliases("fraud_model") == {"production": 1, "candidate": 3, "previous": 3}
    assert "no version 9" in run(reg, "models", "alias", "fraud_model", "production", "9", code=2).stderr
    reg.publish("other", b"x", {})
    err = run(reg, "models", "alias", "fraud_model", "production", "other/1", code=2).stderr
    assert "'other/1' is a version of model 'other', not of 'fraud_model'" in err
    assert "bad alias" in run(reg, "models", "alias", "fraud_model", "a b", "1", code=2).stderr
    usage = run(reg, "models", "alias", "fraud_model", code=2).stderr
    assert "Missing argument 'ALIAS'" in usage and "streamscore models alias --help" in usage


def test_models_unalias(reg):
    assert "removed fraud_model@candidate (was fraud_model/3)" in run(reg, "models", "unalias", "fraud_model",
                                                                       "candidate").stdout
    assert reg.aliases("fraud_model") == {"production": 1}
    assert "no alias 'candidate'" in run(reg, "models", "unalias", "fraud_model", "candidate", code=2).stderr


def test_models_compare(reg):
    out = run(reg, "models", "compare", "fraud_model@production", "fraud_model@candidate").stdout
    assert "fraud_model/1" in out and "fraud_model/3" in out and "+0.0500" in out
    cmp = run_json(reg, "models", "compare", "fraud_model/1", "fraud_model/3")
    assert cmp["metrics"]["roc_auc"] == {"a": 0.9, "b": 0.95, "diff": 0.05}
    assert cmp["same_evaluation_window"] is True
    run(reg, "models", "compare", "fraud_model/1", "fraud_model/12", code=2)


def test_models_delete(reg):
    err = run(reg, "models", "delete", "fraud_model", "1", code=2).stderr
    assert "refusing to delete fraud_model/1" in err and "alias fraud_model@production" in err
    assert "deleted fraud_model/2" in run(reg, "models", "delete", "fraud_model", "2").stdout
    assert reg.versions("fraud_model") == [1, 3]
    assert "no version 2" in run(reg, "models", "delete", "fraud_model", "2", code=2).stderr
    assert "not a valid integer" in run(reg, "models", "delete", "fraud_model", "two", code=2).stderr


def test_models_routes(reg):
    assert "no routes for fraud_model" in run(reg, "models", "routes", "fraud_model").stdout
    out = run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/1:90,fraud_model@candidate:10").stdout
    assert "decide  fraud_model/1" in out and "-> fraud_model/3" in out
    assert reg.routes("fraud_model") == Routes.parse("fraud_model/1:90,fraud_model@candidate:10")
    run(reg, "models", "routes", "fraud_model", "--shadow", "models:/fraud_model/2:5")  # keeps the decide part
    got = run_json(reg, "models", "routes", "fraud_model")
    assert got["routes"] == {"decide": [{"ref": "fraud_model/1", "weight": 0.9},
                                        {"ref": "fraud_model@candidate", "weight": 0.1}],
                             "shadow": [{"ref": "fraud_model/2", "share": 0.05}]}
    assert got["resolved"] == {"fraud_model/1": "fraud_model/1", "fraud_model@candidate": "fraud_model/3",
                               "fraud_model/2": "fraud_model/2"}
    assert got["state_token"] == reg.state_token("fraud_model")
    rows = run_json(reg, "models", "list")
    assert [r["routes"] for r in rows] == [{"decide": 0.9}, {"shadow": 0.05}, {"decide": 0.1}]
    run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/3")  # keeps the shadow
    assert reg.routes("fraud_model") == Routes.parse("fraud_model/3", "fraud_model/2:5")
    run(reg, "models", "routes", "fraud_model", "--shadow", "")
    assert reg.routes("fraud_model") == Routes.parse("fraud_model/3")
    # errors name the bad part and change nothing
    err = run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/1:90,fraud_model/3:x", code=2).stderr
    assert "entry 2 'fraud_model/3:x': weight 'x' is not a number" in err
    assert "fraud_model/8 does not resolve" in run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/8",
                                                   code=2).stderr
    assert "--clear cannot be combined" in run(reg, "models", "routes", "fraud_model", "--clear", "--set", "x",
                                               code=2).stderr
    assert reg.routes("fraud_model") == Routes.parse("fraud_model/3")
    assert "removed the routes" in run(reg, "models", "routes", "fraud_model", "--clear").stdout
    assert run_json(reg, "models", "routes", "fraud_model")["routes"] is None
    # a routed version cannot be deleted, its alias cannot be removed
    run(reg, "models", "routes", "fraud_model", "--set", "fraud_model/1:50,fraud_model@candidate:50")
    assert "routes (decide fraud_model/1 50 %" in run(reg, "models", "delete", "fraud_model", "1", code=2).stderr
    assert "the routes of 'fraud_model' use it" in run(reg, "models", "unalias", "fraud_model", "candidate",
                                                       code=2).stderr


# --- train -------------------------------------------------------------------------------


def test_train_no_promote_compares_with_production_on_the_same_window(fraud_env, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(fraud_env.registry, registry)
    reg = Registry(registry)
    production = fraud_env.manifest["version"]
    result = CliRunner().invoke(main, ["train", "--no-promote", "--history", str(fraud_env.history),
                                       "--feature-repo", str(fraud_env.repo), "--registry", str(registry)])
    assert result.exit_code == 0, (result.output, result.exception)
    new = max(reg.versions("fraud_model"))
    out = result.stdout
    assert f"published fraud_model/{new}" in out and "production not moved" in out
    assert f"fraud_model/{new} vs fraud_model/{production} (@production), both on fraud_model/{new}'s evaluation window" in out
    assert "roc_auc" in out and "recall_at_critical" in out
    assert reg.aliases("fraud_model")["production"] == production  # not moved
    manifest = reg.manifest(f"fraud_model/{new}")
    base = manifest["baseline"]
    assert base["ref"] == f"fraud_model/{production}" and base["alias"] == "production"
    assert base["metrics"]["events"] == manifest["metrics"]["events"]  # the candidate's own evaluation rows
    # the same data and seed give the same model: the like-for-like comparison shows no difference
    assert base["metrics"]["roc_auc"] == manifest["metrics"]["roc_auc"]
    cmp = run_json(reg, "models", "compare", f"fraud_model/{production}", f"fraud_model/{new}")
    assert cmp["same_window"]["metrics"]["roc_auc"]["diff"] == 0
    assert "if-missing" not in out
    again = CliRunner().invoke(main, ["train", "--if-missing", "--registry", str(registry)])
    assert again.exit_code == 0 and "not retraining" in again.stdout


def test_train_errors_are_one_line(tmp_path):
    result = run(None, "train", "--history", str(tmp_path / "none.parquet"), "--registry", str(tmp_path), code=2)
    assert "none.parquet: no training history" in result.stderr
    assert "0<x<1" in run(None, "train", "--eval-fraction", "1.5", code=2).stderr.replace(" ", "")


# --- replay / report -----------------------------------------------------------------------


def test_report_passes_its_arguments_through(tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    recs = [{"status": "NORMAL", "latency_ms": 5.0, "scored_at": "2026-01-01T00:00:01.000Z"},
            {"status": "CRITICAL", "latency_ms": 7.0, "scored_at": "2026-01-01T00:00:02.000Z"}]
    (out_dir / "scored.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in recs) + b"\n")
    (out_dir / "alerts.jsonl").write_bytes(orjson.dumps(recs[1]) + b"\n")
    (out_dir / "dead_letter.jsonl").write_bytes(b"")
    out = run(None, "report", str(out_dir), "--input", "2").stdout
    assert "scored                  2" in out and "scored + dead letter = input: True" in out
    run(None, "report", str(out_dir), "--input", "3", code=1)  # the accounting does not hold: the report's own code
    assert "scored.jsonl not found" in run(None, "report", str(tmp_path / "none"), code=2).stderr
    help_text = run(None, "report", "--help").stdout
    assert "streamscore report output/fraud --input 5000" in help_text and "--input INPUT" in help_text


def test_replay_passes_its_arguments_through(tmp_path):
    result = CliRunner().invoke(main, ["replay", "--input", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "missing.jsonl" in result.stderr
    help_text = run(None, "replay", "--help").stdout
    assert "streamscore replay --flow fraud" in help_text and "--rate RATE" in help_text


# --- the installed command -------------------------------------------------------------------


def streamscore() -> str:
    exe = Path(sys.executable).parent / "streamscore"
    if not exe.exists():
        exe = ROOT / ".venv" / "bin" / "streamscore"
    assert exe.exists(), "streamscore is not installed: run `.venv/bin/pip install -e . --no-deps`"
    return str(exe)


def test_installed_command_runs_as_a_process(reg):
    env = {"PATH": "/usr/bin:/bin", "STREAMSCORE_MODEL__REGISTRY": str(reg.root)}

    def proc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([streamscore(), *args], env=env, capture_output=True, text=True, timeout=60)

    listed = proc("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["ref"] for r in json.loads(listed.stdout)] == ["fraud_model/1", "fraud_model/2", "fraud_model/3"]
    routed = proc("models", "routes", "fraud_model", "--set", "fraud_model/1:90,fraud_model/2:10", "--json")
    assert routed.returncode == 0 and json.loads(routed.stdout)["routes"]["decide"][1]["weight"] == 0.1
    refused = proc("models", "delete", "fraud_model", "2")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: refusing to delete fraud_model/2")
    usage = proc("models", "nonsense")
    assert usage.returncode == 2 and usage.stderr.startswith("error: No such command 'nonsense'")

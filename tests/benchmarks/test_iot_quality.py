"""A tiny run of the IoT quality benchmark: the project's scoring (the flow's own
DeviceState / ShardState through IoTPipeline) must beat the River baseline on the
same stream, in the same run (no timing assertions)."""

from __future__ import annotations

from benchmarks import iot_quality


def test_project_beats_baseline_on_the_same_stream() -> None:
    r = iot_quality.run(readings=5000, devices=20, seed=3)
    p, b = r["project"], r["baseline"]
    assert r["anomalies"] > 50
    assert p["pr_auc"] > 2.0 * b["pr_auc"], (p["pr_auc"], b["pr_auc"])
    assert p["roc_auc"] > b["roc_auc"], (p["roc_auc"], b["roc_auc"])
    # warm-up readings have no score (the one rule), counted as 0.0 by the benchmark
    assert 0 < r["null_scores"] < r["warming_readings"]
    assert "project" in iot_quality.format_report(r)


def test_cli_exit_code(capsys) -> None:
    assert iot_quality.main(["--readings", "3000", "--devices", "10", "--seed", "4"]) == 0
    assert "ROC AUC" in capsys.readouterr().out

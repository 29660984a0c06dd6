"""Monitoring over the inference log (monitoring/queries.py, `streamscore monitor`) and
the Grafana dashboard (infra/grafana/streamscore-dashboard.json).

The log is written with the flow's own writer (models.inference_log.LogWriter and
log_row): six days, two model versions, several files per day from two partitions and
a later run with one more feature column; days 4-6 are shifted (fraud_score + 0.2,
amount x 1.5) so the drift check has something to find.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
import monitoring as mon
from models.inference_log import LogSpec, LogWriter, log_row

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 20, tzinfo=timezone.utc)
DAYS = 6
SHIFT_FROM = 3  # days 0-2 as trained, days 3-5 shifted
FEATURES = (
    "amount", "amount_count_1h", "amount_mean_24h", "time_since_last_transaction", "distance_from_home_km",
    "speed_kmh", "merchant_risk_score", "amount_to_profile_ratio", "customer_known", "merchant_known",
)
SPEC = LogSpec("fraud", "transaction_id", "customer_id", scores=("fraud_score", "risk_score", "anomaly_score"),
               features=FEATURES)
#: a later run logs one more feature (the log is read with union_by_name)
SPEC_V2 = LogSpec("fraud", "transaction_id", "customer_id", scores=SPEC.scores, features=(*FEATURES, "new_feature"))


def synthetic_records(seed: int = 7, per_day: int = 600) -> list[dict]:
    """Scored records as the fraud flow writes them (the fields the log keeps)."""
    rng = np.random.default_rng(seed)
    recs = []
    for day in range(DAYS):
        shifted = day >= SHIFT_FROM
        for i in range(per_day):
            at = START + timedelta(days=day, seconds=float(rng.uniform(0, 86_400)))
            version = "fraud_model/2" if day >= 1 and rng.random() < 0.25 else "fraud_model/1"
            fraud = float(rng.beta(0.6, 9.0))
            if shifted:
                fraud = min(1.0, fraud + 0.2)
            anomaly = None if rng.random() < 0.1 else float(rng.beta(1.0, 6.0))
            risk = 1 - (1 - fraud) * (1 - 0.4 * (anomaly or 0.0))
            status = "CRITICAL" if risk > 0.8 else "WARNING" if risk > 0.5 else "NORMAL"
            amount = float(rng.lognormal(3.5, 0.8)) * (1.5 if shifted else 1.0)
            latency = float(rng.lognormal(math.log(70), 0.35)) * (1.15 if version == "fraud_model/2" else 1.0)
            recs.append({
                "transaction_id": f"t{day}-{i}", "customer_id": f"C{int(rng.integers(0, 300)):04d}",
                "model_version": version, "fraud_score": fraud, "risk_score": risk, "anomaly_score": anomaly,
                "status": status, "latency_ms": latency,
                "scored_at": at.isoformat().replace("+00:00", "Z"),
                "event_time": (at - timedelta(milliseconds=latency)).isoformat().replace("+00:00", "Z"),
                "shadow_scores": {"fraud_model/3": fraud * 0.9} if rng.random() < 0.1 else None,
                "amount": amount,
                "amount_count_1h": float(rng.poisson(1.5) + 1),
                "amount_mean_24h": amount * float(rng.uniform(0.6, 1.4)),
                "time_since_last_transaction": float(rng.exponential(20_000)),
                "distance_from_home_km": None if rng.random() < 0.1 else float(rng.exponential(15)),
                "speed_kmh": float(rng.exponential(30)),
                "merchant_risk_score": float(rng.beta(2, 8)),
                "amount_to_profile_ratio": amount / 40.0,
                "customer_known": float(rng.random() < 0.95),
                "merchant_known": 1.0,
                "new_feature": float(rng.normal()),
            })
    return recs


def write_log(root: Path, seed: int = 7, per_day: int = 600) -> list[dict]:
    """Write the synthetic log under ``root``; return its rows (``log_row`` output)."""
    recs = synthetic_records(seed, per_day)
    last_day = START + timedelta(days=DAYS - 1)
    old = [r for r in recs if r["scored_at"] < last_day.isoformat()[:10]]
    new = [r for r in recs if r["scored_at"] >= last_day.isoformat()[:10]]
    rows = []
    writers = [LogWriter(root, SPEC, part=p, max_rows=500) for p in range(2)]
    for i in range(0, len(old), 250):  # batches, as a sink receives them
        for p, w in enumerate(writers):
            batch = [log_row(r, SPEC) for r in old[i:i + 250] if int(r["customer_id"][1:]) % 2 == p]
            w.write(batch)
            rows += [_as_dict(b, SPEC) for b in batch]
    for w in writers:
        w.close()
    later = LogWriter(root, SPEC_V2, part=0, max_rows=400)
    batch = [log_row(r, SPEC_V2) for r in new]
    later.write(batch)
    later.close()
    return rows + [_as_dict(b, SPEC_V2) for b in batch]


def _as_dict(row: tuple, spec: LogSpec) -> dict:
    """A log row as the log holds it: named columns, times as UTC datetimes."""
    from models.inference_log import columns

    d = dict(zip(columns(spec), row))
    for k in ("scored_at", "event_time"):
        d[k] = None if d[k] is None else datetime.fromisoformat(d[k].replace("Z", "+00:00"))
    return d


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("monitoring") / "inference_log"
    return root, write_log(root)


@pytest.fixture()
def con(log):
    c = mon.connect(log[0])
    yield c
    c.close()


def _day(row: dict) -> date:
    return row["scored_at"].astimezone(timezone.utc).date()


def _groups(rows: list[dict]) -> dict[tuple[date, str], list[dict]]:
    g: dict[tuple[date, str], list[dict]] = defaultdict(list)
    for r in rows:
        g[(_day(r), r["model_version"])].append(r)
    return g


# --- the view and the user's query ---------------------------------------------------------------


def test_log_has_several_files_and_both_schemas(log):
    root, rows = log
    files = sorted(root.glob("date=*/*.parquet"))
    assert len({f.parent.name for f in files}) == DAYS
    assert len(files) > 2 * DAYS  # several files per day: partitions, size bound, a second run
    c = mon.connect(root)
    cols = mon.columns(c)
    assert {"date", "new_feature", "shadow_scores", "fraud_score"} <= set(cols)
    (n, with_new) = c.execute("SELECT COUNT(*), COUNT(new_feature) FROM inference_log").fetchone()
    assert n == len(rows) == DAYS * 600
    assert with_new == sum(1 for r in rows if "new_feature" in r)  # older files: null (union_by_name)
    assert c.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"


def test_the_users_query_runs_unchanged_and_matches_python(con, log):
    query = (
        "SELECT DATE(scored_at) AS date, model_version, COUNT(*) AS predictions, AVG(fraud_score) AS avg_score, "
        "SUM(CASE WHEN fraud_score > 0.5 THEN 1 ELSE 0 END) AS flagged_count, AVG(latency_ms) AS avg_latency "
        "FROM inference_log GROUP BY 1, 2 ORDER BY date DESC;"
    )
    assert query == mon.DAILY_QUERY
    got = con.execute(query).fetchall()
    groups = _groups(log[1])
    assert len(got) == len(groups) == 2 * DAYS - 1  # fraud_model/2 from the second day on
    dates = [r[0] for r in got]
    assert dates == sorted(dates, reverse=True)
    for d, version, n, avg_score, flagged, avg_latency in got:
        rows = groups[(d, version)]
        assert n == len(rows)
        assert avg_score == pytest.approx(sum(r["fraud_score"] for r in rows) / len(rows), rel=1e-12)
        assert flagged == sum(1 for r in rows if r["fraud_score"] > 0.5)
        assert avg_latency == pytest.approx(sum(r["latency_ms"] for r in rows) / len(rows), rel=1e-12)
    assert sum(r[4] for r in got) > 0  # the shifted days do flag some


def test_date_is_the_utc_day_whatever_the_machine_zone(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Pacific/Auckland")
    time.tzset()
    try:
        w = LogWriter(tmp_path / "log", SPEC, part=0)
        w.write([log_row({"transaction_id": "t", "customer_id": "c", "fraud_score": 0.7, "status": "WARNING",
                          "model_version": "m/1", "latency_ms": 1.0, "scored_at": "2026-11-26T23:30:00Z"}, SPEC)])
        w.close()
        c = mon.connect(tmp_path / "log")
        assert c.execute(mon.DAILY_QUERY).fetchall()[0][0] == date(2026, 11, 26)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_daily_summary_percentiles_and_alert_rate_match_numpy(con, log):
    groups = _groups(log[1])
    rows = mon.daily_summary(con)
    assert len(rows) == len(groups)
    users = {(r[0], r[1]): r for r in con.execute(mon.DAILY_QUERY).fetchall()}
    for r in rows:
        grp = groups[(r["date"], r["model_version"])]
        lat = np.array([g["latency_ms"] for g in grp])
        p50, p99 = np.percentile(lat, [50, 99])  # linear interpolation = quantile_cont
        assert r["p50_latency"] == pytest.approx(p50, rel=1e-12)
        assert r["p99_latency"] == pytest.approx(p99, rel=1e-12)
        alerts = sum(1 for g in grp if g["status"] != "NORMAL")
        assert r["alerts"] == alerts and r["alert_rate"] == pytest.approx(alerts / len(grp))
        u = users[(r["date"], r["model_version"])]  # the same numbers as the user's query
        assert (r["predictions"], r["flagged_count"]) == (u[2], u[4])
        assert r["avg_score"] == pytest.approx(u[3]) and r["avg_latency"] == pytest.approx(u[5])


def test_daily_summary_filters_and_other_scores(con, log):
    all_rows = mon.daily_summary(con)
    some = mon.daily_summary(con, since="2026-11-21", until="2026-11-22")
    assert {r["date"] for r in some} == {date(2026, 11, 21), date(2026, 11, 22)}  # both bounds inclusive
    assert sum(r["predictions"] for r in some) == 1200
    v2 = mon.daily_summary(con, version="fraud_model/2")
    assert {r["model_version"] for r in v2} == {"fraud_model/2"}
    assert sum(r["predictions"] for r in v2) == sum(1 for r in log[1] if r["model_version"] == "fraud_model/2")
    anomaly = mon.daily_summary(con, score="anomaly_score")
    grp = _groups(log[1])
    for r in anomaly:  # nulls during warm-up are left out of the average
        vals = [g["anomaly_score"] for g in grp[(r["date"], r["model_version"])] if g["anomaly_score"] is not None]
        assert r["avg_score"] == pytest.approx(sum(vals) / len(vals))
    assert len(anomaly) == len(all_rows)
    with pytest.raises(mon.MonitoringError, match="no score column 'temperature'"):
        mon.daily_summary(con, score="temperature")
    with pytest.raises(mon.MonitoringError, match="is VARCHAR, not a number"):
        mon.daily_summary(con, score="status")


def test_connect_names_the_folder_when_missing_or_empty(tmp_path):
    with pytest.raises(mon.MonitoringError, match=re.escape(f"'{tmp_path / 'nope'}' does not exist")):
        mon.connect(tmp_path / "nope")
    (tmp_path / "empty" / "date=2026-11-26").mkdir(parents=True)
    (tmp_path / "empty" / "date=2026-11-26" / ".fraud-abc-p0-000000.parquet.tmp").write_bytes(b"half")
    with pytest.raises(mon.MonitoringError, match=re.escape(f"'{tmp_path / 'empty'}' holds no Parquet file")):
        mon.connect(tmp_path / "empty")


# --- drift -------------------------------------------------------------------------------------------


def test_psi_and_ks_on_known_samples():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 4000), rng.normal(0, 1, 4000)
    assert mon.psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert mon.psi(a, b) < 0.02
    assert mon.psi(a, a * 1.5) > mon.PSI_DRIFT
    assert mon.PSI_WATCH > mon.psi(a, a + 0.2) > 0.02  # a fifth of a standard deviation: visible, not alarming
    assert mon.psi(a, a + 0.5) > mon.PSI_DRIFT
    assert math.isfinite(mon.psi(a, a + 100))  # every current value in the top bin: epsilon, not log(0)
    stat, p = mon.ks_test(a, b)
    assert stat < 0.05 and p > 0.01
    stat, p = mon.ks_test(a, a + 0.3)
    assert stat > 0.1 and p < 1e-10
    with pytest.raises(mon.MonitoringError):
        mon.psi([], [1.0])


def test_drift_flags_a_shifted_period(con):
    rep = mon.drift_report(con, reference="2026-11-20..2026-11-22", current="2026-11-23..2026-11-25")
    by = {c["column"]: c for c in rep["columns"]}
    assert rep["reference"]["rows"] == rep["current"]["rows"] == 1800
    assert list(by)[0] == "fraud_score" and len(by) == 1 + 8  # the score, then the top 8 features
    assert by["fraud_score"]["flagged"] and by["fraud_score"]["psi"] > mon.PSI_DRIFT
    assert by["amount"]["flagged"] and by["amount"]["ks_p"] < mon.KS_P
    assert by["amount"]["mean_current"] == pytest.approx(1.5 * by["amount"]["mean_reference"], rel=0.15)
    for name in ("amount_count_1h", "time_since_last_transaction", "speed_kmh", "distance_from_home_km"):
        if name in by:
            assert by[name]["level"] == "ok", by[name]
    assert "merchant_known" not in by  # constant: no variance
    assert not set(by) & (mon.FIXED_COLUMNS | {"risk_score", "anomaly_score"})


def test_drift_does_not_flag_an_unshifted_period(con):
    # two samples of the same distribution (the first two days, fixed seed)
    rep = mon.drift_report(con, reference="2026-11-20..2026-11-20", current="2026-11-21..2026-11-21")
    assert [c["column"] for c in rep["columns"] if c["flagged"]] == []
    assert all(c["level"] == "ok" for c in rep["columns"]), rep["columns"]
    # explicit columns and one version
    rep = mon.drift_report(con, ("2026-11-20", "2026-11-21"), ("2026-11-22", "2026-11-22"),
                           columns=["fraud_score", "merchant_risk_score"], version="fraud_model/1")
    assert [c["column"] for c in rep["columns"]] == ["fraud_score", "merchant_risk_score"]
    assert not any(c["flagged"] for c in rep["columns"])


def test_default_periods_are_the_two_halves(con):
    ref, cur = mon.default_periods(con)
    lo, hi = mon.time_range(con)
    assert ref.start == lo and ref.end == cur.start and cur.end > hi
    assert abs((ref.end - lo) - (hi - ref.end)) < timedelta(seconds=1)
    rep = mon.drift_report(con)
    assert rep["reference"]["rows"] + rep["current"]["rows"] == DAYS * 600
    assert rep["columns"][0]["column"] == "fraud_score" and rep["columns"][0]["flagged"]


def test_top_features_by_variance(con):
    feats = mon.top_features(con, n=3)
    variances = dict(zip(mon.numeric_features(con), con.execute(
        "SELECT " + ", ".join(f'var_samp("{f}")' for f in mon.numeric_features(con)) + " FROM inference_log"
    ).fetchone()))
    ranked = sorted((v, f) for f, v in variances.items() if v)[::-1]
    assert feats == [f for _, f in ranked[:3]]
    assert "merchant_known" not in mon.top_features(con, n=50)
    assert set(mon.numeric_features(con)) == {*FEATURES, "new_feature"}


def test_periods_parse_and_refuse():
    p = mon.parse_period("2026-11-20..2026-11-20")
    assert (p.start, p.end) == (START, START + timedelta(days=1))
    p = mon.parse_period("2026-11-20T06:00..2026-11-20T07:30:00+01:00")
    assert p.end - p.start == timedelta(minutes=30)
    for bad in ("2026-11-20", "..2026-11-20", "2026-11-22..2026-11-20", "yesterday..today"):
        with pytest.raises(mon.MonitoringError):
            mon.parse_period(bad)


# --- the command ---------------------------------------------------------------------------------------


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, standalone_mode=False)


def _err_line(res) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


def test_cli_monitor_table(log):
    res = _run("monitor", str(log[0]))
    assert res.return_value == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"inference log {log[0]}: 3,600 predictions, 2026-11-20 .. 2026-11-25, per day"
    assert lines[1] == "  repeats of an event_id removed: 0"
    assert lines[2].split()[:4] == ["date", "model_version", "predictions", "avg"]
    table = lines[3:lines.index("")]
    assert len(table) == 2 * DAYS - 1
    assert table[0].startswith("2026-11-25  fraud_model/1")
    # the log's 10 % of shadow scores by fraud_model/3, beside each decider
    shadows = lines[lines.index("") + 3:]
    assert [line.split()[:2] for line in shadows] == [["fraud_model/1", "fraud_model/3"],
                                                      ["fraud_model/2", "fraud_model/3"]]


def test_cli_monitor_json_version_filter_and_env_default(log, monkeypatch, con):
    monkeypatch.setenv("STREAMSCORE_INFERENCE_LOG__DIR", str(log[0]))
    res = _run("monitor", "--json", "--version", "fraud_model/2", "--since", "2026-11-22")
    assert res.return_value == 0
    out = json.loads(res.output)
    assert out["log_dir"] == str(log[0]) and out["filters"]["version"] == "fraud_model/2"
    want = mon.daily_summary(con, since="2026-11-22", version="fraud_model/2")
    assert out["bin"] == "day" and out["repeats_removed"] == 0
    assert [d["date"] for d in out["summary"]] == [str(r["date"]) for r in want] == [
        "2026-11-25", "2026-11-24", "2026-11-23", "2026-11-22"]
    assert [d["p99_latency"] for d in out["summary"]] == pytest.approx([r["p99_latency"] for r in want])
    assert {d["model_version"] for d in out["summary"]} == {"fraud_model/2"}
    assert [(d["model_version"], d["shadow"]) for d in out["shadows"]] == [("fraud_model/2", "fraud_model/3")]
    assert "drift" not in out


def test_cli_monitor_drift_and_html(log, tmp_path):
    page = tmp_path / "out" / "report.html"
    res = _run("monitor", str(log[0]), "--json", "--reference", "2026-11-20..2026-11-22",
               "--current", "2026-11-23..2026-11-25", "--html", str(page))
    assert res.return_value == 0
    out = json.loads(res.output)
    assert out["html"] == str(page) and page.is_file()
    flagged = {c["column"] for c in out["drift"]["columns"] if c["flagged"]}
    assert {"fraud_score", "amount"} <= flagged
    text = page.read_text()
    assert text.count('<figure class="chart') == 6 and "amount" in text and 'id="chart-shadow"' in text
    res = _run("monitor", str(log[0]), "--drift", "--features", "fraud_score,merchant_risk_score")
    assert res.return_value == 0
    ref, cur = mon.default_periods(mon.connect(log[0]))  # the first and the second half of the range
    assert f"drift: reference {ref}" in res.output and f"current {cur}" in res.output
    assert re.search(r"^\s+fraud_score\s.*DRIFT$", res.output, re.M)
    assert re.search(r"^\s+merchant_risk_score\s.*\sok$", res.output, re.M)


@pytest.mark.parametrize("args, message", [
    (["monitor", "{missing}"], "error: inference log folder '{missing}' does not exist"),
    (["monitor", "{log}", "--version", "fraud_model/9"],
     "error: no model version 'fraud_model/9' in {log} (versions: fraud_model/1, fraud_model/2)"),
    (["monitor", "{log}", "--since", "26/11/2026"], "error: Invalid value for --since: '26/11/2026' is not a date"),
    (["monitor", "{log}", "--reference", "2026-11-20..2026-11-21"], "error: --reference and --current go together"),
    (["monitor", "{log}", "--drift", "--reference", "2026-11-20", "--current", "2026-11-21..2026-11-22"],
     "error: period '2026-11-20': expected START..END"),
    (["monitor", "{log}", "--drift", "--features", "nope"], "error: no column 'nope' in the inference log"),
    (["monitor", "{log}", "--score", "temperature"], "error: Invalid value for '--score'"),
])
def test_cli_monitor_errors_are_one_line_exit_2(log, tmp_path, args, message):
    fill = {"missing": str(tmp_path / "missing"), "log": str(log[0])}
    res = CliRunner().invoke(main, [a.format(**fill) for a in args])
    assert res.exit_code == 2, res.output
    assert _err_line(res).startswith(message.format(**fill)), res.output


def test_cli_monitor_unreadable_file_is_one_line_exit_2(tmp_path):
    part = tmp_path / "log" / "date=2026-11-26"
    part.mkdir(parents=True)
    (part / "fraud-0123456789ab-p0-000000.parquet").write_text("not parquet")
    res = CliRunner().invoke(main, ["monitor", str(tmp_path / "log")])
    assert res.exit_code == 2
    assert _err_line(res).startswith(f"error: cannot read the inference log in '{tmp_path / 'log'}': ")


def test_cli_monitor_empty_selection(log):
    res = _run("monitor", str(log[0]), "--since", "2027-01-01")
    assert res.return_value == 0 and res.output.strip() == f"no predictions in {log[0]} (since 2027-01-01)"


# --- the Grafana dashboard ---------------------------------------------------------------------------


def _defined_metrics() -> dict[str, set[str]]:
    """Series names dataflows/metrics.py exposes, and Bytewax's Kafka lag gauge -> their labels."""
    from prometheus_client.metrics import MetricWrapperBase

    from dataflows.metrics import METRICS

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
                "summary": ("_count", "_sum")}
    from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE  # Bytewax's own, on the same /metrics

    out: dict[str, set[str]] = {}
    for m in [*vars(METRICS).values(), BYTEWAX_CONSUMER_LAG_GAUGE]:
        if isinstance(m, MetricWrapperBase):
            labels = set(m._labelnames) | ({"le"} if m._type == "histogram" else set())
            for suffix in suffixes[m._type]:
                out[m._name + suffix] = labels
    return out


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def test_grafana_dashboard_uses_only_defined_metrics():
    dash = json.loads((ROOT / "infra" / "grafana" / "streamscore-dashboard.json").read_text())
    defined = _defined_metrics()
    assert {"scoring_records_total", "scoring_predictions_total", "scoring_latency_seconds_bucket",
            "scoring_score_bucket", "scoring_model_info"} <= set(defined)
    assert 36 <= dash["schemaVersion"] <= 41 and dash["uid"] and dash["title"]
    ds_vars = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert ds_vars and ds_vars[0]["query"] == "prometheus"
    used = set()
    panels = [p for p in _panels(dash) if p["type"] != "row"]
    assert len(panels) >= 6
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            names = set(re.findall(r"\b(?:scoring_[a-z_]+|bytewax_kafka_consumer_lag)\b", expr))
            assert names, (p["title"], expr)
            assert names <= set(defined), (p["title"], names - set(defined))
            used |= names
            for name in names:  # label matchers and by (...) name labels the metric has
                for sel in re.findall(rf"{name}\{{([^}}]*)\}}", expr):
                    for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", sel):
                        assert label in defined[name], (p["title"], name, label)
            for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                labels = {g.strip() for g in group.split(",") if g.strip()}
                assert labels <= set().union(*(defined[n] for n in names)), (p["title"], labels)
    assert {"scoring_records_total", "scoring_predictions_total", "scoring_latency_seconds_bucket",
            "scoring_score_bucket", "scoring_model_info", "bytewax_kafka_consumer_lag",
            "scoring_events_missing_field_total"} <= used


# --- a live run: hours, shadows, at-least-once repeats ----------------------------------------------

LIVE_START = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
LIVE_HOURS = 5


def live_records(n: int = 3000, seed: int = 11) -> list[dict]:
    """A few hours of a live run: 90/10 split between versions 1 and 2; version 2 also
    shadows 30 % of version 1's keys (as `--shadow fraud_model/2:30` with the split)."""
    rng = np.random.default_rng(seed)
    recs = []
    for i, r in enumerate(synthetic_records(seed, per_day=n)[:n]):
        at = LIVE_START + timedelta(seconds=float(rng.uniform(0, LIVE_HOURS * 3600 - 60)))  # repeats +30 s stay in
        version = "fraud_model/2" if rng.random() < 0.1 else "fraud_model/1"
        shadow = min(1.0, r["fraud_score"] * float(rng.uniform(0.5, 2.5)))
        recs.append({**r, "transaction_id": f"live-{i}", "model_version": version,
                     "scored_at": at.isoformat().replace("+00:00", "Z"),
                     "shadow_scores": {"fraud_model/2": shadow} if version == "fraud_model/1" and rng.random() < 0.3
                     else None})
    return recs


def write_live_log(root: Path, repeat_every: int = 7) -> tuple[list[dict], list[dict]]:
    """The live run's log, plus every ``repeat_every``-th event landed again 30 s later with
    another score (at-least-once: a lander's file written again after a crash before its
    commit, or a flow's replay from its last snapshot). Returns (first records, repeats)."""
    recs = live_records()
    repeats = []
    for r in recs[::repeat_every]:
        again = datetime.fromisoformat(r["scored_at"].replace("Z", "+00:00")) + timedelta(seconds=30)
        repeats.append({**r, "fraud_score": 0.99, "risk_score": 0.99, "status": "CRITICAL",
                        "scored_at": again.isoformat().replace("+00:00", "Z")})
    first, second = LogWriter(root, SPEC, part=0), LogWriter(root, SPEC, part=1)  # two landers' files
    first.write([log_row(r, SPEC) for r in recs])
    second.write([log_row(r, SPEC) for r in repeats])
    first.close()
    second.close()
    return recs, repeats


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> tuple[Path, list[dict], list[dict]]:
    root = tmp_path_factory.mktemp("live") / "inference_log"
    return (root, *write_live_log(root))


def test_repeats_of_an_event_id_are_counted_once_the_last_kept(live):
    root, recs, repeats = live
    c = mon.connect(root)
    assert c.execute(f"SELECT COUNT(*) FROM {mon.ALL_ROWS}").fetchone()[0] == len(recs) + len(repeats)
    # the view, the user's query on it and every summary count each event once
    assert c.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM inference_log").fetchone() == (len(recs),) * 2
    assert sum(r[2] for r in c.execute(mon.DAILY_QUERY).fetchall()) == len(recs)
    assert sum(r["predictions"] for r in mon.summary(c, bin="hour")) == len(recs)
    assert mon.repeats(c) == len(repeats) and mon.repeats(c, version="fraud_model/2") == sum(
        r["model_version"] == "fraud_model/2" for r in repeats)
    # the last record of an event is kept: the repeat, scored later
    kept = dict(c.execute("SELECT event_id, fraud_score FROM inference_log").fetchall())
    assert all(kept[r["transaction_id"]] == 0.99 for r in repeats)
    assert sum(r["alerts"] for r in mon.summary(c)) == sum(
        1 for r in recs if r["status"] != "NORMAL" and r["transaction_id"] not in {x["transaction_id"] for x in repeats}
    ) + len(repeats)


def test_hour_bins_for_a_live_run_and_day_bins_for_days(live, log):
    root, recs, _ = live
    c = mon.connect(root)
    assert mon.choose_bin(c) == "hour" and mon.choose_bin(mon.connect(log[0])) == "day"
    hourly = mon.summary(c, bin="hour")
    want: dict[tuple, int] = defaultdict(int)
    for r in mon.connect(root).execute("SELECT scored_at, model_version FROM inference_log").fetchall():
        want[(r[0].replace(minute=0, second=0, microsecond=0), r[1])] += 1
    assert {(r["bin"], r["model_version"]): r["predictions"] for r in hourly} == want
    assert len({r["bin"] for r in hourly}) == LIVE_HOURS
    assert [r["bin"] for r in hourly] == sorted((r["bin"] for r in hourly), reverse=True)
    daily = mon.summary(c, bin="day")
    assert [(r["date"], r["model_version"]) for r in daily] == [(LIVE_START.date(), "fraud_model/1"),
                                                              (LIVE_START.date(), "fraud_model/2")]
    with pytest.raises(mon.MonitoringError, match="bin 'week': expected one of hour, day"):
        mon.summary(c, bin="week")


def _shadow_status(shadow: float, r: dict) -> str:
    """What the flow would have said with the shadow's score (anomaly weight 0.4, 0.8 / 0.5)."""
    risk = 1 - (1 - shadow) * (1 - 0.4 * (r["anomaly_score"] or 0.0))
    return "CRITICAL" if risk > 0.8 else "WARNING" if risk > 0.5 else "NORMAL"


def test_shadows_beside_their_decider_match_python(live):
    root, recs, repeats = live
    c = mon.connect(root)
    again = {r["transaction_id"] for r in repeats}
    pairs = [r for r in recs if r["shadow_scores"] and r["transaction_id"] not in again]
    pairs += [r for r in repeats if r["shadow_scores"]]  # the kept (last) record of a repeated event
    [got] = mon.shadow_summary(c)
    assert (got["model_version"], got["shadow"], got["scored"]) == ("fraud_model/1", "fraud_model/2", len(pairs))
    s = [r["shadow_scores"]["fraud_model/2"] for r in pairs]
    f = [r["fraud_score"] for r in pairs]
    assert got["avg_shadow"] == pytest.approx(np.mean(s)) and got["avg_decider"] == pytest.approx(np.mean(f))
    assert got["avg_diff"] == pytest.approx(np.mean(np.subtract(s, f)))
    assert got["avg_abs_diff"] == pytest.approx(np.mean(np.abs(np.subtract(s, f))))
    agree = [_shadow_status(x, r) == r["status"] for x, r in zip(s, pairs)]
    assert got["agreement"] == pytest.approx(np.mean(agree)) and 0.5 < got["agreement"] < 1.0
    assert got["shadow_alerts"] == sum(_shadow_status(x, r) != "NORMAL" for x, r in zip(s, pairs))
    hourly = mon.shadow_summary(c, bin="hour")
    assert len(hourly) == LIVE_HOURS and sum(r["scored"] for r in hourly) == len(pairs)
    assert mon.shadow_summary(c, version="fraud_model/2") == []  # version 2 decided, nobody shadowed it


def test_a_shadow_identical_to_its_decider_always_agrees(tmp_path):
    recs = [{**r, "shadow_scores": {"fraud_model/9": r["fraud_score"]}} for r in live_records(600)]
    w = LogWriter(tmp_path / "log", SPEC, part=0)
    w.write([log_row(r, SPEC) for r in recs])
    w.close()
    rows = mon.shadow_summary(mon.connect(tmp_path / "log"))
    assert {(r["model_version"], r["agreement"], r["avg_abs_diff"]) for r in rows} == {
        ("fraud_model/1", 1.0, 0.0), ("fraud_model/2", 1.0, 0.0)}
    assert sum(r["decider_alerts"] for r in rows) == sum(r["shadow_alerts"] for r in rows) > 0


def test_cli_monitor_live_run(live):
    root, recs, repeats = live
    res = _run("monitor", str(root))
    assert res.return_value == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == (f"inference log {root}: {len(recs):,} predictions, 2026-11-26 09:00 .. 2026-11-26 13:00, "
                        "per hour")
    assert lines[1] == f"  repeats of an event_id removed: {len(repeats):,} (the last record of each kept)"
    assert lines[2].split()[:3] == ["hour", "(UTC)", "model_version"]
    assert lines[3].startswith("2026-11-26 13:00  fraud_model/1")
    assert "shadows beside their decider" in res.output
    assert re.search(r"^fraud_model/1\s+fraud_model/2\s+[\d,]+\s", res.output, re.M)
    out = json.loads(_run("monitor", str(root), "--json").output)
    assert out["bin"] == "hour" and out["repeats_removed"] == len(repeats)
    assert len({r["bin"] for r in out["summary"]}) == LIVE_HOURS and out["summary"][0]["bin"] == "2026-11-26T13:00:00Z"
    assert [(s["model_version"], s["shadow"]) for s in out["shadows"]] == [("fraud_model/1", "fraud_model/2")]
    day = json.loads(_run("monitor", str(root), "--json", "--bin", "day").output)
    kept = {r["transaction_id"]: r["model_version"] for r in [*recs, *repeats]}  # one per event
    assert day["bin"] == "day" and [r["predictions"] for r in day["summary"]] == [
        sum(v == version for v in kept.values()) for version in ("fraud_model/1", "fraud_model/2")]

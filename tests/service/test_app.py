"""The scoring endpoint (``service/app.py``): its scores equal the fraud flow's where
``features/live.py`` says they must, with live features written back by the flow; API keys,
limits, refusals naming the field, health, metrics, OpenAPI; the registry's alias change
picked up without a restart; a real uvicorn server and the ``streamscore serve`` command."""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

with __import__("warnings").catch_warnings():  # starlette 1.x: "use httpx2" (httpx works)
    __import__("warnings").simplefilter("ignore")
    from fastapi.testclient import TestClient

from settings.logs import configure_logging
from service.app import EndpointScorer, ServeConfig, create_app, run
from dataflows.connectors.writeback import fraud_writeback
from datagen.transactions import stream_transactions
from features.live import live_features, live_row
from features.records import format_time, parse_time
from features.transactions import HORIZONS, STREAM_FEATURES, CustomerFeatures
from models.fraud import MODEL_FEATURES, MODEL_NAME
from models.registry import Registry
from tests.conftest import ROOT, make_feature_repo
from tests.dataflows.connectors.test_writeback import push_records, run_fraud_flow

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-abcdef0123456789"
H = {"X-API-Key": KEY}
#: Fields that differ between any two scorings of one event.
VOLATILE = {"scored_at", "latency_ms"}


def settings(repo: Path, registry: Path, **env: str) -> ServeConfig:
    return ServeConfig.from_env({"STREAMSCORE_API_KEYS": f"{KEY},{OTHER_KEY}", "STREAMSCORE_FEAST__REPO": str(repo),
                                 "STREAMSCORE_MODEL__REGISTRY": str(registry), "STREAMSCORE_LOG__LEVEL": "WARNING", **env})


# --- the scenario: history written back by the flow, then the next events -----------------------


class Scenario:
    """Customers of the test world with a history (run 1 of the flow, written back), the
    next event of each (scored by the endpoint), and run 2 of the flow over history + next
    events (the truth). Times are on whole minutes (tile boundaries of the 1 h window)."""

    def __init__(self, fraud_env: Any, tmp: Path) -> None:
        tpl = stream_transactions(40, seed=41, spec=fraud_env.spec)
        customers = list(dict.fromkeys(e["customer_id"] for e in tpl))[:4]
        self.A, self.B, self.C, self.D = customers
        T = math.floor(parse_time(tpl[0]["timestamp"]) / 3600) * 3600 + 86400
        self.T = T

        def ev(tid: str, cust: str, t: float, amount: float, dlat: float = 0.0, **extra: Any) -> dict:
            base = next(e for e in tpl if e["customer_id"] == cust)
            return {**base, "transaction_id": tid, "customer_id": cust, "timestamp": format_time(t),
                    "amount": amount, "latitude": round(base["latitude"] + dlat, 5), "is_fraud": 0, **extra}

        A, B, C, D = customers
        self.history = sorted([
            ev("a1", A, T, 20.0), ev("a2", A, T + 300, 35.5, 0.01), ev("a3", A, T + 600, 12.25),
            ev("c1", C, T - 3 * 3600, 80.0), ev("c2", C, T, 60.5), ev("c3", C, T + 600, 7.75, 0.02),
            ev("d1", D, T, 15.0), ev("d2", D, T + 3000, 25.0),
        ], key=lambda e: parse_time(e["timestamp"]))
        self.next = {
            "a4": ev("a4", A, T + 1200, 250.0, 0.05, note="extra fields are carried"),  # all of A within 1 h
            "b1": ev("b1", B, T + 900, 42.0),  # B has no live row: a first transaction
            "c4": ev("c4", C, T + 7800, 99.0, 0.1),  # C's 1 h window emptied; 24 h / 7 d hold all
            "d3": ev("d3", D, T + 4800, 30.0),  # d1 left D's 1 h window since d2 was pushed
        }
        self.repo = make_feature_repo(tmp / "repo", fraud_env.repo / "data")
        self.registry = fraud_env.registry
        run1 = run_fraud_flow(self.history, tmp / "run1", self.repo, self.registry)
        (self.writer,) = push_records(run1, fraud_writeback(self.repo))
        run2 = run_fraud_flow(self.history + sorted(self.next.values(), key=lambda e: parse_time(e["timestamp"])),
                              tmp / "run2", self.repo, self.registry)
        self.truth = {r["transaction_id"]: r for r in run2}
        self.scorer = EndpointScorer(settings(self.repo, self.registry))
        self.client = TestClient(create_app(settings(self.repo, self.registry), self.scorer))


@pytest.fixture(scope="module")
def sc(fraud_env, tmp_path_factory) -> Scenario:
    return Scenario(fraud_env, tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def scored_next(sc) -> dict[str, dict]:
    r = sc.client.post("/score?verbose=true", json=list(sc.next.values()), headers=H)
    assert r.status_code == 200, r.text
    return {rec["transaction_id"]: rec for rec in r.json()}


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def test_the_history_was_written_back(sc):
    assert sc.writer.stats.failures == 0 and sc.writer.stats.pushed >= 3


def test_an_unknown_customer_gets_exactly_the_flows_first_transaction_record(sc, scored_next):
    got, want = scored_next["b1"], sc.truth["b1"]
    assert got["live_known"] is False and got["customer_known"] is True  # a known profile, no live row
    assert want["time_since_last_transaction"] is None and want["amount_count_7d"] == 1
    assert {k: v for k, v in got.items() if k not in VOLATILE | {"live_known"}} == \
           {k: v for k, v in want.items() if k not in VOLATILE}


@pytest.mark.parametrize("tid", ["a4", "c4"])
def test_with_the_previous_events_pushed_the_endpoint_scores_as_the_flow(sc, scored_next, tid):
    """Every event of the customer's pushed windows is still in the windows at the new
    event (A: all within 1 h; C: the 1 h window emptied, all within 24 h): the endpoint's
    streaming features, model input, fraud score and status are the flow's."""
    got, want = scored_next[tid], sc.truth[tid]
    assert got["live_known"] is True and want["time_since_last_transaction"] is not None
    for name in (*STREAM_FEATURES, "late_event", *MODEL_FEATURES[len(STREAM_FEATURES):]):
        if name == "merchant_category_code":
            continue
        assert close(got.get(name), want.get(name)), (tid, name, got.get(name), want.get(name))
    assert want["anomaly_score"] is None  # the flow's detectors still warm up: its risk is its fraud score
    assert got["fraud_score"] == pytest.approx(want["fraud_score"], abs=1e-6)
    assert got["risk_score"] == pytest.approx(want["risk_score"], abs=1e-6)
    assert (got["status"], got["model_version"]) == (want["status"], want["model_version"])
    assert got.get("reasons") == want.get("reasons")
    assert got["note" if tid == "a4" else "transaction_id"] == want["note" if tid == "a4" else "transaction_id"]
    if tid == "c4":
        assert got["amount_count_1h"] == 1 and got["amount_count_24h"] == 4


def test_a_window_that_lost_events_since_the_push_is_over_counted_never_under(sc, scored_next):
    got, want = scored_next["d3"], sc.truth["d3"]
    assert want["amount_count_1h"] == 2 and got["amount_count_1h"] == 3  # d1 left the window after d2 was pushed
    assert got["amount_sum_1h"] == want["amount_sum_1h"] + 15.0
    for name in ("time_since_last_transaction", "speed_kmh", *(f"amount_{s}_{h}" for h in ("24h", "7d")
                                                               for s in ("count", "sum", "mean", "std", "max"))):
        assert close(got[name], want[name]), name


def test_the_endpoint_never_learns(sc):
    a4 = sc.next["a4"]
    first, again = (sc.client.post("/score", json=a4, headers=H).json() for _ in range(2))
    assert first == again and set(first) == {"transaction_id", "fraud_score", "risk_score", "status", "reasons",
                                              "model_version", "live_known", "feature_fallback"}


def test_live_features_equal_the_streams_when_the_pushed_windows_are_still_whole():
    """The statement of features/live.py, on random histories: for each window, when all
    of the pushed window's events are newer than t - H (or the last push is before the
    window's start), the endpoint's window features equal the stream's; otherwise they
    are at least the stream's (over-count, never under)."""
    rng = random.Random(5)
    exact = 0
    for _ in range(1500):
        cf, t, times, last = CustomerFeatures(), 1.79e9 + rng.random() * 1e5, [], None
        for i in range(rng.randint(1, 8)):
            t += rng.random() * rng.choice([60, 900, 3600, 86400, 3 * 86400])
            a, lat, lon = round(rng.uniform(1, 300), 2), rng.uniform(40, 41), rng.uniform(-74, -73)
            last = {"customer_id": "C", "transaction_id": f"t{i}", "timestamp": t, "amount": a, "latitude": lat,
                    "longitude": lon, **cf.update(t, a, lat, lon)}
            times.append(t)
        t2 = t + rng.random() * rng.choice([30, 900, 3600, 5 * 3600, 2 * 86400, 10 * 86400])
        a, lat, lon = round(rng.uniform(1, 300), 2), rng.uniform(40, 41), rng.uniform(-74, -73)
        stream, ep = cf.update(t2, a, lat, lon), live_features(live_row(last), t2, a, lat, lon)
        assert ep.keys() == stream.keys()
        for name in ("time_since_last_transaction", "distance_from_previous_km", "speed_kmh", "late_event"):
            assert close(ep[name], stream[name]), name
        for h, horizon in HORIZONS.items():
            w = horizon / 60
            pushed = [x for x in times if x > math.floor((t - horizon) / w) * w]
            if all(x > t2 - horizon for x in pushed) or t <= math.floor((t2 - horizon) / w) * w:
                exact += 1
                for s in ("count", "sum", "mean", "std", "max"):
                    assert close(ep[f"amount_{s}_{h}"], stream[f"amount_{s}_{h}"]), (h, s)
                if h == "7d":
                    assert close(ep["amount_deviation"], stream["amount_deviation"])
                    assert close(ep["amount_to_mean_ratio"], stream["amount_to_mean_ratio"])
            else:
                assert ep[f"amount_count_{h}"] >= stream[f"amount_count_{h}"]
    assert exact > 2500


# --- the HTTP contract -------------------------------------------------------------------


def test_api_keys_are_required_and_never_logged(sc, capsys):
    configure_logging()
    ev = sc.next["b1"]
    missing = sc.client.post("/score", json=ev)
    wrong = sc.client.post("/score", json=ev, headers={"X-API-Key": KEY[:-1] + "X"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"detail": "missing or invalid X-API-Key"}
    assert sc.client.post("/score", json=ev, headers={"X-API-Key": OTHER_KEY}).status_code == 200
    err = capsys.readouterr().err
    lines = [orjson.loads(x) for x in err.splitlines() if "api_auth_failed" in x]
    assert [x["reason"] for x in lines] == ["missing", "invalid"]
    assert KEY not in err and KEY[:-1] not in err and OTHER_KEY not in err


def test_limits_refuse_big_bodies_and_batches_with_413(sc):
    small = TestClient(create_app(settings(sc.repo, sc.registry, STREAMSCORE_SERVE__MAX_BYTES="2000",
                                           STREAMSCORE_SERVE__MAX_BATCH="3"), sc.scorer))
    ev = sc.next["b1"]
    r = small.post("/score", json=[ev] * 4, headers=H)
    assert r.status_code == 413 and "STREAMSCORE_SERVE__MAX_BATCH=3" in r.json()["detail"]
    r = small.post("/score", json={**ev, "blob": "x" * 3000}, headers=H)
    assert r.status_code == 413 and "STREAMSCORE_SERVE__MAX_BYTES=2000" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while read
        for _ in range(10):
            yield b" " * 500

    r = small.post("/score", content=chunks(), headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert small.post("/score", json=[ev] * 3, headers=H).status_code == 200
    # the default: 1 MiB
    r = sc.client.post("/score", json={**ev, "blob": "x" * (1 << 20)}, headers=H)
    assert r.status_code == 413 and "1048576" in r.json()["detail"]


def test_refused_items_name_index_and_field_with_422(sc):
    ev = sc.next["b1"]
    r = sc.client.post("/score", json=[ev, {**ev, "amount": "twelve"}, {**ev, "latitude": 91},
                                       {k: v for k, v in ev.items() if k != "customer_id"}], headers=H)
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"index": 1, "field": "amount", "error": "field 'amount': expected a number, got 'twelve'"},
        {"index": 2, "field": "latitude", "error": "field 'latitude': 91.0 is outside [-90, 90]"},
        {"index": 3, "field": "customer_id", "error": "field 'customer_id': missing"},
    ]
    r = sc.client.post("/score", json={**ev, "amount": -5}, headers=H)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "amount"
    r = sc.client.post("/score", content=b'{"amount": 1,', headers=H)
    assert r.status_code == 422 and r.json()["detail"][0]["error"].startswith("not valid JSON")
    r = sc.client.post("/score", content=b'[{"amount": NaN}, 3]', headers=H)
    assert r.status_code == 422
    assert [e["index"] for e in r.json()["detail"]] == [0] or r.json()["detail"][0]["index"] is None
    r = sc.client.post("/score", json=[ev, [1]], headers=H)
    assert r.status_code == 422 and r.json()["detail"] == [
        {"index": 1, "field": None, "error": "expected a JSON object, got list"}]
    assert sc.client.post("/score", json=[], headers=H).json() == []


@pytest.mark.parametrize("body, error", [
    (b"[" * 200_000, "not valid JSON: nested too deeply"),  # well under the size limit
    (b'[{"a": "\xff"}]', "not valid UTF-8: byte 0xff at position 7"),  # item 0, as it came
    (b"\xef\xbb\xbf[1]", "not valid JSON: starts with a UTF-8 byte order mark"),
    (b"[1, 2", "not valid JSON: expecting ',' delimiter (byte 5)"),
])
def test_a_body_the_decoder_refuses_is_a_422_naming_why_never_a_500(sc, body, error):
    """The same words as the flows' dead letters (features.records.undecodable), whatever
    the decoder raised (a RecursionError for deep nesting, once a 500)."""
    r = sc.client.post("/score", content=body, headers=H)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["error"].startswith(error), r.json()


def test_healthz_metrics_and_openapi(sc):
    h = sc.client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["model"].startswith(MODEL_NAME)
    sc.client.post("/score", json=sc.next["b1"], headers=H)
    sc.client.post("/score", json=sc.next["b1"])
    m = sc.client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'scoring_api_requests_total{code="200",path="/score"}' in m.text
    assert 'scoring_api_requests_total{code="401",path="/score"}' in m.text
    assert 'scoring_api_events_total{model_version="fraud_model/1",status="' in m.text
    spec = sc.client.get("/openapi.json").json()
    assert "/score" in spec["paths"] and "post" in spec["paths"]["/score"]
    assert "X-API-Key" in orjson.dumps(spec).decode()
    assert sc.client.get("/docs").status_code == 200


def test_the_endpoint_follows_an_alias_change_without_a_restart(sc, tmp_path):
    from tests.e2e.test_model_versions import publish_other_model

    registry = tmp_path / "registry"
    shutil.copytree(sc.registry, registry)
    v2 = publish_other_model(registry, seed=3)
    cfg = settings(sc.repo, registry, STREAMSCORE_MODEL__POLL_S="0.05", STREAMSCORE_MODEL__SHADOW=f"{MODEL_NAME}/{v2}:100")
    app = create_app(cfg)
    client = TestClient(app)
    ev = sc.next["a4"]
    before = client.post("/score", json=ev, headers=H).json()
    assert before["model_version"] == f"{MODEL_NAME}/1" and f"{MODEL_NAME}/{v2}" in before["shadow_scores"]
    assert app.state.scorer.router.switches == 0
    Registry(registry).set_alias(MODEL_NAME, "production", v2)
    time.sleep(0.15)  # over poll_s (a sleep never ends early): the next request looks at the registry
    after = client.post("/score", json=ev, headers=H).json()
    assert after["model_version"] == f"{MODEL_NAME}/{v2}" and app.state.scorer.router.switches == 1
    assert after["fraud_score"] == before["shadow_scores"][f"{MODEL_NAME}/{v2}"] != before["fraud_score"]
    assert client.get("/healthz").json()["model"].startswith(f"{MODEL_NAME}/{v2}")


def test_a_store_outage_still_answers_with_defaults_and_says_so(sc, tmp_path):
    """The online store cannot be read (its SQLite file is a folder): every answer comes at
    once, scored with the defaults of a customer without live features or profile, and
    ``feature_fallback: true`` says the store could not answer.

    "At once", counted: each lookup asks the store at most once for the whole request
    (not once per event), within the lookup timeout, and once the breaker has opened
    the next request is answered without asking the store at all."""
    repo = make_feature_repo(tmp_path / "repo", sc.repo / "data")
    (repo / "data" / "online_store.db").unlink()
    (repo / "data" / "online_store.db").mkdir()
    from features.store import open_store

    # no probe of the store during the test, however long the first request takes
    cfg = settings(repo, sc.registry, STREAMSCORE_FEAST__LOOKUP_RETRY_S="3600")
    scorer = EndpointScorer(cfg, store=open_store(repo))
    client = TestClient(create_app(cfg, scorer))
    lookups = (scorer.live, scorer.scorer.customers, scorer.scorer.merchants)
    assert all(lk.timeout_s == cfg.fraud.lookup_timeout_s for lk in lookups)  # no call waits longer

    def asked() -> list[int]:
        return [lk.stats.calls for lk in lookups]

    r = client.post("/score", json=list(sc.next.values()), headers=H)
    assert r.status_code == 200 and len(r.json()) == len(sc.next)
    assert all(a["feature_fallback"] and not a["live_known"] for a in r.json())
    first = asked()
    assert 1 <= sum(first) and max(first) <= 1, first  # at most one store call per lookup for 4 events
    assert [lk.stats.errors for lk in lookups] == first  # and each one failed (or timed out)
    assert scorer.live.breaker.is_open  # after 3 failures, or at the first timeout
    skipped = sum(lk.stats.skipped for lk in lookups)
    r = client.post("/score", json=list(sc.next.values()), headers=H)
    assert r.status_code == 200 and all(a["feature_fallback"] and not a["live_known"] for a in r.json())
    assert asked() == first and sum(lk.stats.skipped for lk in lookups) == skipped + 3  # not asked again


# --- a real server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_uvicorn_server_answers_over_http(sc):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings(sc.repo, sc.registry), sc.scorer), host="127.0.0.1",
                                           port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            one = client.post("/score", json=sc.next["c4"], headers=H)
            many = client.post("/score", json=list(sc.next.values()), headers=H)
            assert one.status_code == many.status_code == 200
            assert one.json()["fraud_score"] == many.json()[2]["fraud_score"]
            assert [r["transaction_id"] for r in many.json()] == list(sc.next)
            assert client.post("/score", json=sc.next["c4"]).status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)


def test_serve_refuses_to_start_without_keys_or_a_model(sc, capsys):
    from cli.main import main as cli

    env = {"STREAMSCORE_FEAST__REPO": str(sc.repo), "STREAMSCORE_MODEL__REGISTRY": str(sc.registry)}
    assert run(environ=env) == 2
    assert capsys.readouterr().err.startswith("error: serve.api_keys (STREAMSCORE_API_KEYS): required: comma-separated API keys")
    assert run(environ={**env, "STREAMSCORE_API_KEYS": KEY, "STREAMSCORE_MODEL__REF": "fraud_model/99",
                        "STREAMSCORE_FEAST__LIVE_SERVICE": "nope"}) == 2
    err = capsys.readouterr().err
    assert "error: STREAMSCORE_FEAST__LIVE_SERVICE='nope': no such feature service" in err
    assert "error: STREAMSCORE_MODEL__REF='fraud_model/99'" in err and KEY not in err
    assert cli(["serve", "--port", "70000"], standalone_mode=False) == 2  # refused by click, one error line


def test_streamscore_serve_starts_the_endpoint(sc):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_"))}
    env.update({"STREAMSCORE_API_KEYS": KEY, "STREAMSCORE_FEAST__REPO": str(sc.repo),
                "STREAMSCORE_MODEL__REGISTRY": str(sc.registry), "STREAMSCORE_LOG__LEVEL": "WARNING"})
    proc = subprocess.Popen([sys.executable, "-m", "service.app", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        r = httpx.post(f"http://127.0.0.1:{port}/score", json=sc.next["b1"], headers=H, timeout=10)
        assert r.status_code == 200 and r.json()["status"] in ("NORMAL", "WARNING", "CRITICAL")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert KEY not in err.decode()


# --- worker processes ---------------------------------------------------------------------------


def test_the_module_app_imports_without_opening_anything():
    """``service.app:app`` (what ``uvicorn service.app:app --workers N`` loads) is built
    lazily: importing it reads no settings and opens no store, model or Feast."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_"))}
    code = ("import sys, service.app as m, dataflows.resources as r; "
            "assert callable(m.app) and not m.app.built; "
            "assert not r._STORES and not r._MODELS; "
            "assert 'feast' not in sys.modules and 'lightgbm' not in sys.modules, "
            "sorted(k for k in sys.modules if k.split('.')[0] in ('feast', 'lightgbm'))[:3]; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("command", [["cli.main", "serve"], ["service.app"]], ids=["streamscore serve", "service.app"])
def test_serve_with_two_workers_answers_from_two_worker_processes(sc, command):
    """``streamscore serve --workers 2`` (and ``python -m service.app --workers 2``): two
    worker processes on one port, each with its own scorer; /healthz names the pid that
    answered."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMSCORE_", "SCORING_"))}
    env.update({"STREAMSCORE_API_KEYS": KEY, "STREAMSCORE_FEAST__REPO": str(sc.repo),
                "STREAMSCORE_MODEL__REGISTRY": str(sc.registry), "STREAMSCORE_LOG__LEVEL": "WARNING"})
    proc = subprocess.Popen([sys.executable, "-m", *command, "--port", str(port), "--workers", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    pids: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # each worker opens its store and model: slow on a busy machine
        while time.monotonic() < deadline and proc.poll() is None and len(pids) < 2:
            def ask(_: int) -> int | None:
                try:  # a new connection each time: the kernel hands it to either worker
                    return httpx.get(f"{url}/healthz", timeout=5).json()["pid"]
                except httpx.TransportError:
                    time.sleep(0.2)
                    return None
            with __import__("concurrent.futures").futures.ThreadPoolExecutor(8) as pool:
                pids.update(p for p in pool.map(ask, range(16)) if p is not None)
        assert len(pids) == 2 and proc.pid not in pids, pids
        r = httpx.post(f"{url}/score", json=sc.next["b1"], headers=H, timeout=10)
        assert r.status_code == 200 and r.json()["status"] in ("NORMAL", "WARNING", "CRITICAL")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert KEY not in err.decode()

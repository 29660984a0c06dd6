"""Feature store outages: lookup timeouts, the circuit breaker, fallback flags, stale values.

The unit tests use fake fetch functions (no server). The Redis test starts its
own redis-server on a free port (so it can kill and restart it without touching
the one ``make test`` runs), materializes the Feast repo into it, and scores
batches before, during and after an outage. Run it alone with::

    .venv/bin/python -m pytest tests/e2e/test_outages.py -m redis -s
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from structlog.testing import capture_logs

from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS, CachedLookup, CircuitBreaker, fraud_lookups
from models.fraud import FraudPipeline, FraudScoringConfig

DEFAULTS = {"risk": 0.5}
EVENTS = ("feature_lookup_failed", "feature_store_circuit_open", "feature_store_circuit_closed")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FlakyStore:
    def __init__(self) -> None:
        self.down = False
        self.calls: list[list[str]] = []

    def __call__(self, keys: list[str]) -> dict:
        self.calls.append(list(keys))
        if self.down:
            raise ConnectionError("store is down")
        return {k: {"risk": 0.9} for k in keys if k != "nobody"}


def transitions(logs: list[dict]) -> list[str]:
    return [e["event"] for e in logs if e["event"] in EVENTS]


def lookup_threads(*names: str) -> list[threading.Thread]:
    wanted = {f"lookup-{n}" for n in names}
    return [t for t in threading.enumerate() if t.name in wanted]


# --- the breaker, with fake stores ---------------------------------------------------


def test_breaker_opens_after_consecutive_failures_then_probes_and_closes():
    clock, store = FakeClock(), FlakyStore()
    lookup = CachedLookup(store, DEFAULTS, ttl_s=60, clock=clock, failures=3, retry_s=5.0, name="m")
    with capture_logs() as logs:
        assert lookup.get_many(["a"])["a"] == ({"risk": 0.9}, True) and lookup.last_fallback == set()
        store.down = True
        for i in range(3):  # three consecutive failures: each batch asks, then the breaker opens
            res = lookup.get_many([f"k{i}", "a"])
            assert res[f"k{i}"] == (DEFAULTS, False) and lookup.last_fallback == {f"k{i}"}
            assert res["a"] == ({"risk": 0.9}, True)  # cached: still served
        assert len(store.calls) == 4 and lookup.breaker.is_open
        for _ in range(10):  # open: not asked, answered at once with defaults
            assert lookup.get_many(["x"])["x"] == (DEFAULTS, False) and lookup.last_fallback == {"x"}
        assert len(store.calls) == 4 and lookup.stats.skipped == 10
        clock.t += 5.0  # one probe, fails: open for another retry_s
        lookup.get_many(["x"])
        lookup.get_many(["x"])
        assert len(store.calls) == 5 and lookup.breaker.is_open
        store.down = False
        clock.t += 4.9
        lookup.get_many(["x"])
        assert len(store.calls) == 5  # not yet
        clock.t += 0.1
        res = lookup.get_many(["x", "nobody"])  # the probe succeeds: closed, values known again
        assert res == {"x": ({"risk": 0.9}, True), "nobody": (DEFAULTS, False)}
        assert lookup.last_fallback == set() and not lookup.breaker.is_open
        lookup.get_many(["y"])
        assert store.calls[-1] == ["y"]
    # once per transition, not per batch
    assert transitions(logs) == list(EVENTS)
    assert (lookup.stats.errors, lookup.stats.skipped, lookup.stats.fallback) == (4, 12, 16)


def test_two_failures_then_success_do_not_open():
    store = FlakyStore()
    lookup = CachedLookup(store, DEFAULTS, clock=FakeClock(), failures=3)
    store.down = True
    lookup.get_many(["a"])
    lookup.get_many(["a"])
    store.down = False
    assert lookup.get_many(["a"])["a"] == ({"risk": 0.9}, True)
    assert not lookup.breaker.is_open and lookup.breaker.consecutive == 0


def test_a_timeout_opens_at_once_and_calls_never_pile_up():
    release = threading.Event()
    calls: list[list[str]] = []

    def hanging(keys):
        calls.append(list(keys))
        release.wait(10)
        return {k: {"risk": 0.9} for k in keys}

    lookup = CachedLookup(hanging, DEFAULTS, timeout_s=0.1, retry_s=0.0, name="hang")
    with capture_logs() as logs:
        assert lookup.get_many(["a"])["a"] == (DEFAULTS, False)
        assert not release.is_set()  # answered while the call still hangs
        assert lookup.breaker.is_open and lookup.stats.timeouts == 1
        # retry_s=0: every batch may probe, but the hung call is still running: no new
        # call, no new thread, no new failure; each batch answered from the fallback
        for _ in range(20):
            assert lookup.get_many(["b"])["b"] == (DEFAULTS, False) and lookup.last_fallback == {"b"}
        assert len(calls) == 1 and len(lookup_threads("hang")) == 1
        assert (lookup.stats.errors, lookup.stats.skipped) == (1, 20)
        assert not [e for e in logs if e["event"] == "feature_lookup_stuck"]
        lookup.stuck_after_s = 0.0  # a call that never returns is said, once
        lookup.get_many(["c"]), lookup.get_many(["d"])
        assert [e["lookup"] for e in logs if e["event"] == "feature_lookup_stuck"] == ["hang"]
        assert lookup.busy
        release.set()
        lookup._inflight.result(5)  # the hung call ends
        assert not lookup.busy
        lookup.timeout_s = 5.0
        assert lookup.get_many(["b"])["b"] == ({"risk": 0.9}, True)  # the next probe gets through
        assert not lookup.breaker.is_open and len(lookup_threads("hang")) == 1
    assert transitions(logs) == list(EVENTS)


def test_expired_values_are_served_stale_while_the_store_is_down():
    clock, store = FakeClock(), FlakyStore()
    lookup = CachedLookup(store, DEFAULTS, ttl_s=10, clock=clock)
    lookup.get_many(["a"])
    store.down = True
    clock.t += 11
    assert lookup.get_many(["a", "b"]) == {"a": ({"risk": 0.9}, True), "b": (DEFAULTS, False)}
    assert lookup.last_fallback == {"b"} and lookup.stats.stale == 1 and lookup.stats.fallback == 1
    store.down = False
    lookup.get_many(["a"])
    assert store.calls[-1] == ["a"]  # refreshed once the store answers


def test_a_shared_breaker_spares_the_other_lookup():
    clock, store = FakeClock(), FlakyStore()
    breaker = CircuitBreaker(failures=1, retry_s=5.0, clock=clock)
    a = CachedLookup(store, DEFAULTS, clock=clock, breaker=breaker)
    b = CachedLookup(store, DEFAULTS, clock=clock, breaker=breaker)
    store.down = True
    a.get_many(["x"])
    b.get_many(["y"])
    assert len(store.calls) == 1 and b.last_fallback == {"y"}


class StubModel:
    version = "stub/1"

    def predict(self, X):
        return np.full(len(X), 0.1)

    def explain(self, X, top=3):
        return [[] for _ in X]


def raw(i: int, customer: str) -> dict:
    return {"transaction_id": f"t{i}", "customer_id": customer, "merchant_id": "M1", "merchant_category": "gas",
            "amount": 12, "latitude": 1, "longitude": 2, "timestamp": i}


def test_scored_records_tell_unknown_from_store_down():
    down = False

    def store(keys):
        if down:
            raise ConnectionError("store is down")
        return {k: {"avg_transaction_amount": 20.0, "merchant_risk_score": 0.9} for k in keys if k != "nobody"}

    pipe = FraudPipeline(FraudScoringConfig(), StubModel(), CachedLookup(store, PROFILE_DEFAULTS, failures=1),
                         CachedLookup(store, MERCHANT_DEFAULTS, failures=1))
    [rec] = pipe.process([raw(1, "nobody")])  # the store answers: it does not know the customer
    assert (rec["customer_known"], rec["feature_fallback"]) == (False, False)
    down = True
    [rec] = pipe.process([raw(2, "C9")])  # the store is down: defaults, and said so
    assert (rec["customer_known"], rec["merchant_known"], rec["feature_fallback"]) == (False, True, True)
    assert rec["status"] == "NORMAL" and rec["avg_transaction_amount"] == PROFILE_DEFAULTS["avg_transaction_amount"]


# --- a real Redis online store, stopped and restarted --------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of our own: no automatic snapshots; ``stop(save=True)`` writes dump.rdb
    first, so a restart in the same folder comes back with the data (as a persistent Redis does)."""

    def __init__(self, folder, port: int) -> None:
        self.folder, self.port, self.proc = folder, port, None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self, save: bool = False) -> None:
        import redis

        if save:
            redis.Redis(port=self.port).save()
        self.proc.kill()
        self.proc.wait(10)


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
def test_redis_outage_is_bounded_flagged_and_recovers(fraud_env, tmp_path, monkeypatch):
    from datagen.transactions import stream_transactions
    from features.store import open_store
    from models.fraud import FraudModel
    from tests.conftest import apply_and_materialize, make_feature_repo

    others = set(lookup_threads("customer_profile", "merchant_risk"))  # other tests' idle lookups
    server = RedisServer(tmp_path, free_port())
    server.start()
    try:
        monkeypatch.setenv("REDIS_CONNECTION_STRING", f"127.0.0.1:{server.port}")
        repo = make_feature_repo(tmp_path / "repo", fraud_env.repo / "data")
        apply_and_materialize(repo, "feature_store.redis.yaml")
        timeout_s, retry_s, failures = 0.5, 2.0, 3
        customers, merchants = fraud_lookups(open_store(repo, "feature_store.redis.yaml"), ttl_s=1.0,
                                             timeout_s=timeout_s, failures=failures, retry_s=retry_s)
        # The lookups' clock (cache expiry, the breaker's retry_s) is the test's, moved by
        # hand: which batches may ask the store is then a count, whatever the machine's load.
        # (The store calls' own timeout_s stays on the real clock.)
        clock = FakeClock()
        assert customers.breaker is merchants.breaker  # one breaker for the store
        customers._clock = merchants._clock = customers.breaker._clock = clock
        pipe = FraudPipeline(FraudScoringConfig(), FraudModel.load("fraud_model", fraud_env.registry),
                             customers, merchants)
        events = stream_transactions(6000, seed=5, spec=fraud_env.spec)
        ids = sorted({e["customer_id"] for e in events})
        half = set(ids[: len(ids) // 2])
        before = [e for e in events if e["customer_id"] in half][:400]
        seen_before = {e["customer_id"] for e in before}  # only these customers are looked up before the outage
        # the stream again and again, each round under new ids (a repeated id would be a duplicate)
        feed = (dict(e, transaction_id=f"{e['transaction_id']}#{k}") for k in range(20) for e in events)

        def batch(n: int = 200) -> list[dict]:
            return [next(feed) for _ in range(n)]

        def asked() -> tuple[int, int]:
            """(store calls, lookups answered without asking) of both lookups so far."""
            return (customers.stats.calls + merchants.stats.calls, customers.stats.skipped + merchants.stats.skipped)

        # 1. Redis up: values known
        up = pipe.process(before[:200]) + pipe.process(before[200:])
        assert all(r["customer_known"] and r["merchant_known"] and not r["feature_fallback"] for r in up)

        # 2. Redis down: every batch is scored, at once after the first timeout, and flagged
        server.stop(save=True)
        clock.t += 1.1  # the cached entries expire
        n_batches, retries = 30, 1
        with capture_logs() as logs:
            calls_before, skipped_before = asked()
            lookup_s, out, t0 = [], [], time.perf_counter()
            for i in range(n_batches):
                if i == n_batches // 2:
                    clock.t += retry_s  # the breaker lets one probe through
                b = batch()
                t = time.perf_counter()
                pipe.scorer.customers.get_many([e["customer_id"] for e in b])
                pipe.scorer.merchants.get_many([e["merchant_id"] for e in b])
                lookup_s.append(time.perf_counter() - t)
                out += pipe.process(b)
            outage_s = time.perf_counter() - t0
            assert len(out) == n_batches * 200 and all("status" in r for r in out)  # nothing dropped
            # the down store is not asked for every batch: it is asked until the breaker
            # opens (at the first timeout, else after `failures` failures), then once per
            # retry_s (one probe for both lookups, none by a lookup whose call still hangs);
            # every other lookup (2 per batch here, 2 in the scoring) is answered without asking
            calls, skipped = (now - was for now, was in zip(asked(), (calls_before, skipped_before)))
            assert 1 <= calls <= failures + retries, (calls, skipped)
            assert skipped == 4 * n_batches - calls, (calls, skipped)
            assert customers.breaker.is_open
            stale = [r for r in out if r["customer_id"] in seen_before]
            fallback = [r for r in out if r["customer_id"] not in seen_before]
            assert stale and all(r["customer_known"] for r in stale)  # expired, served stale
            assert fallback and all(not r["customer_known"] and r["feature_fallback"] for r in fallback)
            assert len(set(lookup_threads("customer_profile", "merchant_risk")) - others) <= 2

            # 3. Redis back (with its data): the breaker closes at the first probe after the call
            # still hung in redis-py's own retries (up to ~12 s) has ended
            server.start()
            t_back, rounds = time.perf_counter(), 0
            deadline = time.monotonic() + 60  # only a guard against hanging
            # (a lookup whose call still hangs in redis-py's retries skips its batches until it
            # ends, without counting a new failure: one outage is logged, however the probes fall)
            while time.monotonic() < deadline:
                clock.t += retry_s  # each round may probe
                rounds += 1
                recs = pipe.process(batch())
                if not (customers.breaker.is_open or customers.busy or merchants.busy) and all(
                        r["customer_known"] and r["merchant_known"] and not r["feature_fallback"] for r in recs):
                    break
                time.sleep(0.05)
            recovered_s = time.perf_counter() - t_back
            assert not customers.breaker.is_open
            recs = pipe.process(batch())
            assert all(r["customer_known"] and r["merchant_known"] and not r["feature_fallback"] for r in recs)
        events_seen = transitions(logs)
        assert events_seen.count("feature_store_circuit_open") == 1, events_seen
        assert events_seen.count("feature_store_circuit_closed") == 1, events_seen
        assert events_seen.count("feature_lookup_failed") == 1, events_seen
        print(f"\nredis outage: {n_batches} batches of 200 in {outage_s:.2f}s = {n_batches / outage_s:.1f} batches/s "
              f"({n_batches * 200 / outage_s:.0f} events/s), {calls} store calls, {skipped} lookups not asked; "
              f"lookup latency max {max(lookup_s) * 1000:.0f} ms, "
              f"median {sorted(lookup_s)[n_batches // 2] * 1000:.2f} ms; "
              f"known again {recovered_s:.2f}s after restart, after {rounds} rounds (retry_s={retry_s})")
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def test_outage_settings_are_read():
    from settings.config import FraudConfig, IoTConfig

    cfg = FraudConfig.from_env({})
    assert (cfg.lookup_timeout_s, cfg.lookup_retry_s, cfg.lookup_failures) == (1.0, 5.0, 3)
    env = {"STREAMSCORE_FEAST__LOOKUP_TIMEOUT_S": "0.25", "STREAMSCORE_FEAST__LOOKUP_RETRY_S": "2", "STREAMSCORE_FEAST__LOOKUP_FAILURES": "1"}
    for kind in (FraudConfig, IoTConfig):
        cfg = kind.from_env(env)
        assert (cfg.lookup_timeout_s, cfg.lookup_retry_s, cfg.lookup_failures) == (0.25, 2.0, 1)
    with pytest.raises(Exception, match="STREAMSCORE_FEAST__LOOKUP_TIMEOUT_S"):
        FraudConfig.from_env({"STREAMSCORE_FEAST__LOOKUP_TIMEOUT_S": "0"})


def test_the_worker_thread_ends_when_idle_and_comes_back():
    from features.store import _CallThread

    worker = _CallThread("idle-test", idle_s=0.5)
    assert worker.submit(lambda x: x + 1, 1).result(5) == 2
    [thread] = lookup_threads("idle-test")
    thread.join(10)  # ends by itself once idle
    assert not thread.is_alive() and lookup_threads("idle-test") == []
    assert worker.submit(lambda x: x * 3, 2).result(5) == 6

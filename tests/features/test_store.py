"""features.store: the defaults rule, CachedLookup's batching, cache, TTL and failures; Feast fetchers on a real repo."""

from __future__ import annotations

import pandas as pd
import pytest

from features.store import (
    MERCHANT_DEFAULTS,
    PROFILE_DEFAULTS,
    CachedLookup,
    FeastFetcher,
    feast_fetcher,
    fraud_lookups,
    with_defaults,
)


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeStore:
    """A plain fetch function that records its calls; knows keys starting with "k"."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.version = 1
        self.fail = False

    def __call__(self, keys: list[str]) -> dict:
        self.calls.append(list(keys))
        if self.fail:
            raise ConnectionError("store is down")
        return {k: {"risk": float(len(k)) * self.version, "rate": None} for k in keys if k.startswith("k")}


DEFAULTS = {"risk": 0.5, "rate": 0.02}


def make(ttl_s: float = 60.0, max_entries: int = 1000):
    store, clock = FakeStore(), FakeClock()
    return CachedLookup(store, DEFAULTS, ttl_s=ttl_s, max_entries=max_entries, clock=clock), store, clock


# --- with_defaults ------------------------------------------------------------------------


def test_with_defaults_fills_missing_values_and_flags_known():
    assert with_defaults({"risk": 0.9, "rate": None}, DEFAULTS) == ({"risk": 0.9, "rate": 0.02}, True)
    assert with_defaults({"risk": float("nan"), "rate": 0.1}, DEFAULTS) == ({"risk": 0.5, "rate": 0.1}, True)
    assert with_defaults({"risk": None, "rate": float("nan")}, DEFAULTS) == (DEFAULTS, False)
    assert with_defaults({}, DEFAULTS) == (DEFAULTS, False)
    assert with_defaults(None, DEFAULTS) == (DEFAULTS, False)
    # only the defaults' features come back; a value for another feature does not make the key known
    assert with_defaults({"other": 1.0}, DEFAULTS) == (DEFAULTS, False)
    # a zero is a value, not a missing one
    assert with_defaults({"risk": 0.0}, DEFAULTS) == ({"risk": 0.0, "rate": 0.02}, True)
    values, _ = with_defaults(None, DEFAULTS)
    values["risk"] = 1.0
    assert DEFAULTS["risk"] == 0.5


def test_cached_lookup_applies_with_defaults():
    """The online lookup's (values, known) is exactly with_defaults of the store's answer."""
    answers = {"k1": {"risk": 0.3, "rate": None}, "k2": {"risk": None, "rate": None}, "k3": {"risk": float("nan")}}
    lookup = CachedLookup(lambda keys: {k: answers[k] for k in keys if k in answers}, DEFAULTS, clock=FakeClock())
    got = lookup.get_many(["k1", "k2", "k3", "k4"])
    for key in ("k1", "k2", "k3", "k4"):
        assert got[key] == with_defaults(answers.get(key), DEFAULTS), key


# --- CachedLookup with a fake fetch function ---------------------------------------------


def test_one_fetch_per_batch_of_distinct_keys():
    lookup, store, _ = make()
    res = lookup.get_many(["k1", "k22", "k1", "k333", "k22", "k1"])
    assert len(store.calls) == 1
    assert store.calls[0] == ["k1", "k22", "k333"]  # distinct, first-seen order
    assert list(res) == ["k1", "k22", "k333"]
    assert res["k22"] == ({"risk": 3.0, "rate": 0.02}, True)  # a None value takes its default
    assert lookup.stats.calls == 1 and lookup.stats.keys_fetched == 3


def test_cache_hits_avoid_calls_and_only_missing_keys_are_fetched():
    lookup, store, _ = make()
    lookup.get_many(["k1", "k22"])
    res = lookup.get_many(["k22", "k1", "k22"])
    assert len(store.calls) == 1
    assert res["k1"] == ({"risk": 2.0, "rate": 0.02}, True)
    lookup.get_many(["k1", "k4444", "k55555", "k22"])
    assert store.calls[1] == ["k4444", "k55555"]
    assert len(store.calls) == 2
    assert lookup.stats.hits == 2 + 2


def test_empty_batch_makes_no_call():
    lookup, store, _ = make()
    assert lookup.get_many([]) == {}
    assert store.calls == []


def test_ttl_expiry_refetches():
    lookup, store, clock = make(ttl_s=60.0)
    assert lookup.get_many(["k1"])["k1"][0]["risk"] == 2.0
    store.version = 10  # the store's value changes
    clock.t += 59.9
    assert lookup.get_many(["k1"])["k1"][0]["risk"] == 2.0  # still cached
    assert len(store.calls) == 1
    clock.t += 0.1  # exactly ttl after the fetch: expired
    assert lookup.get_many(["k1"])["k1"][0]["risk"] == 20.0
    assert len(store.calls) == 2
    clock.t += 30
    lookup.get_many(["k1"])
    assert len(store.calls) == 2  # the refetch restarted the TTL


def test_expiry_is_per_entry():
    lookup, store, clock = make(ttl_s=100.0)
    lookup.get_many(["ka"])
    clock.t += 50
    lookup.get_many(["kb"])
    clock.t += 60  # ka expired, kb has 40 s left
    lookup.get_many(["ka", "kb"])
    assert store.calls[-1] == ["ka"]


def test_lru_bound_max_entries():
    lookup, store, _ = make(max_entries=3)
    lookup.get_many(["k1", "k2", "k3"])
    lookup.get_many(["k1"])  # k1 becomes most recently used
    lookup.get_many(["k4"])  # evicts k2, the least recently used
    assert len(lookup._cache) == 3
    assert set(lookup._cache) == {"k1", "k3", "k4"}
    n = len(store.calls)
    lookup.get_many(["k1", "k3", "k4"])
    assert len(store.calls) == n  # all cached
    lookup.get_many(["k2"])
    assert store.calls[-1] == ["k2"]
    # a batch larger than the cache still answers every key
    res = lookup.get_many([f"k{i}" for i in range(10, 20)])
    assert len(res) == 10 and all(known for _, known in res.values())
    assert len(lookup._cache) == 3


def test_unknown_keys_get_defaults_known_false_and_are_cached():
    lookup, store, _ = make()
    res = lookup.get_many(["nobody", "k1"])
    assert res["nobody"] == (DEFAULTS, False)
    assert res["k1"][1] is True
    assert lookup.stats.unknown == 1
    res2 = lookup.get_many(["nobody", "nobody"])
    assert res2["nobody"] == (DEFAULTS, False)
    assert len(store.calls) == 1  # the miss was cached


def test_all_none_values_count_as_unknown():
    lookup = CachedLookup(lambda keys: {k: {"risk": None, "rate": None} for k in keys}, DEFAULTS, clock=FakeClock())
    assert lookup.get_many(["x"])["x"] == (DEFAULTS, False)


def test_returned_values_do_not_alias_defaults():
    lookup, _, _ = make()
    values, _ = lookup.get_many(["nobody"])["nobody"]
    values["risk"] = 99.0
    assert lookup.defaults == DEFAULTS


def test_failing_fetch_yields_defaults_and_is_retried_next_batch():
    lookup, store, _ = make()
    lookup.get_many(["k1"])  # cached before the outage
    store.fail = True
    res = lookup.get_many(["k1", "k22", "nobody"])
    assert res["k1"] == ({"risk": 2.0, "rate": 0.02}, True)  # the cached one is still served
    assert res["k22"] == (DEFAULTS, False)
    assert res["nobody"] == (DEFAULTS, False)
    assert lookup.stats.errors == 1
    assert "k22" not in lookup._cache  # nothing cached from the failed call
    res = lookup.get_many(["k22"])  # still down: tried again
    assert store.calls[-1] == ["k22"] and res["k22"] == (DEFAULTS, False)
    store.fail = False
    res = lookup.get_many(["k22", "nobody"])
    assert store.calls[-1] == ["k22", "nobody"]
    assert res["k22"] == ({"risk": 3.0, "rate": 0.02}, True)
    assert res["nobody"] == (DEFAULTS, False)
    assert lookup.stats.errors == 2


# --- through the real Feast repo ---------------------------------------------------


def last_snapshot(env, table: str, key: str, value: str) -> pd.Series:
    df = pd.read_parquet(env.repo / "data" / f"{table}.parquet")
    rows = df[df[key] == value].sort_values("event_timestamp")
    assert len(rows) > 1
    return rows.iloc[-1]


@pytest.fixture(scope="module")
def customer_fetch(fraud_env):
    return feast_fetcher(fraud_env.repo, "fraud_scoring", "customer_profile", "customer_id")


def test_feast_fetcher_returns_the_latest_snapshot(fraud_env, customer_fetch):
    known = ["C000042", "C000007"]
    got = customer_fetch(known + ["C999999"])
    assert set(got) == {"C000042", "C000007", "C999999"}
    for cid in known:
        row = last_snapshot(fraud_env, "customer_profile", "customer_id", cid)
        assert set(got[cid]) == {"avg_transaction_amount", "transaction_frequency", "home_latitude", "home_longitude"}
        for name, value in got[cid].items():
            assert value == pytest.approx(float(row[name])), (cid, name)
    assert got["C999999"] == {name: None for name in got["C000042"]}


def test_feast_fetcher_latest_snapshot_differs_from_first(fraud_env, customer_fetch):
    """Guard: the comparison above would catch a fetcher serving an older snapshot."""
    df = pd.read_parquet(fraud_env.repo / "data" / "customer_profile.parquet")
    rows = df[df["customer_id"] == "C000042"].sort_values("event_timestamp")
    assert rows["avg_transaction_amount"].iloc[-1] != rows["avg_transaction_amount"].iloc[0]
    assert customer_fetch(["C000042"])["C000042"]["avg_transaction_amount"] == pytest.approx(
        rows["avg_transaction_amount"].iloc[-1]
    )


def test_feast_fetcher_merchant_view(fraud_env):
    fetch = feast_fetcher(fraud_env.repo, "fraud_scoring", "merchant_risk", "merchant_id")
    got = fetch(["M00003", "M99999"])
    row = last_snapshot(fraud_env, "merchant_risk", "merchant_id", "M00003")
    assert got["M00003"]["merchant_risk_score"] == pytest.approx(row["merchant_risk_score"])
    assert got["M00003"]["chargeback_rate"] == pytest.approx(row["chargeback_rate"])
    assert got["M99999"] == {"merchant_risk_score": None, "chargeback_rate": None}


def test_feast_fetcher_reads_what_get_online_features_gives(fraud_env, customer_fetch):
    """The fetcher reads with the online store's own ``online_read`` (half the CPU per key):
    the same values as ``get_online_features(...).to_dict()`` for every key, unknown ones too."""
    from features.store import _DirectRead

    customers = pd.read_parquet(fraud_env.repo / "data" / "customer_profile.parquet")["customer_id"].unique().tolist()
    keys = customers[:700] + ["C999999", "", "c000001", "C000001 ", "顧客-1"]
    got = customer_fetch(keys)
    assert isinstance(customer_fetch._direct, _DirectRead)
    assert got == customer_fetch.via_get_online_features(keys)
    known = sum(any(v is not None for v in got[k].values()) for k in keys)
    assert 100 < known <= 700  # the test repo materializes the customers of its window
    merchants = feast_fetcher(fraud_env.repo, "fraud_scoring", "merchant_risk", "merchant_id")
    keys = [f"M{i:05d}" for i in range(0, 400, 3)]
    assert merchants(keys) == merchants.via_get_online_features(keys)


def test_feast_fetcher_falls_back_to_get_online_features_when_the_store_interface_differs(fraud_env, monkeypatch):
    from structlog.testing import capture_logs

    fetch = feast_fetcher(fraud_env.repo, "fraud_scoring", "customer_profile", "customer_id")
    want = fetch(["C000042", "C999999"])

    def changed(*_a, **_k):
        raise TypeError("online_read() got an unexpected keyword argument 'requested_features'")

    monkeypatch.setattr(fetch._direct, "_to_protos", changed)
    with capture_logs() as logs:
        assert fetch(["C000042", "C999999"]) == want
        assert fetch(["C000042"]) == {"C000042": want["C000042"]}
    assert [e["event"] for e in logs] == ["feast_direct_read_off"]
    assert "requested_features" in logs[0]["reason"] and fetch._direct is False


def test_a_view_the_direct_read_does_not_serve_goes_through_get_online_features(fraud_env, monkeypatch):
    """A disabled view (or one not online yet) is not read around Feast's own checks: the
    public call decides (here it still serves: the view is only disabled in the copy)."""
    import copy

    fetch = feast_fetcher(fraud_env.repo, "fraud_scoring", "customer_profile", "customer_id")
    want = fetch(["C000042"])
    store = fetch._open()
    real = store.get_feature_view
    public: list[list[str]] = []
    monkeypatch.setattr(fetch, "via_get_online_features",
                        lambda keys: public.append(list(keys)) or type(fetch).via_get_online_features(fetch, keys))

    def disabled(name, *a, **k):
        fv = copy.copy(real(name, *a, **k))
        fv.enabled = False
        return fv

    monkeypatch.setattr(store, "get_feature_view", disabled)
    assert fetch(["C000042"]) == want and public == [["C000042"]]
    monkeypatch.setattr(store, "get_feature_view", real)
    assert fetch(["C000042"]) == want and public == [["C000042"]]  # served directly again


def test_feast_fetcher_unknown_view_names_it_and_the_repo(fraud_env):
    fetch = feast_fetcher(fraud_env.repo, "fraud_scoring", "no_such_view", "customer_id")
    with pytest.raises(LookupError, match="no_such_view") as exc:
        fetch(["C000001"])
    assert str(fraud_env.repo) in str(exc.value)


def test_cached_feast_lookup_makes_one_store_call_per_batch(fraud_env, customer_fetch):
    calls: list[list[str]] = []

    def counting(keys: list[str]):
        calls.append(list(keys))
        return customer_fetch(keys)

    clock = FakeClock()
    lookup = CachedLookup(counting, PROFILE_DEFAULTS, ttl_s=300, clock=clock, name="customers")
    batch = ["C000001", "C000002", "C000001", "C999999", "C000002", "C000001", "C999999"]
    res = lookup.get_many(batch)
    assert len(calls) == 1
    assert sorted(calls[0]) == ["C000001", "C000002", "C999999"]
    row = last_snapshot(fraud_env, "customer_profile", "customer_id", "C000001")
    values, known = res["C000001"]
    assert known is True
    assert values["avg_transaction_amount"] == pytest.approx(row["avg_transaction_amount"])
    assert values["home_latitude"] == pytest.approx(row["home_latitude"])
    assert res["C999999"] == (PROFILE_DEFAULTS, False)
    # the next batch is served from the cache, until the TTL passes
    lookup.get_many(batch)
    assert len(calls) == 1
    clock.t += 301
    assert lookup.get_many(batch)["C000001"] == res["C000001"]
    assert len(calls) == 2


def test_fetcher_over_an_open_store_and_fraud_lookups(fraud_env, customer_fetch):
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(fraud_env.repo))
    fetch = FeastFetcher(store, "fraud_scoring", "customer_profile", "customer_id")
    assert fetch(["C000042", "C999999"]) == customer_fetch(["C000042", "C999999"])
    assert fetch.for_view("merchant_risk", "merchant_id")(["M00003"])["M00003"]["merchant_risk_score"] is not None
    for source in (store, fraud_env.repo):
        customers, merchants = fraud_lookups(source, ttl_s=10)
        assert customers.defaults == PROFILE_DEFAULTS and merchants.defaults == MERCHANT_DEFAULTS
        assert customers.get_many(["C000042"])["C000042"][1] is True
        assert merchants.get_many(["M99999"])["M99999"] == (MERCHANT_DEFAULTS, False)


def test_cached_lookup_over_a_broken_feast_repo_gives_defaults(tmp_path):
    lookup = CachedLookup(
        feast_fetcher(tmp_path / "missing_repo", "fraud_scoring", "merchant_risk", "merchant_id"),
        MERCHANT_DEFAULTS,
        clock=FakeClock(),
    )
    res = lookup.get_many(["M00001", "M00001"])
    assert res == {"M00001": (MERCHANT_DEFAULTS, False)}
    assert lookup.stats.errors == 1
    lookup.get_many(["M00001"])
    assert lookup.stats.errors == 2  # retried, not cached


def test_feast_imported_without_typeguard_recompiling_it_and_typeguard_restored(fraud_env):
    """``import_feast`` (what every flow process opens Feast with) skips typeguard's
    import-time re-compilation of Feast's classes; typeguard itself is left as it was, and
    the store still reads features. In a fresh interpreter: this one may hold feast already."""
    import subprocess
    import sys

    code = (
        "import typeguard; real = typeguard.typechecked\n"
        "from features.store import import_feast, open_store\n"
        "feast = import_feast()\n"
        "names = feast.FeatureView.__init__.__code__.co_names\n"
        "assert not any('typeguard' in n for n in names), names[:5]\n"
        "assert typeguard.typechecked is real\n"
        f"store = open_store({str(fraud_env.repo)!r})\n"
        "resp = store.get_online_features(features=['customer_profile:avg_transaction_amount'],"
        " entity_rows=[{'customer_id': 'C000001'}]).to_dict()\n"
        "print(resp['avg_transaction_amount'])\n"
    )
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("[")


# --- prefetch: the store call started early, on the lookup's thread --------------------


def test_prefetch_starts_the_call_off_the_callers_thread_and_get_many_takes_its_answer():
    import threading

    threads: list[str] = []
    store = FakeStore()

    def fetch(keys):
        threads.append(threading.current_thread().name)
        return store(keys)

    lookup = CachedLookup(fetch, DEFAULTS, ttl_s=60, clock=FakeClock(), name="profiles")
    plain, _, _ = make()
    lookup.get_many(["k1"]), plain.get_many(["k1"])  # cached before: not fetched again
    assert lookup.prefetch(["k1", "k22", "nobody", "k22"]) == 2
    assert lookup.prefetch(["k22", "nobody"]) == 0  # already on their way
    batch = ["k22", "k1", "nobody"]
    assert lookup.get_many(batch) == plain.get_many(batch)  # the same answers as a call of its own
    assert store.calls == [["k1"], ["k22", "nobody"]]  # no second call for the prefetched keys
    assert threads == ["MainThread", "lookup-profiles"]
    assert lookup.stats.calls == 2 and lookup.stats.keys_fetched == 3 and lookup.stats.unknown == 1


def test_prefetched_keys_never_asked_for_are_cached_not_kept_pending():
    lookup, store, _ = make()
    lookup.prefetch(["k1"])
    lookup.prefetch(["k22"])
    lookup._pending["k1"][0].result(5)  # done
    lookup.get_many(["k22"])  # takes its own prefetch, and the finished one of k1
    assert not lookup._pending
    assert lookup.get_many(["k1"]) == {"k1": ({"risk": 2.0, "rate": 0.02}, True)}
    assert store.calls == [["k1"], ["k22"]]


def test_failed_prefetch_is_a_failed_call_stale_or_defaults_and_tried_again():
    lookup, store, clock = make(ttl_s=10)
    lookup.get_many(["k1"])
    clock.t += 11  # k1 expired: refetched, its stale values served while the store is down
    store.fail = True
    lookup.prefetch(["k1", "k22"])
    res = lookup.get_many(["k1", "k22"])
    assert res["k1"] == ({"risk": 2.0, "rate": 0.02}, True) and res["k22"] == (DEFAULTS, False)
    assert lookup.last_fallback == {"k22"}
    assert lookup.stats.errors == 1 and lookup.stats.stale == 1 and lookup.stats.fallback == 1
    assert lookup.breaker.consecutive == 1
    store.fail = False
    assert lookup.get_many(["k22"])["k22"] == ({"risk": 3.0, "rate": 0.02}, True)  # asked again
    assert lookup.breaker.consecutive == 0


def test_hung_prefetch_times_out_opens_the_breaker_and_nothing_piles_up():
    import threading

    release = threading.Event()
    store = FakeStore()

    def hung(keys):
        release.wait(30)
        return store(keys)

    clock = FakeClock()
    lookup = CachedLookup(hung, DEFAULTS, ttl_s=60, clock=clock, timeout_s=0.05, retry_s=5.0)
    try:
        assert lookup.prefetch(["k1"]) == 1
        res = lookup.get_many(["k1"])  # waits at most timeout_s from the prefetch
        assert res["k1"] == (DEFAULTS, False) and lookup.last_fallback == {"k1"}
        assert lookup.stats.timeouts == 1 and lookup.breaker.is_open
        assert lookup.prefetch(["k22"]) == 0 and lookup.busy  # the hung call still runs: no other
        assert lookup.get_many(["k22"])["k22"] == (DEFAULTS, False)
        assert lookup.stats.skipped == 1
    finally:
        release.set()
    lookup._inflight.result(5)
    clock.t += 6  # the breaker's probe is due
    assert lookup.prefetch(["k22"]) == 1  # the probe
    assert lookup.get_many(["k22"])["k22"] == ({"risk": 3.0, "rate": 0.02}, True)
    assert not lookup.breaker.is_open


def test_fraud_lookups_share_one_call_thread_so_prefetched_calls_never_overlap(fraud_env):
    import threading

    customers, merchants = fraud_lookups(fraud_env.repo, timeout_s=5.0)
    running, overlaps, threads = [0], [0], set()
    lock = threading.Lock()

    def watched(fetch):
        def call(keys):
            with lock:
                running[0] += 1
                overlaps[0] += running[0] > 1
                threads.add(threading.current_thread().name)
            try:
                return fetch(keys)
            finally:
                with lock:
                    running[0] -= 1
        return call

    customers._fetch, merchants._fetch = watched(customers._fetch), watched(merchants._fetch)
    for i in range(5):
        customers.prefetch([f"C{i:06d}", f"C{i + 50:06d}"])
        merchants.prefetch([f"M{i:05d}"])
    customers.get_many([f"C{i:06d}" for i in range(5)])
    merchants.get_many([f"M{i:05d}" for i in range(5)])
    assert customers.stats.errors == merchants.stats.errors == 0
    assert overlaps[0] == 0 and threads == {"lookup-fraud_scoring"}

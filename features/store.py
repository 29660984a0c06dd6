"""Feast features online: the defaults rule, batched cached lookups, Feast fetchers.

- :data:`PROFILE_DEFAULTS`, :data:`MERCHANT_DEFAULTS` and :func:`with_defaults`:
  the one rule for a key Feast does not know (or a feature it has no value for),
  used by the online lookups *and* by training (``models.train``), so the model
  is trained on exactly what it is served.
- :class:`CachedLookup`: in front of any ``fetch(keys) -> {key: values}``; per
  batch of events it asks the store once, for the distinct keys that are not
  cached (or whose entry expired). Misses are cached too.
- :class:`FeastFetcher` / :func:`feast_fetcher`: the fetch function for one view
  of a Feast feature service (SQLite or Redis online store, as the repo says).

>>> with_defaults({"merchant_risk_score": 0.9, "chargeback_rate": None}, MERCHANT_DEFAULTS)
({'merchant_risk_score': 0.9, 'chargeback_rate': 0.02}, True)
>>> with_defaults({}, MERCHANT_DEFAULTS)
({'merchant_risk_score': 0.5, 'chargeback_rate': 0.02}, False)
>>> calls = []
>>> def fetch(keys):
...     calls.append(sorted(keys))
...     return {k: {"risk": 0.9} for k in keys if k != "unknown"}
>>> lookup = CachedLookup(fetch, defaults={"risk": 0.5}, ttl_s=60)
>>> res = lookup.get_many(["m1", "m2", "m1", "unknown"])
>>> res["m1"], res["unknown"]
(({'risk': 0.9}, True), ({'risk': 0.5}, False))
>>> _ = lookup.get_many(["m1", "unknown"])   # served from the cache
>>> calls
[['m1', 'm2', 'unknown']]
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

import structlog

from features.keyhash import is_utf8

__all__ = [
    "PROFILE_DEFAULTS",
    "MERCHANT_DEFAULTS",
    "with_defaults",
    "CachedLookup",
    "LookupStats",
    "CircuitBreaker",
    "FetchFn",
    "FeastFetcher",
    "feast_fetcher",
    "fraud_lookups",
    "import_feast",
    "open_store",
]

log = structlog.get_logger(__name__)

#: ``customer_profile`` values for a customer Feast does not know.
PROFILE_DEFAULTS: dict[str, Any] = {
    "avg_transaction_amount": 40.0,
    "transaction_frequency": 2.0,
    "home_latitude": None,
    "home_longitude": None,
}
#: ``merchant_risk`` values for a merchant Feast does not know.
MERCHANT_DEFAULTS: dict[str, Any] = {"merchant_risk_score": 0.5, "chargeback_rate": 0.02}


def with_defaults(raw: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(values, known)`` for one key from what the store answered.

    ``values`` has exactly the features of ``defaults``: the store's value, or
    the default where the store has none (absent, ``None`` or NaN, as a pandas
    point-in-time join gives). ``known`` is True when the store had a value for
    at least one of them. ``values`` is a new dict every call.

    >>> with_defaults({"a": float("nan"), "b": 2.0, "extra": 1}, {"a": 1.0, "b": 0.0})
    ({'a': 1.0, 'b': 2.0}, True)
    >>> with_defaults(None, {"a": 1.0})
    ({'a': 1.0}, False)
    """
    if not raw:
        return dict(defaults), False
    values: dict[str, Any] = {}
    known = False
    for f, d in defaults.items():
        v = raw.get(f)
        if v is None or v != v:
            values[f] = d
        else:
            values[f] = v
            known = True
    return values, known


FetchFn = Callable[[list[str]], Mapping[str, Mapping[str, Any]]]


class LookupStats:
    """Counters of one lookup: store calls, keys asked, cache hits, unknown keys, errors
    (failed or timed-out calls), timeouts, calls skipped while the breaker was open,
    keys served with defaults because the store failed (``fallback``) and expired
    entries served because the store failed (``stale``)."""

    __slots__ = ("calls", "keys_fetched", "hits", "unknown", "errors", "timeouts", "skipped", "fallback", "stale")

    def __init__(self) -> None:
        for k in self.__slots__:
            setattr(self, k, 0)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class CircuitBreaker:
    """Stops asking a failing store for a while.

    Closed: every call goes through. After ``failures`` consecutive failures, or
    one timeout, it opens: no call for ``retry_s`` seconds, then one probe call;
    a successful probe closes it, a failed one opens it again for ``retry_s``.
    Logs ``feature_lookup_failed`` (first failure after a success),
    ``feature_store_circuit_open`` and ``feature_store_circuit_closed`` once per
    transition. One breaker may be shared by the lookups of one store.
    """

    def __init__(self, failures: int = 3, retry_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, name: str = "feature_store") -> None:
        self.failures = max(1, int(failures))
        self.retry_s = retry_s
        self._clock = clock
        self.name = name
        self.consecutive = 0
        self.is_open = False
        self.opened_at = 0.0
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Whether to ask the store now (while open: one probe per ``retry_s``)."""
        with self._lock:
            if not self.is_open:
                return True
            now = self._clock()
            if now >= self._retry_at:
                self._retry_at = now + self.retry_s  # this call is the probe
                return True
            return False

    def success(self) -> None:
        with self._lock:
            was_open, self.is_open, self.consecutive = self.is_open, False, 0
        if was_open:
            log.warning("feature_store_circuit_closed", store=self.name,
                        outage_s=round(self._clock() - self.opened_at, 3))

    def failure(self, error: str, lookup: str = "", timeout: bool = False) -> None:
        with self._lock:
            self.consecutive += 1
            first = self.consecutive == 1 and not self.is_open
            opens = not self.is_open and (timeout or self.consecutive >= self.failures)
            now = self._clock()
            if opens:
                self.is_open, self.opened_at = True, now
            if self.is_open:
                self._retry_at = now + self.retry_s
        if first:
            log.warning("feature_lookup_failed", store=self.name, lookup=lookup, timeout=timeout, error=error)
        if opens:
            log.warning("feature_store_circuit_open", store=self.name, lookup=lookup,
                        failures=self.consecutive, timeout=timeout, retry_s=self.retry_s)


class _CallThread:
    """One daemon thread running calls in order (a hung call never blocks the exit);
    it ends after ``idle_s`` without work and is started again by the next call."""

    def __init__(self, name: str, idle_s: float = 30.0) -> None:
        self.name = name
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        with self._lock:
            self._queue.put((fut, fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"lookup-{self.name}", daemon=True)
                self._thread.start()
        return fut

    def _run(self) -> None:
        while True:
            try:
                fut, fn, args = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)


class CachedLookup:
    """Batched lookups through a bounded, time-limited cache, with a timeout and a circuit breaker.

    Args:
        fetch: returns the values of the keys the store knows; keys it does
            not know are absent or have only ``None`` values.
        defaults: the features returned, and their values for unknown keys and
            for features that came back empty (see :func:`with_defaults`).
        ttl_s: how long a cached entry is used before it is fetched again.
        max_entries: cache size; the least recently used entries go first.
        clock: monotonic seconds, replaceable in tests.
        name: names the lookup in logs.
        timeout_s: give up on a store call after this long (``None``: wait; the
            call then runs in the caller's thread). The call runs in this lookup's
            one worker thread; a timed-out call is left to finish there and no
            other call is started while it runs (threads never pile up): batches
            meanwhile are answered as if the breaker were open (``skipped``), without
            counting a new failure.
        breaker: a :class:`CircuitBreaker` (shared by the lookups of one store),
            else one of its own with ``failures`` and ``retry_s``.
        stuck_after_s: a call still running after this long is logged once
            (``feature_lookup_stuck``): its lookup answers from stale or default
            values until it returns, even if the breaker has closed meanwhile.
        calls: the thread the store calls run in, shared by the lookups of one store
            client (:func:`fraud_lookups`) so that their calls, prefetched ones too, run one
            at a time as they did inline; else one of its own, made on the first call.

    When ``fetch`` raises or times out, or the breaker is open, the keys to fetch
    get, if they have an expired cache entry, that entry (stale, served while the
    store is down), else the defaults with ``known=False``; nothing is cached,
    so a later batch asks again. :attr:`last_fallback` holds the keys of the last
    :meth:`get_many` that got defaults because the store could not answer.
    Returned value dicts are shared with the cache: read them, do not modify them.

    :meth:`prefetch` starts the store call for a batch's missing keys on the lookup's
    thread and returns at once, so the call overlaps whatever the caller does before
    :meth:`get_many` (the flow: the customer and shard steps); :meth:`get_many` then takes
    its answer (waiting for what is left of it, within ``timeout_s`` from the prefetch),
    with the same values, cache, breaker and fallbacks as a call of its own.
    """

    def __init__(
        self,
        fetch: FetchFn,
        defaults: Mapping[str, Any],
        ttl_s: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        name: str = "lookup",
        timeout_s: float | None = None,
        breaker: CircuitBreaker | None = None,
        failures: int = 3,
        retry_s: float = 5.0,
        stuck_after_s: float = 30.0,
        calls: _CallThread | None = None,
    ) -> None:
        self._fetch = fetch
        self.defaults = dict(defaults)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self.name = name
        self.timeout_s = timeout_s
        self.breaker = breaker if breaker is not None else CircuitBreaker(failures, retry_s, clock, name)
        self._cache: OrderedDict[str, tuple[float, dict[str, Any], bool]] = OrderedDict()
        self._worker: _CallThread | None = calls
        self._inflight: Future | None = None
        self._inflight_at = 0.0
        self._pending: dict[str, tuple[Future, float]] = {}  # key -> (its prefetch, submitted at)
        self._stuck_logged = False
        self.stuck_after_s = stuck_after_s
        self.last_fallback: set[str] = set()
        self.stats = LookupStats()

    @property
    def busy(self) -> bool:
        """A store call that timed out is still running: batches are answered without
        asking the store until it ends."""
        return self._inflight is not None and not self._inflight.done()

    def _call(self, keys: list[str]) -> Mapping[str, Mapping[str, Any]]:
        """``fetch(keys)``, within ``timeout_s``; raises ``TimeoutError`` when it takes longer."""
        if self.timeout_s is None:
            return self._fetch(keys)
        fut = self._submit(keys)
        try:
            return fut.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"{self.name} lookup took more than {self.timeout_s}s") from None

    def prefetch(self, keys: Iterable[str]) -> int:
        """Start fetching, on this lookup's thread, the keys that are neither cached (and
        unexpired) nor already being fetched; returns at once, with how many keys the call
        asks for. Nothing starts while a timed-out call still runs or the breaker is open
        (a prefetch may be the open breaker's probe). A later :meth:`get_many` of these
        keys takes the answer, and counts the call's success or failure then.

        >>> import threading
        >>> seen = []
        >>> lookup = CachedLookup(lambda ks: seen.append(threading.current_thread().name) or {k: {"r": 1.0} for k in ks},
        ...                       defaults={"r": 0.0}, name="demo")
        >>> lookup.prefetch(["a", "b", "a"]), lookup.prefetch(["a"])   # "a" is already on its way
        (2, 0)
        >>> lookup.get_many(["a", "b"])["a"], seen, lookup.stats.calls
        (({'r': 1.0}, True), ['lookup-demo'], 1)
        """
        now = self._clock()
        cache, pending = self._cache, self._pending
        wanted = []
        for key in dict.fromkeys(keys):
            if key in pending:
                continue
            entry = cache.get(key)
            if entry is None or entry[0] <= now:
                wanted.append(key)
        if not wanted or self.busy or not self.breaker.allow():
            return 0
        self.stats.calls += 1
        self.stats.keys_fetched += len(wanted)
        fut = self._submit(wanted)
        for key in wanted:
            pending[key] = (fut, now)
        return len(wanted)

    def _submit(self, keys: list[str]) -> Future:
        """``fetch(keys)`` started on this lookup's thread."""
        if self._worker is None:
            self._worker = _CallThread(self.name)
        self._inflight = fut = self._worker.submit(self._fetch, keys)
        self._inflight_at, self._stuck_logged = self._clock(), False
        return fut

    def _prefetched(self, missing: list[str], now: float) -> tuple[dict[str, Mapping[str, Any] | None], set[str]]:
        """The answers of the prefetches of the ``missing`` keys, waited for (within
        ``timeout_s`` of each prefetch), and of every other prefetch already done:
        ``({key: raw values or None}, keys whose prefetch failed)``. A call's keys leave
        the pending set when it is taken; a failed call counts as one failure."""
        answered: dict[str, Mapping[str, Any] | None] = {}
        failed: set[str] = set()
        pending = self._pending
        calls: dict[int, tuple[Future, float]] = {}
        for key in missing:
            item = pending.get(key)
            if item is not None:
                calls.setdefault(id(item[0]), item)
        for item in pending.values():  # done ones of other keys too: the pending set stays small
            if item[0].done():
                calls.setdefault(id(item[0]), item)
        for fut, at in calls.values():
            keys = [k for k, (f, _) in pending.items() if f is fut]
            for k in keys:
                del pending[k]
            try:
                wait = None if self.timeout_s is None else max(0.0, self.timeout_s - (now - at))
                try:
                    result = fut.result(timeout=wait)
                except FutureTimeout:
                    raise TimeoutError(f"{self.name} lookup took more than {self.timeout_s}s") from None
            except Exception as exc:  # as a failed call of get_many's own
                timeout = isinstance(exc, TimeoutError)
                self.stats.errors += 1
                self.stats.timeouts += timeout
                self.breaker.failure(repr(exc)[:500], lookup=self.name, timeout=timeout)
                failed.update(keys)
            else:
                self.breaker.success()
                answered.update((k, result.get(k)) for k in keys)
        return answered, failed

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[dict[str, Any], bool]]:
        """``{key: (values, known)}`` for every distinct key, with one store call at most
        (besides the calls :meth:`prefetch` started for them)."""
        now = self._clock()
        out: dict[str, tuple[dict[str, Any], bool]] = {}
        missing: list[str] = []
        cache = self._cache
        for key in dict.fromkeys(keys):
            entry = cache.get(key)
            if entry is not None and entry[0] > now:
                cache.move_to_end(key)
                out[key] = (entry[1], entry[2])
            else:
                missing.append(key)
        self.stats.hits += len(out)
        self.last_fallback = set()
        if not missing:
            return out
        if self._pending:
            answered, failed = self._prefetched(missing, now)
            if answered or failed:
                wanted = set(missing)
                for key, raw in answered.items():
                    self._store(key, raw, now, out if key in wanted else {})
                for key in missing:
                    if key in failed:
                        self._fall_back(key, out)
                missing = [k for k in missing if k not in answered and k not in failed]
                if not missing:
                    return out
        fetched: Mapping[str, Mapping[str, Any]] | None = None
        if self.busy:
            # a call that timed out is still running: not asked again (no pile-up), and
            # not a new failure either (the store may be back; another lookup may have
            # closed the breaker already), so it neither opens nor uses the breaker's probe
            self.stats.skipped += 1
            running_s = now - self._inflight_at
            if running_s >= self.stuck_after_s and not self._stuck_logged:
                self._stuck_logged = True
                log.warning("feature_lookup_stuck", store=self.breaker.name, lookup=self.name,
                            running_s=round(running_s, 1),
                            detail="a store call has not returned; this lookup's keys get stale or default "
                                   "values (feature_fallback) until it does")
        elif not self.breaker.allow():
            self.stats.skipped += 1
        else:
            self.stats.calls += 1
            self.stats.keys_fetched += len(missing)
            try:
                fetched = self._call(missing)
            except Exception as exc:  # the store is down or slow: serve what we have, retry later
                timeout = isinstance(exc, TimeoutError)
                self.stats.errors += 1
                self.stats.timeouts += timeout
                self.breaker.failure(repr(exc)[:500], lookup=self.name, timeout=timeout)
            else:
                self.breaker.success()
        if fetched is None:
            for key in missing:
                self._fall_back(key, out)
            return out
        for key in missing:
            self._store(key, fetched.get(key), now, out)
        return out

    def _store(self, key: str, raw: Mapping[str, Any] | None, now: float,
               out: dict[str, tuple[dict[str, Any], bool]]) -> None:
        """What the store answered for ``key``: cached (the least recently used entry
        beyond ``max_entries`` goes) and put in ``out``."""
        values, known = with_defaults(raw, self.defaults)
        if not known:
            self.stats.unknown += 1
        cache = self._cache
        cache[key] = (now + self.ttl_s, values, known)
        cache.move_to_end(key)
        out[key] = (values, known)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)

    def _fall_back(self, key: str, out: dict[str, tuple[dict[str, Any], bool]]) -> None:
        """The store could not answer for ``key``: its expired entry (stale values beat
        defaults while the store is down), else the defaults (``last_fallback``)."""
        entry = self._cache.get(key)
        if entry is not None:
            self.stats.stale += 1
            out[key] = (entry[1], entry[2])
        else:
            self.stats.fallback += 1
            self.last_fallback.add(key)
            out[key] = with_defaults(None, self.defaults)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def open_store(repo_path: str | Path, yaml_file: str | Path | None = None,
               environ: Mapping[str, str] | None = None) -> Any:
    """Open the Feast ``FeatureStore`` of ``repo_path`` (``yaml_file`` inside it, else
    its ``feature_store.yaml``). Raises ``ValueError`` naming what is wrong: a missing
    folder or file, or, given the process's ``environ`` (the settings hand it over:
    :func:`settings.environment.variables`), a variable the YAML's ``${VAR}`` needs that
    is not set (Feast would fail later with e.g. ``KeyError('port')``)."""
    repo = Path(repo_path)
    yaml = repo / (yaml_file or "feature_store.yaml")
    if not repo.is_dir():
        raise ValueError(f"feature repo {str(repo)!r}: no such folder")
    if not yaml.is_file():
        raise ValueError(f"feature repo {str(repo)!r}: no {Path(yaml_file or 'feature_store.yaml').name} in it")
    if environ is not None:  # the YAML's ${VAR}s are Feast's own variables
        unset = sorted({v for v in _ENV_REF.findall(yaml.read_text()) if not environ.get(v)})
        if unset:
            raise ValueError(f"{', '.join(unset)}: not set, but {yaml} needs it")
    return import_feast().FeatureStore(repo_path=str(repo), fs_yaml_file=yaml)


def import_feast() -> ModuleType:
    """``import feast``, without typeguard re-compiling Feast's classes as it loads them.

    Feast decorates its definition classes (``FeatureView``, ``OnDemandFeatureView``, ...)
    with typeguard's ``@typechecked``, which re-parses and re-compiles the source of the
    class's module at import time: about half of the CPU time of ``import feast``
    (6.5 -> 3.5 s of CPU measured on a loaded 2-core machine), paid by every flow process
    at start. Those checks guard the arguments of hand-written definitions (``feast apply``,
    run apart); a scoring process only reads definitions back from the registry. So while
    Feast is being imported here, ``typeguard.typechecked`` is the identity, and it is
    restored afterwards (Python's ``-O`` has the same effect for the whole process,
    asserts included). If ``feast`` is already imported, this only returns it.

    Importing Feast also sets ``PROMETHEUS_MULTIPROC_DIR`` in the process's environment
    (for its own feature server). A flow process imports ``prometheus_client`` first, so its
    own metrics are not affected; a process that imports Feast and then starts flows (the
    test suite, the benchmarks) leaves the variable out of their environment.
    """
    if "feast" in sys.modules:
        return sys.modules["feast"]
    import typeguard

    real = typeguard.typechecked

    def as_is(target: Any = None, **_: Any) -> Any:
        return (lambda t: t) if target is None else target

    typeguard.typechecked = as_is  # type: ignore[assignment]
    try:
        import feast
    finally:
        typeguard.typechecked = real
    return feast


class _LazyStore:
    """A Feast ``FeatureStore`` opened on first use (``import feast`` takes seconds)."""

    def __init__(self, repo_path: str | Path, yaml_file: str | Path | None) -> None:
        self.repo_path = Path(repo_path)
        self.yaml_file = yaml_file
        self._store: Any = None

    def __call__(self) -> Any:
        if self._store is None:
            self._store = open_store(self.repo_path, self.yaml_file)
        return self._store

    def __str__(self) -> str:
        return str(self.repo_path)


class FeastFetcher:
    """Fetch function for one view of a Feast feature service.

    Args:
        store: an open Feast ``FeatureStore``, or a function returning one
            (called on first use; :func:`feast_fetcher` passes a lazy one).
        service: the feature service, e.g. ``fraud_scoring``.
        view: the feature view whose features of the service are fetched.
        join_key: the entity's join key, e.g. ``customer_id``.
    """

    def __init__(self, store: Any, service: str, view: str, join_key: str) -> None:
        self._open: Callable[[], Any] = store if isinstance(store, _LazyStore) else (lambda: store)
        self._where = str(store) if isinstance(store, _LazyStore) else str(getattr(store, "repo_path", "?"))
        self.service = service
        self.view = view
        self.join_key = join_key
        self._names: list[str] | None = None
        self._direct: _DirectRead | None | bool = None  # built on first call; False: Feast's public call only

    def feature_names(self) -> list[str]:
        """The view's features in the service; raises ``LookupError`` naming the view and repo."""
        if self._names is None:
            fs = self._open().get_feature_service(self.service)
            proj = next((p for p in fs.feature_view_projections if p.name == self.view), None)
            if proj is None:
                raise LookupError(f"feature service {self.service!r} has no view {self.view!r} in repo {self._where}")
            self._names = [f.name for f in proj.features]
        return self._names

    def for_view(self, view: str, join_key: str) -> "FeastFetcher":
        """A fetcher for another view of the same service, sharing the same store."""
        return FeastFetcher(self._open if isinstance(self._open, _LazyStore) else self._open(),
                            self.service, view, join_key)

    def __call__(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        names = self.feature_names()
        # a key holding undecodable input bytes (lone surrogates) cannot be in the store, whose
        # keys are UTF-8, and Feast would fail the whole call on it: it is unknown, not asked
        keys = [k for k in keys if is_utf8(k)]
        if not keys:
            return {}
        if self._direct is None:
            self._direct = _DirectRead.of(self._open(), self.view, self.join_key, names) or False
        if self._direct:
            try:
                got = self._direct(keys)
            except (AttributeError, TypeError) as exc:  # this Feast's interfaces differ: its public call from now on
                log.warning("feast_direct_read_off", view=self.view, reason=f"{type(exc).__name__}: {exc}"[:300])
                self._direct = False
            else:
                if got is not None:
                    return got
        return self.via_get_online_features(keys)

    def via_get_online_features(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The same values through Feast's ``get_online_features`` (the public call: about
        twice the CPU per key of the online store's own read)."""
        names = self.feature_names()
        resp = self._open().get_online_features(
            features=[f"{self.view}:{n}" for n in names], entity_rows=[{self.join_key: k} for k in keys]
        ).to_dict()
        return {k: {n: resp[n][i] for n in names} for i, k in enumerate(keys)}


class _DirectRead:
    """One feature view's values read with the online store's own ``online_read`` (the
    interface every Feast online store implements: SQLite, Redis, ...), as
    ``get_online_features`` reads them, without building its response: that costs about
    half of its CPU (for 1,000 keys on the demo's SQLite store, 43 µs a key through
    ``get_online_features(...).to_dict()``, 24 µs here), and a cold cache after a start
    asks for thousands of keys at once. The keys become protobuf values by Feast's own
    conversion for the join key's type; the values come back as ``to_dict`` gives them
    (:func:`feast.type_map.feast_value_type_to_python_type`, with each feature's type;
    ``None`` for a key or a feature the store has not). The view is looked up in the
    registry at every call (about 0.15 ms, Feast's registry cache), so a ``feast apply``
    is followed as ``get_online_features`` follows it; a view that is disabled, not
    online yet, keyed by more than one join key or by a renamed one is read by
    ``get_online_features`` (``__call__`` returns ``None``), which then says why it cannot
    serve. ``tests/features/test_store.py`` compares the two reads."""

    __slots__ = ("_store", "_view", "_join_key", "_names", "_to_protos", "_to_python", "_key_proto", "_servable")

    def __init__(self, store: Any, view: str, join_key: str, names: list[str]) -> None:
        from feast.feature_view import FeatureViewState
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values

        store._get_provider().online_read  # noqa: B018 - the interface is there (AttributeError: not)
        self._store = store
        self._view = view
        self._join_key = join_key
        self._names = names
        self._to_protos = python_values_to_proto_values
        self._to_python = feast_value_type_to_python_type
        self._key_proto = EntityKey
        self._servable = {FeatureViewState.STATE_UNSPECIFIED, FeatureViewState.AVAILABLE_ONLINE}

    @classmethod
    def of(cls, store: Any, view: str, join_key: str, names: list[str]) -> "_DirectRead | None":
        """The reader of ``view`` by ``join_key``, or ``None`` where this Feast has not the
        interfaces it needs (its public call is used then)."""
        try:
            return cls(store, view, join_key, names)
        except Exception as exc:  # noqa: BLE001 - any failure: Feast's public call, which says what is wrong
            log.info("feast_direct_read_off", view=view, reason=f"{type(exc).__name__}: {exc}"[:300])
            return None

    def __call__(self, keys: list[str]) -> dict[str, dict[str, Any]] | None:
        """The values of ``keys``, or ``None`` when the view is not one this reads as
        ``get_online_features`` would (see the class docstring)."""
        store = self._store
        fv = store.get_feature_view(self._view)
        columns = [c for c in fv.entity_columns if c.name != "__dummy_id"]
        state = getattr(fv, "state", None)
        if (not getattr(fv, "enabled", True) or (state is not None and state not in self._servable)
                or len(columns) != 1 or columns[0].name != self._join_key or fv.projection.join_key_map):
            return None
        if not keys:
            return {}
        join, make = [self._join_key], self._key_proto
        protos = [make(join_keys=join, entity_values=[v])
                  for v in self._to_protos(keys, columns[0].dtype.to_value_type())]
        # a copy: an online store may add to the list it is given (Redis adds its timestamp key)
        rows = store._get_provider().online_read(config=store.config, table=fv, entity_keys=protos,
                                                 requested_features=list(self._names))
        types = {f.name: f.dtype.to_value_type() for f in fv.features}
        names, out = self._names, {}
        value = self._value
        for k, (_, values) in zip(keys, rows):
            if values is None:
                out[k] = dict.fromkeys(names)
            else:
                get = values.get
                out[k] = {n: None if (v := get(n)) is None else value(v, types.get(n)) for n in names}
        return out

    def _value(self, v: Any, value_type: Any) -> Any:
        """A value as Python: numbers and booleans as they are, anything else by Feast's own
        conversion with the feature's type (which does the same for those, more slowly)."""
        kind = v.WhichOneof("val")
        if kind in _PLAIN:
            return getattr(v, kind)
        return None if kind is None else self._to_python(v, value_type)


#: Protobuf value kinds ``feast_value_type_to_python_type`` returns as they are.
_PLAIN = frozenset({"double_val", "float_val", "int64_val", "int32_val", "bool_val"})


def feast_fetcher(
    repo_path: str | Path, service: str, view: str, join_key: str, yaml_file: str | Path | None = None
) -> FeastFetcher:
    """A fetch function for ``view``'s features in Feast feature service ``service``.

    ``yaml_file`` picks another store configuration in the repo (e.g.
    ``feature_store.redis.yaml``); relative paths are taken inside the repo.
    The ``FeatureStore`` is opened on the first call, once; :meth:`FeastFetcher.for_view`
    shares it with the fetchers of the service's other views.
    """
    return FeastFetcher(_LazyStore(repo_path, yaml_file), service, view, join_key)


def fraud_lookups(
    store: Any,
    service: str = "fraud_scoring",
    ttl_s: float = 300.0,
    timeout_s: float | None = None,
    failures: int = 3,
    retry_s: float = 5.0,
    breaker: CircuitBreaker | None = None,
) -> tuple[CachedLookup, CachedLookup]:
    """The fraud scorer's two lookups, ``(customers, merchants)``, over one store:
    ``customer_profile`` by ``customer_id`` with :data:`PROFILE_DEFAULTS` and
    ``merchant_risk`` by ``merchant_id`` with :data:`MERCHANT_DEFAULTS`.

    ``store`` is an open ``FeatureStore`` or a Feast repo path (opened on first use).
    Both lookups share one :class:`CircuitBreaker` (``failures``, ``retry_s``, or the
    ``breaker`` given, which other lookups of the same store may share): when one finds
    the store down, the other does not wait for it too. They also share the thread their
    store calls run in, so two calls never use the Feast client at once.
    """
    if isinstance(store, (str, Path)):
        store = _LazyStore(store, None)
    breaker = breaker if breaker is not None else CircuitBreaker(failures, retry_s, name=service)
    calls = _CallThread(service)  # one Feast client: its calls (prefetched ones too) never overlap
    customers = CachedLookup(FeastFetcher(store, service, "customer_profile", "customer_id"),
                             PROFILE_DEFAULTS, ttl_s=ttl_s, name="customer_profile",
                             timeout_s=timeout_s, breaker=breaker, calls=calls)
    merchants = CachedLookup(FeastFetcher(store, service, "merchant_risk", "merchant_id"),
                             MERCHANT_DEFAULTS, ttl_s=ttl_s, name="merchant_risk",
                             timeout_s=timeout_s, breaker=breaker, calls=calls)
    return customers, merchants

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

import os
import re

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import structlog

__all__ = [
    "PROFILE_DEFAULTS",
    "MERCHANT_DEFAULTS",
    "with_defaults",
    "CachedLookup",
    "LookupStats",
    "FetchFn",
    "FeastFetcher",
    "feast_fetcher",
    "fraud_lookups",
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
    """Counters of one lookup: store calls, keys asked, cache hits, unknown keys, errors."""

    __slots__ = ("calls", "keys_fetched", "hits", "unknown", "errors")

    def __init__(self) -> None:
        self.calls = self.keys_fetched = self.hits = self.unknown = self.errors = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class CachedLookup:
    """Batched lookups through a bounded, time-limited cache.

    Args:
        fetch: returns the values of the keys the store knows; keys it does
            not know are absent or have only ``None`` values.
        defaults: the features returned, and their values for unknown keys and
            for features that came back empty (see :func:`with_defaults`).
        ttl_s: how long a cached entry is used before it is fetched again.
        max_entries: cache size; the least recently used entries go first.
        clock: monotonic seconds, replaceable in tests.
        name: names the lookup in logs.

    When ``fetch`` raises, the batch gets the defaults with ``known=False``
    and the error is logged; nothing is cached, so the next batch retries.
    Returned value dicts are shared with the cache: read them, do not modify them.
    """

    def __init__(
        self,
        fetch: FetchFn,
        defaults: Mapping[str, Any],
        ttl_s: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        name: str = "lookup",
    ) -> None:
        self._fetch = fetch
        self.defaults = dict(defaults)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self.name = name
        self._cache: OrderedDict[str, tuple[float, dict[str, Any], bool]] = OrderedDict()
        self.stats = LookupStats()

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[dict[str, Any], bool]]:
        """``{key: (values, known)}`` for every distinct key, with one store call at most."""
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
        if not missing:
            return out
        self.stats.calls += 1
        self.stats.keys_fetched += len(missing)
        try:
            fetched = self._fetch(missing)
        except Exception as exc:  # the store is down: score with defaults, retry next batch
            self.stats.errors += 1
            log.warning("feature_lookup_failed", lookup=self.name, keys=len(missing), error=repr(exc)[:500])
            for key in missing:
                out[key] = with_defaults(None, self.defaults)
            return out
        expires = now + self.ttl_s
        for key in missing:
            values, known = with_defaults(fetched.get(key), self.defaults)
            if not known:
                self.stats.unknown += 1
            cache[key] = (expires, values, known)
            cache.move_to_end(key)
            out[key] = (values, known)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)
        return out


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def open_store(repo_path: str | Path, yaml_file: str | Path | None = None) -> Any:
    """Open the Feast ``FeatureStore`` of ``repo_path`` (``yaml_file`` inside it, else
    its ``feature_store.yaml``). Raises ``ValueError`` naming what is wrong: a missing
    folder or file, or an environment variable the YAML needs that is not set
    (Feast would fail later with e.g. ``KeyError('port')``)."""
    repo = Path(repo_path)
    yaml = repo / (yaml_file or "feature_store.yaml")
    if not repo.is_dir():
        raise ValueError(f"feature repo {str(repo)!r}: no such folder")
    if not yaml.is_file():
        raise ValueError(f"feature repo {str(repo)!r}: no {Path(yaml_file or 'feature_store.yaml').name} in it")
    unset = sorted({v for v in _ENV_REF.findall(yaml.read_text()) if not os.environ.get(v)})
    if unset:
        raise ValueError(f"{', '.join(unset)}: not set, but {yaml} needs it")
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo), fs_yaml_file=yaml)


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
        resp = self._open().get_online_features(
            features=[f"{self.view}:{n}" for n in names], entity_rows=[{self.join_key: k} for k in keys]
        ).to_dict()
        return {k: {n: resp[n][i] for n in names} for i, k in enumerate(keys)}


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
    store: Any, service: str = "fraud_scoring", ttl_s: float = 300.0
) -> tuple[CachedLookup, CachedLookup]:
    """The fraud scorer's two lookups, ``(customers, merchants)``, over one store:
    ``customer_profile`` by ``customer_id`` with :data:`PROFILE_DEFAULTS` and
    ``merchant_risk`` by ``merchant_id`` with :data:`MERCHANT_DEFAULTS`.

    ``store`` is an open ``FeatureStore`` or a Feast repo path (opened on first use).
    """
    if isinstance(store, (str, Path)):
        store = _LazyStore(store, None)
    customers = CachedLookup(FeastFetcher(store, service, "customer_profile", "customer_id"),
                             PROFILE_DEFAULTS, ttl_s=ttl_s, name="customer_profile")
    merchants = CachedLookup(FeastFetcher(store, service, "merchant_risk", "merchant_id"),
                             MERCHANT_DEFAULTS, ttl_s=ttl_s, name="merchant_risk")
    return customers, merchants

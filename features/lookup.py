"""Online feature lookup: one store call per batch of distinct keys, with a TTL cache.

:class:`CachedLookup` sits in front of any ``fetch(keys) -> {key: values}``
function. For a batch of events it asks the store only for the distinct keys
that are not cached (or whose entry expired), in one call. Keys the store does
not know get documented defaults and ``known=False``; those misses are cached
too, so an unknown key does not cost a store call per event.

:func:`feast_fetcher` builds the fetch function for one entity of a Feast
feature service (the SQLite or Redis online store, as the repo configures).

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

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import structlog

__all__ = ["CachedLookup", "feast_fetcher", "FeastFetcher", "FetchFn", "LookupStats"]

log = structlog.get_logger(__name__)

FetchFn = Callable[[list[str]], Mapping[str, Mapping[str, Any]]]


class LookupStats:
    """Counters of one lookup: store calls, keys asked, cache hits, misses."""

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
        defaults: values used for unknown keys and for features that came
            back ``None``.
        ttl_s: how long a cached entry is used before it is fetched again.
        max_entries: cache size; the least recently used entries go first.
        clock: monotonic seconds, replaceable in tests.

    When ``fetch`` raises, the batch gets the defaults with ``known=False``
    and the error is logged; nothing is cached, so the next batch retries.
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
        for key in dict.fromkeys(keys):
            entry = self._cache.get(key)
            if entry is not None and entry[0] > now:
                self._cache.move_to_end(key)
                out[key] = (entry[1], entry[2])
                self.stats.hits += 1
            else:
                missing.append(key)
        if not missing:
            return out
        self.stats.calls += 1
        self.stats.keys_fetched += len(missing)
        try:
            fetched = self._fetch(missing)
        except Exception as exc:  # the store is down: score with defaults, retry next batch
            self.stats.errors += 1
            log.warning("feature_lookup_failed", lookup=self.name, keys=len(missing), error=repr(exc))
            for key in missing:
                out[key] = (dict(self.defaults), False)
            return out
        expires = now + self.ttl_s
        for key in missing:
            raw = fetched.get(key) or {}
            known = any(v is not None for v in raw.values())
            values = {f: (raw.get(f) if raw.get(f) is not None else d) for f, d in self.defaults.items()}
            if not known:
                self.stats.unknown += 1
            self._cache[key] = (expires, values, known)
            self._cache.move_to_end(key)
            out[key] = (values, known)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return out


class _StoreHandle:
    """One Feast ``FeatureStore`` opened on first use and shared by fetchers."""

    def __init__(self, repo_path: str | Path, yaml_file: str | Path | None) -> None:
        self.repo_path = Path(repo_path)
        self.yaml_file = yaml_file
        self._store: Any = None

    def get(self) -> Any:
        if self._store is None:
            from feast import FeatureStore

            yaml = None if self.yaml_file is None else self.repo_path / self.yaml_file
            self._store = FeatureStore(repo_path=str(self.repo_path), fs_yaml_file=yaml)
        return self._store


class FeastFetcher:
    """Fetch function for one view of a Feast feature service (see :func:`feast_fetcher`)."""

    def __init__(self, handle: _StoreHandle, service: str, view: str, join_key: str) -> None:
        self._handle = handle
        self.service = service
        self.view = view
        self.join_key = join_key
        self._names: list[str] | None = None

    def feature_names(self) -> list[str]:
        """The view's features in the service; raises ``LookupError`` naming the view and repo."""
        if self._names is None:
            fs = self._handle.get().get_feature_service(self.service)
            proj = next((p for p in fs.feature_view_projections if p.name == self.view), None)
            if proj is None:
                raise LookupError(
                    f"feature service {self.service!r} has no view {self.view!r} in repo {self._handle.repo_path}"
                )
            self._names = [f.name for f in proj.features]
        return self._names

    def for_view(self, view: str, join_key: str) -> "FeastFetcher":
        """A fetcher for another view of the same service, sharing the same store."""
        return FeastFetcher(self._handle, self.service, view, join_key)

    def __call__(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        names = self.feature_names()
        resp = self._handle.get().get_online_features(
            features=[f"{self.view}:{n}" for n in names], entity_rows=[{self.join_key: k} for k in keys]
        ).to_dict()
        return {k: {n: resp[n][i] for n in names} for i, k in enumerate(keys)}


def feast_fetcher(
    repo_path: str | Path, service: str, view: str, join_key: str, yaml_file: str | Path | None = None
) -> FeastFetcher:
    """A fetch function for ``view``'s features in Feast feature service ``service``.

    ``yaml_file`` picks another store configuration in the repo (e.g.
    ``feature_store.redis.yaml``); relative paths are taken inside the repo.

    The ``FeatureStore`` is opened on the first call (``import feast`` takes
    seconds), once per worker; :meth:`FeastFetcher.for_view` shares it with
    the fetchers of the service's other views.
    """
    return FeastFetcher(_StoreHandle(repo_path, yaml_file), service, view, join_key)

"""Which model scores each event, following the registry while the stream runs.

A :class:`ModelRouter` holds the models of the current :class:`~models.registry.Routes`:
the **deciders** (each customer is routed to one of them, sticky by key) and the
**shadows** (they score a share of the keys too, for comparison, and never decide).
Every ``poll_s`` seconds it reads the registry's :meth:`~models.registry.Registry.state_token`
(a hash of ``aliases.json`` and ``routes.json``); when that changed it resolves the
routes again, loads the versions it has not loaded yet and switches between two
batches, so no event is lost or scored twice. A new version that does not load
(tampered artifact, another feature list, missing) is refused: the router keeps
what it had and logs ``model_switch_refused`` (an error), and tries again only
when the registry changes again.

Where the routes come from, first match wins:

1. fixed ``routes`` given to the router (``STREAMSCORE_MODEL__ROUTES`` /
   ``STREAMSCORE_MODEL__SHADOW`` in the flow); their aliases are still followed;
2. the registry's ``routes.json`` of the model (``streamscore models routes``);
3. the reference alone (``STREAMSCORE_MODEL__REF``, e.g. ``fraud_model@production``).

>>> import tempfile
>>> from models.registry import Registry
>>> class Model:  # anything with version / predict / explain
...     def __init__(self, version): self.version = version
>>> reg = Registry(tempfile.mkdtemp())
>>> for _ in range(2): _ = reg.publish("m", b"x", {"feature_names": []}, alias="production")
>>> router = ModelRouter(reg, "m@production", load=lambda name, v: Model(f"{name}/{v}"), poll_s=0)
>>> router.current().label
'm/2'
>>> reg.set_alias("m", "production", 1)
>>> from structlog.testing import capture_logs
>>> with capture_logs():  # the switch is logged (model_switched); counted too
...     label = router.current(event_time=0.0).label   # noticed at the next poll (poll_s=0: every batch)
>>> label, router.switches
('m/1', 1)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import structlog

from models.registry import Registry, Routes, parse_ref

__all__ = ["Scoring", "Assignment", "ModelRouter"]

log = structlog.get_logger(__name__)


class Scoring(Protocol):
    """What the router hands out: a loaded model."""

    version: str

    def predict(self, X: Any) -> Any: ...

    def explain(self, X: Any, top: int = 3) -> list: ...


@dataclass(frozen=True)
class Assignment:
    """The models in use: ``deciders[i]`` decides the keys :meth:`Routes.route` sends to
    ``i``; ``shadows`` maps each shadow reference of the routes to its model."""

    routes: Routes
    deciders: tuple[Any, ...]
    shadows: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``fraud_model/3`` or ``fraud_model/3:90%,fraud_model/4:10% (shadow fraud_model/5:5%)``."""
        if len(self.deciders) == 1:
            text = self.deciders[0].version
        else:
            text = ",".join(f"{m.version}:{w * 100:g}%" for m, (_, w) in zip(self.deciders, self.routes.decide))
        if self.shadows:
            text += " (shadow " + ",".join(
                f"{self.shadows[ref].version}:{s * 100:g}%" for ref, s in self.routes.shadow) + ")"
        return text

    def decider_of(self, keys: Sequence[str]) -> list[int]:
        """The index of the deciding model of each key."""
        if len(self.deciders) == 1:
            return [0] * len(keys)
        route = self.routes.route
        return [route(k) for k in keys]

    def shadows_of(self, keys: Sequence[str], decider: Sequence[int] | None = None) -> list[list[str]]:
        """The shadow references that score each key: those its share selects
        (:meth:`Routes.shadowed`), but never the version that decides the key (a version
        that both decides and shadows scores in shadow only the keys others decide).
        ``decider``: :meth:`decider_of` of the keys, when already known.

        >>> class M:
        ...     def __init__(self, version): self.version = version
        >>> a = Assignment(Routes.parse("m/1:50,m/2:50", "m/2:100"), (M("m/1"), M("m/2")), {"m/2": M("m/2")})
        >>> [(a.deciders[d].version, s) for d, s in zip(a.decider_of(["a", "d"]), a.shadows_of(["a", "d"]))]
        [('m/1', ['m/2']), ('m/2', [])]
        """
        if not self.shadows:
            return [[] for _ in keys]
        shadowed = self.routes.shadowed
        own = [(ref, {i for i, m in enumerate(self.deciders) if m.version == model.version})
               for ref, model in self.shadows.items()]
        own = [(ref, idx) for ref, idx in own if idx]
        if not own:
            return [shadowed(k) for k in keys]
        if decider is None:
            decider = self.decider_of(keys)
        out = []
        for k, d in zip(keys, decider):
            refs = shadowed(k)
            if refs:
                refs = [r for r in refs if not any(r == ref and d in idx for ref, idx in own)]
            out.append(refs)
        return out


class ModelRouter:
    """The current :class:`Assignment` of a model, following the registry.

    Args:
        registry: where versions, aliases and routes live.
        ref: the default reference (``fraud_model@production``, ``fraud_model/3``,
            ``models:/fraud_model@production``...), used when no routes are set.
        routes: fixed routes (their aliases are still resolved at every change).
        load: ``load(name, version) -> model``; it raises for a version that must
            be refused. Versions are immutable, so a loaded one is kept.
        poll_s: seconds between two looks at the registry; ``0`` looks at every
            call of :meth:`current`, ``None`` never (the start assignment stays).

    The first assignment is made in the constructor and raises when it fails: a
    flow must not start without a model.
    """

    def __init__(
        self,
        registry: Registry,
        ref: str,
        routes: Routes | None = None,
        *,
        load: Callable[[str, int], Any],
        poll_s: float | None = 10.0,
    ) -> None:
        self.registry = registry
        self.ref = ref
        self.name = parse_ref(ref)[0]
        self.fixed_routes = routes
        self.poll_s = poll_s
        self._load = load
        self._loaded: dict[tuple[str, int], Any] = {}
        self._token = ""
        self._refused_token: str | None = None
        self._refused_at = 0.0
        self._next_poll = time.monotonic() + (poll_s or 0.0)
        self.assignment = self._assign()
        self._token = self._state_token()
        self.switches = 0

    @classmethod
    def fixed(cls, model: Any) -> "ModelRouter":
        """A router that always hands out ``model`` (tests, benchmarks, one-off scoring)."""
        router = cls.__new__(cls)
        router.registry, router.ref, router.name, router.fixed_routes = None, model.version, model.version, None
        router.poll_s, router._loaded, router._token, router._refused_token = None, {}, "", None
        router._refused_at = 0.0
        router._next_poll, router.switches = float("inf"), 0
        router.assignment = Assignment(Routes.parse(_plain_ref(model.version)), (model,))
        return router

    def _state_token(self) -> str:
        """The registry fingerprints of every model the routes name (usually one)."""
        names = {self.name}
        if self.registry is not None and hasattr(self, "assignment"):
            names |= {parse_ref(ref)[0] for ref in self.assignment.routes.refs()}
        return "|".join(self.registry.state_token(n) for n in sorted(names))

    def routes(self) -> Routes:
        """The routes in force now: fixed, else the registry's, else the reference alone."""
        if self.fixed_routes is not None:
            return self.fixed_routes
        stored = self.registry.routes(self.name)
        return stored if stored is not None else Routes.parse(self.ref)

    def _model(self, ref: str) -> Any:
        name, version = self.registry.resolve(ref)
        model = self._loaded.get((name, version))
        if model is None:
            model = self._loaded[(name, version)] = self._load(name, version)
        return model

    def _assign(self) -> Assignment:
        routes = self.routes()
        deciders = tuple(self._model(ref) for ref, _ in routes.decide)
        shadows = {ref: self._model(ref) for ref, _ in routes.shadow}
        return Assignment(routes, deciders, shadows)

    def current(self, event_time: float | None = None) -> Assignment:
        """The assignment to score the next batch with, after looking at the registry
        when ``poll_s`` has passed. ``event_time`` (the batch's newest) is logged
        with a switch."""
        if self.poll_s is None:
            return self.assignment
        now = time.monotonic()
        if now < self._next_poll:
            return self.assignment
        self._next_poll = now + self.poll_s
        try:
            token = self._state_token()
        except OSError as exc:
            log.warning("model_registry_unreadable", registry=str(self.registry.root), error=str(exc))
            return self.assignment
        if token == self._token:
            return self.assignment
        if token == self._refused_token and now - self._refused_at < max(60.0, 6 * self.poll_s):
            return self.assignment  # refused: tried again only after a while (files may still be arriving)
        before = self.assignment
        try:
            after = self._assign()
        except Exception as exc:  # a bad version must never replace a good one
            self._refused_token, self._refused_at = token, now
            log.error("model_switch_refused", model=self.name, keeping=before.label, error=str(exc)[:500],
                      event_time=event_time)
            return before
        self.assignment = after
        self._token, self._refused_token = self._state_token(), None
        if after.label != before.label:
            self.switches += 1
            log.warning("model_switched", model=self.name, **{"from": before.label}, to=after.label,
                        event_time=event_time)
        return after


def _plain_ref(version: str) -> str:
    """A ``name/number`` version as a reference; anything else (a test double's
    label) as a name of its own."""
    try:
        parse_ref(version)
        return version
    except Exception:
        return "model"

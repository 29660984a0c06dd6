"""Operators shared by the scoring dataflows, in Bytewax's own style.

- :func:`key_raw`: raw inputs -> keyed by their entity, read cheaply, still *unparsed*;
  with ``parse`` given to :func:`stateful_object`, the entity's own worker parses them,
  so what crosses workers (and processes) is the message, not a parsed event. Inputs
  without a readable entity are parsed where they were read; dead letters go to ``errs``,
  routed by type (as Bytewax's Kafka operators split ``oks``/``errs``), never by a field
  of the event. It warns once when the input's partitioning splits an entity (:class:`SplitWatch`).
- :func:`stateful_object`: per-key state in an object whose ``snapshot()`` is
  plain data and whose configuration comes from the builder (``stateful_map``
  deep-copies its state every epoch; this copies only what ``snapshot()`` returns).
- :func:`score_batches`: a per-worker scorer, built on the first batch, applied
  per upstream batch; a batch that raises becomes dead letters, never a crash.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Generic, Iterable, List, Optional, Protocol, Sequence, Tuple, TypeVar

import bytewax.operators as op
import structlog
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic
from typing_extensions import override

from features.keyhash import routing_key
from features.records import DeadLetter, Raw, batch_or_dead_letters, parse_or_dead_letter

__all__ = ["Validated", "key_raw", "arrived", "parse_arrived", "SplitWatch", "split_dead_letters", "Snapshottable",
           "stateful_object", "Scorers", "score_batches", "prefetch_batches"]

log = structlog.get_logger("dataflows")

E = TypeVar("E")
V = TypeVar("V")
W = TypeVar("W")


@dataclass(frozen=True)
class Validated(Generic[E]):
    """The two outputs of :func:`key_raw`."""

    oks: Stream[E]
    """Typed events."""
    errs: Stream[DeadLetter]
    """Inputs that could not be parsed, with the reason."""


def _is_ok(x: Any) -> bool:
    return not isinstance(x, DeadLetter)


@operator
def split_dead_letters(step_id: str, up: Stream[Any]) -> Validated[Any]:
    """Split a stream into its items and its :class:`~features.records.DeadLetter` items, by type."""
    b = op.branch("by_type", up, _is_ok)
    return Validated(oks=b.trues, errs=b.falses)


class SplitWatch:
    """Whether the input's partitioning splits one entity over partitions: remembers the
    partition of up to ``max_keys`` entities (a bounded sample: the first ones seen) and
    reports the first entity seen on a second partition, once; then it stops looking.

    >>> w = SplitWatch()
    >>> w.see("C1", 0), w.see("C2", 1), w.see("C1", 0), w.see("C1", 2), w.see("C2", 0)
    (None, None, None, (0, 2), None)
    """

    __slots__ = ("max_keys", "seen", "done")

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self.seen: dict[str, int] = {}
        self.done = False

    def see(self, key: str, partition: int) -> tuple[int, int] | None:
        """``(first partition, this one)`` the first time ``key`` comes from another partition."""
        if self.done:
            return None
        first = self.seen.get(key)
        if first is None:
            if len(self.seen) < self.max_keys:
                self.seen[key] = partition
            return None
        if first == partition:
            return None
        self.done = True
        self.seen = {}
        return first, partition


@operator
def key_raw(step_id: str, up: Stream[Any], key_of: Callable[[Any], str | None], parse: Callable[[Any, float], E],
            entity: Callable[[E], str], entity_name: str = "key") -> Validated[Tuple[str, Any]]:
    """Key every raw input by its entity without parsing it: ``key_of(raw)`` reads the
    entity cheaply (:func:`features.keyhash.entity_reader`), and the input goes on as an
    *arrived* item, a plain tuple ``(value, arrival)`` or, from Kafka, ``(value, arrival,
    topic, partition, offset, possible_repeat, wire)``: about 1 µs to pickle where a parsed
    event takes 10-30 µs. The keyed step that follows parses it on the entity's worker
    (:func:`stateful_object` with ``parse``; :func:`parse_arrived`), with the arrival time
    taken here.

    An input whose entity ``key_of`` cannot read (``None``) is parsed here instead, by the same
    ``parse``: it becomes the dead letter naming why (step ``step_id``), or, when the parser
    reads what the quick look did not, the event itself, keyed by ``entity(event)``.
    Dead letters already in the stream pass to ``errs``. A key holding undecodable input bytes
    is routed by its escaped form (:func:`features.keyhash.routing_key`): Bytewax would refuse it. The first entity seen on two
    partitions of a Kafka input is logged once (``input_partitioning_splits_entities``, naming it
    and the partitions): the producer keys by something else, and the flow's per-entity
    features depend on it.

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSource, TestingSink, run_main
    >>> from features.keyhash import entity_reader
    >>> from features.records import decode
    >>> flow, ok, bad = Dataflow("doc"), [], []
    >>> k = key_raw("validate", op.input("in", flow, TestingSource([b'{"c": "C1"}', b"{oops"])),
    ...             entity_reader("c"), lambda raw, arrival: decode(raw), lambda e: e["c"], "c")
    >>> op.output("ok", k.oks, TestingSink(ok)); op.output("bad", k.errs, TestingSink(bad))
    >>> run_main(flow); [(key, item[0]) for key, item in ok], [b.error[:14] for b in bad]
    ([('C1', b'{"c": "C1"}')], ['not valid JSON'])
    """
    step = step_id.rsplit(".", 1)[-1]
    watch = SplitWatch()  # one per process: its worker threads share it
    now = time.time

    def watched(key: str, item: Raw) -> str:
        if not watch.done and item.partition is not None:
            split = watch.see(key, item.partition)
            if split is not None:
                _warn_split(entity_name, key, item.topic, split)
        return key

    def route(item: Any) -> Any:
        if type(item) is Raw:
            key = key_of(item.value)
            if key is not None:
                return watched(routing_key(key), item), arrived(item, now())
        elif isinstance(item, DeadLetter):
            return item
        else:
            key = key_of(item)
            if key is not None:
                return routing_key(key), arrived(item, now())
        event = parse_or_dead_letter(item, parse, now(), step)  # no key read: parsed here
        if isinstance(event, DeadLetter):
            return event
        key = routing_key(entity(event))
        return (watched(key, item) if type(item) is Raw else key), event

    return split_dead_letters("split", op.map("route", up, route))


def arrived(item: Any, arrival: float) -> tuple:
    """What :func:`key_raw` sends on for an input it has not parsed: ``(value, arrival)``, or
    for a Kafka :class:`~features.records.Raw` ``(value, arrival, topic, partition, offset,
    possible_repeat, wire)``. Plain tuples: pickling one costs about a tenth of a
    :class:`~features.records.Raw`'s (a msgspec struct pickles by its class)."""
    if type(item) is Raw:
        return item.value, arrival, item.topic, item.partition, item.offset, item.possible_repeat, item.wire
    return item, arrival


def parse_arrived(items: Iterable[Any], parse: Callable[[Any, float], E], step: str = "validate",
                  ) -> tuple[list[E], list[DeadLetter]]:
    """The events and the dead letters of a key's items from :func:`key_raw`, in order:
    each arrived tuple parsed by ``parse(value, arrival)`` (the dead letters name the
    Kafka origin and ``step``), each item parsed already on the reading worker kept as it is.

    >>> from features.records import decode
    >>> events, letters = parse_arrived([(b'{"a": 1}', 0.0), (b"[1]", 0.0, "tx", 1, 7, False, None)],
    ...                                 lambda raw, arrival: decode(raw))
    >>> events, [(d.error, d.offset) for d in letters]
    ([{'a': 1}], [('expected a JSON object, got list', 7)])
    """
    events: list[Any] = []
    letters: list[DeadLetter] = []
    for item in items:
        if type(item) is tuple:
            if len(item) == 2:
                raw, arrival = item
                try:  # the common case: a valid input, parsed at once
                    events.append(parse(raw, arrival))
                    continue
                except Exception:  # noqa: S110 - parsed again below, into the dead letter naming why
                    pass
            else:
                raw, arrival = Raw(item[0], item[2], item[3], item[4], item[5], item[6]), item[1]
            event = parse_or_dead_letter(raw, parse, arrival, step)
            if isinstance(event, DeadLetter):
                letters.append(event)
                continue
            events.append(event)
        else:
            events.append(item)
    return events, letters


def _warn_split(name: str, key: str, topic: str | None, partitions: tuple[int, int]) -> None:
    log.warning("input_partitioning_splits_entities", topic=topic, entity=name, key=key, partitions=list(partitions),
                detail=f"{name} {key!r} arrived on partitions {partitions[0]} and {partitions[1]} of {topic!r}: "
                       f"the producer does not key messages by {name}, so an entity's events interleave in "
                       f"another order than produced, and its streaming features (and late_event) can differ "
                       f"from a run over the same events in order; key messages by {name} (docs/kafka.md)")


class Snapshottable(Protocol):
    """Per-key state: ``snapshot()`` returns plain data, ``load(snap)`` restores it
    into an object the builder made from the current configuration."""

    def snapshot(self) -> Any: ...

    def load(self, snap: Any) -> Any: ...


S = TypeVar("S", bound=Snapshottable)


class _Clock:
    """The newest event time a stateful step has seen on one worker: the event-time
    "now" that idle keys are measured against (event time does not move while no
    events arrive, so nothing expires then); and the check time the worker's keys far from
    expiring share (``due``: epoch seconds, as a datetime), so a key keeps none of its own."""

    __slots__ = ("t", "due")

    def __init__(self) -> None:
        self.t = float("-inf")
        self.due: tuple[float, datetime] | None = None


_UTC = timezone.utc


class _ObjectLogic(StatefulBatchLogic[V, W, Any], Generic[V, W, S]):
    def __init__(
        self,
        state: S,
        step: Callable[[S, V], W] | None,
        step_many: Callable[[S, List[V]], List[W]] | None,
        expire_s: float | None = None,
        check_s: float = 300.0,
        clocks: dict[int, _Clock] | None = None,
        parse: Callable[[Any, float], Any] | None = None,
        parse_step: str = "validate",
        live: bool = True,
    ):
        self.state = state
        self.parse = parse
        self.parse_step = parse_step
        self.live = live  # False until a value of the key parses: a key with none keeps no state
        self.step = step
        self.step_many = step_many
        self.expire_s = expire_s
        self.check_s = check_s
        self.clocks = clocks
        self.last_batch = time.monotonic()  # wall clock: a key with recent batches is active

    def _clock(self) -> _Clock:
        clocks = self.clocks
        assert clocks is not None
        clock = clocks.get(threading.get_ident())
        if clock is None:
            clock = clocks[threading.get_ident()] = _Clock()
        return clock

    @override
    def on_batch(self, values: List[V]) -> Tuple[Iterable[W], bool]:
        if self.parse is not None:
            events, letters = parse_arrived(values, self.parse, self.parse_step)
            if not events:
                return letters, StatefulBatchLogic.RETAIN if self.live else StatefulBatchLogic.DISCARD
            self.live = True
            out, keep = self._step(events)  # type: ignore[arg-type]
            return (out if not letters else [*out, *letters]), keep
        return self._step(values)

    def _step(self, values: List[V]) -> Tuple[List[W], bool]:
        if self.step_many is not None:
            out = self.step_many(self.state, values)
        else:
            step, state = self.step, self.state
            assert step is not None
            out = [step(state, v) for v in values]
        if self.expire_s is not None:
            self.last_batch = time.monotonic()
            last = self.state.last_event_time  # type: ignore[attr-defined]
            clock = self._clock()
            if last is not None and last > clock.t:
                clock.t = last
        return out, StatefulBatchLogic.RETAIN

    @override
    def notify_at(self) -> Optional[datetime]:
        if self.expire_s is None:
            return None
        last = self.state.last_event_time  # type: ignore[attr-defined]
        if last is None:
            return None
        # Event time left before this key expires, checked on the wall clock at the
        # latest every check_s (event time may run faster than the wall: backfills), and
        # not more often than every second while event time stands still.
        clock = self._clock()
        left = last + self.expire_s - clock.t
        now = time.time()
        if left > self.check_s:
            # Far from expiring: a check within check_s is all it needs. A check already set in
            # the future is at most check_s away: the worker's keys share it (no new time per
            # batch of a busy key, and no time kept per key: a million keys would keep 130 MB).
            due = clock.due
            if due is not None and now < due[0]:
                return due[1]
            at = now + self.check_s
            clock.due = due = (at, datetime.fromtimestamp(at, _UTC))
            return due[1]
        floor = min(self.check_s, 1.0)
        if left > 0:
            wait = max(left, floor)
        else:  # idle in event time: due once it has had no batch for check_s of wall time
            wait = max(self.check_s - (time.monotonic() - self.last_batch), floor)
        return datetime.fromtimestamp(now + wait, _UTC)

    @override
    def on_notify(self) -> Tuple[Iterable[W], bool]:
        last = self.state.last_event_time  # type: ignore[attr-defined]
        # Idle in event time, and no batch for check_s of wall time: a key whose own events
        # lag behind the worker's (a backlog replaying) is active, never dropped.
        if (last is not None and self.expire_s is not None and self._clock().t - last >= self.expire_s
                and time.monotonic() - self.last_batch >= self.check_s):
            return (), StatefulBatchLogic.DISCARD
        return (), StatefulBatchLogic.RETAIN

    @override
    def snapshot(self) -> Any:
        return self.state.snapshot()


@operator
def stateful_object(
    step_id: str,
    up: KeyedStream[V],
    new: Callable[[], S],
    step: Callable[[S, V], W] | None,
    step_many: Callable[[S, List[V]], List[W]] | None = None,
    expire_after_s: float | None = None,
    check_every_s: float = 300.0,
    parse: Callable[[Any, float], Any] | None = None,
    parse_step: str = "validate",
) -> KeyedStream[W]:
    """Keep one state object per key and emit ``step(state, value)`` for every item.

    ``new()`` builds a state from the *current* configuration; on a restart the
    recovered snapshot is put into it with ``state.load(snapshot)``, so snapshots
    hold data only and a changed configuration applies to restored keys too.

    Items reach the state one upstream batch at a time (``stateful_batch``): a key's
    values of a batch go to ``step_many(state, values)`` in one call when given (a
    vectorised step, e.g. a shared detector scoring a whole batch), else to ``step``
    one by one. ``step`` gives one output per input, in order; ``step_many`` the key's
    outputs of the batch in order (one per input, or fewer, larger ones: a batch of
    columns), and then ``step`` may be None.

    With ``expire_after_s``, a key whose state's ``last_event_time`` is that far
    behind the newest event time this step has seen on the worker, and has had no
    batch for ``check_every_s`` of wall time, is dropped (its state and snapshot are
    discarded; a later event starts it afresh), so memory follows the active keys.
    With ``parse``, the values are :func:`key_raw`'s arrived inputs, parsed here, on the
    key's worker, before the state sees them (:func:`parse_arrived`): the dead letters
    (step ``parse_step``) come out with the batch's outputs, and a key none of whose
    values has parsed yet keeps no state (it would otherwise never expire).

    Expiry is in event time, checked on the wall clock at most ``check_every_s``
    apart: while no events arrive nothing expires. (The
    state itself should also start afresh when its next event comes after an
    idle gap, so the rule does not depend on when the check ran.)

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSource, TestingSink, run_main
    >>> class Count:
    ...     def __init__(self): self.n = 0
    ...     def snapshot(self): return self.n
    ...     def load(self, snap): self.n = snap
    >>> def bump(state, value):
    ...     state.n += 1
    ...     return (value, state.n)
    >>> flow, out = Dataflow("doc"), []
    >>> keyed = op.key_on("key", op.input("in", flow, TestingSource(["a", "b", "a"])), lambda x: x)
    >>> op.output("out", stateful_object("count", keyed, Count, bump), TestingSink(out))
    >>> run_main(flow); out
    [('a', ('a', 1)), ('b', ('b', 1)), ('a', ('a', 2))]
    """
    if step is None and step_many is None:
        raise ValueError(f"stateful_object {step_id!r}: give step, step_many or both")
    if expire_after_s is not None and not expire_after_s > 0:
        raise ValueError(f"stateful_object {step_id!r}: expire_after_s must be > 0 or None, got {expire_after_s!r}")
    clocks: dict[int, _Clock] = {}  # by OS thread id: one per worker (see score_batches)

    def builder(resume: Optional[Any]) -> _ObjectLogic[V, W, S]:
        state = new()
        if resume is not None:
            state.load(resume)
        return _ObjectLogic(state, step, step_many, expire_after_s, check_every_s, clocks, parse, parse_step,
                            live=parse is None or resume is not None)

    return op.stateful_batch("stateful", up, builder)


class BatchScorer(Protocol[V, W]):
    def score_batch(self, items: Sequence[V]) -> List[W]: ...


class Scorers(Generic[V, W]):
    """One scorer per worker thread, built by ``build()`` on the thread's first use (never at
    import or flow build; worker threads of one process do not share a scorer). Shared by
    :func:`prefetch_batches` and :func:`score_batches`, so a worker's lookups started by the
    first are answered to the second."""

    def __init__(self, build: Callable[[], BatchScorer[V, W]], step_id: str = "score") -> None:
        self.build = build
        self.step_id = step_id
        # Bytewax's worker threads are Rust threads whose Python thread state does not persist
        # between calls (a threading.local would be lost), so scorers are kept by OS thread id.
        self._by_thread: dict[int, BatchScorer[V, W]] = {}

    def get(self) -> BatchScorer[V, W]:
        scorer = self._by_thread.get(threading.get_ident())
        if scorer is None:
            t0 = time.perf_counter()
            scorer = self._by_thread[threading.get_ident()] = self.build()
            log.info("scorer_ready", step=self.step_id, seconds=round(time.perf_counter() - t0, 3),
                     thread=threading.get_ident())
        return scorer


@operator
def score_batches(
    step_id: str,
    up: Stream[V],
    build: Callable[[], BatchScorer[V, W]] | Scorers[V, W],
    raw_of: Callable[[V], Any],
) -> Stream[W | DeadLetter]:
    """Score each upstream batch with one scorer per worker, built by ``build()``
    on the worker's first batch (never at import or flow build; worker threads of
    one process do not share a scorer), or taken from ``build``, a :class:`Scorers`.

    If a batch raises, its items become dead letters (``raw_of(item)`` is the
    input as received) with the error, and the error is logged: every event
    still ends in exactly one output.
    """
    scorers = build if isinstance(build, Scorers) else Scorers(build, step_id)

    def score(items: List[V]) -> List[W | DeadLetter]:
        return batch_or_dead_letters(scorers.get().score_batch, items, raw_of, step_id.rsplit(".", 1)[-1])

    return op.flat_map_batch("score", up, score)


@operator
def prefetch_batches(step_id: str, up: Stream[V], scorers: Scorers[Any, Any],
                     owned: Callable[[V], bool], what: Callable[[V], Any] = lambda item: item) -> Stream[V]:
    """Pass every batch on unchanged, after handing ``what`` of its items that this worker
    scores (``owned``) to the worker's scorer's ``prefetch``: the scorer starts what it will
    wait for (e.g. the Feast lookups of keys it has not cached) in the background, so it
    overlaps the steps between here and :func:`score_batches` instead of holding up the
    scoring. A failing prefetch is logged and changes nothing: the scorer then asks for itself.
    """
    where = step_id.rsplit(".", 1)[-1]
    failed = [False]

    def prefetch(items: List[V]) -> List[V]:
        mine = [what(i) for i in items if owned(i)]
        if mine:
            try:
                scorers.get().prefetch(mine)  # type: ignore[attr-defined]
            except Exception as exc:  # never costs an event: the scorer asks for itself
                if not failed[0]:
                    failed[0] = True
                    log.warning("prefetch_failed", step=where, error=repr(exc)[:300],
                                detail="the scorer fetches what it needs itself; logged once")
        return items

    return op.flat_map_batch("prefetch", up, prefetch)

"""Operators shared by the scoring dataflows, in Bytewax's own style.

- :func:`validate`: parse raw events; failures become dead-letter records, never exceptions.
- :func:`stateful_object`: per-key state held in a plain object with a cheap ``snapshot()``
  (``stateful_map`` deep-copies its state every epoch; this copies only plain data).
- :func:`write`: serialize records to the sink the configuration selects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Optional, Protocol, Tuple, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulLogic
from typing_extensions import Self, override

from dataflows.config import IOConfig
from dataflows.io import make_sink, to_json
from dataflows.kafka import unwrap_kafka
from dataflows.metrics import METRICS
from features.validation import ValidationError, iso_utc

__all__ = ["Validated", "validate", "dead_letter", "dead_letter_key", "Snapshottable", "stateful_object", "write"]

V = TypeVar("V")
W = TypeVar("W")


def dead_letter(raw: Any, error: str, **extra: Any) -> dict[str, Any]:
    """A dead-letter record: the ``error``, the ``raw`` input as received, ``received_at``
    (and, from Kafka, the ``topic``, ``partition`` and ``offset`` of the message).

    >>> sorted(dead_letter(b'{"x"', "not valid JSON"))
    ['error', 'raw', 'received_at']
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return {"error": error, "raw": raw, "received_at": iso_utc(time.time()), **extra}


def dead_letter_key(event_id: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """Message key of a dead letter: the event's id when the raw input has one,
    else ``topic:partition:offset`` of the Kafka message it came from.

    >>> key = dead_letter_key(lambda e: e["transaction_id"])
    >>> key({"raw": {"transaction_id": "t1"}}), key({"raw": "{oops", "topic": "tx", "partition": 2, "offset": 7})
    ('t1', 'tx:2:7')
    """

    def key(record: dict[str, Any]) -> str:
        raw = record.get("raw")
        if isinstance(raw, dict):
            try:
                return str(event_id(raw))
            except (KeyError, TypeError):
                pass
        if record.get("offset") is not None:
            return f"{record.get('topic')}:{record.get('partition')}:{record['offset']}"
        return ""

    return key


@dataclass(frozen=True)
class Validated:
    """The two outputs of :func:`validate`."""

    oks: Stream[dict[str, Any]]
    """Events that passed, with ``_arrival`` (epoch seconds) added."""
    errs: Stream[dict[str, Any]]
    """Dead-letter records, see :func:`dead_letter`."""


@operator
def validate(step_id: str, up: Stream[Any], parse: Callable[[Any], dict[str, Any]]) -> Validated:
    """Parse every raw event with ``parse``; route failures to a dead-letter stream.

    Kafka messages are unwrapped first (their value is parsed; their topic,
    partition and offset go into the dead letter). ``parse`` raises
    :class:`~features.validation.ValidationError` for bad input;
    any other exception is also caught and named, so one bad event never stops
    the flow.

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSource, TestingSink, run_main
    >>> import orjson
    >>> flow, ok, bad = Dataflow("doc"), [], []
    >>> v = validate("check", op.input("in", flow, TestingSource(['{"a": 1}', "{"])), orjson.loads)
    >>> op.output("ok", v.oks, TestingSink(ok)); op.output("bad", v.errs, TestingSink(bad))
    >>> run_main(flow); [o["a"] for o in ok], [b["raw"] for b in bad]
    ([1], ['{'])
    """

    def check(item: Any) -> Tuple[bool, dict[str, Any]]:
        arrival = time.time()
        raw, origin, error = unwrap_kafka(item)
        if error is not None:
            return False, dead_letter(raw, error, **origin)
        try:
            ev = parse(raw)
        except ValidationError as exc:
            return False, dead_letter(raw, str(exc), **origin)
        except Exception as exc:  # a parser bug must not kill the flow either
            return False, dead_letter(raw, f"{type(exc).__name__}: {exc}", **origin)
        ev["_arrival"] = arrival
        return True, ev

    checked = op.map("check", up, check)
    b = op.branch("is_valid", checked, lambda r: r[0])
    return Validated(
        oks=op.map("unwrap_ok", b.trues, lambda r: r[1]),
        errs=op.map("unwrap_err", b.falses, lambda r: r[1]),
    )


class Snapshottable(Protocol):
    """Per-key state with plain-data snapshots."""

    def snapshot(self) -> Any: ...

    @classmethod
    def restore(cls, snap: Any) -> Self: ...


S = TypeVar("S", bound=Snapshottable)


class _ObjectLogic(StatefulLogic[V, W, Any], Generic[V, W, S]):
    def __init__(self, state: S, step: Callable[[S, V], W]) -> None:
        self.state = state
        self.step = step

    @override
    def on_item(self, value: V) -> Tuple[Iterable[W], bool]:
        return (self.step(self.state, value),), StatefulLogic.RETAIN

    @override
    def snapshot(self) -> Any:
        return self.state.snapshot()


@operator
def stateful_object(
    step_id: str,
    up: KeyedStream[V],
    new: Callable[[], S],
    restore: Callable[[Any], S],
    step: Callable[[S, V], W],
) -> KeyedStream[W]:
    """Keep one state object per key and emit ``step(state, value)`` for every item.

    Unlike ``stateful_map``, which deep-copies the state of every touched key
    each epoch, the snapshot here is whatever ``state.snapshot()`` returns:
    plain numbers and lists for per-key state, bytes for a shared model.
    The state lives in Bytewax, so recovery restores it and workers scale out
    without sharing anything.

    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSource, TestingSink, run_main
    >>> class Count:
    ...     def __init__(self, n=0): self.n = n
    ...     def snapshot(self): return self.n
    ...     @classmethod
    ...     def restore(cls, snap): return cls(snap)
    >>> def bump(state, value):
    ...     state.n += 1
    ...     return (value, state.n)
    >>> flow, out = Dataflow("doc"), []
    >>> keyed = op.key_on("key", op.input("in", flow, TestingSource(["a", "b", "a"])), lambda x: x)
    >>> op.output("out", stateful_object("count", keyed, Count, Count.restore, bump), TestingSink(out))
    >>> run_main(flow); out
    [('a', ('a', 1)), ('b', ('b', 1)), ('a', ('a', 2))]
    """

    def builder(resume: Optional[Any]) -> _ObjectLogic[V, W, S]:
        return _ObjectLogic(new() if resume is None else restore(resume), step)

    return op.stateful("stateful", up, builder)


@operator
def write(
    step_id: str,
    up: Stream[dict[str, Any]],
    cfg: IOConfig,
    kind: str,
    key: Callable[[dict[str, Any]], str],
) -> None:
    """Write records to the ``kind`` sink (``scored``, ``alerts``, ``dead_letter``).

    Every record is counted in :data:`dataflows.metrics.METRICS` on its way out.
    Kafka messages are keyed by ``key(record)`` (the event's id), so consumers
    can de-duplicate replays; files get one JSON object per line (the key only
    routes the item to the worker that owns the file).
    """
    sink, keyed = make_sink(cfg, kind)
    flow_id = up.stream_id.split(".", 1)[0]
    up = op.inspect("metrics", up, lambda _step, r: METRICS.observe(flow_id, kind, r))
    if keyed:
        from bytewax.connectors.kafka import KafkaSinkMessage

        msgs = op.map("to_message", up, lambda r: KafkaSinkMessage(key(r).encode(), to_json(r).encode()))
        op.output("out", msgs, sink)
    else:
        op.output("out", op.map("to_json", up, lambda r: (key(r), to_json(r))), sink)

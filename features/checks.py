"""Generic checks of the project's state objects, in the manner of ``river.checks``:
one check function, applied to every class of a kind (``tests/features/test_checks.py``).

Every class with plain-data state follows one contract: ``snapshot()`` returns plain
data (what the Bytewax recovery store pickles), and ``load(snap)`` puts it into an
object built from the *current* configuration. :func:`check_state` checks that
contract on a stream of events; the helpers :func:`plain_data_problem` and
:func:`difference` are usable on their own.

>>> difference({"x": [1.0, float("nan")]}, {"x": [1.0, float("nan")]}) is None   # NaN equals NaN
True
>>> difference({"x": (1, 2)}, {"x": (1, 3)})
'[x][1]: 2 != 3'
>>> plain_data_problem({"ok": [1, 2.5, None, b"raw"], "bad": [range(3)]})
'[bad][0] is of type range (range(0, 3))'

Nothing here imports Bytewax, Kafka or any package above ``features``.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = ["check_state", "plain_data_problem", "difference", "Stateful", "PICKLE_PROTOCOL"]

#: The pickle protocol Bytewax's recovery store writes snapshots with.
PICKLE_PROTOCOL = 4

#: The types a snapshot may be made of (exactly these: a subclass such as a
#: NamedTuple or an enum pickles as a reference to its class).
_SCALARS = (type(None), bool, int, float, str, bytes)



class Stateful(Protocol):
    """What :func:`check_state` checks: state saved as plain data, restored in place."""

    def snapshot(self) -> Any: ...

    def load(self, snap: Any, /) -> Any: ...


S = TypeVar("S", bound=Stateful)  # the state object
E = TypeVar("E")  # an event


def _key(k: Any) -> str:
    return str(k) if isinstance(k, (str, int)) else repr(k)


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def plain_data_problem(obj: Any, path: str = "") -> str | None:
    """``None`` when ``obj`` is plain data, else where and what the first forbidden value is.

    Plain data: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, and
    ``list`` / ``tuple`` / ``dict`` / ``set`` of plain data (dict keys too), numpy
    arrays (not of ``object`` dtype) and numpy scalars. Types are checked exactly,
    so instances of any other class (the project's included) are refused.

    >>> plain_data_problem(("tiles/1", [1.0, 2.0], {"ids": None}, np.zeros(3)))
    >>> plain_data_problem([{"n": 1}, {"n": object()}]).split(" (")[0]
    '[1][n] is of type object'
    """
    t = type(obj)
    if t in _SCALARS:
        return None
    where = path or "the snapshot itself"
    if t in (list, tuple, set, frozenset):
        items = enumerate(obj) if t in (list, tuple) else enumerate(sorted(obj, key=repr))
        for i, v in items:
            problem = plain_data_problem(v, f"{path}[{i}]")
            if problem is not None:
                return problem
        return None
    if t is dict:
        for k, v in obj.items():
            problem = plain_data_problem(k, f"{path}{{key {k!r:.40}}}")
            if problem is None:
                problem = plain_data_problem(v, f"{path}[{_key(k)}]")
            if problem is not None:
                return problem
        return None
    if t is np.ndarray:
        if obj.dtype.hasobject:
            return f"{where} is a numpy array of dtype {obj.dtype} (objects, not plain data)"
        return None
    if isinstance(obj, np.generic) and not isinstance(obj, np.object_):
        return None
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return f"{where} is of type {name} ({obj!r:.60})"


def _is_nan(x: Any) -> bool:
    try:
        return x != x and math.isnan(x)
    except TypeError:
        return False


def difference(a: Any, b: Any, path: str = "", ignore: Collection[str] = ()) -> str | None:
    """``None`` when ``a`` and ``b`` are equal, else where and how they first differ.

    Deep and strict: types must match (``1 != 1.0``, ``(1,) != [1]``); NaN equals
    NaN; numpy arrays are compared by dtype, shape and values; dicts by keys then
    values (in any order); msgspec Structs and dataclasses field by field. Keys of
    dicts and fields of structs named in ``ignore`` (e.g. wall-clock fields such as
    ``scored_at``) are skipped at any depth.

    >>> difference([{"score": 0.5, "scored_at": "10:00"}], [{"score": 0.5, "scored_at": "10:01"}],
    ...            ignore={"scored_at"}) is None
    True
    >>> difference({"n": 1}, {"n": 1.0})
    '[n]: int 1 != float 1.0'
    >>> difference(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    'arrays differ at index (1,): nan != 2.0'
    """
    where = _at(path)
    ta, tb = type(a), type(b)
    if ta is not tb:
        return f"{where}{ta.__name__} {a!r:.80} != {tb.__name__} {b!r:.80}"
    if ta is np.ndarray:
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{where}array {a.dtype}{a.shape} != array {b.dtype}{b.shape}"
        eq = a == b
        if a.dtype.kind in "fc":
            eq = eq | (np.isnan(a) & np.isnan(b))
        if not np.all(eq):
            at = tuple(int(j) for j in np.argwhere(~eq)[0])
            return f"{where}arrays differ at index {at}: {a[at].item()!r} != {b[at].item()!r}"
        return None
    if ta in (float, complex) or isinstance(a, np.floating):
        if a == b or (_is_nan(a) and _is_nan(b)):
            return None
        return f"{where}{a!r} != {b!r}"
    if ta in (list, tuple):
        for i, (x, y) in enumerate(zip(a, b)):
            d = difference(x, y, f"{path}[{i}]", ignore)
            if d is not None:
                return d
        if len(a) != len(b):
            return f"{where}{ta.__name__} of {len(a)} items != {len(b)} items"
        return None
    if isinstance(a, Mapping):
        ka = [k for k in a if k not in ignore]
        kb = [k for k in b if k not in ignore]
        if set(ka) != set(kb):
            only_a = ", ".join(sorted(map(repr, set(ka) - set(kb)))) or "none"
            only_b = ", ".join(sorted(map(repr, set(kb) - set(ka)))) or "none"
            return f"{where}keys differ (only in the first: {only_a:.200}; only in the second: {only_b:.200})"
        for k in ka:
            d = difference(a[k], b[k], f"{path}[{_key(k)}]", ignore)
            if d is not None:
                return d
        return None
    if ta in (set, frozenset):
        return None if a == b else f"{where}{a!r:.80} != {b!r:.80}"
    fields = getattr(ta, "__struct_fields__", None)  # msgspec.Struct
    if fields is None and hasattr(ta, "__dataclass_fields__"):
        fields = tuple(ta.__dataclass_fields__)
    if fields is not None:
        for f in fields:
            if f in ignore:
                continue
            d = difference(getattr(a, f), getattr(b, f), f"{path}.{f}", ignore)
            if d is not None:
                return d
        return None
    try:
        same = bool(a == b)
    except Exception as exc:  # an == that cannot answer (e.g. ambiguous truth value)
        return f"{where}cannot compare {ta.__name__} values ({exc})"
    return None if same else f"{where}{a!r:.80} != {b!r:.80}"


def _fail(cls: str, what: str) -> AssertionError:
    return AssertionError(f"{cls}: {what}")


def _run(obj: S, step: Callable[[S, E], Any], events: Iterable[E]) -> list[Any]:
    """Feed ``events`` to ``obj`` (each a deep copy: a step may fill in its event) and keep
    a deep copy of each output as it was when produced."""
    return [copy.deepcopy(step(obj, copy.deepcopy(e))) for e in events]


def _first_output_difference(expected: list[Any], got: list[Any], ignore: Collection[str]) -> str | None:
    for i, (x, y) in enumerate(zip(expected, got)):
        d = difference(x, y, f"output[{i}]", ignore)
        if d is not None:
            return d
    return None


def check_state(
    make: Callable[[], S],
    step: Callable[[S, E], Any],
    events: Iterable[E],
    *,
    split: int | None = None,
    ignore: Collection[str] = (),
    name: str | None = None,
) -> None:
    """Check the snapshot / load contract of a state class on a stream of events.

    Args:
        make: builds a fresh object from the configuration (called several times).
        step: ``step(obj, event)`` feeds one event and returns the object's output
            for it (or ``None``). Each call gets its own deep copy of the event.
        events: the stream; the first ``split`` events (default: half) come before
            the snapshot, the rest after it. Make it long enough to pass warm-ups.
        split: where the snapshot is taken.
        ignore: keys / fields left out when outputs are compared (wall-clock
            fields such as ``scored_at``, ``latency_ms``, ``received_at``).
        name: how failures name the class (default: its module and class name).

    ``a = make()`` takes the first events, then ``snap = a.snapshot()``. Checked, in order:

    1. ``snap`` is plain data (see :func:`plain_data_problem`); it pickles with
       protocol 4, as Bytewax stores it, and unpickles equal;
    2. taking a snapshot changes nothing: ``a.snapshot()`` again equals ``snap``;
    3. ``b = make(); b.load(snap)``: ``b.snapshot()`` equals ``snap``;
    4. ``a`` takes the rest of the events; ``snap`` (compared with a deep copy taken
       before) did not change: it does not alias ``a``'s live state;
    5. ``b`` takes the rest: its outputs equal ``a``'s, event by event, and so do the
       snapshots at the end (restore is exact);
    6. ``c = make()`` loads the same ``snap`` twice (so the first load did not consume
       or change it, and loading again replaces rather than adds): ``c.snapshot()``
       equals ``snap``, and on the rest of the events ``c``'s outputs (and its final
       snapshot) equal ``a``'s again; after all that, ``snap`` is still unchanged.

    Raises AssertionError naming the class, the check and the first difference.
    Equality is :func:`difference` (strict types, NaN equals NaN, numpy arrays).

    >>> class Counter:
    ...     def __init__(self): self.n = 0
    ...     def add(self, x): self.n += x; return self.n
    ...     def snapshot(self): return {"n": self.n}
    ...     def load(self, snap): self.n = snap["n"]
    >>> check_state(Counter, Counter.add, [1, 2, 3, 4])
    >>> class Forgetful(Counter):
    ...     def load(self, snap): pass
    >>> check_state(Forgetful, Forgetful.add, [1, 2, 3, 4], name="Forgetful")
    Traceback (most recent call last):
    ...
    AssertionError: Forgetful: after b.load(snap), b.snapshot() differs from snap (snap vs b.snapshot()): snap[n]: 3 != 0
    """
    events = list(events)
    if len(events) < 2:
        raise ValueError(f"check_state: need at least 2 events, got {len(events)}")
    split = len(events) // 2 if split is None else split
    if not 0 < split < len(events):
        raise ValueError(f"check_state: split must be in [1, {len(events) - 1}], got {split!r}")
    head, rest = events[:split], events[split:]

    a = make()
    cls = name or f"{type(a).__module__}.{type(a).__qualname__}"
    _run(a, step, head)
    snap = a.snapshot()

    # 1. plain data, through pickle
    problem = plain_data_problem(snap, "snap")
    if problem is not None:
        raise _fail(cls, f"snapshot is not plain data: {problem}")
    try:
        blob = pickle.dumps(snap, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise _fail(cls, f"snapshot does not pickle (protocol {PICKLE_PROTOCOL}): {exc!r}") from exc
    d = difference(snap, pickle.loads(blob), "snap")
    if d is not None:
        raise _fail(cls, f"snapshot changes through pickle (before vs after): {d}")
    saved = copy.deepcopy(snap)

    # 2. taking a snapshot changes nothing
    d = difference(snap, a.snapshot(), "snap")
    if d is not None:
        raise _fail(cls, f"taking a snapshot changed the object: a second a.snapshot() differs (first vs second): {d}")

    # 3. load, then snapshot: the same data
    b = make()
    b.load(snap)
    d = difference(snap, b.snapshot(), "snap")
    if d is not None:
        raise _fail(cls, f"after b.load(snap), b.snapshot() differs from snap (snap vs b.snapshot()): {d}")
    d = difference(saved, snap, "snap")
    if d is not None:
        raise _fail(cls, f"b.load(snap) changed snap: {d}")

    # 4. the snapshot does not alias the live object
    expected = _run(a, step, rest)
    d = difference(saved, snap, "snap")
    if d is not None:
        raise _fail(cls, f"snap changed when a took more events (it shares a's live state): {d}")

    # 5. restore is exact
    d = _first_output_difference(expected, _run(b, step, rest), ignore)
    if d is not None:
        raise _fail(cls, f"restore is not exact: on events {split}..{len(events) - 1}, the outputs of a "
                         f"(never restored) and of b (restored from snap) differ (a vs b): {d}")
    end = a.snapshot()
    d = difference(end, b.snapshot(), "snapshot")
    if d is not None:
        raise _fail(cls, f"restore is not exact: after the last event, a.snapshot() and b.snapshot() differ "
                         f"(a vs b): {d}")

    # 6. the same snapshot loads again, and twice
    c = make()
    c.load(snap)
    c.load(snap)
    d = difference(saved, c.snapshot(), "snap")
    if d is not None:
        raise _fail(cls, f"after c.load(snap) twice, c.snapshot() differs from snap (snap vs c.snapshot()): {d}")
    d = _first_output_difference(expected, _run(c, step, rest), ignore)
    if d is None:
        d = difference(end, c.snapshot(), "snapshot at the end")
    if d is not None:
        raise _fail(cls, f"c, loaded twice from the same snap, does not go on like a (a vs c): {d}")
    d = difference(saved, snap, "snap")
    if d is not None:
        raise _fail(cls, f"snap changed after being loaded and used twice: {d}")

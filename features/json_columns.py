"""JSON lines of a batch made from its columns: the bytes :func:`features.formats.to_json_line`
gives each record, without a dict per record and with a few ``orjson`` calls per batch
instead of one per record.

A record's line is a fixed run of pieces: constant text (keys, punctuation, a value the
whole batch shares), numbers, and one text per row of a string column (an id, the input
fields' object). :class:`LineTemplate` lays every row out in one compiled pass over texts
made a column at a time:

- numbers: one ``orjson`` call over the batch's rows x numbers matrix (as
  :func:`number_texts` cuts it: each float as ``to_json_line`` writes it, NaN and
  infinities ``null``);
- :func:`string_texts`: each string without its quotes (one call over the list);
- :func:`object_texts`, :func:`object_heads`: each value whole, or each mapping without its
  closing brace (one call over the list).

Each is ``to_json_line`` of the values, cut where the text cannot be anything but a
boundary between them (or, where an input could hold such a boundary, one call per value),
so escaping, numpy values, lone surrogates and the rest follow its one rule.

>>> t = LineTemplate([b'{"id":"', 0, b'","x":', NUMBER, b"}\\n"])
>>> t.render(np.array([[0.5], [np.nan]]), [string_texts(["a", 'b"c'])])[0]
b'{"id":"a","x":0.5}\\n{"id":"b\\\\"c","x":null}\\n'
"""

from __future__ import annotations

import threading
from itertools import chain
from typing import Any, Mapping, Sequence

import numpy as np
import orjson

from features.formats import to_json_line

__all__ = ["LineTemplate", "NUMBER", "number_texts", "string_texts", "object_texts", "object_heads"]

# A value no input holds in practice; its text between two values of a list marks the
# boundary. An input that does hold it is caught by the count of pieces (see object_texts).
_MARK = "\x00streamscore-json-columns\x00"
_MARK_TEXT = b"," + to_json_line(_MARK) + b","


def number_texts(M: Any) -> list[bytes]:
    """The JSON text of every element of the float matrix ``M`` (rows x columns), row by
    row: what :func:`~features.formats.to_json_line` writes for each element as a Python
    float (NaN and infinities -> ``null``). Element ``(j, i)`` is item ``j * columns + i``.

    >>> number_texts(np.array([[1.0, 1e-7], [float("inf"), -0.25]]))
    [b'1.0', b'1e-7', b'null', b'-0.25']
    """
    A = np.ascontiguousarray(M, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"number_texts: expected a matrix (rows x columns), got shape {A.shape}")
    if not A.size:
        return []
    text = orjson.dumps(A, option=orjson.OPT_SERIALIZE_NUMPY)  # [[a,b],[c,d]]: numbers and null only
    return text[2:-2].replace(b"],[", b",").split(b",")


def string_texts(values: Sequence[str]) -> list[bytes]:
    """The JSON text of each string without its quotes, as ``to_json_line`` writes it
    (escapes, lone surrogates -> U+FFFD).

    >>> string_texts(["a", "", 'q"," \\\\'])
    [b'a', b'', b'q\\\\",\\\\" \\\\\\\\']
    """
    if not values:
        return []
    # In the list's text a quote inside a string is always escaped, so '","' (two unescaped
    # quotes around a comma) is only ever the boundary between two strings.
    parts = to_json_line(list(values))[2:-2].split(b'","')
    if len(parts) != len(values):  # not strings after all: one at a time
        return [to_json_line(v)[1:-1] for v in values]
    return parts


def object_texts(values: Sequence[Any]) -> list[bytes]:
    """``to_json_line`` of each value (e.g. a dict of input fields), made in one call over
    them all.

    >>> object_texts([{"a": [{"b": 1}, {"c": 2}]}, {}, {"s": "x\\u0000y"}])
    [b'{"a":[{"b":1},{"c":2}]}', b'{}', b'{"s":"x\\\\u0000y"}']
    """
    return _cut(values, b"")


def object_heads(values: Sequence[dict[str, Any]]) -> list[bytes]:
    """``to_json_line`` of each dict without its closing brace: where a record that is
    the dict's keys followed by more starts.

    >>> object_heads([{"a": 1}, {}])
    [b'{"a":1', b'{']
    """
    if set(map(type, values)) - {dict}:
        raise TypeError(f"object_heads: expected dicts, got {sorted({type(v).__name__ for v in values})}")
    return _cut(values, b"}")


def _cut(values: Sequence[Any], end: bytes) -> list[bytes]:
    """``to_json_line`` of each value without ``end`` (its last byte(s)), from one call."""
    n = len(values)
    if not n:
        return []
    items: list[Any] = [_MARK] * (2 * n - 1)
    items[0::2] = values
    try:
        text = to_json_line(items)[1:-1]
    except orjson.JSONEncodeError:  # a value nested at orjson's limit (one level deeper in the list): one at a time
        return [t[:len(t) - len(end)] for t in map(to_json_line, values)]
    parts = text.split(end + _MARK_TEXT)
    if len(parts) != n or not text.endswith(end):  # an input held the mark's text: one at a time
        return [t[:len(t) - len(end)] for t in map(to_json_line, values)]
    if end:
        parts[-1] = parts[-1][:-len(end)]
    return parts


_local = threading.local()
_SCRATCH_MAX = 32 << 20  # bytes kept per thread at most


def _scratch(size: int) -> np.ndarray:
    """A buffer of at least ``size`` bytes, this thread's, kept from call to call: memory
    written again and again costs no page faults (a fresh buffer of a few MB per batch
    did: about 1 µs a record)."""
    if size > _SCRATCH_MAX:  # a huge batch: its own buffer, not kept
        return np.empty(size, dtype=np.uint8)
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = np.empty(min(_SCRATCH_MAX, max(size, 2 * len(buf) if buf is not None else 0)),
                                    dtype=np.uint8)
    return buf


#: In a :class:`LineTemplate`, the row's next number.
NUMBER = -1


class LineTemplate:
    """The pieces of a record's line: ``bytes`` (the same for every row), :data:`NUMBER`
    (the row's next number, from a rows x numbers matrix) and ``int`` ``c >= 0`` (string
    column ``c``: one text per row). :meth:`render` lays every row out in one compiled
    pass (:func:`features.json_kernel.fill`): no object per value or per piece.

    >>> t = LineTemplate([b'{"id":"', 0, b'","x":', NUMBER, b',"y":', NUMBER, b"}\\n"])
    >>> text, ends = t.render(np.array([[0.5, 1e-7], [np.nan, 3.0]]), [string_texts(["a", 'b"c'])],
    ...                       whole={1: b"(as is)\\n"})
    >>> text, ends.tolist()
    (b'{"id":"a","x":0.5,"y":1e-7}\\n(as is)\\n', [28, 36])
    """

    __slots__ = ("parts", "slots", "consts", "const_at", "const_end", "n_columns", "n_numbers")

    def __init__(self, parts: Sequence[bytes | int]) -> None:
        merged: list[bytes | int] = []
        for p in parts:
            if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] = merged[-1] + p
            elif not (isinstance(p, bytes) and not p):
                merged.append(p)
        self.parts = merged
        slots, at, end, size = [], [], [], 0
        for p in merged:
            if isinstance(p, bytes):
                slots.append(0)
                at.append(size)
                size += len(p)
            elif isinstance(p, int) and p >= NUMBER:
                slots.append(-1 if p == NUMBER else p + 1)
                at.append(size)
            else:
                raise ValueError(f"LineTemplate: a part is bytes, NUMBER or a column index >= 0, got {p!r}")
            end.append(size)
        self.slots = np.array(slots, dtype=np.int64)
        self.consts = np.frombuffer(b"".join(p for p in merged if isinstance(p, bytes)), dtype=np.uint8)
        self.const_at = np.array(at, dtype=np.uint64)
        self.const_end = np.array(end, dtype=np.uint64)
        self.n_columns = 1 + max((p for p in merged if not isinstance(p, bytes) and p >= 0), default=-1)
        self.n_numbers = sum(1 for p in merged if not isinstance(p, bytes) and p == NUMBER)

    def render(self, numbers: Any, columns: Sequence[Sequence[bytes]],
               whole: Mapping[int, bytes] | None = None) -> tuple[bytes, np.ndarray]:
        """``(text, ends)``: the rows of ``numbers`` (a rows x :attr:`n_numbers` float
        matrix, written as :func:`number_texts`) and ``columns`` (each one text per row) laid
        out, row ``j`` ending at ``ends[j]``; row ``j`` in ``whole`` is that text instead."""
        from features.json_kernel import fill  # lazy: numba only where lines are made

        A = np.ascontiguousarray(numbers, dtype=np.float64)
        n = len(A)
        if A.shape != (n, self.n_numbers):
            raise ValueError(f"LineTemplate.render: numbers of shape {A.shape}, expected (rows, {self.n_numbers})")
        cols = [*columns[:self.n_columns]]
        if len(cols) < self.n_columns:
            raise ValueError(f"LineTemplate.render: {len(cols)} columns, the template uses {self.n_columns}")
        w = np.full(n, -1, dtype=np.int64)
        if whole:
            extra = [b""] * n
            for j, text in whole.items():
                extra[j] = text
                w[j] = len(cols)
            cols.append(extra)
        for c, col in enumerate(cols):
            if len(col) != n:
                raise ValueError(f"LineTemplate.render: column {c} has {len(col)} texts for {n} rows")
        ends = np.empty(n, dtype=np.uint64)
        if not n:
            return b"", ends
        text = orjson.dumps(A, option=orjson.OPT_SERIALIZE_NUMPY) if A.size else b""
        strings = b"".join([b"".join(col) for col in cols])
        flat = np.zeros(len(cols) * n + 1, dtype=np.uint64)
        np.cumsum(np.fromiter(chain.from_iterable(map(len, col) for col in cols), np.uint64, len(cols) * n),
                  out=flat[1:])
        at = np.empty((len(cols), n + 1), dtype=np.uint64)
        at[:, :n] = flat[:-1].reshape(len(cols), n)
        at[:, n] = flat[n::n]
        out = _scratch(n * len(self.consts) + len(strings) + len(text))
        size = fill(self.slots, self.const_at, self.const_end, self.consts, np.frombuffer(text, dtype=np.uint8),
                    np.frombuffer(strings, dtype=np.uint8), at, w, out, ends)
        return out[:size].tobytes(), ends

"""The compiled byte copying of :class:`features.json_columns.LineTemplate`: lay out the
rows of a batch, piece after piece, from texts already made (no formatting here: every
value's text is ``orjson``'s). Compiled by numba (``cache=True``: machine code cached
next to the module, in ``__pycache__``); imported only where lines are made.
Tests: ``tests/features/test_json_columns.py``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["fill"]

# Positions are unsigned throughout: numba then checks no index for being negative.
_ONE = np.uint64(1)
_COMMA, _OPEN, _CLOSE = ord(","), ord("["), ord("]")


@numba.njit(cache=True)
def fill(slots: np.ndarray, const_at: np.ndarray, const_end: np.ndarray, consts: np.ndarray, numbers: np.ndarray,
         strings: np.ndarray, string_at: np.ndarray, whole: np.ndarray, out: np.ndarray, ends: np.ndarray) -> int:
    """Write ``len(ends)`` rows into ``out``; returns the bytes written, ``ends[j]`` the end of row ``j``.

    ``slots``: a row's pieces: ``0`` constant (``consts[const_at[k]:const_end[k]]`` for
    slot ``k``), ``-1`` the row's next number (``numbers``: the JSON text of a rows x
    numbers matrix, ``[[...],...]``, whose numbers are taken in order), ``c >= 1`` string
    column ``c - 1`` (row ``j``: ``strings[string_at[c - 1, j]:string_at[c - 1, j + 1]]``).
    A row with ``whole[j] >= 0`` is string column ``whole[j]`` alone (its numbers are
    passed over). ``numbers`` holds exactly the rows' numbers; positions are ``uint64``.
    """
    o = np.uint64(0)
    p = np.uint64(0)
    per_row = 0
    for s in slots:
        if s == -1:
            per_row += 1
    for j in range(len(ends)):
        w = whole[j]
        if w >= 0:
            a, e = string_at[w, j], string_at[w, j + 1]
            while a < e:
                out[o] = strings[a]
                o += _ONE
                a += _ONE
            for _ in range(per_row):  # pass over the row's numbers
                c = numbers[p]
                while c == _COMMA or c == _OPEN or c == _CLOSE:
                    p += _ONE
                    c = numbers[p]
                while c != _COMMA and c != _CLOSE:
                    p += _ONE
                    c = numbers[p]
            ends[j] = o
            continue
        for k in range(len(slots)):
            s = slots[k]
            if s == 0:
                a, e = const_at[k], const_end[k]
                while a < e:
                    out[o] = consts[a]
                    o += _ONE
                    a += _ONE
            elif s == -1:  # skip the '[', ']' and ',' before the number, copy up to ',' or ']'
                c = numbers[p]
                while c == _COMMA or c == _OPEN or c == _CLOSE:
                    p += _ONE
                    c = numbers[p]
                while c != _COMMA and c != _CLOSE:
                    out[o] = c
                    o += _ONE
                    p += _ONE
                    c = numbers[p]
            else:
                a, e = string_at[s - 1, j], string_at[s - 1, j + 1]
                while a < e:
                    out[o] = strings[a]
                    o += _ONE
                    a += _ONE
        ends[j] = o
    return o

"""Event files: JSON Lines, CSV and Parquet, told apart by suffix. One place for all of it.

Engine-free (no Bytewax); pyarrow is imported only inside the Parquet branches.

- :func:`format_of`: ``.jsonl`` / ``.ndjson`` / ``.json`` -> ``"jsonl"``, ``.csv`` -> ``"csv"``,
  ``.parquet`` / ``.pq`` -> ``"parquet"``; anything else is a ``ValueError`` naming the path.
- :func:`iter_raw`: the raw inputs of a file, streamed (memory does not grow with the
  file), for the flows' file source and the replay tool. JSON Lines gives each non-empty
  line as **bytes** exactly as in the file (no decoding: a non-UTF-8 or malformed line is
  passed on, for validation to dead-letter); CSV gives each row as a dict of ``str``
  (empty cell -> ``None``; undecodable bytes survive as lone surrogates, never an
  exception); Parquet gives each row as a dict. ``skip`` resumes after the first N inputs.
- :func:`write_rows`: dicts (and, for JSON Lines only, raw ``str``/``bytes`` lines) to a
  file; :func:`read_rows`: a small file back as dicts (tests, tools).
- :func:`to_json_line`: the JSON the sinks write: one line of UTF-8 JSON, always valid
  (NaN and infinities -> ``null``, numpy values, dataclasses, msgspec Structs);
  :func:`to_json_lines`: the same lines of many records, from one ``orjson`` call.

>>> format_of("data/tx.JSONL"), format_of("x.pq"), format_of("x.txt", "csv")
('jsonl', 'parquet', 'csv')
>>> to_json_line({"a": float("nan"), "b": 1.5})
b'{"a":null,"b":1.5}'
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Union

import orjson

from features.records import undecodable

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "format_of",
    "iter_raw",
    "write_rows",
    "read_rows",
    "to_json_line",
    "to_json_lines",
]

FORMATS = ("jsonl", "csv", "parquet")

#: file suffix (lower case) -> format
SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

PathLike = Union[str, "os.PathLike[str]"]

#: CSV text is read as UTF-8 (a leading BOM is dropped); bytes that are not UTF-8 become
#: lone surrogates (``"\udcff"``) instead of an exception, so one bad row cannot stop a file.
CSV_ENCODING = "utf-8-sig"
CSV_ERRORS = "surrogateescape"
#: where a CSV row's cells beyond the header go (a list of str)
CSV_EXTRA_KEY = "_extra"


def format_of(path: PathLike, fmt: str | None = None) -> str:
    """The format of ``path``: ``fmt`` when given, else from the suffix.

    >>> format_of("events.txt")
    Traceback (most recent call last):
    ...
    ValueError: cannot tell the format of 'events.txt' from its suffix '.txt': expected one of .jsonl, .ndjson, .json, .csv, .parquet, .pq
    """
    if fmt:
        f = fmt.lower().lstrip(".")
        f = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}.get(f, f)
        if f not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} for {str(path)!r}: expected one of {', '.join(FORMATS)}")
        return f
    suffix = Path(path).suffix.lower()
    try:
        return SUFFIXES[suffix]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}: "
            f"expected one of {', '.join(SUFFIXES)}"
        ) from None


# --------------------------------------------------------------------------- reading


def iter_raw(path: PathLike, batch_size: int = 1000, skip: int = 0, fmt: str | None = None) -> Iterator[bytes | dict]:
    """The raw inputs of a file, one at a time, without loading the file.

    JSON Lines: each non-empty line as bytes, line ending removed (and a UTF-8 byte order
    mark before the first), otherwise exactly as in the file. CSV: each row as
    ``{column: str | None}`` (empty cell -> None; cells beyond the header under ``"_extra"``). Parquet: each row as a dict, read in record
    batches of ``batch_size``. The first ``skip`` inputs are skipped (resume after a
    restart; empty JSON Lines lines do not count).

    The format and the file's existence are checked now (``ValueError``,
    ``FileNotFoundError``); the file is opened on the first ``next()``.
    """
    path = Path(path)
    kind = format_of(path, fmt)
    if batch_size < 1:
        raise ValueError(f"iter_raw: batch_size must be >= 1, got {batch_size!r}")
    if skip < 0:
        raise ValueError(f"iter_raw: skip must be >= 0, got {skip!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: no such file")
    if kind == "jsonl":
        return _jsonl_lines(path, skip)
    if kind == "csv":
        return _csv_rows(path, skip)
    return _parquet_rows(path, batch_size, skip)


_BOM = b"\xef\xbb\xbf"


def _numbered_lines(f: Any) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of a binary file, without a UTF-8 byte order mark before
    the first (as Windows editors write it)."""
    for lineno, line in enumerate(f, 1):
        yield lineno, (line[len(_BOM):] if lineno == 1 and line.startswith(_BOM) else line)


def _jsonl_lines(path: Path, skip: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for _, line in _numbered_lines(f):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            yield line


def _csv_rows(path: Path, skip: int) -> Iterator[dict]:
    with open(path, encoding=CSV_ENCODING, errors=CSV_ERRORS, newline="") as f:
        reader = csv.DictReader(f, restkey=CSV_EXTRA_KEY, restval=None)
        for row in reader:
            if skip:
                skip -= 1
                continue
            yield {k: (None if v == "" else v) for k, v in row.items()}


def _parquet_rows(path: Path, batch_size: int, skip: int) -> Iterator[dict]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        meta = pf.metadata
        first = 0  # whole row groups before `skip` are never read
        while first < meta.num_row_groups and skip >= meta.row_group(first).num_rows:
            skip -= meta.row_group(first).num_rows
            first += 1
        groups = list(range(first, meta.num_row_groups))
        if not groups:
            return
        for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups):
            if skip:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch = batch.slice(skip)
                skip = 0
            yield from batch.to_pylist()


def read_rows(path: PathLike, fmt: str | None = None) -> list[dict]:
    """A whole (small) file as dicts; a JSON Lines line that is not a JSON object is a
    ``ValueError`` naming ``path:line``. CSV cells come back as str (empty -> None)."""
    path = Path(path)
    kind = format_of(path, fmt)
    if kind != "jsonl":
        return list(iter_raw(path, fmt=kind))  # type: ignore[arg-type]
    out = []
    with open(path, "rb") as f:
        for lineno, line in _numbered_lines(f):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: {undecodable(line, exc)}") from None
            if not isinstance(value, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(value).__name__}")
            out.append(value)
    return out


# --------------------------------------------------------------------------- writing


def _raw_bytes(line: str | bytes | bytearray, i: int) -> bytes:
    data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
    if b"\n" in data or b"\r" in data:
        raise ValueError(f"row {i}: a raw line cannot contain a line break")
    return data


def write_rows(rows: Iterable[dict | str | bytes], path: PathLike, fmt: str | None = None) -> int:
    """Write ``rows`` to ``path`` as JSON Lines, CSV or Parquet (by suffix unless ``fmt``);
    returns the number of rows. The parent folder is created.

    - JSON Lines: a dict is one JSON object (:func:`to_json_line`); a ``str`` or ``bytes``
      row is written as is, as one raw line (e.g. a deliberately malformed event). Rows
      are streamed.
    - CSV: the header is the union of the rows' keys in first-seen order; ``None`` -> empty cell.
    - Parquet: the same columns; a column whose values Arrow cannot type as one kind
      (e.g. a corrupted amount ``"twelve"`` among floats) is written as strings, like CSV.

    Raw lines with CSV or Parquet are a ``ValueError`` (nothing is written).
    """
    path = Path(path)
    kind = format_of(path, fmt)
    if kind == "jsonl":
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with open(path, "wb") as f:
            for row in rows:
                if isinstance(row, (str, bytes, bytearray)):
                    f.write(_raw_bytes(row, n))
                else:
                    f.write(to_json_line(row))
                f.write(b"\n")
                n += 1
        return n
    dicts: list[dict] = []
    cols: dict[str, None] = {}
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes, bytearray)):
            raise ValueError(
                f"{str(path)!r}: row {i} is a raw line; malformed raw lines can only be written to .jsonl, "
                f"not {kind} (write dicts, or use a .jsonl output)"
            )
        cols.update(dict.fromkeys(row))
        dicts.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(cols))
            w.writeheader()
            for row in dicts:
                w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return len(dicts)
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in cols:
        values = [row.get(c) for row in dicts]
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
    pq.write_table(pa.table(arrays), path)
    return len(dicts)


# --------------------------------------------------------------------------- JSON for sinks

_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _default(o: Any) -> Any:
    """What orjson cannot serialize on its own."""
    to_dict = getattr(o, "to_dict", None)
    if callable(to_dict) and not isinstance(o, type):
        return to_dict()
    fields = getattr(type(o), "__struct_fields__", None)  # msgspec.Struct
    if fields is not None:
        return {f: getattr(o, f) for f in fields}
    if isinstance(o, datetime):  # subclasses, e.g. pandas.Timestamp; NaT -> null
        return None if o != o else o.isoformat()
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).decode("utf-8", errors="replace")
    if isinstance(o, (set, frozenset)):
        return list(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    item = getattr(o, "item", None)  # other numpy / pandas scalars
    if callable(item):
        return item()
    raise TypeError(f"cannot serialize {type(o).__name__} to JSON")


def valid_text(s: str) -> str:
    """``s`` with lone surrogates (from undecodable input bytes) replaced by U+FFFD: text any
    UTF-8 writer (orjson, Arrow) takes.

    >>> valid_text("dev\\udcff!"), valid_text("café")
    ('dev\ufffd!', 'café')
    """
    try:
        b = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        b = s.encode("utf-8", "surrogatepass")
    return b.decode("utf-8", errors="replace")


def key_bytes(key: str) -> bytes:
    """A message key's bytes: UTF-8, and for a key holding undecodable input bytes (lone
    surrogates from :data:`CSV_ERRORS`) those very bytes, as they were in the input.

    >>> key_bytes("C1"), key_bytes("dev\\udcff"), key_bytes("x\\ud800")
    (b'C1', b'dev\\xff', b'x\\xef\\xbf\\xbd\\xef\\xbf\\xbd\\xef\\xbf\\xbd')
    """
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return key.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no input byte made: U+FFFD, as in the JSON
            return valid_text(key).encode("utf-8")


def _clean(o: Any) -> Any:
    if isinstance(o, str):
        return valid_text(o)
    if isinstance(o, dict):
        return {(valid_text(k) if isinstance(k, str) else k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def to_json_line(record: Any) -> bytes:
    """``record`` as one line of JSON (UTF-8 bytes, no trailing newline).

    orjson with numpy support; NaN and infinities become ``null``, so every line is
    valid JSON. Dataclasses are native; msgspec Structs, objects with ``to_dict()``,
    datetimes (pandas Timestamps too), bytes, sets and numpy scalars are converted.
    Strings holding undecodable input (lone surrogates) get U+FFFD and dict keys that
    are not strings are stringified rather than failing the sink.

    >>> import numpy as np
    >>> to_json_line({"x": np.float32("inf"), "n": np.int64(3), "raw": "\\udcff!"})
    b'{"x":null,"n":3,"raw":"\\xef\\xbf\\xbd!"}'
    """
    try:
        return orjson.dumps(record, default=_default, option=_OPTS)
    except orjson.JSONEncodeError:
        return orjson.dumps(
            _clean(record), default=lambda o: _clean(_default(o)), option=_OPTS | orjson.OPT_NON_STR_KEYS
        )


#: What :func:`to_json_lines` puts between the records of its one ``orjson`` call, and that
#: text as it is serialised between them (no record's own JSON can hold it unnoticed:
#: the split must give exactly one part per record, else the records go one by one).
_BETWEEN = "\x00" * 8
_SPLIT = b"," + orjson.dumps(_BETWEEN) + b","


def to_json_lines(records: Sequence[Any]) -> list[bytes]:
    """:func:`to_json_line` of each record, the same bytes, from one ``orjson`` call over
    all of them (a batch's records: one output buffer instead of one per record, which
    for records over 1 KB each cost a reallocation).

    The records are serialised as one JSON array with a marker string between them,
    then cut at the markers. When the cut does not give one part per record (a record
    holds the marker's text itself) or the array cannot be serialised as it is (text with
    lone surrogates, keys that are not strings, nesting at orjson's limit), each record
    goes through :func:`to_json_line`.

    >>> to_json_lines([{"a": 1}, {"b": [float("nan")]}, {"c": "\\u0000"}])
    [b'{"a":1}', b'{"b":[null]}', b'{"c":"\\\\u0000"}']
    """
    n = len(records)
    if n < 2:
        return [to_json_line(r) for r in records]
    items: list[Any] = [_BETWEEN] * (2 * n - 1)
    items[::2] = records
    try:
        text = orjson.dumps(items, default=_default, option=_OPTS)
    except orjson.JSONEncodeError:
        return [to_json_line(r) for r in records]
    lines = text.split(_SPLIT)
    if len(lines) != n:
        return [to_json_line(r) for r in records]
    lines[0] = lines[0][1:]  # the array's brackets
    lines[-1] = lines[-1][:-1]
    return lines

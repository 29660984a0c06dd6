"""What travels through the flows, and the rules every flow shares about it.

- :class:`Raw`: one input as received (JSON text or bytes, or a row mapping), with
  where it came from (Kafka topic, partition, offset) when it came from Kafka.
- :class:`DeadLetter`: an input that could not be scored, with the reason. Failure
  is a *type*, never a field: a flow routes ``isinstance(x, DeadLetter)``, so an
  input field named ``error`` cannot be mistaken for a failure.
- :func:`decode`: raw input -> ``dict`` (any bytes, any JSON; never raises anything
  but :class:`ValidationError`).
- The time policy, one place for both flows (:func:`parse_time`, :func:`format_time`):

  * ISO-8601 text with ``Z`` or an offset; text **without** an offset is UTC;
  * numbers are epoch **seconds** (a number of 1e11 or more looks like epoch
    milliseconds and is refused, rather than silently read as the year 5000+);
  * ``datetime`` objects (Parquet rows); naive ones are UTC;
  * output times are ISO-8601 UTC with milliseconds and ``Z`` (:func:`format_times`: a
    batch's at once, the same text).
- :func:`rounded`: Python's ``round`` of every element of an array, in a few numpy steps
  (a scored batch's scores and latencies).
- :func:`shard_of`: the stable shard of a key (same on every worker and run).

>>> parse_time("2026-10-06T00:00:05.365Z"), parse_time("2026-10-06T00:00:05.365")
(1791244805.365, 1791244805.365)
>>> format_time(1791244805.365)
'2026-10-06T00:00:05.365Z'
>>> parse_time(1.7e12)
Traceback (most recent call last):
...
features.records.ValidationError: field 'timestamp': 1700000000000.0 looks like epoch milliseconds; expected epoch seconds or ISO-8601
>>> shard_of("C000001", 4), shard_of("C000001", 4) == shard_of("C000001", 4)
(1, True)
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgspec
import numpy as np
import structlog

from features.keyhash import key_hash

__all__ = [
    "ValidationError",
    "Raw",
    "POSSIBLE_REPEAT",
    "DeadLetter",
    "dead_letter",
    "duplicate",
    "parse_or_dead_letter",
    "batch_or_dead_letters",
    "decode",
    "undecodable",
    "parse_time",
    "format_time",
    "format_times",
    "rounded",
    "shard_of",
    "RecordBatch",
    "RecordList",
]

_log = structlog.get_logger("features.records")

#: The record field marking an event a resumed run may have scored before its crash.
POSSIBLE_REPEAT = "possible_repeat"

#: Epoch seconds at or above this are refused as probably milliseconds (year 5138).
MAX_EPOCH_S = 1e11


class ValidationError(ValueError):
    """An event that cannot be scored; the message says which field and why."""


class Raw(msgspec.Struct, frozen=True, repr_omit_defaults=True):
    """One input as received. ``topic``/``partition``/``offset`` are set for Kafka input;
    ``possible_repeat`` when a resumed run reads it from the part of its partition that
    was already there at the restart (it may have been scored before the crash);
    ``wire`` holds the message's bytes when ``value`` is what an Avro or Protobuf
    decoder made of them (:mod:`features.wire`), so a dead letter keeps the bytes."""

    value: Any
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    possible_repeat: bool = False
    wire: bytes | None = None


class DeadLetter(msgspec.Struct):
    """An input that could not be scored.

    ``raw`` is the input as received (text; undecodable bytes are shown with
    replacement characters), ``error`` the reason naming the field, ``step`` the
    step that refused it; Kafka inputs name their ``topic``, ``partition`` and ``offset``.
    ``raw_bytes``: the message's bytes as received, for Avro and Protobuf inputs only
    (written as ``raw_base64`` in JSON, as bytes in Avro): never a decoded guess.
    """

    error: str
    raw: Any
    step: str = "validate"
    received_at: str = ""
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    raw_bytes: bytes | None = None

    def key(self, id_field: str | None = None) -> str:
        """A stable message key: the event's id when the raw input has one, else
        ``topic:partition:offset``, else ``""``.

        >>> DeadLetter("bad", {"transaction_id": "t1"}).key("transaction_id")
        't1'
        >>> DeadLetter("bad", "{oops", topic="tx", partition=2, offset=7).key("transaction_id")
        'tx:2:7'
        """
        if id_field is not None:
            raw = self.raw
            if isinstance(raw, str):
                try:
                    raw = decode(raw)
                except ValidationError:
                    raw = None
            if isinstance(raw, Mapping):
                v = raw.get(id_field)
                if v is not None and v != "" and not isinstance(v, (dict, list)):
                    return str(v)
        if self.offset is not None:
            return f"{self.topic}:{self.partition}:{self.offset}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record (Kafka origin only when there is one)."""
        out: dict[str, Any] = {"error": self.error, "raw": self.raw, "step": self.step, "received_at": self.received_at}
        if self.offset is not None:
            out.update(topic=self.topic, partition=self.partition, offset=self.offset)
        if self.raw_bytes is not None:
            import base64

            out["raw_base64"] = base64.b64encode(self.raw_bytes).decode("ascii")
        return out


#: A dead letter keeps at most this much of a raw text input (the rest is cut and marked).
MAX_RAW_CHARS = 64 * 1024


def _printable(raw: Any, max_chars: int = MAX_RAW_CHARS) -> Any:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > max_chars:
            return raw[:max_chars].decode("utf-8", errors="replace") + f"…[truncated: {len(raw)} bytes]"
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str) and len(raw) > max_chars:
        return raw[:max_chars] + f"…[truncated: {len(raw)} characters]"
    if isinstance(raw, Raw):
        return _printable(raw.value, max_chars)
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    return raw


def dead_letter(raw: Any, error: str, step: str = "validate", origin: Raw | None = None,
                max_raw: int = MAX_RAW_CHARS) -> DeadLetter:
    """A :class:`DeadLetter` for ``raw`` (bytes become text; a text over ``max_raw``,
    :data:`MAX_RAW_CHARS` by default, is cut and marked ``…[truncated: N bytes]``), stamped now.

    >>> d = dead_letter(b'{"x"\\xff', "not valid JSON")
    >>> d.raw, d.error
    ('{"x"\ufffd', 'not valid JSON')
    """
    o = origin
    return DeadLetter(
        error=error,
        raw=_printable(raw, max_raw),
        step=step,
        received_at=format_time(time.time()),
        topic=None if o is None else o.topic,
        partition=None if o is None else o.partition,
        offset=None if o is None else o.offset,
        raw_bytes=None if o is None else o.wire,
    )


def duplicate(
    raw: Any, id_field: str, event_id: str, key_field: str, key: str, first_t: float, horizon_s: float
) -> DeadLetter:
    """The dead letter of a re-delivered event (step ``dedup``): scored once, not twice.

    >>> duplicate({"transaction_id": "t1"}, "transaction_id", "t1", "customer", "C1", 0.0, 3600).error
    "duplicate: transaction_id 't1' of customer 'C1' was already scored (first copy at 1970-01-01T00:00:00.000Z); a copy within 3600 s of event time is not scored again"
    """
    return dead_letter(
        raw,
        f"duplicate: {id_field} {event_id!r} of {key_field} {key!r} was already scored (first copy at "
        f"{format_time(first_t)}); a copy within {horizon_s:g} s of event time is not scored again",
        "dedup",
    )


def parse_or_dead_letter(item: Any, parse: Callable[[Any, float], Any], arrival: float,
                         step: str = "validate") -> Any:
    """``parse(raw, arrival)`` of one input, or the :class:`DeadLetter` naming why not.

    The validate rule of both flows and their plain-loop pipelines: a
    :class:`ValidationError` gives its message; any other exception (a parser bug)
    is named with its type, so one bad event never stops a run. A :class:`Raw`
    input is parsed by its value and its dead letter keeps where it came from; a
    dead letter already in the stream passes through.

    >>> parse_or_dead_letter('{"a": 1}', lambda raw, arrival: decode(raw), 0.0)
    {'a': 1}
    >>> parse_or_dead_letter("[1]", lambda raw, arrival: decode(raw), 0.0).error
    'expected a JSON object, got list'
    """
    if isinstance(item, DeadLetter):
        return item
    origin = item if isinstance(item, Raw) else None
    raw = item.value if origin is not None else item
    try:
        event = parse(raw, arrival)
        if origin is not None and origin.possible_repeat:
            event.fields[POSSIBLE_REPEAT] = True  # carried into its records (see models.status.alert_of)
        return event
    except ValidationError as exc:
        return dead_letter(raw, str(exc), step, origin)
    except Exception as exc:  # a parser bug must not stop the run either
        return dead_letter(raw, f"{type(exc).__name__}: {exc}", step, origin)


def batch_or_dead_letters(run: Callable[[list[Any]], Iterable[Any]], items: list[Any],
                          raw_of: Callable[[Any], Any], step: str) -> list[Any]:
    """``run(items)`` as a list, or, if it raises, one :class:`DeadLetter` per item
    (``raw_of(item)`` is the input as received) naming the error, which is logged:
    every event still ends in exactly one output. An item that is a :class:`RecordBatch`
    stands for its scored records: one dead letter each (``raw_of(record)``).

    >>> batch_or_dead_letters(lambda xs: [x * 2 for x in xs], [1, 2], str, "score")
    [2, 4]
    """
    try:
        return list(run(items))
    except Exception as exc:  # never let one batch stop the run: dead-letter it
        events = [r for item in items
                  for r in (item.output_records("scored") if isinstance(item, RecordBatch) else (item,))]
        _log.error("batch_scoring_failed", step=step, events=len(events), error=repr(exc)[:500])
        reason = f"scoring failed: {type(exc).__name__}: {exc}"
        return [dead_letter(raw_of(event), reason, step) for event in events]


class RecordBatch:
    """The records of one batch for the outputs, kept by the step that made them (a flow's
    scorer, e.g. :class:`models.fraud.batch.ScoredBatch`), so outputs, metrics and logs
    work per batch instead of per record. ``kind`` is an output: ``"scored"`` or ``"alerts"``.
    """

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def lines(self, kind: str) -> list[bytes]:
        """The records of ``kind`` as JSON lines (no newline)."""
        raise NotImplementedError

    def text(self, kind: str) -> bytes:
        """The :meth:`lines` of ``kind``, each ended by a newline, as one text (a file's)."""
        lines = self.lines(kind)
        return b"\n".join([*lines, b""]) if lines else b""  # newline-ended, in one copy

    def keys(self, kind: str) -> list[str]:
        """The message key of each of :meth:`lines`."""
        raise NotImplementedError

    def entity(self) -> str:
        """The entity key (customer, device) of the batch's first row. The worker that scored
        the batch holds that entity (its shard is co-located: :mod:`dataflows.placement`), so a
        sink routing the batch by this key's hash keeps it on that worker."""
        raise NotImplementedError

    def output_records(self, kind: str) -> list[dict[str, Any]]:
        """The records of ``kind`` as dicts (for encoders other than JSON)."""
        raise NotImplementedError

    def output_statuses(self, kind: str) -> list[str]:
        """The status of each record of ``kind``."""
        raise NotImplementedError

    def metric_columns(self) -> tuple[list[float], list[float | None], list[str], list[float | None],
                                      list[dict[str, float] | None]]:
        """The scored records' ``(latency_ms, score, model_version, own model score, shadow scores)``."""
        raise NotImplementedError

    def log_table(self, spec: Any) -> Any:
        """The inference log's rows of the scored records (an Arrow table of the log's schema)."""
        raise NotImplementedError


class RecordList(RecordBatch):
    """Plain records (dicts, or :class:`DeadLetter` s) as a :class:`RecordBatch`, all of one
    output: what the outputs' metrics count of items that are single records (dead
    letters, drift records). A record's status is its ``status``, else its ``kind``
    (``"drift"``), else ``"-"`` (a dead letter).

    >>> b = RecordList([{"status": "WARNING", "latency_ms": 5.0, "anomaly_score": 0.6, "model_version": "m"},
    ...                 {"kind": "drift"}, DeadLetter("bad", "{")])
    >>> b.output_statuses("alerts"), b.metric_columns()[:3]
    (['WARNING', 'drift', '-'], ([5.0, 0.0, 0.0], [0.6, None, None], ['m', 'None', 'None']))
    """

    __slots__ = ("records",)

    def __init__(self, records: Iterable[Any]) -> None:
        self.records = [r.to_dict() if isinstance(r, DeadLetter) else r for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def output_records(self, kind: str) -> list[dict[str, Any]]:
        return self.records

    def output_statuses(self, kind: str) -> list[str]:
        return [r.get("status") or r.get("kind") or "-" for r in self.records]

    def metric_columns(self) -> tuple[list[float], list[float | None], list[str], list[float | None],
                                      list[dict[str, float] | None]]:
        """``(latency_ms, risk_score or anomaly_score, model_version, fraud_score, shadow_scores)``."""
        rs = self.records
        return ([r.get("latency_ms", 0.0) for r in rs], [r.get("risk_score", r.get("anomaly_score")) for r in rs],
                [str(r.get("model_version")) for r in rs], [r.get("fraud_score") for r in rs],
                [r.get("shadow_scores") for r in rs])


_json = msgspec.json.Decoder()


def _near(data: bytes, at: int) -> str:
    """`` near '...'``: the text around byte ``at`` of ``data`` (cold path)."""
    return f" near {data[max(0, at - 24):at + 24].decode('utf-8', errors='replace')!r}"


def undecodable(raw: bytes | str, exc: BaseException) -> ValidationError:
    """The error for input the JSON decoder refused, in the project's own words (cold path).

    The reason is worked out here from the input, never from the decoder's exception type
    or message text, so a new release of the decoder does not change what a dead letter
    says: not UTF-8 (which byte, where), a non-finite number (which field), nested too
    deeply, or malformed JSON (what, at which byte, and the text around it).
    """
    import json

    if isinstance(raw, str):
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as bad:
            return ValidationError(
                f"not valid UTF-8: character {raw[bad.start]!r} (a lone surrogate) at position {bad.start}"
            )
    else:
        data = raw
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return ValidationError(
                f"not valid UTF-8: byte 0x{data[bad.start]:02x} at position {bad.start}{_near(data, bad.start)}"
            )
    named = _non_finite(data)
    if named is not None:
        return named
    if isinstance(exc, RecursionError):
        return ValidationError("not valid JSON: nested too deeply")
    if not data.strip():
        return ValidationError("not valid JSON: empty input")
    if data.startswith(b"\xef\xbb\xbf"):
        return ValidationError("not valid JSON: starts with a UTF-8 byte order mark")
    try:
        json.loads(data.decode("utf-8"))
    except RecursionError:
        return ValidationError("not valid JSON: nested too deeply")
    except json.JSONDecodeError as bad:
        at = len(bad.doc[:bad.pos].encode("utf-8", errors="surrogatepass"))
        what = bad.msg[:1].lower() + bad.msg[1:]
        return ValidationError(f"not valid JSON: {what} (byte {at}){_near(data, at)}")
    # The lenient stdlib parser reads it, the strict one does not: e.g. an unpaired
    # \uD800 surrogate escape, which cannot become UTF-8 text.
    return ValidationError("not valid JSON: holds an escape that is not valid Unicode (e.g. an unpaired \\uD800)")


def _non_finite_at(value: Any, path: str = "") -> str | None:
    """The path (``amount``, ``meta.x``, ``xs[2]``) of the first non-finite number in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "$"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite_at(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _non_finite_at(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _non_finite(raw: bytes | str) -> ValidationError | None:
    """For JSON that only a lenient parser reads, because it holds ``NaN``, ``Infinity``
    or a number too large for a float (``1e400``): the error naming that field, else
    ``None`` (cold path)."""
    import json

    try:
        value = json.loads(raw)
    except (ValueError, UnicodeError, RecursionError):
        return None
    where = _non_finite_at(value)
    if where is None:
        return None
    return ValidationError(f"field {where!r}: not a finite number (NaN, Infinity or out of range)")


def decode(raw: Any) -> dict[str, Any]:
    """Turn a raw event (JSON text or bytes, or a row mapping) into a dict, or raise
    :class:`ValidationError`.

    Malformed JSON names the byte and shows the text around it; a number too large
    for a float (``1e400``, which would be infinity) and the non-JSON tokens ``NaN``
    and ``Infinity`` name their field. (The strings ``"NaN"``, ``"Infinity"`` are
    JSON; the event's parser decides about them.)

    >>> decode('{"a": 1}'), decode({"a": 2})
    ({'a': 1}, {'a': 2})
    >>> decode(b'{"a": "\\xff"}')
    Traceback (most recent call last):
    ...
    features.records.ValidationError: not valid UTF-8: byte 0xff at position 7 near '{"a": "\\ufffd"}'
    >>> decode("[1]")
    Traceback (most recent call last):
    ...
    features.records.ValidationError: expected a JSON object, got list
    >>> decode('{"id": 1, "amount": 1e400}')
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'amount': not a finite number (NaN, Infinity or out of range)
    >>> decode('{"id": 1, "amount": }')
    Traceback (most recent call last):
    ...
    features.records.ValidationError: not valid JSON: expecting value (byte 20) near '{"id": 1, "amount": }'
    >>> decode(b"[" * 100_000)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: not valid JSON: nested too deeply
    """
    if isinstance(raw, Raw):
        raw = raw.value
    if not isinstance(raw, (bytes, str)):
        if isinstance(raw, Mapping):
            return {str(k): v for k, v in raw.items()}
        if isinstance(raw, (memoryview, bytearray)):
            raw = bytes(raw)
        else:
            raise ValidationError(f"expected JSON text or a mapping, got {type(raw).__name__}")
    try:
        value = _json.decode(raw)
    except Exception as exc:  # whatever the decoder raises: the reason is ours (undecodable)
        raise undecodable(raw, exc) from None
    if not isinstance(value, dict):
        raise ValidationError(f"expected a JSON object, got {type(value).__name__}")
    return value


#: The earliest event time accepted: 0001-01-02T00:00:00Z (earlier ones cannot be
#: written back as ISO-8601 in every time zone).
MIN_EPOCH_S = -62135510400.0


def parse_time(value: Any, field: str = "timestamp", not_after: float | None = None) -> float:
    """Epoch seconds of an event time, by the module's time policy; errors name ``field``.

    A time must lie in [0001-01-02, 1e11 s (year 5138)), so it can be written back
    (:func:`format_time`). With ``not_after`` (epoch seconds; the flows pass arrival
    + ``STREAMSCORE_STATE__MAX_FUTURE_S``) a later time is refused as in the future.

    >>> parse_time("2024-01-01T01:00:30+01:00"), parse_time(5)
    (1704067230.0, 5.0)
    >>> parse_time("yesterday", "ts")
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'ts': expected an ISO-8601 time or epoch seconds, got 'yesterday'
    >>> parse_time("2030-01-01T00:00:00Z", not_after=1704067230.0)
    Traceback (most recent call last):
    ...
    features.records.ValidationError: field 'timestamp': 2030-01-01T00:00:00.000Z is too far in the future (later than 2024-01-01T00:00:30.000Z)
    """
    text = type(value) is str  # the common case, checked first
    if not text and (isinstance(value, bool) or value is None):
        raise ValidationError(f"field {field!r}: expected an ISO-8601 time or epoch seconds, got {value!r}")
    if not text and isinstance(value, (int, float)):
        t = float(value)
        if not math.isfinite(t):
            raise ValidationError(f"field {field!r}: expected a finite time, got {value!r}")
        if abs(t) >= MAX_EPOCH_S:
            raise ValidationError(
                f"field {field!r}: {t!r} looks like epoch milliseconds; expected epoch seconds or ISO-8601"
            )
    else:
        if not text and isinstance(value, datetime):
            dt = value
        elif text or isinstance(value, str):
            try:
                dt = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValidationError(
                    f"field {field!r}: expected an ISO-8601 time or epoch seconds, got {value[:64]!r}"
                ) from None
        else:
            raise ValidationError(
                f"field {field!r}: expected an ISO-8601 time or epoch seconds, got {value!r:.64}")
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        try:
            t = dt.timestamp()
        except (OverflowError, OSError, ValueError) as exc:
            raise ValidationError(f"field {field!r}: time out of range ({exc})") from None
    if not MIN_EPOCH_S <= t < MAX_EPOCH_S:
        raise ValidationError(
            f"field {field!r}: time out of range, got {str(value)[:64]!r}; expected 0001-01-02 to 5138")
    if not_after is not None and t > not_after:
        raise ValidationError(
            f"field {field!r}: {format_time(t)} is too far in the future (later than {format_time(not_after)})")
    return t


_HOURS: dict[int, str] = {}  # whole epoch hour -> "YYYY-MM-DDTHH:" (recent ones)


def format_time(t: float) -> str:
    """Epoch seconds to ISO-8601 UTC with milliseconds and ``Z``: what
    ``datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")`` gives
    (microseconds rounded half to even, then cut to milliseconds), with the text of the
    hour kept for the next times of the same hour (tested equal to it).

    >>> format_time(0), format_time(1791244805.3659), format_time(-0.0005)
    ('1970-01-01T00:00:00.000Z', '2026-10-06T00:00:05.365Z', '1969-12-31T23:59:59.999Z')
    """
    frac, whole = math.modf(t)
    us = round(frac * 1e6)  # as datetime.fromtimestamp rounds (half to even)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1.0
    elif us < 0:
        us += 1_000_000
        whole -= 1.0
    hour, sec = divmod(int(whole), 3600)
    head = _HOURS.get(hour)
    if head is None:
        if len(_HOURS) >= 4096:
            _HOURS.clear()
        head = _HOURS[hour] = datetime.fromtimestamp(hour * 3600, tz=timezone.utc).isoformat()[:14]
    return f"{head}{sec // 60:02d}:{sec % 60:02d}.{us // 1000:03d}Z"



#: The epoch milliseconds :func:`format_times` formats at once: those of the times
#: :func:`parse_time` accepts (four-digit years); any other time as :func:`format_time` does.
_MS_RANGE = (MIN_EPOCH_S * 1000.0, MAX_EPOCH_S * 1000.0)


def format_times(times: Sequence[float] | np.ndarray) -> list[str]:
    """:func:`format_time` of each time, the same text, made for all of them at once with
    numpy (the microseconds rounded the same way, half to even, then cut to milliseconds):
    a scored batch's event times.

    >>> format_times([0.0, 1791244805.3659, -0.0005, 1.0005, 1.0015] * 4)[:5]
    ['1970-01-01T00:00:00.000Z', '2026-10-06T00:00:05.365Z', '1969-12-31T23:59:59.999Z', '1970-01-01T00:00:01.000Z', '1970-01-01T00:00:01.001Z']
    """
    if len(times) < 16:  # numpy's fixed cost is more than a few format_time calls
        return [format_time(t) for t in (times.tolist() if isinstance(times, np.ndarray) else times)]
    frac, whole = np.modf(np.asarray(times, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        # format_time's carry of rounded microseconds into the second, in epoch milliseconds
        ms = whole * 1000.0 + np.floor(np.round(frac * 1e6) / 1000.0)
        ok = bool(np.all((ms >= _MS_RANGE[0]) & (ms < _MS_RANGE[1])))  # NaN, infinities: False
    if not ok:
        return [format_time(t) for t in times]
    return np.datetime_as_string(ms.astype(np.int64).astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()


def rounded(A: np.ndarray, ndigits: int) -> np.ndarray:
    """``round(x, ndigits)`` of every element, exactly as Python's ``round`` gives it
    (``tests/features/test_records.py`` checks it against ``round``), in a few numpy
    steps: ``rint(x * 10**ndigits) / 10**ndigits`` is the correctly rounded value unless
    ``x * 10**ndigits`` lies within its own rounding error of a half (or is too large
    for that), and those few elements go through ``round``.

    >>> rounded(np.array([0.1234565, 2.5e-7, 1.0, np.nan]), 6).tolist()
    [0.123456, 0.0, 1.0, nan]
    """
    A = np.asarray(A, dtype=np.float64)
    if A.size <= 64:  # a few values: round itself is cheaper than numpy's calls
        return np.array([round(x, ndigits) for x in A.ravel().tolist()]).reshape(A.shape)
    m = 10.0 ** ndigits
    P = A * m
    out = np.rint(P) / m
    with np.errstate(invalid="ignore"):
        near_half = np.abs(P - np.floor(P) - 0.5) < 1e-9 + 1e-15 * np.abs(P)
        slow = (near_half | ~(np.abs(P) < 2.0 ** 52)) & ~np.isnan(A)
    if slow.any():
        flat, src = out.reshape(-1), A.reshape(-1)
        for i in np.flatnonzero(slow.ravel()).tolist():
            flat[i] = round(float(src[i]), ndigits)
    return out


def shard_of(key: str, shards: int) -> int:
    """Shard of ``key`` in ``range(shards)``: :func:`features.keyhash.key_hash` ``% shards``
    (SipHash-1-3, the hash Bytewax routes keys by: with a shard count that is a multiple
    of the worker count, a key's shard runs on the worker that holds the key; see
    :mod:`dataflows.placement`).

    Stable across processes and restarts (unlike ``hash()``, which is salted).
    """
    if shards < 1:
        raise ValueError(f"shard_of: shards must be >= 1, got {shards!r}")
    return key_hash(str(key)) % shards

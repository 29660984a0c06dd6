"""One shard's scored readings of one batch, kept as columns (:class:`ScoredReadings`).

:meth:`ShardState.score_batches <models.iot.ShardState.score_batches>` fills the columns:
the readings, their ids and event times, one numbers matrix (the combined anomaly score,
every detector's score, the features, the latency), the warm-up flags, the shard
detector's inputs, the status. Everything that leaves the flow is made from them, per
batch:

- :meth:`ScoredReadings.text` and :meth:`ScoredReadings.lines`: the ``scored`` and
  ``alerts`` outputs' JSON lines, laid out from the columns
  (:class:`features.json_columns.LineTemplate`: no dict per record; an alert that is its
  scored record is a slice of the scored text);
- :meth:`ScoredReadings.records`: the same records as dicts (the plain-loop pipeline,
  Avro outputs, the write-back to Feast);
- :meth:`ScoredReadings.log_table`: the inference log's rows as an Arrow table, column
  by column (a feature is its matrix column);
- :meth:`ScoredReadings.output_statuses` and :meth:`ScoredReadings.metric_columns`:
  what the outputs' metrics count.

:meth:`ScoredReadings.record` is the one place that shapes a reading's record; the
views above go through it, or read the columns it reads and are tested equal to it
(``tests/models/iot/test_batch.py``), and go through it where a record's shape could
differ from the columns' (an input field named like a field the record sets or a log
column, a missing sensor, a batch of a few rows).
"""

from __future__ import annotations

from itertools import accumulate, repeat
from operator import is_
from typing import Any, Iterable, Sequence

import numpy as np

from features.formats import to_json_line
from features.json_columns import NUMBER, LineTemplate, object_heads, string_texts
from features.records import POSSIBLE_REPEAT, RecordBatch
from features.sensors import Reading
from models.inference_log import LogSpec
from models.status import NORMAL, alert_of

__all__ = ["ScoredReadings", "RECORD_FIELDS"]

_BOOL = (b"false", b"true")
_FEW = 24  # batches of fewer rows make their lines record by record (same bytes)

#: The fields a reading's record sets itself, after the input's fields (which they replace).
RECORD_FIELDS = frozenset(("kind", "id", "anomaly_score", "status", "scores", "warming_up", "missing", "features",
                           "model_version", "event_time", "scored_at", "latency_ms", "time_from_arrival", "reasons",
                           "device_profile", "device_known"))


class ScoredReadings(RecordBatch):
    """The scored readings of one shard's batch, as columns (see the module docstring).

    Row ``j`` of every column is reading ``readings[j]``. ``numbers``: rows x (the
    anomaly score (NaN: none), the ``scores`` of :attr:`detectors` (rounded, NaN where
    the detector did not score), the features of :attr:`names` (NaN: undefined), the
    latency); ``complete``: the row has every detector's score; ``present``: rows x
    sensors, the sensor was in the reading; ``reasons``: the non-NORMAL rows' reasons;
    ``profiles``: ``(device_profile, device_known)`` per row once the device-profile
    step has set them (``None``: no such step).
    """

    __slots__ = ("readings", "ids", "event_times", "numbers", "complete", "present", "anomaly",
                 "statuses", "warming_up", "latency_ms", "scored_at", "version", "names", "detectors", "sensors",
                 "reasons", "profiles", "_records", "_out", "_lines", "_inputs", "_alerts")

    def __init__(
        self,
        readings: Sequence[Reading],
        ids: list[str],
        event_times: list[str],
        numbers: np.ndarray,
        complete: list[bool],
        present: np.ndarray,
        anomaly: list[float | None],
        statuses: list[str],
        warming_up: list[bool],
        latency_ms: list[float],
        scored_at: str,
        version: str,
        names: Sequence[str],
        detectors: Sequence[str],
        sensors: Sequence[str],
        reasons: dict[int, list[str]],
    ) -> None:
        if numbers.shape != (len(readings), len(detectors) + len(names) + 2):
            raise ValueError(f"ScoredReadings: numbers of shape {numbers.shape} for {len(readings)} readings, "
                             f"{len(detectors)} scores and {len(names)} features")
        self.readings = readings
        self.ids = ids
        self.event_times = event_times
        self.numbers = numbers
        self.complete = complete
        self.present = present
        self.anomaly = anomaly
        self.statuses = statuses
        self.warming_up = warming_up
        self.latency_ms = latency_ms
        self.scored_at = scored_at
        self.version = version
        self.names = names  # the features' names (F's columns)
        self.detectors = detectors  # the scores' names (S's columns), "shard" last
        self.sensors = sensors
        self.reasons = reasons
        self.profiles: list[tuple[Any, bool]] | None = None
        self._records: list[dict[str, Any] | None] = [None] * len(readings)
        self._out: tuple[bytes, list[bytes]] | None = None  # the scored text, the alert lines
        self._lines: list[bytes] | None = None  # the scored lines
        self._inputs: set[str] | None = None
        self._alerts: list[int] | None = None

    @property
    def S(self) -> np.ndarray:
        """The scores: rows x :attr:`detectors` (rounded; NaN: not scored)."""
        return self.numbers[:, 1:1 + len(self.detectors)]

    @property
    def F(self) -> np.ndarray:
        """The features matrix: rows x :attr:`names` (NaN: undefined)."""
        nd = 1 + len(self.detectors)
        return self.numbers[:, nd:nd + len(self.names)]

    def __len__(self) -> int:
        return len(self.readings)

    def __repr__(self) -> str:
        return f"ScoredReadings({len(self.readings)} readings, {len(self.alert_rows())} alerts)"

    # --- the record: the one place it is shaped ---------------------------------------

    def record(self, j: int) -> dict[str, Any]:
        """Row ``j`` as its output record (see :class:`models.iot.ShardState`); built
        once, then kept."""
        rec = self._records[j]
        if rec is not None:
            return rec
        reading = self.readings[j]
        row = self.S[j].tolist()
        if self.complete[j]:
            scores = dict(zip(self.detectors, row))
            missing: list[str] = []
        else:
            scores = {k: v for k, v in zip(self.detectors, row) if v == v}
            missing = [s for s, p in zip(self.sensors, self.present[j].tolist()) if not p]
        status = self.statuses[j]
        rec = {
            **reading.fields,
            "kind": "reading",
            "id": self.ids[j],
            "anomaly_score": self.anomaly[j],
            "status": status,
            "scores": scores,
            "warming_up": self.warming_up[j],
            "missing": missing,
            "features": dict(zip(self.names, [None if v != v else v for v in self.F[j].tolist()])),
            "model_version": self.version,
            "event_time": self.event_times[j],
            "scored_at": self.scored_at,
            "latency_ms": self.latency_ms[j],
        }
        if reading.time_from_arrival:
            rec["time_from_arrival"] = True
        if status != NORMAL:
            rec["reasons"] = self.reasons[j]
        if self.profiles is not None:
            rec["device_profile"], rec["device_known"] = self.profiles[j]
        self._records[j] = rec
        return rec

    def records(self) -> list[dict[str, Any]]:
        """Every row's record, in order."""
        record = self.record
        return [record(j) for j in range(len(self.readings))]

    def field_values(self, name: str) -> list[Any]:
        """Each record's field ``name`` (``None`` when it has none), read from the input's
        fields unless the record sets that field itself."""
        if name in RECORD_FIELDS:
            return [self.record(j).get(name) for j in range(len(self.readings))]
        return [r.fields.get(name) for r in self.readings]

    def input_fields(self) -> set[str]:
        """The names of every input field of the readings."""
        if self._inputs is None:
            self._inputs = set().union(*(r.fields for r in self.readings))
        return self._inputs

    def set_profiles(self, profiles: list[tuple[Any, bool]]) -> None:
        """Add ``(device_profile, device_known)`` to every row's record (the device-profile step)."""
        if len(profiles) != len(self.readings):
            raise ValueError(f"ScoredReadings.set_profiles: {len(profiles)} profiles for {len(self.readings)} readings")
        self.profiles = profiles
        self._records = [None] * len(self.readings)
        self._out = self._lines = None

    # --- the outputs ------------------------------------------------------------------------

    def alert_rows(self) -> list[int]:
        """The rows that have an alerts record (:func:`models.status.alert_of`): not
        NORMAL, or a NORMAL possible repeat after a resume."""
        if self._alerts is None:
            statuses = self.statuses
            if POSSIBLE_REPEAT in self.input_fields():
                readings = self.readings
                self._alerts = [j for j, s in enumerate(statuses)
                                if s != NORMAL or readings[j].fields.get(POSSIBLE_REPEAT) is True]
            else:
                self._alerts = [j for j, s in enumerate(statuses) if s != NORMAL]
        return self._alerts

    def lines(self, kind: str) -> list[bytes]:
        """The JSON lines (no newline) of output ``kind``: ``"scored"`` (every record) or
        ``"alerts"`` (:func:`models.status.alert_of` of every record that has one): the
        bytes ``to_json_line`` gives each record, made from the columns (:meth:`text`)."""
        scored, alerts = self._outputs()
        if kind != "scored":
            return alerts
        if self._lines is None:
            self._lines = scored.split(b"\n")[:-1]
        return self._lines

    def text(self, kind: str) -> bytes:
        """The lines of output ``kind``, each ended by a newline, as one text."""
        if kind == "scored":
            return self._outputs()[0]
        alerts = self._outputs()[1]
        return b"\n".join(alerts) + b"\n" if alerts else b""

    def _outputs(self) -> tuple[bytes, list[bytes]]:
        """``(scored text, alert lines)``, made the first time either is asked for.

        A record's line is laid out from the columns (:class:`features.json_columns.LineTemplate`):
        its input fields' JSON without the closing brace, then the record's own fields,
        the numbers' texts from one ``orjson`` call over :attr:`numbers`, the ids', the
        event times' and the input fields' from one call each. A row whose record is
        shaped otherwise (an input field the record sets itself, a missing score: its
        ``scores`` leave it out) is :meth:`record`'s line. An alert that is its scored
        record is the scored line."""
        if self._out is not None:
            return self._out
        if not self.readings:
            self._out = (b"", [])
            return self._out
        record = self.record
        n = len(self.readings)
        if n < _FEW:  # a few records: each its own line costs less than the layout's fixed cost
            lines = [to_json_line(record(j)) for j in range(n)]
            text = b"".join(line + b"\n" for line in lines)
            ends = list(accumulate(len(line) + 1 for line in lines))
        else:
            template, numbers, columns, slow = self._layout()
            text, ends = template.render(numbers, columns, {j: to_json_line(record(j)) + b"\n" for j in slow})
        alerts: list[bytes] = []
        statuses = self.statuses
        for j in self.alert_rows():
            if statuses[j] != NORMAL:  # the alert is the scored record itself
                alerts.append(text[ends[j - 1] if j else 0:ends[j] - 1])
            else:  # a NORMAL possible repeat: an update
                alerts.append(to_json_line(alert_of(record(j))))
        self._out = (text, alerts)
        return self._out

    def _layout(self) -> tuple[LineTemplate, np.ndarray, list[list[bytes]], list[int]]:
        """The template of a record's line, its numbers and columns, and the rows it does not fit."""
        n = len(self.readings)
        readings, complete = self.readings, self.complete
        # a row whose fields are not a dict (parse_fields makes dicts) or are empty: its record's line
        heads = object_heads([f if type(f := r.fields) is dict else {} for r in readings])
        slow = [j for j in range(n) if not complete[j] or heads[j] == b"{"]
        if not RECORD_FIELDS.isdisjoint(self.input_fields()):  # some input field names a field the record sets
            slow = sorted(set(slow).union(j for j, r in enumerate(readings) if not RECORD_FIELDS.isdisjoint(r.fields)))
        numbers = self.numbers
        status = {s: to_json_line(s) for s in set(self.statuses)}
        columns: list[list[bytes]] = [
            heads,
            string_texts(self.ids),
            [status[s] for s in self.statuses],
            list(map(_BOOL.__getitem__, self.warming_up)),
            string_texts(self.event_times),
            self._tails(),
        ]
        parts: list[bytes | int] = [0, b',"kind":"reading","id":"', 1, b'","anomaly_score":', NUMBER, b',"status":', 2,
                                    b',"scores":{']
        for i, name in enumerate(self.detectors):
            parts += [b"," if i else b"", to_json_line(name), b":", NUMBER]
        parts += [b'},"warming_up":', 3, b',"missing":[],"features":{']
        for i, name in enumerate(self.names):
            parts += [b"," if i else b"", to_json_line(name), b":", NUMBER]
        parts += [b'},"model_version":', to_json_line(self.version), b',"event_time":"', 4, b'","scored_at":',
                  to_json_line(self.scored_at), b',"latency_ms":', NUMBER, 5]
        return LineTemplate(parts), numbers, columns, slow

    def _tails(self) -> list[bytes]:
        """Each row's line after ``latency_ms``: ``time_from_arrival``, ``reasons``, the
        device profile, the closing brace and the newline."""
        readings, statuses, reasons, profiles = self.readings, self.statuses, self.reasons, self.profiles
        n = len(readings)
        first = profiles[0] if profiles else None
        out = [self._tail(False, None, first)] * n  # the common tail: in event time, NORMAL, the first's profile
        if profiles is not None and not all(map(is_, profiles, repeat(first))):  # several profiles: by profile
            odd: Iterable[int] = range(n)
        else:
            odd = sorted({*reasons, *(j for j, r in enumerate(readings) if r.time_from_arrival)})
        made: dict[tuple[bool, int], bytes] = {}
        for j in odd:
            arrival = bool(readings[j].time_from_arrival)
            p = profiles[j] if profiles is not None else None
            if statuses[j] == NORMAL:
                key = (arrival, id(p))
                tail = made.get(key)
                if tail is None:
                    tail = made[key] = self._tail(arrival, None, p)
            else:
                tail = self._tail(arrival, reasons[j], p)
            out[j] = tail
        return out

    @staticmethod
    def _tail(arrival: bool, reasons: list[str] | None, profile: tuple[Any, bool] | None) -> bytes:
        out = b',"time_from_arrival":true' if arrival else b""
        if reasons is not None:
            out += b',"reasons":' + to_json_line(reasons)
        if profile is not None:
            out += b',"device_profile":' + to_json_line(profile[0]) + b',"device_known":' + to_json_line(profile[1])
        return out + b"}\n"

    def keys(self, kind: str) -> list[str]:
        """The message keys (the records' ids) of :meth:`lines`."""
        if kind == "scored":
            return self.ids
        ids = self.ids
        return [ids[j] for j in self.alert_rows()]

    def entity(self) -> str:
        return self.readings[0].device

    def output_records(self, kind: str) -> list[dict[str, Any]]:
        """The records of output ``kind`` as dicts."""
        if kind == "scored":
            return self.records()
        return [alert_of(self.record(j)) for j in self.alert_rows()]  # type: ignore[misc]

    def output_statuses(self, kind: str) -> list[str]:
        """The status of each record of output ``kind``."""
        if kind == "scored":
            return self.statuses
        statuses = self.statuses
        return [statuses[j] for j in self.alert_rows()]

    def metric_columns(self) -> tuple[list[float], list[float | None], list[str], list[float | None],
                                      list[dict[str, float] | None]]:
        """``(latency_ms, anomaly_score, model_version, None, None)`` of the records (no
        model score, no shadows)."""
        n = len(self.readings)
        return self.latency_ms, self.anomaly, [self.version] * n, [None] * n, [None] * n

    def log_table(self, spec: LogSpec) -> Any:
        """The inference log's rows of the records (:func:`models.inference_log.log_row`
        of each, same values) as one Arrow table, column by column: the features are the
        matrix's columns (undefined ones null), the sensors the input's values. Where an
        input field could stand in for a column (a field named like a feature, a key field
        the record sets itself), the rows are made from the records instead."""
        import pyarrow as pa

        from models.inference_log import column, log_row, schema, to_table

        sch = schema(spec)
        readings = self.readings
        n = len(readings)
        index = {name: j for j, name in enumerate(self.names)}
        sensors = set(self.sensors)
        inputs = self.input_fields()
        # Each column read from the columns is what log_row reads from the record: the
        # record's own fields, the key and sensors as received, the features from the matrix.
        plain = (spec.id_field == "id" and tuple(spec.scores) == ("anomaly_score",)
                 and spec.key_field not in RECORD_FIELDS and not RECORD_FIELDS & set(spec.features)
                 and all((name in index) != (name in sensors) for name in spec.features)
                 and "shadow_scores" not in inputs and not inputs & (set(spec.features) - sensors))
        if not plain:
            return to_table([log_row(r, spec) for r in self.records()], sch)
        cols: list[Any] = [
            column(self.ids, pa.string()),  # input text: may hold undecodable bytes
            column([None if v is None else str(v) for v in (r.fields.get(spec.key_field) for r in readings)],
                   pa.string()),
            pa.array([spec.flow] * n, pa.string()),
            pa.array([self.version] * n, pa.string()),
            pa.nulls(n, sch.field("shadow_scores").type),
        ]
        cols.append(pa.array(self.anomaly, pa.float64()))
        cols += [
            pa.array(self.statuses, pa.string()),
            pa.array(self.latency_ms, pa.float64()),
            column([self.scored_at] * n, sch.field("scored_at").type),
            column(self.event_times, sch.field("event_time").type),
        ]
        F = self.F
        for name in spec.features:
            j = index.get(name)
            if j is None:  # a sensor: its value as received
                cols.append(column([r.fields.get(name) for r in readings], pa.float64()))
            else:
                cols.append(pa.array(F[:, j], pa.float64(), from_pandas=True))  # NaN (undefined) -> null
        return pa.Table.from_arrays(cols, schema=sch)

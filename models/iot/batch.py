"""One shard's scored readings of one batch, kept as columns (:class:`ScoredReadings`).

:meth:`ShardState.score_batches <models.iot.ShardState.score_batches>` fills the columns:
the readings, their ids and event times, the features matrix, every detector's score and
warm-up flag, the shard detector's inputs, the combined anomaly score, the status and
the latency. Everything that leaves the flow is made from them, per batch:

- :meth:`ScoredReadings.lines`: the ``scored`` and ``alerts`` outputs' JSON lines
  (each record shaped once and serialised once; an alert that is its scored record
  reuses the scored line);
- :meth:`ScoredReadings.records`: the same records as dicts (the plain-loop pipeline,
  Avro outputs, the write-back to Feast);
- :meth:`ScoredReadings.log_table`: the inference log's rows as an Arrow table, column
  by column (a feature is its matrix column);
- :meth:`ScoredReadings.output_statuses` and :meth:`ScoredReadings.metric_columns`:
  what the outputs' metrics count.

:meth:`ScoredReadings.record` is the one place that shapes a reading's record; every
view above goes through it, or, for the inference log and the metrics, reads the same
columns it reads (and goes through it where a record's field could differ from its
column: an input field named like a log column).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from features.formats import to_json_line
from features.records import POSSIBLE_REPEAT, RecordBatch
from features.sensors import Reading
from models.inference_log import LogSpec
from models.status import NORMAL, alert_of

__all__ = ["ScoredReadings", "RECORD_FIELDS"]

#: The fields a reading's record sets itself, after the input's fields (which they replace).
RECORD_FIELDS = frozenset(("kind", "id", "anomaly_score", "status", "scores", "warming_up", "missing", "features",
                           "model_version", "event_time", "scored_at", "latency_ms", "time_from_arrival", "reasons",
                           "device_profile", "device_known"))


class ScoredReadings(RecordBatch):
    """The scored readings of one shard's batch, as columns (see the module docstring).

    Row ``j`` of every column is reading ``readings[j]``. ``scores``: the record's
    ``scores`` (rounded, NaN where the detector did not score), ``complete``: the row
    has every detector's score; ``present``: rows x sensors, the sensor was in the
    reading; ``features``: the features matrix as rows (``None`` where undefined);
    ``reasons``: the non-NORMAL rows' reasons; ``profiles``: ``(device_profile,
    device_known)`` per row once the device-profile step has set them (``None``:
    no such step).
    """

    __slots__ = ("readings", "ids", "event_times", "F", "features", "scores", "complete", "present", "anomaly",
                 "statuses", "warming_up", "latency_ms", "scored_at", "version", "names", "detectors", "sensors",
                 "reasons", "profiles", "_records", "_lines")

    def __init__(
        self,
        readings: Sequence[Reading],
        ids: list[str],
        event_times: list[str],
        F: np.ndarray,
        features: list[list[float | None]],
        scores: list[list[float]],
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
        self.readings = readings
        self.ids = ids
        self.event_times = event_times
        self.F = F
        self.features = features
        self.scores = scores
        self.complete = complete
        self.present = present
        self.anomaly = anomaly
        self.statuses = statuses
        self.warming_up = warming_up
        self.latency_ms = latency_ms
        self.scored_at = scored_at
        self.version = version
        self.names = names  # the features' names (F's columns)
        self.detectors = detectors  # the scores' names (their columns), "shard" last
        self.sensors = sensors
        self.reasons = reasons
        self.profiles: list[tuple[Any, bool]] | None = None
        self._records: list[dict[str, Any] | None] = [None] * len(readings)
        self._lines: tuple[list[bytes], list[bytes]] | None = None

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
        row = self.scores[j]
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
            "features": dict(zip(self.names, self.features[j])),
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

    def set_profiles(self, profiles: list[tuple[Any, bool]]) -> None:
        """Add ``(device_profile, device_known)`` to every row's record (the device-profile step)."""
        if len(profiles) != len(self.readings):
            raise ValueError(f"ScoredReadings.set_profiles: {len(profiles)} profiles for {len(self.readings)} readings")
        self.profiles = profiles
        self._records = [None] * len(self.readings)
        self._lines = None

    # --- the outputs ------------------------------------------------------------------------

    def alert_rows(self) -> list[int]:
        """The rows that have an alerts record (:func:`models.status.alert_of`): not
        NORMAL, or a NORMAL possible repeat after a resume."""
        readings = self.readings
        return [j for j, s in enumerate(self.statuses)
                if s != NORMAL or readings[j].fields.get(POSSIBLE_REPEAT) is True]

    def lines(self, kind: str) -> list[bytes]:
        """The JSON lines (no newline) of output ``kind``: ``"scored"`` (every record) or
        ``"alerts"`` (:func:`models.status.alert_of` of every record that has one), made
        in one pass over the rows the first time either is asked for."""
        if self._lines is None:
            record, statuses, readings = self.record, self.statuses, self.readings
            scored: list[bytes] = []
            alerts: list[bytes] = []
            for j in range(len(readings)):
                line = to_json_line(record(j))
                scored.append(line)
                if statuses[j] != NORMAL:
                    alerts.append(line)  # the alert is the scored record itself
                elif readings[j].fields.get(POSSIBLE_REPEAT) is True:
                    alerts.append(to_json_line(alert_of(record(j))))
            self._lines = (scored, alerts)
        return self._lines[0 if kind == "scored" else 1]

    def keys(self, kind: str) -> list[str]:
        """The message keys (the records' ids) of :meth:`lines`."""
        if kind == "scored":
            return self.ids
        ids = self.ids
        return [ids[j] for j in self.alert_rows()]

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
        inputs = set().union(*(r.fields for r in readings)) if n else set()
        # Each column read from the columns is what log_row reads from the record: the
        # record's own fields, the key and sensors as received, the features from the matrix.
        plain = (spec.id_field == "id" and tuple(spec.scores) == ("anomaly_score",)
                 and spec.key_field not in RECORD_FIELDS and not RECORD_FIELDS & set(spec.features)
                 and all((name in index) != (name in sensors) for name in spec.features)
                 and "shadow_scores" not in inputs and not inputs & (set(spec.features) - sensors))
        if not plain:
            return to_table([log_row(r, spec) for r in self.records()], sch)
        cols: list[Any] = [
            pa.array(self.ids, pa.string()),
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

"""One scored batch of transactions, kept as columns (:class:`ScoredBatch`).

The scorer (:meth:`~models.fraud.FraudScorer.score_columns`) fills the columns: the
transactions, their Feast values, the model matrix, the scores, statuses, versions and,
for alerts, reasons. Everything that leaves the flow is made from them, per batch:

- :meth:`ScoredBatch.lines`: the ``scored`` and ``alerts`` outputs' JSON lines: each record
  is built once, as a dict, and the batch's records are serialised by one ``orjson`` call
  (:func:`features.formats.to_json_lines`); an alert that is its scored record reuses the
  scored line;
- :meth:`ScoredBatch.records`: the same records as dicts (the endpoint, the plain-loop
  pipeline, Avro outputs, the write-back to Feast);
- :meth:`ScoredBatch.log_table`: the inference log's rows as an Arrow table, column by
  column (the model's inputs are the matrix's columns);
- :meth:`ScoredBatch.drift_columns`: what the score-drift step needs, per model version.

:meth:`ScoredBatch.record` is the one place that shapes a scored record
(:func:`~models.fraud.feature_row` plus the scores); every view above goes through it,
or, for the inference log and the metrics, reads the same columns it reads.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from features.formats import to_json_line, to_json_lines
from features.records import POSSIBLE_REPEAT, RecordBatch
from features.transactions import Transaction
from models.fraud.inputs import MODEL_FEATURES, feature_row
from models.inference_log import LogSpec, column
from models.status import NORMAL, alert_of

__all__ = ["ScoredBatch"]

_ID_FIELDS = ("transaction_id", "customer_id", "merchant_id")
_FEATURE_INDEX = {name: j for j, name in enumerate(MODEL_FEATURES)}


class ScoredBatch(RecordBatch):
    """The scored transactions of one batch, as columns (see the module docstring).

    Built by :meth:`models.fraud.FraudScorer.score_columns`; row ``i`` of every column
    is transaction ``txs[i]``. ``alerts`` are the rows whose status is not NORMAL, in
    order; ``reasons`` and ``skipped`` hold their ``reasons`` and ``reasons_skipped``.
    """

    __slots__ = ("txs", "lookups", "derived", "fallback", "X", "fraud_scores", "risk_scores", "statuses", "versions",
                 "shadows", "event_times", "scored_at", "latency_ms", "alerts", "reasons", "skipped",
                 "_records", "_lines", "_alert_rows")

    def __init__(
        self,
        txs: Sequence[Transaction],
        lookups: Sequence[tuple[Mapping[str, Any], bool, Mapping[str, Any], bool]],
        derived: Sequence[Mapping[str, float | None]],
        fallback: list[bool],
        X: np.ndarray,
        fraud_scores: list[float],
        risk_scores: list[float],
        statuses: list[str],
        versions: list[str],
        shadows: list[dict[str, float] | None],
        event_times: list[str],
        scored_at: str,
        latency_ms: list[float],
        alerts: list[int],
        skipped: dict[int, str],
    ) -> None:
        self.txs = txs
        self.lookups = lookups  # per row: (profile, customer_known, merchant risk, merchant_known)
        self.derived = derived  # per row: derived_features (after the Feast lookup)
        self.fallback = fallback
        self.X = X
        self.fraud_scores = fraud_scores
        self.risk_scores = risk_scores
        self.statuses = statuses
        self.versions = versions
        self.shadows = shadows
        self.event_times = event_times
        self.scored_at = scored_at
        self.latency_ms = latency_ms
        self.alerts = alerts
        self.skipped = skipped
        self.reasons: dict[int, list[str]] = {}
        self._records: list[dict[str, Any] | None] = [None] * len(txs)
        self._lines: tuple[list[bytes], list[bytes]] | None = None
        self._alert_rows: list[int] | None = None

    def __len__(self) -> int:
        return len(self.txs)

    def __repr__(self) -> str:
        return f"ScoredBatch({len(self.txs)} transactions, {len(self.alerts)} alerts)"

    # --- the record: the one place it is shaped ---------------------------------------

    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as its scored record (see :meth:`models.fraud.FraudScorer.score_batch`);
        built once, then kept (the scorer adds an alert's ``reasons`` to it)."""
        rec = self._records[i]
        if rec is not None:
            return rec
        tx = self.txs[i]
        profile, customer_known, risk, merchant_known = self.lookups[i]
        rec = feature_row(tx, profile, customer_known, risk, merchant_known, self.derived[i])
        # defaults because the store could not answer, not because it does not know the key
        rec["feature_fallback"] = self.fallback[i]
        rec["anomaly_scores"] = tx.anomaly_scores
        rec["anomaly_score"] = tx.anomaly_score
        rec["anomaly_warming_up"] = tx.anomaly_warming_up
        shadow = self.shadows[i]
        if shadow is not None:
            rec["shadow_scores"] = shadow
        rec["fraud_score"] = self.fraud_scores[i]
        rec["risk_score"] = self.risk_scores[i]
        rec["status"] = self.statuses[i]
        rec["model_version"] = self.versions[i]
        rec["event_time"] = self.event_times[i]
        rec["scored_at"] = self.scored_at
        rec["latency_ms"] = self.latency_ms[i]
        skipped = self.skipped.get(i)
        if skipped is not None:
            rec["reasons_skipped"] = skipped
        reasons = self.reasons.get(i)
        if reasons is not None:
            rec["reasons"] = reasons
        self._records[i] = rec
        return rec

    def records(self) -> list[dict[str, Any]]:
        """Every row's scored record, in input order."""
        record = self.record
        return [record(i) for i in range(len(self.txs))]

    # --- the outputs ------------------------------------------------------------------------

    def lines(self, kind: str) -> list[bytes]:
        """The JSON lines (no newline) of output ``kind``: ``"scored"`` (every record) or
        ``"alerts"`` (:func:`models.status.alert_of` of every record that has one). Both
        are made in one pass over the rows, the first time either is asked for."""
        return self._serialised()[0 if kind == "scored" else 1]

    def keys(self, kind: str) -> list[str]:
        """The message keys (the transaction ids) of :meth:`lines`."""
        txs = self.txs
        if kind == "scored":
            return [tx.transaction_id for tx in txs]
        return [txs[i].transaction_id for i in self.alert_rows()]

    def entity(self) -> str:
        return self.txs[0].customer_id

    def output_records(self, kind: str) -> list[dict[str, Any]]:
        """The records of output ``kind`` as dicts (for encoders other than JSON)."""
        if kind == "scored":
            return self.records()
        return [alert_of(self.record(i)) for i in self.alert_rows()]  # type: ignore[misc]

    def alert_rows(self) -> list[int]:
        """The rows that have an alerts record (:func:`models.status.alert_of`): not
        NORMAL, or a NORMAL possible repeat after a resume (made once, kept: not to be changed)."""
        if self._alert_rows is None:  # asked for by the alerts filter, keys, lines and metrics: made once
            statuses, txs = self.statuses, self.txs
            self._alert_rows = [i for i, s in enumerate(statuses)
                                if s != NORMAL or txs[i].fields.get(POSSIBLE_REPEAT) is True]
        return self._alert_rows

    def metric_columns(self) -> tuple[list[float], list[float | None], list[str], list[float | None],
                                      list[dict[str, float] | None]]:
        """``(latency_ms, risk_score, model_version, fraud_score, shadow_scores)`` of the scored records."""
        return self.latency_ms, self.risk_scores, self.versions, self.fraud_scores, self.shadows

    def output_statuses(self, kind: str) -> list[str]:
        """The status of each record of output ``kind`` (the metrics count them)."""
        if kind == "scored":
            return self.statuses
        return [self.statuses[i] for i in self.alert_rows()]

    def _serialised(self) -> tuple[list[bytes], list[bytes]]:
        if self._lines is None:
            records = self.records()
            scored = to_json_lines(records)  # one orjson call for the batch
            statuses = self.statuses
            alerts = [scored[i] if statuses[i] != NORMAL  # the alert is the scored record itself
                      else to_json_line(alert_of(records[i]))  # a possible repeat's update
                      for i in self.alert_rows()]
            self._lines = (scored, alerts)
        return self._lines

    def log_table(self, spec: LogSpec) -> Any:
        """The inference log's rows of this batch (:func:`models.inference_log.log_row` of
        each record, same values) as one Arrow table of :func:`models.inference_log.schema`,
        built column by column: a feature of the model is its matrix column (missing
        values null), any other from the records."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from models.inference_log import schema

        sch = schema(spec)
        n = len(self.txs)
        txs = self.txs
        ts = pa.timestamp("us", tz="UTC")
        scores = {"fraud_score": self.fraud_scores, "risk_score": self.risk_scores,
                  "anomaly_score": [tx.anomaly_score for tx in txs]}
        cols: list[Any] = [
            column(self._text(spec.id_field), pa.string()),  # input text: may hold undecodable bytes
            column(self._text(spec.key_field), pa.string()),
            pa.array([spec.flow] * n, pa.string()),
            pa.array(self.versions, pa.string()),
            pa.array([None if not s else list(s.items()) for s in self.shadows], sch.field("shadow_scores").type),
        ]
        for name in spec.scores:
            values = scores.get(name)
            if values is None:
                values = [self.record(i).get(name) for i in range(n)]
            cols.append(pa.array(values, pa.float64()))
        cols += [
            pa.array(self.statuses, pa.string()),
            pa.array(self.latency_ms, pa.float64()),
            pc.cast(pa.array([self.scored_at] * n, pa.string()), ts),
            pc.cast(pa.array(self.event_times, pa.string()), ts),
        ]
        X = self.X
        for name in spec.features:
            j = _FEATURE_INDEX.get(name)
            if j is not None and j < X.shape[1]:
                cols.append(pa.array(X[:, j], pa.float64(), from_pandas=True))  # NaN (missing) -> null
            else:
                cols.append(pa.array([_num(self.record(i).get(name)) for i in range(n)], pa.float64()))
        return pa.Table.from_arrays(cols, schema=sch)

    def _text(self, field: str) -> list[str | None]:
        """A text column of the log: a validated id of the transactions, else the records' field."""
        if field in _ID_FIELDS:
            return [getattr(tx, field) for tx in self.txs]
        return [None if v is None else str(v) for v in (self.record(i).get(field) for i in range(len(self.txs)))]

    def log_date(self) -> str:
        """The UTC date of ``scored_at``: the inference log's partition of every row."""
        return self.scored_at[:10]

    def drift_columns(self) -> Iterator[tuple[str, list[tuple[float, str, str]]]]:
        """``(model_version, [(fraud_score, transaction_id, event_time), ...])`` per
        version, rows in order: the input of :meth:`~models.fraud.ScoreDrift.update_rows`."""
        by: dict[str, list[tuple[float, str, str]]] = {}
        for tx, v, p, t in zip(self.txs, self.versions, self.fraud_scores, self.event_times):
            rows = by.get(v)
            if rows is None:
                rows = by[v] = []
            rows.append((p, tx.transaction_id, t))
        return iter(by.items())


def _num(v: Any) -> float | None:
    if v is None or type(v) is float:
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


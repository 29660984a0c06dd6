"""How scores become one score and a status; shared by every dataflow.

- :func:`combine_scores`: fold detector scores (each in ``[0, 1]``) into one
  (noisy-OR, max or weighted mean), leaving out missing and warming ones.
- :func:`anomaly_score`: the warm-up rule. When every detector of an event is
  still warming up the event has **no** anomaly score (``None``), never a
  best-effort or a confident 0.
- :func:`combined_risk`: the model's probability and the anomaly score, noisy-OR
  (:func:`combined_risks`: a batch's, as columns).
- :class:`Thresholds`: CRITICAL / WARNING / NORMAL (:meth:`Thresholds.statuses`: a batch's).
- :func:`alert_of`: what a scored record puts on the alerts output, if anything.

>>> t = Thresholds(critical=0.8, warning=0.5)
>>> [t.status(s) for s in (0.95, 0.8, 0.6, 0.1)]
['CRITICAL', 'WARNING', 'WARNING', 'NORMAL']
>>> round(combined_risk(fraud_score=0.7, anomaly_score=0.9, anomaly_weight=0.4), 3)
0.808
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CRITICAL", "WARNING", "NORMAL", "Thresholds", "combine_scores", "anomaly_score", "anomaly_scores",
           "combined_risk", "combined_risks", "alert_of", "REPEAT_UPDATE"]

CRITICAL, WARNING, NORMAL = "CRITICAL", "WARNING", "NORMAL"


#: Why a NORMAL record is on the alerts output: it may repeat an event scored before a crash.
REPEAT_UPDATE = "repeat after resume: supersedes any earlier alert with this key"


def alert_of(record: dict) -> dict | None:
    """The alerts output's record for a scored ``record``: the record itself when it is
    not NORMAL; for a NORMAL record marked ``possible_repeat`` (a resumed run read it
    from the part of the input it may have scored before the crash), the record with
    ``update: true`` and ``reason``, so that the alerts topic's latest record per key
    (the event id) agrees with the event's final scored record even when the repeat
    changed its status; else ``None``. Consumers read the alerts topic as the latest
    state per key.

    >>> alert_of({"status": "WARNING"})
    {'status': 'WARNING'}
    >>> alert_of({"status": "NORMAL"}) is None
    True
    >>> alert_of({"status": "NORMAL", "possible_repeat": True})["update"]
    True
    """
    if record["status"] != NORMAL:
        return record
    if record.get("possible_repeat") is True:
        return {**record, "update": True, "reason": REPEAT_UPDATE}
    return None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A score strictly above ``critical`` is CRITICAL, above ``warning`` WARNING."""

    critical: float = 0.8
    warning: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.warning <= self.critical <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= warning <= critical <= 1, "
                f"got warning={self.warning}, critical={self.critical}"
            )

    def status(self, score: float) -> str:
        if score > self.critical:
            return CRITICAL
        if score > self.warning:
            return WARNING
        return NORMAL

    def statuses(self, scores: np.ndarray) -> list[str]:
        """:meth:`status` of each score of an array (the same comparisons, at once).

        >>> Thresholds(0.8, 0.5).statuses(np.array([0.95, 0.8, 0.6, 0.1, np.nan]))
        ['CRITICAL', 'WARNING', 'WARNING', 'NORMAL', 'NORMAL']
        """
        scores = np.asarray(scores, dtype=np.float64)
        out = [NORMAL] * len(scores)
        critical = scores > self.critical
        for i in np.flatnonzero(scores > self.warning).tolist():  # few: most events are NORMAL
            out[i] = CRITICAL if critical[i] else WARNING
        return out


def combine_scores(
    scores: Mapping[str, float | None],
    weights: Mapping[str, float] | None = None,
    *,
    method: str = "noisy_or",
    warming: Iterable[str] = (),
) -> float:
    """Combine detector scores (each in ``[0, 1]``) into one score in ``[0, 1]``.

    Scores that are None or NaN, and those named in ``warming``, are left out.
    Each remaining score ``s`` is first multiplied by its weight ``w``
    (``weights[name]``, default 1.0, must be in ``[0, 1]``). Then:

    * ``"noisy_or"`` (default): ``1 - prod(1 - w * s)``, the probability that
      at least one detector fires if each fires independently with
      probability ``w * s``;
    * ``"max"``: ``max(w * s)``, the strongest single detector;
    * ``"mean"``: weighted mean ``sum(w * s) / sum(w)``.

    With nothing left to combine the result is 0.0; use :func:`anomaly_score`
    to get ``None`` instead.

    >>> combine_scores({"a": 0.5, "b": 0.5})
    0.75
    >>> combine_scores({"a": 0.9, "b": 0.2}, method="max")
    0.9
    >>> combine_scores({"a": 0.9, "b": 0.3}, {"a": 0.5}, method="mean")
    0.5
    >>> combine_scores({"a": float("nan"), "b": 0.4, "c": 1.0}, warming=["c"])
    0.4
    """
    if weights is None:
        weights = {}
    skip = set(warming)
    vals: list[tuple[float, float]] = []
    for name, s in scores.items():
        if name in skip or s is None or s != s:
            continue
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"combine_scores: score {name!r} = {s!r} is outside [0, 1]")
        w = weights.get(name, 1.0)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"combine_scores: weight {name!r} = {w!r} is outside [0, 1]")
        vals.append((float(s), float(w)))
    if not vals:
        return 0.0
    if method == "noisy_or":
        keep = 1.0
        for s, w in vals:
            keep *= 1.0 - w * s
        return min(max(1.0 - keep, 0.0), 1.0)
    if method == "max":
        return max(w * s for s, w in vals)
    if method == "mean":
        tw = sum(w for _, w in vals)
        return sum(w * s for s, w in vals) / tw if tw > 0 else 0.0
    raise ValueError(f"combine_scores: unknown method {method!r} (use 'noisy_or', 'max' or 'mean')")


def anomaly_score(
    scores: Mapping[str, float | None],
    warming: Iterable[str],
    weights: Mapping[str, float] | None = None,
    method: str = "noisy_or",
) -> float | None:
    """The event's anomaly score: the detectors that are warm, combined; ``None``
    when no detector is warm (every one warming up, or none scored the event).

    >>> anomaly_score({"amount": 0.9, "multivariate": 0.2}, warming=["amount", "multivariate"]) is None
    True
    >>> anomaly_score({"amount": 0.9, "multivariate": 0.2}, warming=["multivariate"])
    0.9
    >>> anomaly_score({}, warming=[]) is None
    True
    """
    skip = set(warming)
    if all(name in skip or s is None or s != s for name, s in scores.items()):
        return None
    return combine_scores(scores, weights, method=method, warming=skip)


_FEW = 8  # rows up to which anomaly_scores runs the per-event rule


def anomaly_scores(S: np.ndarray, warming: np.ndarray, weights: Sequence[float], method: str = "noisy_or") -> list:
    """:func:`anomaly_score` of every row of a batch, as columns: ``S`` is events x
    detectors (NaN: the detector did not score the event), ``warming`` the same shape
    (True: warming up), ``weights`` one per column. Returns one float or ``None`` per
    row, equal to :func:`anomaly_score` on the row's ``{name: score}`` (the same
    arithmetic, column by column in order; ``tests/models/test_status.py`` checks it
    against the per-event rule).

    >>> S = np.array([[0.9, 0.2], [0.4, np.nan], [0.1, 0.3]])
    >>> W = np.array([[False, True], [True, False], [False, False]])
    >>> anomaly_scores(S, W, [1.0, 0.5], "max")
    [0.9, None, 0.15]
    """
    S = np.asarray(S, dtype=np.float64)
    n, k = S.shape
    if len(weights) != k:
        raise ValueError(f"anomaly_scores: {k} score columns but {len(weights)} weights")
    if n <= _FEW:  # a few rows: the per-event rule itself is cheaper than numpy's calls
        names = range(k)
        wmap = dict(zip(names, weights))
        return [anomaly_score({i: v for i, v in zip(names, row) if v == v},
                              [i for i, w in zip(names, wrow) if w], wmap, method)
                for row, wrow in zip(S.tolist(), np.asarray(warming).tolist())]
    use = ~(np.isnan(S) | np.asarray(warming, dtype=np.bool_))
    if ((S < 0.0) | (S > 1.0))[use].any():
        j, i = np.argwhere(use & ((S < 0.0) | (S > 1.0)))[0]
        raise ValueError(f"combine_scores: score column {i} = {S[j, i]!r} is outside [0, 1]")
    if any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"combine_scores: weights {list(weights)!r} must be in [0, 1]")
    if method == "noisy_or":
        keep = np.ones(n)
        for i, w in enumerate(weights):
            keep *= np.where(use[:, i], 1.0 - w * S[:, i], 1.0)
        out = np.minimum(np.maximum(1.0 - keep, 0.0), 1.0)
    elif method == "max":
        out = np.full(n, -np.inf)
        for i, w in enumerate(weights):
            out = np.where(use[:, i] & (w * S[:, i] > out), w * S[:, i], out)
    elif method == "mean":
        tw, tot = np.zeros(n), np.zeros(n)
        for i, w in enumerate(weights):
            tw += np.where(use[:, i], w, 0.0)
            tot += np.where(use[:, i], w * S[:, i], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(tw > 0, tot / np.where(tw > 0, tw, 1.0), 0.0)
    else:
        raise ValueError(f"combine_scores: unknown method {method!r} (use 'noisy_or', 'max' or 'mean')")
    return [v if u else None for v, u in zip(out.tolist(), use.any(axis=1).tolist())]


def combined_risk(fraud_score: float, anomaly_score: float | None, anomaly_weight: float) -> float:
    """Noisy-OR of the model's probability and the weighted anomaly score.

    ``1 - (1 - fraud) * (1 - weight * anomaly)``: never below ``fraud_score``,
    so ``fraud_score > critical`` is always CRITICAL; an anomaly alone can lift
    a borderline event by at most ``weight``. No anomaly score (detectors
    warming up) adds nothing.
    """
    if anomaly_score is None:
        return fraud_score
    if 0.0 <= fraud_score <= 1.0 and 0.0 <= anomaly_score <= 1.0 and 0.0 <= anomaly_weight <= 1.0:
        # combine_scores' noisy-OR of these two, the same operations in the same order (per event: no dicts)
        keep = (1.0 - fraud_score) * (1.0 - anomaly_weight * anomaly_score)
        return min(max(1.0 - keep, 0.0), 1.0)
    return combine_scores({"fraud": fraud_score, "anomaly": anomaly_score}, {"anomaly": anomaly_weight})


def combined_risks(fraud_scores: np.ndarray, anomaly_scores: Sequence[float | None],
                   anomaly_weight: float) -> np.ndarray:
    """:func:`combined_risk` of each pair, as columns: the same arithmetic in the same order
    (``tests/models/test_status.py`` checks it against the per-event rule); a pair outside
    its fast case (a score outside ``[0, 1]``, NaN) goes through :func:`combined_risk` itself.

    >>> combined_risks(np.array([0.7, 0.2, 0.1]), [0.9, None, 0.0], 0.4).round(3).tolist()
    [0.808, 0.2, 0.1]
    """
    p = np.asarray(fraud_scores, dtype=np.float64)
    out = p.copy()
    rows = [i for i, a in enumerate(anomaly_scores) if a is not None]
    if not rows:
        return out
    pr, a = p[rows], np.array([anomaly_scores[i] for i in rows], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        fast = (pr >= 0.0) & (pr <= 1.0) & (a >= 0.0) & (a <= 1.0) & (0.0 <= anomaly_weight <= 1.0)
        keep = (1.0 - pr) * (1.0 - anomaly_weight * a)
        out[rows] = np.where(fast, np.minimum(np.maximum(1.0 - keep, 0.0), 1.0), pr)
    for j in np.flatnonzero(~fast).tolist():
        out[rows[j]] = combined_risk(float(pr[j]), float(a[j]), anomaly_weight)
    return out

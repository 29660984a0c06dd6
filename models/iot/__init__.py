"""IoT reading scoring: per-device state, per-shard state, the output records.

Pure logic, no stream engine. Two keyed steps, the same in the dataflow, the
benchmark and the tests:

1. key = device: one :class:`DeviceState` per device turns a batch of the device's
   :class:`~features.sensors.Reading` s into a :class:`DeviceBatch` of columns (features,
   per-sensor scores, the z-scores for the shard detector, drift records);
2. key = the batch's shard: one :class:`ShardState` per shard scores the batches with
   the shard's :class:`~models.detectors.ShardDetector`, combines the scores and returns
   one :class:`ScoredReadings` of columns (the flow's item from there to the outputs:
   JSON lines, inference-log table and metrics are made from it per batch), or one
   output record (a JSON-ready ``dict``) per reading (``update_batches``).

A :class:`DeviceResult` is one reading's row of a batch (``DeviceState.update``,
``ShardState.update``: the same steps on a batch of one).

:class:`IoTPipeline` calls exactly these two classes in a plain loop. State holds
state only: ``snapshot()`` is learned data, ``load(snap)`` puts it into a state
built from the *current* :class:`IoTScoringConfig`.

Scores (all in ``[0, 1]``, higher = more anomalous; ``scores`` in the record):

* ``<sensor>``: :class:`~models.detectors.KeyDetector` on the value, deviation
  from the device's *recent* level and spread (``alpha``, memory ~50 readings);
* ``<sensor>_slow``: the same with a long memory (``slow_alpha``, ~500
  readings): deviation from the *long-run* behaviour, which the fast detector
  forgets during a slow drift;
* ``<sensor>_stuck``: :class:`~models.detectors.StuckDetector`, how improbable
  the current run of exactly repeated values is;
* ``shard``: the shard's HalfSpaceTrees on the device's per-sensor z-scores
  (clipped to ``[-z_clip, z_clip]``), so one model serves devices with
  different levels and units.

``anomaly_score`` is :func:`models.status.anomaly_score` (the one warm-up rule)
with ``combine="max"`` by default: ``max_i(w_i * s_i)`` over the detectors that
are warm, weights 1 (value), ``slow_weight`` (long memory), ``stuck_weight``
and ``shard_weight``. While **every** detector of a reading is warming up it is
``None`` and the status NORMAL; ``warming_up`` is True when any detector of
the reading was warming up. Missing sensors are left out (listed in
``missing``; their detectors are not updated). ``reasons`` (non-NORMAL records
only): the sensors behind the detectors whose weighted score is at least
``reason_floor`` and half the strongest; for the shard detector, the sensors
with ``|z| >= 2`` and at least half the largest ``|z|``.

>>> scorer = IoTPipeline(IoTScoringConfig(warmup=5, shard_window=20, shard_calib_warmup=10))
>>> first = scorer.process({"device_id": "d1", "timestamp": 0, "temperature": 20.0}, arrival=0.0)[0]
>>> first["anomaly_score"], first["status"], first["warming_up"], first["id"]
(None, 'NORMAL', True, 'd1@1970-01-01T00:00:00.000Z')
>>> for m in range(1, 40):
...     _ = scorer.process({"device_id": "d1", "timestamp": 60 * m, "temperature": 20 + 0.1 * (m % 3),
...                         "humidity": 50.0 + 0.2 * (m % 2), "pressure": 1000.0 + 0.1 * (m % 4)}, arrival=0.0)
>>> spike = scorer.process({"device_id": "d1", "timestamp": 2400, "temperature": 25.0, "humidity": 50.0},
...                        arrival=0.0)[0]
>>> spike["anomaly_score"] > 0.9, spike["status"], spike["reasons"], spike["missing"]
(True, 'CRITICAL', ['temperature'], ['pressure'])
"""


from __future__ import annotations

from models.iot.batch import ScoredReadings
from models.iot.config import IoTScoringConfig, detector_version, log_spec
from models.iot.pipeline import IoTPipeline
from models.iot.state import DeviceBatch, DeviceResult, DeviceState, ShardState, warm_up

__all__ = [
    "IoTScoringConfig",
    "DeviceBatch",
    "DeviceResult",
    "DeviceState",
    "ShardState",
    "ScoredReadings",
    "IoTPipeline",
    "detector_version",
    "log_spec",
    "warm_up",
]

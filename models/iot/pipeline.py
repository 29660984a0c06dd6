"""The IoT flow's steps in a plain loop (:class:`IoTPipeline`), for tests, benchmarks and backfills."""

from __future__ import annotations

import time
from typing import Any

from features.records import DeadLetter, ValidationError
from features.sensors import parse_reading
from models.iot.config import IoTScoringConfig
from models.iot.state import DeviceState, ShardState
from models.status import Thresholds

__all__ = ["IoTPipeline"]


class IoTPipeline:
    """The two steps in a plain loop: one :class:`DeviceState` per device, one
    :class:`ShardState` per shard, exactly as the dataflow keys them.

    :meth:`process` returns ``[reading record, *drift records]``; invalid input
    (and a duplicate reading) raises :class:`~features.records.ValidationError` naming why.
    """

    def __init__(self, config: IoTScoringConfig = IoTScoringConfig(), thresholds: Thresholds = Thresholds()) -> None:
        self.config = config
        self.thresholds = thresholds
        self.devices: dict[str, DeviceState] = {}
        self.shards: dict[str, ShardState] = {}

    def process(self, raw: Any, arrival: float | None = None) -> list[dict[str, Any]]:
        """Score one raw reading (JSON text or bytes, or a mapping) received at
        ``arrival`` (epoch s; now by default)."""
        reading = parse_reading(raw, self.config.features, time.time() if arrival is None else arrival)
        dev = self.devices.get(reading.device)
        if dev is None:
            dev = self.devices[reading.device] = DeviceState(self.config)
        (batch,) = dev.score_batch((reading,))  # the flow's two steps, on a batch of one
        if isinstance(batch, DeadLetter):
            raise ValidationError(batch.error)
        key = str(batch.shard)
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = ShardState(self.config, self.thresholds)
        return [*shard.update_batches([batch]), *batch.drifts]

"""Inputs of the flows, chosen by configuration rather than by editing a flow.

Every input is a stream of *raw* events: JSON text or bytes (JSON Lines files,
Kafka values), or row mappings (CSV, Parquet, the generators). Validation turns
them into typed events or dead letters. Kafka items are unwrapped by the source's
partitions (:func:`dataflows.connectors.kafka.unwrap`) into :class:`~features.records.Raw`
inputs that remember their topic, partition and offset.

Every file and generator source is resumable: its position (inputs emitted) is
its recovery state, so a restart with recovery skips what was already read.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from dataflows.connectors.files import IterableSource, _skipping, file_source
from settings.config import IOConfig

__all__ = ["read_input"]


def read_input(step_id: str, flow: Dataflow, io: IOConfig, generate: Callable[[], Iterable[Any]],
               decoder: Callable[[], Callable[[Any], dict]] | None = None) -> Stream[Any]:
    """The input the configuration names (``io.source``): generated events,
    a file, or a Kafka topic (:class:`~features.records.Raw` inputs and
    consumer-error dead letters). With an Avro or Protobuf
    input (``{flow}.formats.input``), ``decoder()`` builds the decoder of one worker and a
    step of its own turns each value into a dict, or a dead letter (step ``decode``)
    keeping the bytes (:func:`features.wire.decode_or_dead_letter`)."""
    if io.source == "generator":
        return op.input(step_id, flow, IterableSource("generator", _skipping(generate), io.batch_size))
    if io.source == "file":
        assert io.input_path is not None
        return op.input(step_id, flow, file_source(io.input_path, io.batch_size))
    # lazy: pulls confluent_kafka; importing a flow loads no Kafka client (tests/dataflows/test_startup.py)
    from dataflows.connectors.kafka import kafka_source

    k = io.kafka
    raws = op.input(step_id, flow, kafka_source(k.bootstrap_servers, k.input_topic, tail=k.tail,
                                                options=k.options, batch_size=io.batch_size,
                                                start=k.start, group=k.group))
    if k.input_format == "json" or decoder is None:
        return raws
    from features.wire import decode_or_dead_letter

    state: dict[str, Any] = {}

    def decode(item: Any) -> Any:
        if "decode" not in state:  # built on the worker, on its first message: a registry client per worker
            state["decode"] = decoder()
        return decode_or_dead_letter(item, state["decode"])

    return op.map(f"{step_id}_decode", raws, decode)

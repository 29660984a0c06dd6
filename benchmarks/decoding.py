"""Decoding cost of the input formats: the fraud flow's own validate step on the same
transactions as JSON, Avro and Protobuf Kafka values (``make bench`` row "4 decoding").

Each value goes through what the flow runs per message: for Avro and Protobuf
:func:`features.wire.decode_or_dead_letter` (framing check, schema id from the decoder's
cache, body -> dict), then, for every format, :func:`features.records.parse_or_dead_letter`
with the flow's parser (:func:`dataflows.scoring.transaction_parser`). The registry is
confluent-kafka's in-memory ``mock://`` one: after the first record of a schema id the
decoder never asks it again, so a real registry would give the same figures.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import orjson

from dataflows.connectors.registry import input_schema
from dataflows.scoring import transaction_parser
from features.records import DeadLetter, Raw, parse_or_dead_letter
from features.wire import WireDecoder, WireEncoder, decode_or_dead_letter, registry_client
from settings.config import FraudConfig

__all__ = ["run"]


def _rate(values: list[bytes], step: Callable[[Raw], Any], repeats: int = 3) -> tuple[float, int]:
    """Best events/s of ``repeats`` passes over ``values``, and how many were refused."""
    best, refused = 0.0, 0
    for _ in range(repeats):
        t = time.perf_counter()
        out = [step(Raw(v, "tx", 0, i)) for i, v in enumerate(values)]
        best = max(best, len(values) / (time.perf_counter() - t))
        refused = sum(isinstance(o, DeadLetter) for o in out)
    return best, refused


def run(events: list[dict]) -> dict[str, Any]:
    """events/s of JSON, Avro and Protobuf values through decode + validate, and the ratios."""
    parse = transaction_parser(FraudConfig.from_env({}))
    client = registry_client(f"mock://bench-{uuid.uuid4().hex}")
    out: dict[str, Any] = {"events": len(events)}
    arrival = time.time()
    json_values = [orjson.dumps(e) for e in events]
    rate, refused = _rate(json_values, lambda r: parse_or_dead_letter(r, parse, arrival))
    out["json"] = {"events_per_s": round(rate, 1), "refused": refused,
                   "bytes_per_event": round(sum(map(len, json_values)) / len(events), 1)}
    for fmt in ("avro", "protobuf"):
        schema = input_schema("fraud", fmt)
        values = [WireEncoder(client, fmt, schema, f"bench-{fmt}")(e) for e in events]
        decoder = WireDecoder(client, fmt, None if fmt == "avro" else schema)
        rate, refused = _rate(values, lambda r, d=decoder: parse_or_dead_letter(
            decode_or_dead_letter(r, d), parse, arrival))
        out[fmt] = {"events_per_s": round(rate, 1), "refused": refused,
                    "bytes_per_event": round(sum(map(len, values)) / len(events), 1)}
        out[f"{fmt}_over_json"] = round(out[fmt]["events_per_s"] / out["json"]["events_per_s"], 3)
    return out


if __name__ == "__main__":
    from benchmarks.common import fraud_events

    print(orjson.dumps(run(fraud_events(20_000)), option=orjson.OPT_INDENT_2).decode())

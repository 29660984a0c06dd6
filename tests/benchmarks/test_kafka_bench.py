"""The Kafka benchmark's inputs (the runs themselves are in ``make bench``)."""

from __future__ import annotations

from benchmarks import common, kafka_bench


def test_the_backfill_keys_messages_by_customer_as_replay_does():
    """Keyed by transaction_id (before 2026-12-07), a customer's events were spread over the
    partitions, which neither the flow's per-customer order nor `streamscore replay` does."""
    events = common.fraud_events(50)
    assert [kafka_bench.ENTITY_KEY(e) for e in events] == [e["customer_id"] for e in events]

"""The Kafka benchmark's inputs and its clean-up (the runs themselves are in ``make bench``)."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from benchmarks import common, kafka_bench


def test_the_backfill_keys_messages_by_customer_as_replay_does():
    """Keyed by transaction_id (before 2026-12-07), a customer's events were spread over the
    partitions, which neither the flow's per-customer order nor `streamscore replay` does."""
    events = common.fraud_events(50)
    assert [kafka_bench.ENTITY_KEY(e) for e in events] == [e["customer_id"] for e in events]


@pytest.mark.kafka
def test_a_bench_run_deletes_the_topics_it_made():
    """Its clean-up made the request on a client it dropped at once, which cancels it: every
    bench run left its four topics on the broker (a developer's broker had 9,097 partitions)."""
    from cli.replay import ensure_topic
    from tests.topics import listed

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with kafka_bench.Broker(bootstrap) as broker:
        made = list(broker.topics("cleanup").values())
        for name in made:
            ensure_topic(broker.kafka(), name, 1)
        assert set(made) <= listed(bootstrap)
    assert not set(made) & listed(bootstrap)


@pytest.mark.kafka
def test_the_suite_deletes_only_its_own_new_topics():
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.topics import delete_new, listed

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    run = uuid.uuid4().hex[:8]
    kept, ours = f"kept-{run}", [f"ours-in-{run}", f"ours-scored-{run}"]
    plain = f"not-ours-{run}-x"  # new, but its name does not end in the run id
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(kept, 1, 1)]).values():
        f.result(30)
    before = listed(bootstrap)
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in (*ours, plain)]).values():
        f.result(30)
    # this test's run id only (the suite's other tests may be making topics right now):
    # ``kept`` ends in it too, but was there before
    assert delete_new(bootstrap, before, re.compile(rf"-{run}$")) == sorted(ours)
    after = listed(bootstrap)
    assert not set(ours) & after and {kept, plain} <= after
    for f in admin.delete_topics([kept, plain], operation_timeout=30).values():
        f.result(60)

"""The suite's Kafka topics are its own: deleted when the suite ends.

Every topic a test makes is named with a run id, ``<what>-<8 hex digits>``
(``tests.e2e.test_kafka.topics``), or, for the documentation's commands that
``tests/test_docs.py`` runs, ``<what>-<epoch seconds>``. When the suite starts, the broker's topics are
listed; when it ends, the topics made since whose names end in such a run id are
deleted. Only a run of ``scripts/test.sh`` (``make test``) does it (it sets
``TESTS_DELETE_KAFKA_TOPICS=1``): another pytest session on the same broker at the
same time (``make test-fast`` beside ``make test``) would take the first one's topics for
its own. Without this, a broker kept between runs (``scripts/kafka.sh up`` on a
developer's machine) gathers hundreds of partitions a run: 9,097 of them and 24 GB
after a few weeks here, with the broker's heap full and its collector pausing 149
times in a minute, which showed in every Kafka latency measured on it
(``docs/benchmarks.md``). The clean-up runs once, in the process that started the
suite (with pytest-xdist, after every worker is done), and only when a broker answers.

>>> [bool(RUN_ID.search(t)) for t in ("scored-shared-0a1b2c3d", "avro-tx-1796639450", "payments", "in-0a1b2c3d-x")]
[True, True, False, False]
"""

from __future__ import annotations

import re

from benchmarks.kafka_bench import broker_answers

RUN_ID = re.compile(r"-([0-9a-f]{8}|[0-9]{10})$")


def listed(bootstrap: str) -> set[str] | None:
    """The broker's topics, or ``None`` when no broker answers (then nothing is deleted)."""
    if not broker_answers(bootstrap):
        return None
    from confluent_kafka.admin import AdminClient

    try:
        return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)
    except Exception:  # noqa: BLE001 - a port that takes connections but answers no Kafka: leave it alone
        return None


def delete_new(bootstrap: str, before: set[str], names: re.Pattern[str] = RUN_ID) -> list[str]:
    """Delete the topics not in ``before`` whose names match ``names`` (a run id at the
    end); returns them."""
    now = listed(bootstrap)
    if not now:
        return []
    gone = sorted(t for t in now - before if names.search(t))
    if gone:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the answers: a dropped client cancels them
        for f in admin.delete_topics(gone, operation_timeout=30).values():
            try:
                f.result(60)
            except Exception:  # noqa: BLE001 - already gone, or the broker went away: nothing to keep
                pass
    return gone

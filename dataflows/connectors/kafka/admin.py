"""Kafka clients' settings and checks at start: librdkafka options (``KAFKA_OPT_*``), the
broker answering, topics existing, and the errors that name them."""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

__all__ = ["KafkaUnavailable", "KafkaOptionError", "client_config", "check_options", "check_broker"]




#: librdkafka's own messages (e.g. ``FAIL ... Connection refused`` while a broker is away)
#: go through this stdlib logger, so they are JSON lines like every other log line.
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time, or a topic is missing."""


class KafkaOptionError(ValueError):
    """A ``KAFKA_OPT_*`` setting librdkafka does not accept."""


# The errors' public home is the package (``dataflows.connectors.kafka.KafkaOptionError``).
KafkaUnavailable.__module__ = KafkaOptionError.__module__ = "dataflows.connectors.kafka"


def client_config(brokers: str, options: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings: ``bootstrap.servers`` plus the extra ``options``."""
    return {"bootstrap.servers": brokers, **(options or {})}


def _env_name(prop: str) -> str:
    return "KAFKA_OPT_" + prop.upper().replace(".", "_")


def check_options(options: Mapping[str, str]) -> None:
    """Raise :class:`KafkaOptionError` naming the ``KAFKA_OPT_*`` variable of every
    setting librdkafka does not know or refuses (values are never shown: they may
    be secrets). Nothing is contacted.

    >>> check_options({"linger.ms": "5"})
    >>> check_options({"lingr.ms": "5"})
    Traceback (most recent call last):
    ...
    dataflows.connectors.kafka.KafkaOptionError: KAFKA_OPT_LINGR_MS: librdkafka has no setting 'lingr.ms'
    """
    bad: list[str] = []
    for prop, value in options.items():
        try:
            # a Producer validates names and values when it is created; a consumer-only
            # setting is accepted with a warning (it is passed to the consumer as well)
            Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": "0", prop: value}).flush(0)
        except KafkaException as exc:
            text = str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
            if "No such configuration property" in text:
                bad.append(f"{_env_name(prop)}: librdkafka has no setting {prop!r}")
            else:
                bad.append(f"{_env_name(prop)}: refused by librdkafka ({text.replace(str(value), '***')})")
        except Exception as exc:  # e.g. a TypeError for a value of the wrong type
            bad.append(f"{_env_name(prop)}: refused by librdkafka ({type(exc).__name__})")
    if bad:
        raise KafkaOptionError("; ".join(bad))


def check_broker(
    brokers: str,
    options: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    topics: Sequence[str] = (),
) -> dict[str, int]:
    """Ask the broker for metadata within ``timeout_s``; returns partitions per topic
    (of ``topics``, those that exist).

    Raises :class:`KafkaUnavailable` with a one-line message naming the address.
    """
    admin = AdminClient({**client_config(brokers, options), "socket.connection.setup.timeout.ms": "5000",
                         "log_level": "0"})
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        raise KafkaUnavailable(
            f"KAFKA_BOOTSTRAP_SERVERS={brokers!r}: broker unreachable after {timeout_s:g}s "
            f"({exc}); start one with `make kafka-up` or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    return {t: len(meta.topics[t].partitions) for t in topics if t in meta.topics}


def broker_creates_topics(brokers: str, options: Mapping[str, str] | None = None,
                          timeout_s: float = 10.0) -> bool | None:
    """The broker's ``auto.create.topics.enable`` (``None`` when it cannot be read,
    e.g. without the rights to describe broker configs)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = AdminClient({**client_config(brokers, options), "log_level": "0"})
    try:
        meta = admin.list_topics(timeout=timeout_s)
        broker = str(next(iter(meta.brokers)))
        [future] = admin.describe_configs([ConfigResource(ResourceType.BROKER, broker)]).values()
        entry = future.result(timeout=timeout_s).get("auto.create.topics.enable")
        return None if entry is None else entry.value == "true"
    except Exception:
        return None

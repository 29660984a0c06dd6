"""Kafka in and out, with the fixes Bytewax 0.21.1's connector needs.

- :func:`check_broker`: ``list_topics`` with a timeout before the flow is built
  (Bytewax's own call has none and hangs forever on an unreachable broker).
- :func:`kafka_source`: Bytewax's ``KafkaSource`` with consumer errors turned into
  items (they become dead letters with their partition and offset) instead of
  stopping the flow; ``kafka.tail = false`` stops at the end of the topic.
- :class:`ReliableKafkaSink`: produces with a delivery callback, retries when
  librdkafka's local queue is full (Bytewax issue 522), waits through a broker
  outage up to ``message.timeout.ms``, and fails loudly (an error log line naming
  the topic and the librdkafka error, then :class:`KafkaDeliveryError`) if a record
  is refused or not delivered in time, rather than dropping it silently.

Extra librdkafka settings come from ``KAFKA_OPT_*`` variables
(``KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL`` -> ``security.protocol``); their values
are never logged.
"""


from __future__ import annotations

from dataflows.connectors.kafka.admin import (
    KafkaOptionError,
    KafkaUnavailable,
    broker_creates_topics,
    check_broker,
    check_options,
    client_config,
)
from dataflows.connectors.kafka.sink import (
    DELIVERY_TIMEOUT_MS,
    KafkaDeliveryError,
    ReliableKafkaSink,
    TooLarge,
    delivery_timeout_s,
    message_max_bytes,
)
from dataflows.connectors.kafka.source import (
    StoppableKafkaSource,
    consumer_options,
    install_graceful_stop,
    kafka_source,
    unwrap,
)

__all__ = [
    "broker_creates_topics",
    "DELIVERY_TIMEOUT_MS",
    "KafkaUnavailable",
    "KafkaOptionError",
    "client_config",
    "check_options",
    "check_broker",
    "kafka_source",
    "unwrap",
    "ReliableKafkaSink",
    "TooLarge",
    "message_max_bytes",
    "KafkaDeliveryError",
    "delivery_timeout_s",
    "consumer_options",
    "install_graceful_stop",
    "StoppableKafkaSource",
]

"""confluent-kafka producers that follow the contract: murmur2 partitioning, JSON via the codec.

librdkafka's default partitioner is not Kafka's murmur2; the contract requires it on the request_id
key so that every producer (Java, librdkafka, kafka-python...) puts a request's events in the same
partition of the three co-partitioned topics.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer
from pydantic import BaseModel

from schemas.codec import encode
from streams.errors import KafkaUnavailableError
from streams.kafka.settings import KafkaSettings

#: Settings every ShadowCanary producer uses.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "linger.ms": 5,
    "compression.type": "lz4",
    "message.max.bytes": 2 * 1024 * 1024,
}


def make_producer(settings: KafkaSettings, **overrides: Any) -> Producer:
    return Producer(settings.confluent_config(**{**PRODUCER_DEFAULTS, **overrides}))


class ContractProducer:
    """Publishes contract messages; ``flush`` raises if anything could not be delivered."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        self._producer = make_producer(settings, **overrides)
        self._failures: list[str] = []
        #: (topic, partition, offset) of the last record delivered (known once ``flush`` returned).
        self.last_delivered: tuple[str, int, int] | None = None

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
        else:
            self.last_delivered = (msg.topic(), msg.partition(), msg.offset())

    def send(self, topic: str, key: str | bytes | None, message: BaseModel | bytes | None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record; ``None`` is a tombstone (it ends a rollout on ``rollout.specs``)."""
        value = message if message is None or isinstance(message, bytes) else encode(message)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise KafkaUnavailableError(f"{remaining} messages not delivered within {timeout:.0f}s")
        if self._failures:
            failures, self._failures = self._failures, []
            raise KafkaUnavailableError(f"{len(failures)} messages failed: {failures[0]}")

    @property
    def raw(self) -> Producer:
        return self._producer


__all__ = ["ContractProducer", "KafkaException", "PRODUCER_DEFAULTS", "make_producer"]

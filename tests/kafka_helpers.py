"""Reading what reached a topic, for assertions in integration tests."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message

from streams.config import KafkaSettings


def read_topic(settings: KafkaSettings, topic: str, expected: int | None = None, timeout: float = 120,
               linger: float = 3.0) -> list[Message]:
    """Every record of ``topic`` from the beginning: until ``expected`` arrived (or ``timeout``), then
    ``linger`` seconds more, so that anything beyond the expected count (a duplicate) shows too."""
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"reader-{uuid.uuid4()}", "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + (timeout if expected is not None else linger)
    try:
        while time.monotonic() < deadline and (expected is None or len(out) < expected):
            out += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
        lingered = time.monotonic() + linger
        while expected is not None and time.monotonic() < lingered:
            out += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return out

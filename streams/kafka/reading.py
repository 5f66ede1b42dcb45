"""Reading a topic up to where it ends now: the state a new owner, the CLI or a scan starts from."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streams.errors import KafkaUnavailableError
from streams.kafka.settings import KafkaSettings


def read_to_end(settings: KafkaSettings, topic: str, since_ms: int | None = None,
                timeout: float = 60.0) -> tuple[list[Message], list[TopicPartition]]:
    """Every committed record of ``topic`` from the beginning (or from ``since_ms``, a record
    timestamp) to its current end, and the end of each partition (where a live reader goes on).

    Progress is judged by the consumer's position, which also moves past transaction markers, so a
    transactional topic ends as promptly as any other.
    """
    consumer = Consumer(settings.confluent_config(**{
        "group.id": "shadowcanary.reader", "enable.auto.commit": False, "isolation.level": "read_committed"}))
    try:
        return _read(consumer, topic, since_ms, timeout)
    except KafkaException as exc:
        error = exc.args[0]
        text = error.str() if hasattr(error, "str") else str(error)
        raise KafkaUnavailableError(f"cannot read {topic} from {settings.bootstrap_servers}: {text}") from None
    finally:
        consumer.close()


def _read(consumer: Consumer, topic: str, since_ms: int | None,
          timeout: float) -> tuple[list[Message], list[TopicPartition]]:
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    starts = [TopicPartition(topic, p, since_ms if since_ms is not None else -2) for p in partitions]
    if since_ms is not None:
        starts = consumer.offsets_for_times(starts, timeout=10)
    ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions]
    end_of = {tp.partition: tp.offset for tp in ends}
    todo = [tp for tp in starts if tp.offset != -1 and (tp.offset < 0 or tp.offset < end_of[tp.partition])
            and end_of[tp.partition] > 0]
    out: list[Message] = []
    consumer.assign(todo)
    remaining = {tp.partition for tp in todo}
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        out += [m for m in consumer.consume(1000, 0.2) if m.error() is None]
        for tp in consumer.position([TopicPartition(topic, p) for p in remaining]):
            if tp.offset >= end_of[tp.partition]:
                remaining.discard(tp.partition)
    return out, ends

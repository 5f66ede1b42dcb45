"""Restoring a partition's store from its changelog, on a real broker: committed records only, from
the checkpoint on, and a read that stalls is started again with a new consumer."""

from __future__ import annotations

import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.settings import KafkaSettings
from streams.worker.restore import ChangelogRestorer, restore_consumer
from streams.worker.store import PartitionStore


class Wedged:
    """A restore consumer that reads nothing and never reports the partition's end, as one did in CI
    right after a broker restart."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def consume(self, num_messages: int, timeout: float) -> list:
        self.consumer.consume(num_messages, min(timeout, 0.2))  # fetches, then drops what it got
        return []

    def __getattr__(self, name: str):
        return getattr(self.consumer, name)


def _changelog(settings: KafkaSettings) -> str:
    """A one-partition topic holding keys k0..k9 committed, k10..k14 aborted, then k3 deleted."""
    topic = f"{settings.topic_prefix}restore-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(settings.confluent_config())
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer(settings.confluent_config(**{"transactional.id": f"restore-test-{uuid.uuid4().hex[:6]}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=f"k{i}".encode(), value=orjson.dumps({"n": i}))
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(10, 15):
        producer.produce(topic, key=f"k{i}".encode(), value=orjson.dumps({"n": i}))
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k3", value=None)
    producer.commit_transaction(30)
    return topic


def _keys(store: PartitionStore) -> set[str]:
    return {f"k{i}" for i in range(20) if store.get(f"k{i}") is not None}


def test_a_restore_applies_committed_records_only_and_a_second_reads_nothing(kafka_settings):
    topic = _changelog(kafka_settings)
    store = PartitionStore.in_memory()
    restorer = ChangelogRestorer(kafka_settings)
    try:
        first = restorer.restore(topic, 0, store)
        assert _keys(store) == {f"k{i}" for i in range(10)} - {"k3"}
        assert first.records == 11 and first.checkpoint == store.checkpoint() == 17  # 10 + marker + 5 + marker
        again = restorer.restore(topic, 0, store)
        assert again.records == 0 and again.checkpoint == 17 and restorer.stalls == 0
    finally:
        restorer.close()


def test_a_stalled_restore_reads_on_with_a_new_consumer(kafka_settings, caplog):
    topic = _changelog(kafka_settings)
    made: list[object] = []

    def factory(settings: KafkaSettings):
        consumer = restore_consumer(settings)
        made.append(Wedged(consumer) if not made else consumer)
        return made[-1]

    store = PartitionStore.in_memory()
    restorer = ChangelogRestorer(kafka_settings, stall_s=2.0, consumer_factory=factory)
    try:
        result = restorer.restore(topic, 0, store)
    finally:
        restorer.close()
    assert restorer.stalls == 1 and len(made) == 2
    assert result.records == 11 and _keys(store) == {f"k{i}" for i in range(10)} - {"k3"}
    warning = next(r.getMessage() for r in caplog.records if "reading on with a new consumer" in r.getMessage())
    assert "at the beginning; last stable offset 19, high watermark 19" in warning, warning


def test_a_restore_that_reads_nothing_for_its_timeout_fails_saying_where_it_stands(kafka_settings):
    topic = _changelog(kafka_settings)
    restorer = ChangelogRestorer(kafka_settings, stall_s=1.0, timeout_s=4.0,
                                 consumer_factory=lambda settings: Wedged(restore_consumer(settings)))
    try:
        with pytest.raises(TimeoutError, match=r"nothing read for 4s \(at the beginning; last stable offset 19"):
            restorer.restore(topic, 0, PartitionStore.in_memory())
    finally:
        restorer.close()
    assert restorer.stalls >= 2

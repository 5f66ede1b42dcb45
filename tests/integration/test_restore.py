"""Restoring a partition's store from its changelog, on a real broker: committed records only, from
the checkpoint on, and a read that stalls is started again with a new consumer."""

from __future__ import annotations

import threading
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from evaluators.join import JoinConfig
from streams.kafka.settings import KafkaSettings
from streams.worker.evaluator import build_evaluator
from streams.worker.loop import LoopOptions
from streams.worker.restore import ChangelogRestorer, restore_consumer
from streams.worker.store import PartitionStore
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.kafka


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


def _topic(settings: KafkaSettings, name: str) -> str:
    """A new one-partition topic."""
    topic = f"{settings.topic_prefix}{name}-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(settings.confluent_config())
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    return topic


def _open_transaction(settings: KafkaSettings, topic: str, transactional_id: str, keys: range) -> Producer:
    """A producer of ``transactional_id`` whose transaction, left open, holds ``k<i>`` -> ``{"n": i}``
    for each i of ``keys`` on ``topic`` (delivered)."""
    producer = Producer(settings.confluent_config(**{"transactional.id": transactional_id}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in keys:
        producer.produce(topic, key=f"k{i}".encode(), value=orjson.dumps({"n": i}))
    producer.flush(30)
    return producer


def _changelog(settings: KafkaSettings) -> str:
    """A one-partition topic holding keys k0..k9 committed, k10..k14 aborted, then k3 deleted."""
    topic = _topic(settings, "restore")
    producer = _open_transaction(settings, topic, f"restore-test-{uuid.uuid4().hex[:6]}", range(10))
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
        assert again.records == 0 and again.checkpoint == 17
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
    assert restorer.stalls >= 1 and len(made) == restorer.stalls + 1 and isinstance(made[0], Wedged)
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


def _store_past_the_stable_end(settings: KafkaSettings, transactional_id: str) -> tuple[str, PartitionStore, Producer]:
    """A changelog partition whose last stable offset sits below the store's checkpoint: the store
    applied records 0..4 of a transaction the partition never saw ended (here it is left open by a
    live producer; in CI the broker lost its commit marker)."""
    topic = _topic(settings, "unended")
    producer = _open_transaction(settings, topic, transactional_id, range(5))
    store = PartitionStore.in_memory()
    store.apply([(f"k{i}".encode(), orjson.dumps({"n": i})) for i in range(5)], 4)
    return topic, store, producer


def test_a_store_past_the_partitions_stable_end_is_settled_by_its_own_transactional_id(kafka_settings, caplog):
    transactional_id = f"settle-{uuid.uuid4().hex[:6]}"
    topic, store, unended = _store_past_the_stable_end(kafka_settings, transactional_id)
    settled: list[tuple[str, int]] = []

    def settle(changelog: str, partition: int, key: bytes) -> bool:
        producer = Producer(kafka_settings.confluent_config(**{"transactional.id": transactional_id}))
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(changelog, key=key, value=None, partition=partition)
        producer.commit_transaction(30)
        settled.append((changelog, partition))
        return True

    restorer = ChangelogRestorer(kafka_settings, stall_s=5.0, timeout_s=30.0, settle=settle)
    try:
        result = restorer.restore(topic, 0, store)
    finally:
        restorer.close()
    assert settled == [(topic, 0)] and restorer.settled == 1
    assert result.records == 1 and result.checkpoint > 4  # the settling tombstone, after the unended records
    assert _keys(store) == {f"k{i}" for i in range(5)}
    assert any("a transaction never ended there" in r.getMessage() for r in caplog.records)
    del unended


def test_without_a_way_to_settle_it_the_restore_waits_and_says_why(kafka_settings, caplog):
    topic, store, unended = _store_past_the_stable_end(kafka_settings, f"unsettled-{uuid.uuid4().hex[:6]}")
    restorer = ChangelogRestorer(kafka_settings, stall_s=1.0, timeout_s=3.0)
    try:
        with pytest.raises(TimeoutError, match=r"at offset 5; last stable offset 0, high watermark 5"):
            restorer.restore(topic, 0, store)
    finally:
        restorer.close()
        unended.abort_transaction(30)
    assert restorer.settled == 0
    assert any("could not be ended here" in r.getMessage() for r in caplog.records)


def test_the_worker_loop_commits_a_tombstone_in_a_transaction_of_its_own(kafka_settings, contract_topics, tmp_path):
    evaluator = build_evaluator(kafka_settings, LoopOptions(app_id=f"tomb-{uuid.uuid4().hex[:6]}"), JoinConfig(),
                                tmp_path / "worker")
    loop = evaluator.loop
    loop.start()
    try:
        assert evaluator.loop.stage.commit_tombstone == loop.commit_tombstone
        changelog = loop.stage.changelog
        assert loop.commit_tombstone(changelog, 1, b"\x00test")
        records = [m for m in read_topic(kafka_settings, changelog, linger=2.0) if m.partition() == 1]
        assert [(m.key(), m.value()) for m in records] == [(b"\x00test", None)]
    finally:
        loop.close()


def test_a_restore_waits_for_a_transaction_open_when_it_began_and_reads_what_committed_after_it(kafka_settings):
    """A worker killed mid-batch leaves its transaction open on the changelog until the broker aborts
    it (its transaction timeout); the partition's next owner commits after it. The partition's last
    stable offset stays at the open transaction's first record meanwhile, so a read that ended there
    would leave out the next owner's committed records: a third owner restoring in that window must
    wait for the open transaction to end."""
    topic = _topic(kafka_settings, "open")
    killed = _open_transaction(kafka_settings, topic, f"killed-{uuid.uuid4().hex[:6]}", range(3))
    _open_transaction(kafka_settings, topic, f"next-{uuid.uuid4().hex[:6]}", range(3, 6)).commit_transaction(30)
    ender = threading.Timer(4.0, lambda: killed.abort_transaction(30))  # the broker's abort, sooner
    ender.start()
    store = PartitionStore.in_memory()
    restorer = ChangelogRestorer(kafka_settings, stall_s=2.0, timeout_s=60.0)
    try:
        result = restorer.restore(topic, 0, store)
    finally:
        ender.join()
        restorer.close()
    assert _keys(store) == {"k3", "k4", "k5"}
    assert result.records == 3 and result.seconds >= 3.5
    assert restorer.stalls == 0  # waiting for a transaction to end is no stall

"""Bring a partition's local store up to its changelog before the partition is processed.

The store's checkpoint is the changelog offset it reflects; restore reads the changelog partition
``read_committed`` from the record after it to its end (the last stable offset: records of a
transaction still open or aborted are never applied) and applies what it reads in batches, each
with the offset it reaches. A store in step with its changelog reads nothing: that is the skipped
restore of Kafka Streams' checkpoint file. A store whose checkpoint is not trusted (an unclean stop:
see :mod:`streams.worker.evaluator`) was removed before, and restore starts from the beginning.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streams.kafka.settings import KafkaSettings
from streams.worker.store import NO_CHECKPOINT, PartitionStore

log = logging.getLogger("shadowcanary.restore")

RESTORE_BATCH = 10_000


@dataclass
class RestoreResult:
    partition: int
    records: int
    seconds: float
    checkpoint: int


def restore_consumer(settings: KafkaSettings) -> Consumer:
    """A consumer outside any group (it is assigned partitions explicitly), read_committed, that
    reports the end of each partition it reads."""
    return Consumer(settings.confluent_config(**{
        "group.id": f"shadowcanary.restore.{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True,
        "auto.offset.reset": "earliest"}))


def restore_partition(consumer: Consumer, changelog: str, partition: int, store: PartitionStore,
                      timeout_s: float = 600.0) -> RestoreResult:
    """Apply the changelog records after the store's checkpoint; return what was read."""
    started = time.monotonic()
    checkpoint = store.checkpoint()
    start = OFFSET_BEGINNING if checkpoint == NO_CHECKPOINT else checkpoint + 1
    consumer.assign([TopicPartition(changelog, partition, start)])
    records = 0
    try:
        while time.monotonic() - started < timeout_s:
            batch = consumer.consume(RESTORE_BATCH, 1.0)
            writes: list[tuple[bytes, bytes | None]] = []
            at_end = False
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end = True
                        continue
                    raise KafkaException(error)
                writes.append((message.key(), message.value()))
                checkpoint = message.offset()
            if writes:
                store.apply(writes, checkpoint)
                records += len(writes)
            if at_end:
                break
        else:
            raise TimeoutError(f"restoring {changelog} [{partition}] took longer than {timeout_s:.0f}s")
    finally:
        consumer.unassign()
    return RestoreResult(partition, records, time.monotonic() - started, checkpoint)

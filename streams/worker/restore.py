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
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streams.kafka.settings import KafkaSettings
from streams.worker.store import NO_CHECKPOINT, PartitionStore

log = logging.getLogger("shadowcanary.restore")

RESTORE_BATCH = 10_000
#: How long a restore may read nothing before it starts again with a new consumer.
STALL_S = 10.0
#: How long a restore waits for a commit's markers before it ends the transaction itself.
MARKER_WAIT_S = 2.0
#: The key of the tombstone whose transaction ends an unended one (no state is stored under it).
SETTLE_KEY = b"\x00shadowcanary.settle"


class PartitionEnds(NamedTuple):
    #: The last stable offset: where a read_committed read ends.
    stable: int
    #: The high watermark: the log's end, open transactions included.
    high: int


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


class ChangelogRestorer:
    """Restores partitions one after the other through one consumer, made anew when it stalls.

    A read that brings neither a record nor the partition's end for ``stall_s``, from a partition the
    broker answers for, is logged with where it stands (its next offset, the partition's last stable
    offset and high watermark) and started again from the store's checkpoint with a new consumer (a
    second line of defence: the stuck restore CI saw was a store past the stable end, settled below
    before the read); a partition the broker does not serve yet is waited for. What was applied stays
    applied (each batch is written with the offset it reaches). A restore that reads no record
    for ``timeout_s``, however many consumers it tried, fails with :class:`TimeoutError`.

    A store whose checkpoint is past the partition's last stable offset holds records of a transaction
    that committed (its commit returned, so they were applied) but whose commit marker never reached
    the partition: Kafka 4.3.1 lost it when a broker shut down while sending markers (the coordinator
    logged the transaction complete; seen in the outage test). The partition's stable end stays there
    for good, and a read_committed read from the checkpoint never ends. ``settle`` (the worker's
    ``commit_tombstone``) commits a transaction of the same transactional id holding one tombstone on
    the partition: its marker ends the old transaction as committed, and the read goes on.

    ``consumer_factory`` makes the consumers (tests hand it one that never reads).
    """

    def __init__(self, settings: KafkaSettings, stall_s: float = STALL_S, timeout_s: float = 600.0,
                 consumer_factory: Callable[[KafkaSettings], Consumer] = restore_consumer,
                 settle: Callable[[str, int, bytes], bool] | None = None) -> None:
        self.settings, self.stall_s, self.timeout_s = settings, stall_s, timeout_s
        self._factory = consumer_factory
        self._settle = settle
        #: Partitions whose unended transaction was ended (``settle``).
        self.settled = 0
        self._consumer: Consumer | None = None
        #: Times a stalled read was started again with a new consumer.
        self.stalls = 0

    def restore(self, changelog: str, partition: int, store: PartitionStore) -> RestoreResult:
        """Apply the changelog records after the store's checkpoint; return what was read."""
        started = time.monotonic()
        records, checkpoint = 0, store.checkpoint()
        consumer = self._assign(changelog, partition, checkpoint)
        self._end_unended_transaction(consumer, changelog, partition, checkpoint)
        last_record = last_try = started
        try:
            while True:
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
                now = time.monotonic()
                if writes:
                    last_record = last_try = now
                elif now - last_record > self.timeout_s:
                    ends = self._ends(consumer, changelog, partition)
                    raise TimeoutError(f"restoring {changelog} [{partition}]: nothing read for {self.timeout_s:.0f}s "
                                       f"({self._where(checkpoint, ends)})")
                elif now - last_try > self.stall_s:
                    ends = self._ends(consumer, changelog, partition)
                    if isinstance(ends, str):  # the partition not served yet (a new topic, a loaded
                        # broker): a new consumer would not help
                        log.info("restoring %s [%d]: waiting for the partition (%s)", changelog, partition,
                                 self._where(checkpoint, ends))
                    else:
                        self.stalls += 1
                        log.warning("restoring %s [%d]: nothing read for %.0fs (%s); reading on with a new "
                                    "consumer", changelog, partition, now - last_try, self._where(checkpoint, ends))
                        self._close()
                        consumer = self._assign(changelog, partition, checkpoint)
                    last_try = time.monotonic()
        finally:
            if self._consumer is not None:
                self._consumer.unassign()
        return RestoreResult(partition, records, time.monotonic() - started, checkpoint)

    def _end_unended_transaction(self, consumer: Consumer, changelog: str, partition: int, checkpoint: int) -> None:
        """``settle`` the partition if its last stable offset is below the store's checkpoint."""
        if checkpoint == NO_CHECKPOINT:
            return
        for attempt in range(2):  # right after a commit its markers may still be on their way: look twice
            if attempt:
                time.sleep(MARKER_WAIT_S)
            ends = self._ends(consumer, changelog, partition)
            if isinstance(ends, str):
                log.debug("the last stable offset of %s [%d]: %s", changelog, partition, ends)
                return
            stable = ends.stable
            if stable > checkpoint:
                return
        ended = self._settle is not None and self._settle(changelog, partition, SETTLE_KEY)
        self.settled += ended
        log.warning("%s [%d]: its last stable offset (%d) is at or below this store's checkpoint (%d): a transaction "
                    "that committed never had its commit marker written to the partition (the broker lost it); %s",
                    changelog, partition, stable, checkpoint,
                    "ended it with a transaction of this worker's producer" if ended else
                    "it could not be ended here (the read waits; a restarted worker tries again)")

    def close(self) -> None:
        """Close the consumer (the restorer can be used again: it makes a new one)."""
        self._close()

    def _assign(self, changelog: str, partition: int, checkpoint: int) -> Consumer:
        if self._consumer is None:
            self._consumer = self._factory(self.settings)
        start = OFFSET_BEGINNING if checkpoint == NO_CHECKPOINT else checkpoint + 1
        self._consumer.assign([TopicPartition(changelog, partition, start)])
        return self._consumer

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.debug("closing a restore consumer: %r", exc)

    @staticmethod
    def _ends(consumer: Consumer, changelog: str, partition: int) -> PartitionEnds | str:
        """The partition's ends as the broker gives them (a read_committed consumer's ListOffsets
        gives the last stable offset), or why it could not (the partition not served yet)."""
        tp = TopicPartition(changelog, partition)
        try:
            _, stable = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            _, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException as exc:
            return exc.args[0].str()
        return PartitionEnds(stable, high)

    @staticmethod
    def _where(checkpoint: int, ends: PartitionEnds | str) -> str:
        """Where a read stands, for the log: the next offset to apply and the partition's ends."""
        next_offset = "the beginning" if checkpoint == NO_CHECKPOINT else f"offset {checkpoint + 1}"
        if isinstance(ends, str):
            return f"at {next_offset}; its end unknown: {ends}"
        return f"at {next_offset}; last stable offset {ends.stable}, high watermark {ends.high}"


__all__ = ["ChangelogRestorer", "MARKER_WAIT_S", "PartitionEnds", "RESTORE_BATCH", "RestoreResult", "SETTLE_KEY",
           "STALL_S", "restore_consumer"]

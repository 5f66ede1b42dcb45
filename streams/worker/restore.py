"""Bring partitions' local stores up to their changelogs before the partitions are processed.

A store's checkpoint is the changelog offset it reflects; restore reads the changelog partition
``read_committed`` from the record after it (records of a transaction still open or aborted are
never applied) and applies what it reads in batches, each with the offset it reaches. A store in
step with its changelog reads nothing: that is the skipped restore of Kafka Streams' checkpoint file.
A store whose checkpoint is not trusted (an unclean stop: see :mod:`streams.worker.evaluator`) was
removed before, and restore starts from the beginning.

**Where a restore ends.** Not at the partition's end as a ``read_committed`` read first sees it (its
last stable offset), but once every record written before the restore began is decided: the read
must reach the partition's high watermark of that moment. A worker killed mid-batch leaves its
transaction open on the changelog until the broker aborts it (the producer's transaction timeout,
checked every ``transaction.abort.timed.out.transaction.cleanup.interval.ms``); the partition's next
owner commits after it, and the last stable offset stays at the open transaction's first record
meanwhile. A restore that ended there would leave out the next owner's committed records. So a
restore that meets an open transaction waits for it to end (logged once, at info).

**Restores do not block the worker's group.** The worker's loop begins them when partitions are
assigned (:meth:`ChangelogRestorer.begin`), keeps the partitions' input paused, and moves them on
once per turn (:meth:`ChangelogRestorer.poll`) between its batches of the partitions it already
serves; a partition whose restore ended is resumed. A rebalance callback that waited instead (for an
open transaction, up to half a minute) would hold up every worker of the group in a rebalance that
came meanwhile, and stop this one's other partitions. :meth:`ChangelogRestorer.restore` reads one
partition to its end in one call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.kafka.admin import admin_client
from streams.kafka.settings import KafkaSettings
from streams.worker.store import NO_CHECKPOINT, PartitionStore

log = logging.getLogger("shadowcanary.restore")

RESTORE_BATCH = 10_000
#: How long a restore may read nothing, where the partition's end says there is something to read,
#: before it starts again with a new consumer.
STALL_S = 10.0
#: How often a restore that reads nothing asks where the partition's ends are (and how long it gives
#: a commit's markers before it takes a stable end below its checkpoint for one the broker lost).
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


@dataclass
class PartitionRestore:
    """Where one partition's restore stands."""

    changelog: str
    partition: int
    store: PartitionStore
    #: The last changelog offset applied to the store (``NO_CHECKPOINT``: none).
    checkpoint: int
    #: The partition's high watermark when the restore began: the read ends at or past it (None: the
    #: broker did not serve the partition yet; it is asked again).
    target: int | None
    started: float
    #: When a record was last read (the timeout counts from it).
    last_record: float
    #: When a record or the partition's end was last read (the stall watchdog counts from it).
    last_news: float
    #: When the partition's ends were last asked for while nothing came.
    last_asked: float
    records: int = 0
    #: A transaction holding the partition's stable end below the store's checkpoint was ended with
    #: one of this worker's producer (``settle``), or could not be: either way, once.
    settle_tried: bool = False
    #: The wait for an open transaction was logged.
    wait_logged: bool = False

    @property
    def next_offset(self) -> int | None:
        """The offset the read goes on from (None: the partition's beginning)."""
        return None if self.checkpoint == NO_CHECKPOINT else self.checkpoint + 1

    def topic_partition(self) -> TopicPartition:
        start = self.next_offset
        return TopicPartition(self.changelog, self.partition, OFFSET_BEGINNING if start is None else start)


def restore_consumer(settings: KafkaSettings) -> Consumer:
    """A consumer outside any group (it is assigned partitions explicitly), read_committed, that
    reports the end of each partition it reads."""
    return Consumer(settings.confluent_config(**{
        "group.id": f"shadowcanary.restore.{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        # A partition's end read below the restore's target (a commit's markers still on their way)
        # comes again with the next fetch that finds more: 100 ms rather than librdkafka's 500.
        "fetch.wait.max.ms": 100}))


class ChangelogRestorer:
    """Restores changelog partitions through one consumer (made anew when it stalls), many at once.

    :meth:`begin` starts a partition's restore; :meth:`poll` reads what has arrived and returns the
    restores that ended (see the module's docstring for where a restore ends); :meth:`cancel` drops
    one (its partition revoked). :meth:`restore` does all three for one partition, in one call.

    A read that brings neither a record nor the partition's end for ``stall_s``, from a partition the
    broker answers for and whose stable end is past the read, is logged with where it stands (its
    next offset, the partition's last stable offset and high watermark) and started again from the
    store's checkpoint with a new consumer (a second line of defence); a partition the broker does
    not serve yet, or whose stable end an open transaction holds back, is waited for. What was
    applied stays applied (each batch is written with the offset it reaches). A restore that reads
    no record for ``timeout_s``, however many consumers it tried, fails with :class:`TimeoutError`.

    A store whose checkpoint is past the partition's last stable offset (looked at ``MARKER_WAIT_S``
    after the read began, so a commit's markers have had time to land) either waits for another
    producer's open transaction or holds records of a transaction that committed (its commit
    returned, so they were applied) but whose commit marker never reached the partition: Kafka 4.3.1
    lost one when a broker shut down while sending markers (the coordinator logged the transaction
    complete; seen in the outage test), and the stable end stays there for good. ``settle`` (the
    worker's ``commit_tombstone``) commits a transaction of the worker's transactional id holding one
    tombstone on the partition: its marker ends the worker's own unended transaction as committed
    (another producer's it leaves to the broker's timeout), and the read goes on.

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
        self._restoring: dict[tuple[str, int], PartitionRestore] = {}
        self._admin: AdminClient | None = None

    # -- the worker's use: begin, poll, cancel ------------------------------------------------------
    def begin(self, changelog: str, partition: int, store: PartitionStore) -> None:
        """Start restoring ``store`` from ``changelog`` [``partition``] (after its checkpoint)."""
        now = time.monotonic()
        consumer = self._live_consumer()
        ends = self._ends(changelog, partition)
        restore = PartitionRestore(changelog, partition, store, store.checkpoint(),
                                   ends.high if isinstance(ends, PartitionEnds) else None,
                                   started=now, last_record=now, last_news=now, last_asked=now)
        self._restoring[(changelog, partition)] = restore
        consumer.incremental_assign([restore.topic_partition()])

    def restoring(self, changelog: str) -> set[int]:
        """The partitions of ``changelog`` whose restore has not ended."""
        return {partition for (topic, partition) in self._restoring if topic == changelog}

    def cancel(self, changelog: str, partition: int) -> None:
        """Stop restoring a partition (what was applied stays in its store). The last one cancelled
        closes the consumer (a rebalance cancels every restore): nothing it fetched for them is read
        when they begin again."""
        restore = self._restoring.pop((changelog, partition), None)
        if not self._restoring:
            self._close()
        elif restore is not None and self._consumer is not None:
            self._consumer.incremental_unassign([TopicPartition(changelog, partition)])

    def poll(self, timeout: float) -> list[RestoreResult]:
        """Read what has arrived (waiting up to ``timeout`` for it), apply it, and return the
        restores that ended."""
        if not self._restoring:
            return []
        consumer = self._live_consumer()
        writes: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        ends_read: dict[tuple[str, int], int] = {}
        for message in consumer.consume(RESTORE_BATCH, timeout):
            where = (message.topic(), message.partition())
            restore = self._restoring.get(where)
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                ends_read[where] = message.offset()
            elif restore is not None:  # (not a restore cancelled meanwhile)
                writes.setdefault(where, []).append((message.key(), message.value()))
                restore.checkpoint = message.offset()
        now = time.monotonic()
        for where, batch in writes.items():
            restore = self._restoring[where]
            restore.store.apply(batch, restore.checkpoint)
            restore.records += len(batch)
            restore.last_record = restore.last_news = now
        ended: list[RestoreResult] = []
        for where, end in ends_read.items():
            restore = self._restoring.get(where)
            if restore is None:
                continue
            restore.last_news = now
            if self._reached_target(restore, end):
                ended.append(self._end(restore))
        every = min(MARKER_WAIT_S, self.stall_s)
        for restore in list(self._restoring.values()):
            if now - restore.last_news > every and now - restore.last_asked > every:
                self._watch(restore, now)
        return ended

    def restore(self, changelog: str, partition: int, store: PartitionStore) -> RestoreResult:
        """Apply the changelog records after the store's checkpoint, to the partition's end as it
        was when the call began; return what was read."""
        self.begin(changelog, partition, store)
        while True:
            for result in self.poll(0.2):
                if result.partition == partition:
                    return result

    def close(self) -> None:
        """Close the consumer and drop every restore (the restorer can be used again)."""
        self._restoring.clear()
        self._close()

    # -- inside --------------------------------------------------------------------------------------
    def _reached_target(self, restore: PartitionRestore, end: int) -> bool:
        """A read_committed end of partition at ``end`` (the last stable offset then): the restore
        ended if that is at or past its target."""
        if restore.target is None:  # the partition was not served when the restore began
            ends = self._ends(restore.changelog, restore.partition)
            if isinstance(ends, str):
                return False
            restore.target = ends.high
        if end >= restore.target:
            return True
        self._log_wait(restore, end)
        return False

    @staticmethod
    def _log_wait(restore: PartitionRestore, stable: int) -> None:
        """Once per restore: it waits for a transaction open since ``stable`` to end."""
        if not restore.wait_logged:
            restore.wait_logged = True
            log.info("restoring %s [%d]: a transaction open since offset %d holds the partition's end back; "
                     "waiting for it to end (a worker that stopped mid-batch: the broker aborts its transaction "
                     "after its timeout) so as to read every record committed before offset %d",
                     restore.changelog, restore.partition, stable, restore.target)

    def _watch(self, restore: PartitionRestore, now: float) -> None:
        """A restore that read nothing for a while: why (the partition's ends), and what to do."""
        restore.last_asked = now
        ends = self._ends(restore.changelog, restore.partition)
        if now - restore.last_record > self.timeout_s:
            raise TimeoutError(f"restoring {restore.changelog} [{restore.partition}]: nothing read for "
                               f"{self.timeout_s:.0f}s ({self._where(restore, ends)})")
        if isinstance(ends, str):  # not served yet (a new topic, a loaded broker): a new consumer would not help
            if now - restore.last_news > self.stall_s:
                log.info("restoring %s [%d]: waiting for the partition (%s)", restore.changelog, restore.partition,
                         self._where(restore, ends))
                restore.last_news = now
            return
        if restore.target is None:
            restore.target = ends.high
        if ends.stable <= restore.checkpoint and not restore.settle_tried:
            self._end_unended_transaction(restore, ends)
        if ends.stable < max(restore.next_offset or 0, restore.target):
            self._log_wait(restore, ends.stable)  # its end comes as an end of partition
            return
        if now - restore.last_news > self.stall_s:
            self.stalls += 1
            log.warning("restoring %s [%d]: nothing read for %.0fs (%s); reading on with a new consumer",
                        restore.changelog, restore.partition, now - restore.last_news, self._where(restore, ends))
            self._close()
            self._live_consumer()
            for waiting in self._restoring.values():
                waiting.last_news = now

    def _end_unended_transaction(self, restore: PartitionRestore, ends: PartitionEnds) -> None:
        """``settle`` a partition whose last stable offset is at or below the store's checkpoint."""
        restore.settle_tried = True
        ended = self._settle is not None and self._settle(restore.changelog, restore.partition, SETTLE_KEY)
        self.settled += ended
        log.warning("%s [%d]: its last stable offset (%d) is at or below this store's checkpoint (%d): a transaction "
                    "never ended there (a commit whose marker the broker never wrote, or another producer's "
                    "transaction still open); %s", restore.changelog, restore.partition, ends.stable,
                    restore.checkpoint,
                    "committed one of this worker's producer, which ends its own" if ended else
                    "it could not be ended here (the read waits; a restarted worker tries again)")

    def _end(self, restore: PartitionRestore) -> RestoreResult:
        del self._restoring[(restore.changelog, restore.partition)]
        if self._consumer is not None:
            self._consumer.incremental_unassign([TopicPartition(restore.changelog, restore.partition)])
        return RestoreResult(restore.partition, restore.records, time.monotonic() - restore.started,
                             restore.checkpoint)

    def _live_consumer(self) -> Consumer:
        """The consumer, made (and given every restore still going, each from its checkpoint) if there
        is none."""
        if self._consumer is None:
            self._consumer = self._factory(self.settings)
            if self._restoring:
                self._consumer.incremental_assign([r.topic_partition() for r in self._restoring.values()])
        return self._consumer

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.debug("closing a restore consumer: %r", exc)

    def _ends(self, changelog: str, partition: int) -> PartitionEnds | str:
        """The partition's ends as the broker gives them (ListOffsets, read_committed for the last
        stable offset and read_uncommitted for the high watermark), or why it could not (the
        partition not served yet)."""
        if self._admin is None:
            self._admin = admin_client(self.settings)
        tp = TopicPartition(changelog, partition)
        ends = []
        try:
            for isolation in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
                future = self._admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation,
                                                  request_timeout=10)[tp]
                ends.append(future.result().offset)
        except KafkaException as exc:
            # A new client next time: after a broker restart this one kept sending the leader epoch
            # it knew and kept being refused ("Leader epoch is older than broker epoch").
            self._admin = None
            return exc.args[0].str()
        return PartitionEnds(*ends)

    @staticmethod
    def _where(restore: PartitionRestore, ends: PartitionEnds | str) -> str:
        """Where a read stands, for the log: the next offset to apply and the partition's ends."""
        next_offset = "the beginning" if restore.next_offset is None else f"offset {restore.next_offset}"
        if isinstance(ends, str):
            return f"at {next_offset}; its end unknown: {ends}"
        return f"at {next_offset}; last stable offset {ends.stable}, high watermark {ends.high}"


__all__ = ["ChangelogRestorer", "MARKER_WAIT_S", "PartitionEnds", "PartitionRestore", "RESTORE_BATCH",
           "RestoreResult", "SETTLE_KEY", "STALL_S", "restore_consumer"]

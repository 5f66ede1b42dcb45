"""The join as a stage of the batch loop: one :class:`evaluators.join.JoinPartition` per input
partition this worker owns, each over its own :class:`streams.worker.store.PartitionStore`.

Per batch and partition: the join applies the partition's records; the state it changed goes to the
changelog (``<prefix><app-id>-join-state-changelog``, compacted, one partition per input partition),
the windows it closed go to the partials topic as ``w/<partition>/<snapshot id>``, and the
partition's heartbeat ``h/<partition>`` (its stream time, exact counts and metric state) follows,
at most once per ``heartbeat_interval_s`` and once more when the partition is handed over, so one
merging owner can serve many partitions. All of it in the batch's transaction. (The internal topics'
names and keys: :mod:`schemas.internal_topics`.)

Idle sources: a source read to its end (librdkafka's watermarks for the partition, from its fetch
responses; asked of the broker only on a tick when it has none) and silent for ``idle_after`` stops
holding its partition's time back (:mod:`evaluators.idleness`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from evaluators.accumulators import closed_windows, evaluator_accumulator
from evaluators.idleness import SourceIdleness
from evaluators.join import Incoming, JoinConfig, JoinPartition, fence_after
from evaluators.merging import heartbeat_partial, snapshot_id
from evaluators.metrics import MetricsConfig
from evaluators.stage_clock import StageClock
from schemas.internal_topics import (
    JOIN_STATE,
    changelog_topic_name,
    heartbeat_key,
    partials_topic_name,
    window_key,
)
from schemas.topics import Topics
from streams.kafka.settings import KafkaSettings
from streams.worker.loop import INPUT_TOPICS, Record, Transaction
from streams.worker.restore import ChangelogRestorer
from streams.worker.store import PartitionStore

log = logging.getLogger("shadowcanary.join")

#: Short source codes kept in the join state with each element's origin (topic code + partition).
SOURCE_CODES = {"inference.requests": "q", "inference.responses": "s", "inference.labels": "l"}
def wall_ms() -> int:
    """The worker's clock as event times are compared with it (a client stamping events further
    ahead moves time only ``JoinConfig.max_future_skew_ms`` past it)."""
    return time.time_ns() // 1_000_000


def now_ms() -> int:
    """Processing time for idleness (monotonic: wall-clock steps must not make sources idle)."""
    return time.monotonic_ns() // 1_000_000


@dataclass
class PartitionWork:
    """What this worker keeps for one input partition it owns."""

    partition: int
    join: JoinPartition
    store: PartitionStore
    #: Input topic -> source name (topic code + partition), and the names in topic order.
    source_of: dict[str, str]
    idleness: SourceIdleness
    idle_used: set[str] = field(default_factory=set)
    #: Last end offset seen per source (librdkafka's watermarks).
    end_offsets: dict[str, int] = field(default_factory=dict)
    #: The consumer's position per source after the last turn: past the records that carry no event
    #: for the join (a transaction's commit marker, a dead letter), which the fence never reaches.
    read_to: dict[str, int] = field(default_factory=dict)
    #: Highest changelog offset this worker's writes reached (delivery reports): the checkpoint.
    changelog_offset: int = -1
    heartbeat_due: bool = False
    last_heartbeat: float = 0.0
    touched: bool = False

    @property
    def sources(self) -> list[str]:
        return list(self.source_of.values())

    def read_through(self, fence: dict[str, int]) -> dict[str, int]:
        """The last offset read per source: the join's ``fence``, or past it the consumer's position.

        A source written by a transactional producer (the ingestion bridge, Kafka Streams, any
        exactly-once pipeline) ends each transaction with a commit marker the consumer skips: the
        end offset is one past it, and a fence of applied events never reaches it. Without this, such
        a source is never caught up, never idle, and its windows wait for the next event."""
        out = dict(fence)
        for source, position in self.read_to.items():
            if position - 1 > out.get(source, -1):
                out[source] = position - 1
        return out

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is None and message.offset() > self.changelog_offset:
            self.changelog_offset = message.offset()


class JoinStage:
    def __init__(self, settings: KafkaSettings, topics: Topics, app_id: str, config: JoinConfig,
                 metrics: MetricsConfig, tables_dir: Path | None, run_id: str,
                 heartbeat_interval_s: float = 0.5, time_state: bool = False) -> None:
        """``tables_dir``: where the partitions' RocksDB databases live (None: in memory).
        ``time_state``: the clock also times every state read and write (about 1 µs an event), which
        it otherwise counts in "join" and "metrics"."""
        self.settings = settings
        self.topics = topics
        self.config = config
        self.run_id = run_id
        self.tables_dir = tables_dir
        self.heartbeat_interval_s = heartbeat_interval_s
        self.changelog = changelog_topic_name(topics, app_id)
        self.partials = partials_topic_name(topics)
        self.input_topics = [topics.name(n) for n in INPUT_TOPICS]
        self.codes = {topics.name(n): SOURCE_CODES[n] for n in INPUT_TOPICS}
        self.accumulator_from_state = evaluator_accumulator(metrics, config.settle_ms)
        self.work: dict[int, PartitionWork] = {}
        #: Commits a tombstone on a changelog partition in a transaction of the loop's producer (the
        #: loop's ``commit_tombstone``, set when the loop is built): a restore ends with it a
        #: transaction the broker left unended (:class:`streams.worker.restore.ChangelogRestorer`).
        self.commit_tombstone: Callable[[str, int, bytes], bool] | None = None
        #: Restores the stores of the partitions assigned (made at the first assignment).
        self.restorer: ChangelogRestorer | None = None
        #: The stores of assigned partitions still being restored (not in ``work`` yet).
        self.restoring_stores: dict[int, PartitionStore] = {}
        #: Events applied since start (for the progress line).
        self.events_processed = 0
        self.restored_records = 0
        #: Where the stage's time goes (the loop reads and exports it): "join", "metrics", "outputs"
        #: (changelog, partials, heartbeats), and with ``time_state`` "state read" (RocksDB and
        #: parsing) and "state write" (serializing).
        self.clock = StageClock()
        self.time_state = time_state

    # -- assignment ------------------------------------------------------------------------------
    def assigned(self, partitions: list[int]) -> None:
        """Begin restoring the partitions' stores (:meth:`restore_step` moves them on)."""
        for partition in partitions:
            if partition in self.work or partition in self.restoring_stores:
                continue
            store = self._open_store(partition)
            self.restoring_stores[partition] = store
            self._restorer().begin(self.changelog, partition, store)

    def restoring(self) -> set[int]:
        """The partitions assigned whose store is still being restored."""
        return set(self.restoring_stores)

    def restore_step(self, wait_s: float) -> list[int]:
        """Move the restores on (waiting up to ``wait_s`` for records); the partitions now ready."""
        if not self.restoring_stores or self.restorer is None:
            return []
        ready = []
        for result in self.restorer.poll(wait_s):
            partition = result.partition
            store = self.restoring_stores.pop(partition)
            self.restored_records += result.records
            if result.records:
                log.info("partition %d: restored %d changelog records in %.1fs", partition, result.records,
                         result.seconds)
            self.work[partition] = self._new_work(partition, store, result.checkpoint)
            ready.append(partition)
        if not self.restoring_stores:
            self.restorer.close()  # its consumer leaves until the next assignment
        return ready

    def revoked(self, partitions: list[int], transaction: Transaction | None) -> None:
        for partition in partitions:
            restoring = self.restoring_stores.pop(partition, None)
            if restoring is not None:
                self._restorer().cancel(self.changelog, partition)
                restoring.close()
            work = self.work.get(partition)
            if work is None:
                continue
            if transaction is not None and work.join.accumulated() is not None:
                self._send_heartbeat(work, transaction)  # serialized now: the store may close
            work.store.close()
            del self.work[partition]

    def _restorer(self) -> ChangelogRestorer:
        if self.restorer is None:
            self.restorer = ChangelogRestorer(self.settings, settle=self._settle)
        return self.restorer

    def _settle(self, changelog: str, partition: int, key: bytes) -> bool:
        return self.commit_tombstone is not None and self.commit_tombstone(changelog, partition, key)

    def _open_store(self, partition: int) -> PartitionStore:
        if self.tables_dir is None:
            return PartitionStore.in_memory()
        return PartitionStore.on_disk(self.tables_dir / f"{JOIN_STATE}-{partition}")

    def _new_work(self, partition: int, store: PartitionStore, checkpoint: int) -> PartitionWork:
        source_of = {topic: f"{code}{partition}" for topic, code in self.codes.items()}
        # The partition's own keys are spaced by its number, as the faust engine wrote them to the same
        # changelog: state a faust worker left is read, not misread.
        join = JoinPartition(store, self.config, self.run_id, self.accumulator_from_state, key_space=str(partition))
        join.clock = self.clock
        store.clock = self.clock if self.time_state else None
        work = PartitionWork(partition, join, store, source_of,
                             SourceIdleness(list(source_of.values()), self.config.idle_after_ms, now_ms()),
                             changelog_offset=checkpoint)
        join.last_state = join.partition_state()
        return work

    # -- batches ---------------------------------------------------------------------------------
    def process(self, partition: int, records: list[Record], transaction: Transaction) -> None:
        work = self.work[partition]
        source_of = work.source_of
        incoming = [Incoming(r.message, source_of[r.topic], r.offset) for r in records]
        work.idleness.arrived({item.source for item in incoming}, now_ms())
        self._apply(work, incoming, transaction)
        self.events_processed += len(records)

    def _apply(self, work: PartitionWork, incoming: list[Incoming], transaction: Transaction) -> None:
        idle: set[str] = set()
        silent = work.idleness.silent(now_ms())
        if silent:
            fence = work.read_through(fence_after(work.join.fence(), incoming))
            idle = work.idleness.idle(fence, work.end_offsets, now_ms())
        work.join.process(incoming, idle_sources=idle, sources=work.sources, now_ms=wall_ms())
        work.idle_used = idle
        work.touched = True
        partition = work.partition
        with self.clock.stage("outputs"):
            for window in closed_windows(work.join.accumulated()):
                sid = snapshot_id(window["model"], window["version"], window["role"], window["start"])
                transaction.produce(self.partials, window_key(partition, sid),
                                    orjson.dumps({"partition": partition, **window}))
            for key, value in work.store.pending_records():
                transaction.produce(self.changelog, key, value, partition=partition, on_delivery=work.delivered)
            work.heartbeat_due = True
            if time.monotonic() - work.last_heartbeat >= self.heartbeat_interval_s:
                self._send_heartbeat(work, transaction)

    def _send_heartbeat(self, work: PartitionWork, transaction: Transaction) -> None:
        partial = heartbeat_partial(work.partition, work.join.last_state, self.run_id)
        transaction.produce(self.partials, heartbeat_key(work.partition), orjson.dumps(partial))
        work.heartbeat_due = False
        work.last_heartbeat = time.monotonic()

    def tick(self, transaction: Transaction) -> None:
        """Move time on partitions whose sources fell silent since their last batch, and send the
        heartbeats held back by the interval."""
        now = now_ms()
        for work in list(self.work.values()):
            fence = work.read_through(work.join.fence())
            idle = work.idleness.idle(fence, work.end_offsets, now)
            if idle - work.idle_used:
                self._apply(work, [], transaction)
            elif work.heartbeat_due and time.monotonic() - work.last_heartbeat >= self.heartbeat_interval_s:
                self._send_heartbeat(work, transaction)

    def committed(self) -> None:
        for work in self.work.values():
            if work.touched:
                work.store.commit_local(work.changelog_offset)
                work.touched = False

    def aborted(self) -> None:
        for work in self.work.values():
            if work.touched:
                work.store.discard()
                work.join.last_state = work.join.partition_state()
                work.heartbeat_due = True
                work.touched = False

    # -- watermarks ------------------------------------------------------------------------------
    def observe(self, consumer: Consumer) -> None:
        """Each source's end offset as librdkafka last saw it (no round trip); asked of the broker
        for a source it has none for yet (once per call, short timeout)."""
        for work in self.work.values():
            for topic, source in work.source_of.items():
                tp = TopicPartition(topic, work.partition)
                try:
                    low, high = consumer.get_watermark_offsets(tp, cached=True)
                    if high < 0 and work.idleness.silent(now_ms()):
                        low, high = consumer.get_watermark_offsets(tp, timeout=1.0)
                except Exception as exc:  # the broker away: keep the last observation
                    log.debug("watermarks of %s [%d] not observed: %r", topic, work.partition, exc)
                    continue
                if high >= 0:
                    work.end_offsets[source] = high
            try:
                positions = consumer.position([TopicPartition(topic, work.partition) for topic in work.source_of])
            except Exception as exc:
                log.debug("positions of partition %d not read: %r", work.partition, exc)
                continue
            for tp in positions:
                if tp.offset >= 0:
                    work.read_to[work.source_of[tp.topic]] = tp.offset

    # -- views (read from other threads) ---------------------------------------------------------
    def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet applied per input topic partition this worker owns."""
        out = {}
        for work in list(self.work.values()):
            fence = work.read_through(work.join.fence())
            for topic, source in work.source_of.items():
                end = work.end_offsets.get(source)
                if end is not None:
                    out[(topic, work.partition)] = max(end - fence.get(source, -1) - 1, 0)
        return out


def remove_tables(tables_dir: Path) -> None:
    if tables_dir.exists():
        shutil.rmtree(tables_dir)

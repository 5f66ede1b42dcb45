"""The worker's consumer loop: batches from librdkafka, one Kafka transaction per batch.

Each turn:

1. ``consume(batch_size)`` from the subscribed input topics (``read_committed``; the range assignor,
   so partition p of co-partitioned topics goes to one worker).
2. Every record is decoded (:func:`schemas.dead_letter.decode_or_dead_letter`); a bad one becomes a
   dead letter *in the batch's transaction*; good ones are grouped by partition and handed to the
   :class:`Stage`, which produces its outputs (changelog records, partials) in the same transaction.
3. The input offsets go in with ``send_offsets_to_transaction`` (with the consumer's group metadata,
   so a zombie of an older group generation is fenced), and the transaction commits.
4. Only then does the stage apply the batch to its local state (:meth:`Stage.committed`) and do the
   counters move. If the transaction aborts, the stage forgets the batch (:meth:`Stage.aborted`) and
   the consumer goes back to the committed offsets: the batch is read again.

Checkpoint order, written down: outputs and changelog -> offsets -> commit -> local state. A worker
killed at any point leaves either all of a batch (outputs, state changes, offsets) or none of it.

When a transaction cannot be finished (a step still failing after ``LoopOptions.retry_patience_s``,
a call that does not return at all, a fatal producer error, an abort that fails), its outcome is not
known here, and a producer left that way after a broker outage can stay stuck for good (KAFKA-19925;
``send_offsets_to_transaction`` blocking past its timeout: librdkafka #5456 and #5511, see
:mod:`streams.worker.deadline`): the loop **restarts its producer**
(:meth:`BatchLoop._restart_producer`). The new producer's ``init_transactions`` under the same
transactional id makes the coordinator settle the old transaction (committed if it was prepared,
else aborted) before it answers; then every partition this worker holds is restored from its
changelog after its local checkpoint (which picks up the uncertain batch exactly when it
committed), and the consumer goes back to the committed offsets (read with ``require_stable``, so
they are settled too). Local state, changelog and offsets agree again, whatever became of the batch.

Rebalances run inside ``consume()``, between batches: nothing is in flight when partitions go
(:meth:`Stage.revoked` may still publish, in a transaction of its own). A partition assigned begins
restoring its state (:meth:`Stage.assigned`) and stays paused until it is restored: each turn moves
restores on (:meth:`Stage.restore_step`) before its batch, then resumes the partitions restored from
their committed offsets. The rebalance callback never waits for a restore (one may wait up to half a
minute for a killed worker's open transaction: in the callback it would hold up the group's next
rebalance and this worker's other partitions). A consumer that lost its
partitions and stays out of its group (librdkafka, after a broker restart) is replaced
(:mod:`streams.worker.membership`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from evaluators.stage_clock import StageClock
from schemas.catalog import model_for_topic
from schemas.dead_letter import DeadLetter, decode_or_dead_letter
from schemas.fast_codec import Event, decode_fast
from schemas.topics import DEAD_LETTER_MAX_BYTES, Topics
from streams.kafka.settings import KafkaSettings
from streams.worker import DEFAULT_BATCH_SIZE
from streams.worker.deadline import CallStuck, call_with_deadline
from streams.worker.membership import MembershipWatch
from streams.worker.outage import ClusterMisconfigured, OutageLog
from streams.worker.telemetry import DEAD_LETTERS, RECORDS_INGESTED, STAGE_SECONDS

log = logging.getLogger("shadowcanary.worker")

#: Contract names of the co-partitioned input topics the join reads.
INPUT_TOPICS = ("inference.requests", "inference.responses", "inference.labels")


class Record(NamedTuple):
    """A decoded input record: what the loop's decoder made of it (the join: its contract message,
    the hot path's Struct; a bridge: the contract events it stands for) and where it was read. (A
    named tuple: one is made per record, and a frozen dataclass's ``__init__`` took about 1 µs.)"""

    topic: str
    partition: int
    offset: int
    message: Event | Any


@dataclass
class LoopOptions:
    app_id: str = "shadowcanary-evaluator"
    #: Stable per worker (its state folder keeps it): a restarted worker fences its own predecessor.
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    batch_size: int = DEFAULT_BATCH_SIZE
    #: How long ``consume`` waits for a batch to fill.
    batch_wait_s: float = 0.1
    #: How often :meth:`Stage.tick` runs (idle partitions, heartbeats due) at least.
    tick_s: float = 0.25
    #: Bounds the wait for a killed worker's open transaction (the new owner waits for it to abort).
    transaction_timeout_ms: int = 15_000
    #: Timeout of one transactional call (retried within ``retry_patience_s``).
    commit_timeout_s: float = 10.0
    #: How long a transactional step is retried before the transaction is settled another way.
    retry_patience_s: float = 20.0
    #: How much longer than ``commit_timeout_s`` one transactional call may take before it is given
    #: up with its producer (librdkafka can block past its own timeout: see streams.worker.deadline).
    call_grace_s: float = 10.0
    #: What the loop runs, in its transactional id (``<app_id>.<role>.<worker_id>``).
    role: str = "join"
    #: Partition p of every input topic must be held by one worker (the join); a bridge reads
    #: topics that need not be co-partitioned.
    co_partitioned: bool = True
    #: Settings of the transactional producer beyond the loop's own (a bridge writing the
    #: contract's topics by key: the contract's murmur2 partitioner).
    producer_overrides: dict[str, Any] = field(default_factory=dict)


class Transaction:
    """The batch's transaction, begun on the first write (a batch that writes nothing and has no
    offsets to commit costs no round trip)."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.open = False

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: list[tuple[str, bytes]] | None = None,
                on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
        self.begin()
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)

    def begin(self) -> None:
        """Begin the transaction unless it is open (a batch with offsets but no output needs one too)."""
        if not self.open:
            self.producer.begin_transaction()
            self.open = True


#: Turns a consumed record (with its topic, partition and offset, read once by the loop) into what the
#: stage processes, or a dead letter: ``(payload, None)`` or ``(None, letter)``; never raises.
RecordDecoder = Callable[[Message, str, int, int], tuple[Any, DeadLetter | None]]


class Stage(Protocol):
    """What the loop drives (the join): all its outputs go through the transaction it is given. A
    stage may also keep a ``clock`` (:class:`~evaluators.stage_clock.StageClock`): the loop then
    charges its own stages to it too, and exports both."""

    def assigned(self, partitions: list[int]) -> None:
        """Partitions taken on: begin restoring their state (no record of theirs is processed before
        it is; :meth:`restore_step` moves restores on)."""

    def restoring(self) -> set[int]:
        """Partitions assigned whose state is still being restored (the loop keeps them paused)."""

    def restore_step(self, wait_s: float) -> list[int]:
        """Move restores on, waiting up to ``wait_s``; the partitions whose state is now restored."""

    def revoked(self, partitions: list[int], transaction: Transaction | None) -> None:
        """Partitions handed over (``transaction`` None: lost, nothing may be written for them)."""

    def process(self, partition: int, records: list[Record], transaction: Transaction) -> None:
        """One partition's records of the batch."""

    def tick(self, transaction: Transaction) -> None:
        """Called at least every ``tick_s``, between batches: time-driven work."""

    def committed(self) -> None:
        """The transaction committed: apply the batch to local state."""

    def aborted(self) -> None:
        """The transaction aborted: forget the batch."""

    def observe(self, consumer: Consumer) -> None:
        """After each turn, in the loop's thread: read what it needs of the consumer (watermarks)."""


#: How the log line of an assignment begins (tests read the assignments from the workers' logs).
ASSIGNMENT_PREFIX = "assignment: "


def describe_assignment(tps: Sequence[TopicPartition], contract_name: dict[str, str]) -> str:
    """``inference.labels=[0, 1] inference.requests=[0, 1] ...``: the partitions assigned per topic.

    >>> describe_assignment([TopicPartition("x.inference.labels", 1), TopicPartition("x.inference.labels", 0)],
    ...                     {"x.inference.labels": "inference.labels"})
    'inference.labels=[0, 1]'
    """
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in tps:
        by_topic[contract_name.get(tp.topic, tp.topic)].append(tp.partition)
    return " ".join(f"{topic}={sorted(parts)}" for topic, parts in sorted(by_topic.items()))


class BatchLoop:
    """The loop over ``input_topics`` (contract names), or over ``external_topics`` (full names; a
    name starting with ``^`` is a regular expression) read with ``decoder``."""

    def __init__(self, settings: KafkaSettings, topics: Topics, stage: Stage, options: LoopOptions,
                 input_topics: Sequence[str] = INPUT_TOPICS, external_topics: Sequence[str] = (),
                 decoder: RecordDecoder | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.stage = stage
        self.options = options
        self.outage = OutageLog()
        if external_topics:
            self.contract_name = {name: name for name in external_topics}
            self.models: dict[str, Any] = {}
        else:
            self.contract_name = {topics.name(n): n for n in input_topics}
            self.models = {topics.name(n): model_for_topic(n) for n in input_topics}
        self.subscription = list(self.contract_name)
        self.decode: RecordDecoder = decoder or self._decode_contract
        # (a pattern's topics get theirs when their first records commit)
        self._ingested = {full: RECORDS_INGESTED.labels(n) for full, n in self.contract_name.items()
                          if not full.startswith("^")}
        #: Records applied (decoded or dead-lettered, committed) since start.
        self.records_done = 0
        self.batches_done = 0
        #: ``time.perf_counter()`` when the first batch with records arrived (benchmarks).
        self.first_batch_at: float | None = None
        #: Input partitions this worker holds (restored, so their records may be processed).
        self.owned: set[int] = set()
        #: The same, per topic: a record is processed only if its topic's partition is held here.
        self.owned_inputs: set[tuple[str, int]] = set()
        self.consumer = self._new_consumer()
        #: Notices the consumer out of its group for good (:mod:`streams.worker.membership`).
        self.membership = MembershipWatch(settings, options.app_id)
        #: Times the consumer was replaced because it stayed out of its group.
        self.consumer_replacements = 0
        self.producer = self._new_producer()
        #: Times the producer was restarted because a transaction could not be finished.
        self.producer_restarts = 0
        self._stop: threading.Event | None = None
        self._initialised = False
        self._last_tick = 0.0
        #: When the current turn began (``time.monotonic()``): a turn stuck in one call shows here.
        self.turn_began = time.monotonic()
        #: Where the loop's time goes: its own stages (consume, decode, stage, transaction, local state,
        #: tick) and the stage's, if it keeps a clock (the join's: join, metrics, state, outputs).
        self.clock: StageClock = getattr(stage, "clock", None) or StageClock()
        #: The clock's seconds per stage since start (``clock`` is emptied into the exported counter).
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self._stage_counters: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def _new_consumer(self) -> Consumer:
        return Consumer(self.settings.confluent_config(**{
            "group.id": self.options.app_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", "partition.assignment.strategy": "range",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000,
            "fetch.wait.max.ms": 100, "error_cb": self.outage.error}))

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.subscription, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _new_producer(self) -> Producer:
        return Producer(self.settings.confluent_config(**{
            "transactional.id": f"{self.options.app_id}.{self.options.role}.{self.options.worker_id}",
            "enable.idempotence": True, "transaction.timeout.ms": self.options.transaction_timeout_ms, "linger.ms": 5,
            "message.max.bytes": DEAD_LETTER_MAX_BYTES, "error_cb": self.outage.error,
            **self.options.producer_overrides}))

    def _init_transactions(self) -> None:
        """Fence any older instance of this transactional id; its open transaction is settled first.
        Retried for as long as it takes (nothing can be written before it), until the loop stops; a
        producer whose call does not return is replaced."""
        while True:
            try:
                self._transactional("initialise transactions", lambda: self.producer.init_transactions(10),
                                    until_done=True)
                return
            except CallStuck as exc:
                log.warning("%s; trying again with a new producer", exc)
                self.producer = self._new_producer()

    def start(self) -> None:
        """Fence this worker's predecessor (same transactional id) and join the group."""
        self._init_transactions()
        self._initialised = True
        self._subscribe()

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set, then leave the group cleanly."""
        self._stop = stop
        if not self._initialised:
            self.start()
        try:
            while not stop.is_set():
                self.turn()
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.consumer.close()  # revokes (a last heartbeat per partition) and leaves the group
        finally:
            self.producer.flush(10)

    def turn(self) -> None:
        """One batch (possibly empty), then the stage's tick if it is due."""
        self.turn_began = time.monotonic()
        if self.outage.fatal is not None:
            raise self.outage.fatal
        self.outage.settle()
        self._restore_step()
        charged, asked = self.clock.total(), time.perf_counter()
        messages = self.consumer.consume(self.options.batch_size, self.options.batch_wait_s)
        if messages:  # a wait that brought nothing is idleness, not consuming
            # (less what rebalance callbacks inside the call charged to their own stages)
            self.clock.add("consume", time.perf_counter() - asked - (self.clock.total() - charged))
            if self.first_batch_at is None:
                self.first_batch_at = time.perf_counter()
            self.handle(messages)
        now = time.monotonic()
        if now - self._last_tick >= self.options.tick_s:
            self._last_tick = now
            transaction = Transaction(self.producer)
            with self.clock.stage("tick"):
                try:
                    self.stage.tick(transaction)
                except KafkaException as exc:
                    self._abort(exc.args[0], [])
                else:
                    self._finish(transaction, [])
        self.stage.observe(self.consumer)
        self._export_stage_seconds()
        if self.membership.out_for_good(self.consumer, bool(self.owned)):
            self._replace_consumer()

    def _restore_step(self) -> None:
        """Move the stage's restores on (waiting a little only when no partition is being served) and
        resume the partitions restored, from their committed offsets (read stable: a transaction of
        their last owner still open holds them back)."""
        restoring = self.stage.restoring()
        if not restoring:
            return
        with self.clock.stage("restore"):
            ready = set(self.stage.restore_step(0.0 if self.owned - restoring else self.options.batch_wait_s))
        if ready:
            tps = [tp for tp in self.consumer.assignment() if tp.partition in ready]
            self._rewind(tps)
            self.consumer.resume(tps)
            self.owned_inputs |= {(tp.topic, tp.partition) for tp in tps}

    def _pause_restoring(self, tps: list[TopicPartition]) -> None:
        """Pause the partitions of ``tps`` the stage is restoring: their records wait (and any read
        before is not processed: they are read again from the committed offsets when resumed)."""
        restoring = self.stage.restoring()
        paused = [tp for tp in tps if tp.partition in restoring]
        if paused:
            self.consumer.pause(paused)
            self.owned_inputs -= {(tp.topic, tp.partition) for tp in paused}

    def _replace_consumer(self) -> None:
        """A consumer out of its group for good (:mod:`streams.worker.membership`): a new one joins.
        It holds no partition, so nothing is handed over; the old one is closed in a thread of its
        own and left there if closing blocks."""
        self.consumer_replacements += 1
        log.warning("the consumer has been out of group %s for %.0fs and is not joining it again (librdkafka "
                    "can stay so after a broker restart); a new consumer joins", self.options.app_id,
                    self.membership.patience_s)
        old, self.consumer = self.consumer, self._new_consumer()
        try:
            call_with_deadline(old.close, self.options.call_grace_s, "closing the consumer left out of its group")
        except (CallStuck, KafkaException, RuntimeError) as exc:
            log.debug("closing the consumer left out of its group: %r", exc)
        self._subscribe()
        self.membership.replaced()

    def _export_stage_seconds(self) -> None:
        for stage, seconds in self.clock.take().items():
            counter = self._stage_counters.get(stage)
            if counter is None:
                counter = self._stage_counters[stage] = STAGE_SECONDS.labels(stage)
            counter.inc(seconds)
            self.stage_seconds[stage] += seconds

    # -- a batch ---------------------------------------------------------------------------------
    def handle(self, messages: list[Message]) -> None:
        transaction = Transaction(self.producer)
        by_partition: dict[int, list[Record]] = defaultdict(list)
        positions: dict[tuple[str, int], int] = {}
        ingested: dict[str, int] = defaultdict(int)
        dead: dict[tuple[str, str], int] = defaultdict(int)
        letters: list[DeadLetter] = []
        with self.clock.stage("decode"):
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        self.outage.error(error)
                    continue
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if (topic, partition) not in self.owned_inputs:
                    continue  # fetched before its partition was lost or revoked: its next owner reads it
                positions[(topic, partition)] = offset + 1
                decoded, letter = self.decode(message, topic, partition, offset)
                if letter is not None:
                    letters.append(letter)
                    dead[(self.contract_name.get(topic, topic), letter.reason)] += 1
                else:
                    ingested[topic] += 1
                    by_partition[partition].append(Record(topic, partition, offset, decoded))
        if not positions:
            return  # only errors (the broker away, an end of partition): nothing read
        # (records read say nothing of the broker now: librdkafka may have fetched them before an
        # outage; the batch's transactional calls tell the outage log)
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]
        try:
            with self.clock.stage("stage"):
                for letter in letters:
                    transaction.produce(self.topics.dlq, letter.key, letter.value, headers=letter.headers())
                for partition, records in by_partition.items():
                    self.stage.process(partition, records, transaction)
        except KafkaException as exc:  # the producer refused a record: the batch cannot commit
            committed = self._abort(exc.args[0], offsets)
        else:
            committed = self._finish(transaction, offsets)
        if committed:
            for topic, n in ingested.items():
                counter = self._ingested.get(topic)
                if counter is None:  # a topic matched by a pattern
                    counter = self._ingested[topic] = RECORDS_INGESTED.labels(topic)
                counter.inc(n)
            for (topic, reason), n in dead.items():
                DEAD_LETTERS.labels(topic, reason).inc(n)
            self.records_done += len(messages)
            self.batches_done += 1

    def _decode_contract(self, message: Message, topic: str, partition: int,
                         offset: int) -> tuple[Any, DeadLetter | None]:
        return decode_or_dead_letter(self.models[topic], message.value(), message.key(), topic, partition, offset,
                                     decode_fast)

    def _finish(self, transaction: Transaction, offsets: list[TopicPartition]) -> bool:
        """Commit the transaction (with ``offsets``); True when it committed.

        Each step is retried while it fails with a retriable error (the broker away), for
        ``LoopOptions.retry_patience_s`` at most. A failure before the commit, or a commit refused as
        abortable, aborts: the stage forgets the batch and the consumer rewinds to the committed
        offsets (so the batch is read again, by this worker or by the partitions' next owner). A
        commit whose outcome stays unknown, a call that does not return (:class:`CallStuck`) and
        any fatal error restart the producer (:meth:`_restart_producer`)."""
        if not transaction.open and not offsets:
            return True
        with self.clock.stage("transaction"):
            committed = self._commit(transaction, offsets)
        if committed:
            with self.clock.stage("local state"):
                self.stage.committed()
        return committed

    def _commit(self, transaction: Transaction, offsets: list[TopicPartition]) -> bool:
        """``_finish``'s transaction: True when it committed (the stage's local state not yet written)."""
        timeout = self.options.commit_timeout_s
        try:
            transaction.begin()
            if offsets:
                self._transactional("add the batch's offsets to its transaction",
                                    lambda: self.producer.send_offsets_to_transaction(
                                        offsets, self.consumer.consumer_group_metadata(), timeout))
        except KafkaException as exc:
            return self._abort(exc.args[0], offsets)
        except CallStuck as exc:
            self._restart_producer(str(exc))
            return False
        try:
            self._transactional("commit the batch", lambda: self.producer.commit_transaction(timeout))
        except KafkaException as exc:
            error = exc.args[0]
            if error.txn_requires_abort():
                return self._abort(error, offsets)
            self._restart_producer(f"the commit of a batch failed: {error.str()}")
            return False
        except CallStuck as exc:
            self._restart_producer(str(exc))
            return False
        self.producer.poll(0)  # delivery reports of the batch: the changelog offsets it reached
        return True

    def _abort(self, error: KafkaError, offsets: list[TopicPartition]) -> bool:
        """Abort the open transaction (nothing of it committed); False, for ``_finish``."""
        if error.fatal():
            self._restart_producer(error.str())
            return False
        log.warning("batch aborted (%s); reading it again", error.str())
        try:
            self._transactional("abort the batch",
                                lambda: self.producer.abort_transaction(self.options.commit_timeout_s))
        except KafkaException as exc:
            self._restart_producer(f"the abort of a batch failed: {exc.args[0].str()}")
            return False
        except CallStuck as exc:
            self._restart_producer(str(exc))
            return False
        self.stage.aborted()
        self._rewind([TopicPartition(tp.topic, tp.partition) for tp in offsets])
        return False

    def _restart_producer(self, why: str) -> None:
        """A transaction whose outcome is unknown here, or a producer that cannot go on: settle it
        through a new producer and bring local state and positions back in line with what committed.

        The new producer's ``init_transactions`` (same transactional id) returns once the
        coordinator has settled the old producer's transaction; each partition held is then closed
        and restored from its changelog after its local checkpoint (local state is written only
        after a commit, so it is never ahead), and the consumer seeks to the committed offsets."""
        if self.outage.fatal is not None:  # a refusal (credentials, ACLs): no restart will help
            raise self.outage.fatal
        self.producer_restarts += 1
        log.warning("restarting the transactional producer (%s); the partitions it held are restored "
                    "from their changelogs", why)
        old, self.producer = self.producer, self._new_producer()
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
        except (KafkaException, RuntimeError) as exc:
            log.debug("purging the old producer: %r", exc)
        # Dropped here (a call stuck in it keeps it alive in its thread): its writes are fenced by
        # the new producer's epoch anyway.
        del old
        self._init_transactions()
        held = sorted(self.owned)
        self.stage.revoked(held, None)
        self.stage.assigned(held)
        assignment = self.consumer.assignment()
        self._pause_restoring(assignment)
        self._rewind([TopicPartition(tp.topic, tp.partition) for tp in assignment])

    def commit_tombstone(self, topic: str, partition: int, key: bytes) -> bool:
        """Commit a transaction of this loop's producer holding one tombstone (``key``) on ``topic``
        [``partition``]; True if it committed. Its commit marker also ends, as committed, a
        transaction of this producer's id that the partition never saw ended
        (:class:`streams.worker.restore.ChangelogRestorer` uses it).

        It runs inside a restore, so it never restarts the producer (which restores): a failure is
        logged, the transaction aborted if it can be, and False returned; the loop's next
        transaction meets whatever is wrong with the producer and settles it the usual way."""
        timeout = self.options.commit_timeout_s
        try:
            Transaction(self.producer).produce(topic, key, None, partition=partition)  # begins it
            self._transactional("commit a transaction settling a changelog partition",
                                lambda: self.producer.commit_transaction(timeout))
            return True
        except (KafkaException, CallStuck) as exc:
            log.warning("a transaction settling %s [%d] failed: %s", topic, partition, exc)
            try:
                self.producer.abort_transaction(timeout)
            except KafkaException as abort_error:
                log.debug("aborting it: %r", abort_error)
            return False

    def _rewind(self, partitions: list[TopicPartition]) -> None:
        """Seek the partitions still assigned here back to their committed offsets."""
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        partitions = [tp for tp in partitions if (tp.topic, tp.partition) in assigned]
        if not partitions:
            return
        committed: list[TopicPartition] = []
        self._retrying("read the committed offsets", lambda: committed.extend(self.consumer.committed(partitions, 30)))
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING  # nothing committed yet: from the beginning (auto.offset.reset)
            self.consumer.seek(tp)

    def _transactional(self, what: str, call: Callable[[], Any], until_done: bool = False) -> None:
        """A transactional producer call, retried (``_retrying``), each attempt given
        ``commit_timeout_s`` plus ``call_grace_s`` to return (:mod:`streams.worker.deadline`): a call
        still running then raises :class:`CallStuck`, and its producer must be replaced."""
        deadline = self.options.commit_timeout_s + self.options.call_grace_s
        self._retrying(what, lambda: call_with_deadline(call, deadline, what), until_done)

    def _retrying(self, what: str, call: Callable[[], Any], until_done: bool = False) -> None:
        """``call`` again while it fails with a retriable error (the broker away), logged as one
        outage, for ``LoopOptions.retry_patience_s`` at most (``until_done``: until it succeeds or the
        loop is stopped); then the last error is raised, and the caller settles the transaction
        another way (a group rebalancing waits for this worker's consumer, which is not polled
        meanwhile)."""
        started = time.monotonic()
        while True:
            try:
                asked = self.outage.clock()
                call()
                self.outage.working(since=asked)
                return
            except KafkaException as exc:
                error = exc.args[0]
                out_of_patience = not until_done and time.monotonic() - started > self.options.retry_patience_s
                stopping = self._stop is not None and self._stop.is_set()
                if not error.retriable() or out_of_patience or stopping:
                    raise
                self.outage.error(KafkaError(KafkaError._TRANSPORT, f"{what}: {error.str()}"))
                if self.outage.fatal is not None:
                    raise self.outage.fatal from None
                time.sleep(0.5)

    # -- rebalance -------------------------------------------------------------------------------
    def _partitions(self, tps: list[TopicPartition]) -> list[int]:
        return sorted({tp.partition for tp in tps})

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if consumer is not self.consumer:  # a replaced consumer's (see _replace_consumer)
            return
        partitions = self._partitions(tps)
        log.info("%s%s", ASSIGNMENT_PREFIX, describe_assignment(tps, self.contract_name))
        split = [p for p in partitions
                 if {tp.topic for tp in tps if tp.partition == p} != set(self.contract_name)]
        if split and self.options.co_partitioned:
            # The range assignor gives partition p of every input topic to one member; a group
            # member with another strategy (or topics not co-partitioned) would break the join.
            log.error("partitions %s of the input topics are not all assigned here: the join needs the "
                      "three inference topics co-partitioned and every worker of the group on the range "
                      "assignor", split)
        self.stage.assigned(partitions)
        self.owned |= set(partitions)
        self.owned_inputs |= {(tp.topic, tp.partition) for tp in tps}
        consumer.assign(tps)
        self._pause_restoring(tps)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return
        partitions = self._partitions(tps)
        log.info("revoking partitions %s", partitions)
        transaction = Transaction(self.producer)
        try:
            self.stage.revoked(partitions, transaction)  # their last heartbeats; their state closes
        except KafkaException as exc:  # the last heartbeat is a courtesy: the next owner sends its own
            log.warning("last heartbeats of %s not sent: %s", partitions, exc)
            self.stage.revoked(partitions, None)
        self.owned -= set(partitions)  # before the commit: a producer restart restores only what stays
        self.owned_inputs -= {(tp.topic, tp.partition) for tp in tps}
        self._finish(transaction, [])

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return
        partitions = self._partitions(tps)
        log.warning("partitions %s lost (this worker left the group without handing them over)", partitions)
        self.stage.revoked(partitions, None)
        self.owned -= set(partitions)
        self.owned_inputs -= {(tp.topic, tp.partition) for tp in tps}


__all__ = ["ASSIGNMENT_PREFIX", "BatchLoop", "ClusterMisconfigured", "INPUT_TOPICS", "LoopOptions", "Record",
           "RecordDecoder", "Stage", "Transaction"]

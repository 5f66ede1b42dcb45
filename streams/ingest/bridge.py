"""The ingestion bridge: a serving tool's log topics in, the contract's requests and responses out,
exactly once (``shadowcanary ingest``).

It runs on the worker's :class:`~streams.worker.loop.BatchLoop`: each batch of log records is
translated (:class:`evaluators.ingest.translate.Translator`), and the contract events, the dead
letters of the records that cannot be read and the input offsets commit in one Kafka transaction.
A bridge killed at any point leaves each record's events written once or not at all; the next
owner of its partitions reads on from the committed offsets. It holds no state, so bridges scale
with the log topics' partitions (one consumer group, any number of members).

Events are keyed by request id with the contract's murmur2 partitioner, so a request's events land
in the same partition of the co-partitioned inference topics as any other producer's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter

from evaluators.ingest.errors import BadRecord
from evaluators.ingest.translate import ExternalRecord, Translator
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from schemas.ingest import IngestMapping
from schemas.topics import Topics
from streams.kafka.producer import PRODUCER_DEFAULTS
from streams.kafka.settings import KafkaSettings
from streams.worker.loop import BatchLoop, LoopOptions, Record, Transaction

log = logging.getLogger("shadowcanary.ingest")

EVENTS_WRITTEN = Counter(
    "shadowcanary_ingest_events",
    "Contract events an ingestion bridge wrote (committed), by source and kind.",
    ["source", "kind"],
)


def decoder_for(translator: Translator):
    """The loop's decoder: a record's contract events, or its dead letter with the reason."""

    def decode(message: Message, topic: str, partition: int, offset: int) -> tuple[Any, DeadLetter | None]:
        timestamp_type, timestamp = message.timestamp()
        key, value = message.key(), message.value()
        record = ExternalRecord(topic, key, value, message.headers(),
                                timestamp if timestamp_type and timestamp >= 0 else None)
        try:
            return translator.translate(record), None
        except BadRecord as exc:
            return None, DeadLetter(key, value, topic, partition, offset, exc.reason, exc.detail)
    return decode


#: How often a bridge logs what it has done (records read, events written, dead letters).
PROGRESS_EVERY_S = 30.0


@dataclass
class BridgeStage:
    """Writes each record's contract events in the batch's transaction; counts them once committed,
    and says so in the log every ``progress_every_s``."""

    topics: Topics
    source: str
    progress_every_s: float = PROGRESS_EVERY_S
    #: Records read so far (the loop's count, dead letters included); set by :func:`build_bridge`.
    records_read: Callable[[], int] = lambda: 0
    #: Events written since start, by kind (committed), and the records they came from.
    written: Tally = field(default_factory=Tally)
    translated: int = 0
    _pending: Tally = field(default_factory=Tally)
    _pending_records: int = 0
    _logged_at: float = field(default_factory=time.monotonic)

    def assigned(self, partitions: list[int]) -> None:
        pass  # no state to restore

    def restoring(self) -> set[int]:
        return set()

    def restore_step(self, wait_s: float) -> list[int]:
        return []

    def revoked(self, partitions: list[int], transaction: Transaction | None) -> None:
        pass

    def process(self, partition: int, records: list[Record], transaction: Transaction) -> None:
        self._pending_records += len(records)
        for record in records:
            for event in record.message:
                topic = self.topics.requests if event.kind == "request" else self.topics.responses
                transaction.produce(topic, event.request_id.encode(), encode(event))
                self._pending[event.kind] += 1

    def tick(self, transaction: Transaction) -> None:
        now = time.monotonic()
        if now - self._logged_at >= self.progress_every_s:
            self._logged_at = now
            log.info("%s", self.progress_line())

    def progress_line(self, what: str = "ingest progress") -> str:
        read = self.records_read()
        return (f"{what}: {read:,} records read, {self.written['request']:,} requests and "
                f"{self.written['response']:,} responses written, {read - self.translated:,} dead letters")

    def committed(self) -> None:
        for kind, n in self._pending.items():
            EVENTS_WRITTEN.labels(self.source, kind).inc(n)
        self.written.update(self._pending)
        self.translated += self._pending_records
        self._pending.clear()
        self._pending_records = 0

    def aborted(self) -> None:
        self._pending.clear()
        self._pending_records = 0

    def observe(self, consumer: Any) -> None:
        pass


def build_bridge(settings: KafkaSettings, mapping: IngestMapping, input_topics: Sequence[str], app_id: str,
                 instance_id: str | None = None, batch_size: int = 2000) -> BatchLoop:
    """A bridge's loop over ``input_topics`` (``^`` starts a regular expression) in group ``app_id``."""
    topics = Topics(settings.topic_prefix)
    options = LoopOptions(app_id=app_id, worker_id=instance_id or uuid.uuid4().hex[:12], batch_size=batch_size,
                          role="ingest", co_partitioned=False,
                          producer_overrides={"partitioner": PRODUCER_DEFAULTS["partitioner"]})
    stage = BridgeStage(topics, mapping.source)
    loop = BatchLoop(settings, topics, stage, options, external_topics=list(input_topics),
                     decoder=decoder_for(Translator(mapping)))
    stage.records_read = lambda: loop.records_done
    return loop


__all__ = ["BridgeStage", "EVENTS_WRITTEN", "build_bridge", "decoder_for"]

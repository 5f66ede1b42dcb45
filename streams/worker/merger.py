"""The one owner that merges partitions: a consumer of the internal partials topic in its own group.

The partials topic has a single partition, so Kafka's group protocol gives it to exactly one worker
at a time. The owner reads it from the beginning on every assignment (the compacted topic holds
each partition's latest heartbeat and the finals of windows not yet published), learns which
windows were already published from the recent tail of ``evaluator.metrics`` (their
``snapshot_id``), and from then on publishes each window once all partitions have closed it, then
deletes that window's finals (tombstones). What it merges is pure: :class:`evaluators.merging.PartialsMerger`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from evaluators.clock import ClockSkewAlerts
from evaluators.drift.config import DriftConfig
from evaluators.drift.monitor import DriftMonitor
from evaluators.integration_checks import ShapeMonitor
from evaluators.merging import PartialsMerger
from evaluators.metrics import MetricsConfig
from evaluators.policy.drift_guardrails import DriftView
from schemas.codec import encode
from schemas.internal_topics import CLOCK_KEY, DRIFT_KEY, SHAPES_KEY, partial_kind, window_key
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.errors import KafkaUnavailableError
from streams.kafka.producer import ContractProducer
from streams.kafka.reading import read_to_end
from streams.kafka.settings import KafkaSettings
from streams.worker.telemetry import DRIFT_ALERTS, WINDOWS_PUBLISHED

log = logging.getLogger("shadowcanary.merger")

#: How far back (wall time) the new owner looks on evaluator.metrics for windows already published.
PUBLISHED_LOOKBACK_S = 3600
#: How long one read of the partials topic waits for 500 records (librdkafka returns at the first of
#: the two): a heartbeat waits at most this long before it is merged. Was 0.2 s.
MERGE_WAIT_S = 0.05


class MergerService(BackgroundService):
    """Runs in a thread beside the worker's loop; ``totals`` is what the exporter and policy read."""

    thread_name = "shadowcanary-merger"

    def __init__(self, settings: KafkaSettings, topics: Topics, partials_topic: str, app_id: str,
                 config: MetricsConfig, settle_ms: Callable[[str], int], partitions: int,
                 skew_tolerance_ms: int = 5 * 60_000, drift_config: DriftConfig | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.topics = topics
        self.partials_topic = partials_topic
        self.group = f"{app_id}.merger"
        self.make_merger = lambda: PartialsMerger(config, settle_ms, partitions, skew_tolerance_ms=skew_tolerance_ms,
                                                    drift_config=drift_config)
        self.merger = self.make_merger()
        self.owner = False
        self._lock = threading.Lock()
        #: Set when heartbeats or windows were merged: the rollout engine judges the new totals at
        #: once instead of at its next tick.
        self.merged = threading.Event()
        self._producer: ContractProducer | None = None
        #: End offset of the partials topic at assignment: nothing is published before reading to it
        #: (the drift monitor's saved state is in there).
        self._catch_up_to = 0
        self._position = 0

    def drift(self) -> tuple[dict[str, dict[str, float]], set[tuple[str, str, str]]]:
        """Each version's drift scores of its last published window ("model\x1fversion" keys), and
        the (model, version, feature) of every firing drift alert (empty unless owner)."""
        with self._lock:
            if not self.owner:
                return {}, set()
            return dict(self.merger.drift.latest), self.merger.drift.firing()

    def monitor_view(self) -> DriftView:
        """What the drift and shape monitors know now, for the rollout engine (empty unless owner)."""
        with self._lock:
            return self.merger.monitor_view() if self.owner else DriftView()

    def guardrail_totals(self) -> dict:
        """The running totals the rollout engine reads (empty unless owner): see
        :meth:`PartialsMerger.guardrail_totals`."""
        with self._lock:
            return self.merger.guardrail_totals() if self.owner else {}

    def segment_totals(self) -> dict:
        """Each sliced version's running totals per segment (empty unless owner): see
        :meth:`PartialsMerger.segment_totals`."""
        with self._lock:
            return self.merger.segment_totals() if self.owner else {}

    def model_counts(self) -> dict[str, dict[str, int]]:
        """The join's per-model counts merged over partitions (empty unless owner)."""
        with self._lock:
            return self.merger.model_counts() if self.owner else {}

    def totals(self) -> tuple[dict, dict[str, int]]:
        """Merged running totals per version, and requests per model (empty unless owner)."""
        with self._lock:
            if not self.owner:
                return {}, {}
            return self.merger.totals(), self.merger.model_requests()

    # -- work ------------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self.merger = self.make_merger()
            self.owner = bool(partitions)
            self._position = 0
            if partitions:
                for sid in self._published_recently():
                    self.merger.mark_published(sid)
                self._catch_up_to = consumer.get_watermark_offsets(partitions[0], timeout=10)[1]
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING
        consumer.assign(partitions)
        log.info("merger owner: %s", bool(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self.owner = False
            self.merger = self.make_merger()

    def _published_recently(self) -> set[str]:
        since = int((time.time() - PUBLISHED_LOOKBACK_S) * 1000)
        found: set[str] = set()
        for message in read_to_end(self.settings, self.topics.metrics, since_ms=since)[0]:
            try:
                sid = orjson.loads(message.value()).get("snapshot_id")
            except (orjson.JSONDecodeError, TypeError, AttributeError):
                continue
            if sid:
                found.add(sid)
        return found

    def _run(self) -> None:
        """Merge until stopped; a failure (the broker away when the role was taken, say) leaves the
        group and joins it again after a second, instead of ending the thread."""
        while not self._stop.is_set():
            self.went_round()
            try:
                self._merge()
            except (KafkaException, KafkaUnavailableError) as exc:
                log.warning("merger stopped (%s); joining again", exc)
            except Exception:  # keep the worker alive; the owner role moves on while we are away
                log.exception("merger stopped; joining again")
            with self._lock:
                self.owner = False
                self.merger = self.make_merger()
            self._stop.wait(1.0)

    def _merge(self) -> None:
        # read_committed: the workers write partials inside their batches' transactions, so an
        # aborted batch's heartbeat is never merged. Transaction markers take offsets no message has,
        # so the end is where librdkafka reports it (partition EOF, at the last stable offset); an EOF
        # short of the end offset seen at assignment means a transaction is still open before records
        # that must be read first (the previous owner's saved drift and clock state).
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": self.group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", "enable.partition.eof": True,
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1000}))
        self._producer = ContractProducer(self.settings)
        consumer.subscribe([self.partials_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        try:
            while not self._stop.is_set():
                self.went_round()
                messages = consumer.consume(500, MERGE_WAIT_S)
                with self._lock:
                    if not self.owner:
                        continue
                    merged = False
                    for message in messages:
                        error = message.error()
                        if error is None:
                            self._apply(message.key(), message.value())
                            self._position = message.offset() + 1
                            merged = True
                        elif error.code() == KafkaError._PARTITION_EOF and message.offset() >= self._catch_up_to:
                            # At the end with no transaction open (the last stable offset is the high
                            # watermark): everything written before the assignment has been read.
                            self._position = max(self._position, message.offset())
                    if merged:
                        self.merged.set()
                    if self._position >= self._catch_up_to:
                        self._publish_ready()
        finally:
            with self._lock:
                self.owner = False
            consumer.close()
            self._producer.flush(10)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key or value is None:
            return
        partial = orjson.loads(value)
        kind = partial_kind(key)
        if kind == "heartbeat":
            self.merger.heartbeat(partial["partition"], partial)
        elif kind == "window":
            self.merger.final(partial["partition"], partial)
        elif kind == "drift":
            self.merger.drift = DriftMonitor(self.merger.drift_config, partial)
        elif kind == "clock":
            self.merger.clock = ClockSkewAlerts(self.merger.clock.tolerance_ms, self.merger.clock.cooldown_ms, partial)
        elif kind == "shapes":
            shapes = self.merger.shapes
            self.merger.shapes = ShapeMonitor(shapes.min_samples, shapes.cooldown_ms, partial)

    def _publish_ready(self) -> None:
        ready = self.merger.ready()
        if not ready and not self.merger.alerts:
            return
        # Alerts, then the monitor's state (its references, alert conditions and each window's
        # scores), then the windows. A crash before the state is out leaves these windows to be
        # judged again from the previous state, giving the same scores and the same alerts (their
        # ids are deterministic); a crash after it leaves them to be published again with the
        # scores the state kept for them, without counting them twice into references or streaks.
        for alert in self.merger.alerts:
            self._producer.send(self.topics.alerts, alert.model, encode(alert))
            if alert.kind == "drift":
                DRIFT_ALERTS.labels(alert.status).inc()
        self.merger.alerts = []
        self._producer.send(self.partials_topic, DRIFT_KEY, orjson.dumps(self.merger.drift_state()))
        self._producer.send(self.partials_topic, CLOCK_KEY, orjson.dumps(self.merger.clock.to_state()))
        self._producer.send(self.partials_topic, SHAPES_KEY, orjson.dumps(self.merger.shapes.to_state()))
        self._producer.flush(30)
        for snapshot in ready:
            self._producer.send(self.topics.metrics, snapshot.key, encode(snapshot))
        self._producer.flush(30)
        WINDOWS_PUBLISHED.inc(len(ready))
        # The window is out: its finals are no longer needed on the partials topic.
        for snapshot in ready:
            if snapshot.segment is not None:
                continue  # a segment's numbers came in its version's window partials
            for partition in range(self.merger.partitions):
                self._producer.send(self.partials_topic, window_key(partition, snapshot.snapshot_id), None)
        self._producer.flush(30)

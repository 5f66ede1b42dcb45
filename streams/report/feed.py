"""A monitoring consumer: everything ShadowCanary publishes about rollouts, as it happens.

Reads ``rollout.control``, ``rollout.decisions``, ``evaluator.alerts`` and ``evaluator.metrics``
from their beginning (``read_committed``) in a background thread and keeps the decoded messages, in
arrival order, for a live view or a report. Records that do not decode are counted, not kept.
"""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Consumer

from schemas.codec import DecodeError, decode
from schemas.control import Decision, RoutingCommand
from schemas.monitoring import Alert, MetricsSnapshot
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.kafka.settings import KafkaSettings


class RolloutFeed(BackgroundService):
    thread_name = "shadowcanary-feed"

    def __init__(self, settings: KafkaSettings, topics: Topics | None = None) -> None:
        super().__init__()
        self.settings = settings
        topics = topics or Topics(settings.topic_prefix)
        self._kinds = {topics.control: RoutingCommand, topics.decisions: Decision, topics.alerts: Alert,
                       topics.metrics: MetricsSnapshot}
        self.commands: list[RoutingCommand] = []
        self.decisions: list[Decision] = []
        self.alerts: list[Alert] = []
        self.snapshots: list[MetricsSnapshot] = []
        self.undecodable = 0
        self.changed = threading.Event()

    def _run(self) -> None:
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": f"shadowcanary-feed-{uuid.uuid4()}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 2000}))
        lists = {RoutingCommand: self.commands, Decision: self.decisions, Alert: self.alerts,
                 MetricsSnapshot: self.snapshots}
        consumer.subscribe(list(self._kinds))
        try:
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.2):
                    if message.error() is not None:
                        continue
                    kind = self._kinds[message.topic()]
                    try:
                        lists[kind].append(decode(kind, message.value()))
                    except DecodeError:
                        self.undecodable += 1
                    self.changed.set()
        finally:
            consumer.close()

"""The router SDK: follow ``rollout.control`` and tell a serving service which version answers.

A :class:`Router` reads the control topic from its beginning (``read_committed``, so a command the
evaluator has not committed is never obeyed) in a background thread, feeds every command to the
pure :class:`evaluators.routing.RouteBook`, and answers :meth:`Router.route` from memory: a lookup
never waits on Kafka. If the broker goes away the thread keeps retrying and the last good routes
stay in force; with no history at all, every request goes to the configured baseline.

Refused commands (unsigned, badly signed, stale, replayed, not valid JSON) are logged with their
reason and counted in ``shadowcanary_router_commands_total{outcome}``.

Example (a serving process)::

    router = Router(settings, baselines={"fraud": "v1"}, verifier=load_verifier(Path("key.pub")))
    router.start()
    assignment = router.route("fraud", subject=user_id, attributes={"region": "eu"})
    answer = models[assignment.serve].predict(features)
    for version in assignment.mirror: ...   # shadow copies, answers not served
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter

from evaluators.routing import Assignment, RouteBook
from schemas.codec import DecodeError, decode
from schemas.control import RoutingCommand
from schemas.signing import Verifier
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.config import KafkaSettings

log = logging.getLogger("shadowcanary.router")

COMMANDS = Counter("shadowcanary_router_commands", "Routing commands a router read, by outcome.",
                   ["model", "outcome"])


class Router(BackgroundService):
    """Sticky, signed-command-following routing for one serving process."""

    thread_name = "shadowcanary-router"

    def __init__(self, settings: KafkaSettings, baselines: Mapping[str, str], verifier: Verifier | None = None,
                 cohorts: Mapping[str, Mapping[str, str]] | None = None, topics: Topics | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.topic = (topics or Topics(settings.topic_prefix)).control
        self.book = RouteBook(baselines, verifier, cohorts)
        #: Set once the history on the topic at start has been read (routes are current).
        self.ready = threading.Event()
        #: The last refusals, newest last: (command_id or "?", model or "?", reason).
        self.refused: deque[tuple[str, str, str]] = deque(maxlen=1000)
        self.applied = 0

    def route(self, model: str, subject: str, attributes: Mapping[str, str] | None = None) -> Assignment:
        """The version that answers this request, and the ones it is mirrored to."""
        return self.book.route(model, subject, attributes)

    def serving(self, model: str) -> dict[str, float]:
        return self.book.serving(model)

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    def _run(self) -> None:
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": f"shadowcanary-router-{uuid.uuid4()}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "reconnect.backoff.max.ms": 2000}))
        try:
            ends = self._assign(consumer)
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.25):
                    if message.error() is None:
                        self._read(message.value())
                if ends is not None and not self.ready.is_set():
                    done = [tp for tp in consumer.position(ends)]
                    if all(p.offset >= e.offset for p, e in zip(done, ends)):
                        self.ready.set()
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> list[TopicPartition] | None:
        """Assign every partition from the beginning; retry while the broker cannot be reached."""
        while not self._stop.is_set():
            try:
                partitions = consumer.list_topics(self.topic, timeout=5).topics[self.topic].partitions
                if not partitions:
                    raise KafkaException(f"{self.topic} has no partitions (does it exist?)")
                ends = []
                for p in partitions:
                    high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)[1]
                    ends.append(TopicPartition(self.topic, p, high))
                consumer.assign([TopicPartition(self.topic, p, -2) for p in partitions])
                if all(e.offset == 0 for e in ends):
                    self.ready.set()
                return ends
            except KafkaException as exc:
                log.warning("router: cannot read %s yet (%s); serving the baselines meanwhile", self.topic, exc)
                self._stop.wait(1.0)
        return None

    def _read(self, value: bytes | None) -> None:
        try:
            command = decode(RoutingCommand, value)
        except DecodeError as exc:
            self._refuse("?", "?", f"invalid: {exc}")
            return
        reason = self.book.apply(command)
        if reason is None:
            self.applied += 1
            COMMANDS.labels(command.model, "applied").inc()
            log.info("router: %s epoch %d: %s %s", command.model, command.epoch, command.action, command.routes)
        else:
            self._refuse(str(command.command_id), command.model, reason)

    def _refuse(self, command_id: str, model: str, reason: str) -> None:
        outcome = reason.split(":", 1)[0]
        COMMANDS.labels(model, outcome).inc()
        self.refused.append((command_id, model, reason))
        log.warning("router: refused command %s for %s: %s", command_id, model, reason)


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes (for callers and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())

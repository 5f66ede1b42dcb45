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
import uuid
from collections import deque
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import Counter

from evaluators.routing import Assignment, RouteBook
from schemas.codec import DecodeError, decode
from schemas.control import RoutingCommand
from schemas.signing import Verifier
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.errors import KafkaUnavailableError
from streams.kafka.reading import read_to_end
from streams.kafka.settings import KafkaSettings

log = logging.getLogger("shadowcanary.router")

COMMANDS = Counter("shadowcanary_router_commands", "Routing commands a router read, by outcome.",
                   ["model", "outcome"])


class Router(BackgroundService):
    """Sticky, signed-command-following routing for one serving process."""

    thread_name = "shadowcanary-router"

    def __init__(self, settings: KafkaSettings, baselines: Mapping[str, str], verifier: Verifier | None = None,
                 cohorts: Mapping[str, Mapping[str, str]] | None = None, topics: Topics | None = None,
                 on_applied: Callable[[RoutingCommand], None] | None = None) -> None:
        super().__init__()
        #: Told each command that applied, in the router's thread (the actuators write it out).
        self.on_applied = on_applied
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
            "isolation.level": "read_committed", "reconnect.backoff.max.ms": 2000}))
        try:
            ends = self._catch_up()
            if ends is None:
                return
            consumer.assign(ends)  # live from where the history ended
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.25):
                    if message.error() is None:
                        self._read(message.value())
        finally:
            consumer.close()

    def _catch_up(self) -> list[TopicPartition] | None:
        """Apply the history on the topic; retry while the broker cannot be reached (the baselines
        serve meanwhile). Returns where each partition ended, or ``None`` if stopped first."""
        while not self._stop.is_set():
            try:
                history, ends = read_to_end(self.settings, self.topic, timeout=30)
                if not ends:
                    raise KafkaUnavailableError(f"{self.topic} has no partitions (does it exist?)")
            except KafkaUnavailableError as exc:
                log.warning("router: cannot read %s yet (%s); serving the baselines meanwhile", self.topic, exc)
                self._stop.wait(1.0)
                continue
            for message in history:
                self._read(message.value())
            self.ready.set()
            return ends
        return None

    def _read(self, value: bytes | None) -> None:
        try:
            command = decode(RoutingCommand, value)
        except DecodeError as exc:
            self._refuse("?", "?", f"invalid: {exc}")
            return
        reason = self.book.apply(command, raw=value)
        if reason is None:
            self.applied += 1
            COMMANDS.labels(command.model, "applied").inc()
            log.info("router: %s epoch %d: %s %s", command.model, command.epoch, command.action, command.routes)
            if self.on_applied is not None:
                self.on_applied(command)
        else:
            self._refuse(str(command.command_id), command.model, reason)

    def _refuse(self, command_id: str, model: str, reason: str) -> None:
        outcome = reason.split(":", 1)[0]
        COMMANDS.labels(model, outcome).inc()
        self.refused.append((command_id, model, reason))
        log.warning("router: refused command %s for %s: %s", command_id, model, reason)


"""``shadowcanary api``: the rollouts over HTTP/JSON, for people, pipelines and the progressive-delivery
tools that ask for a verdict (Argo Rollouts' ``web`` metric provider, Flagger's webhooks).

A background thread follows the engine's saved state (the internal ``rollouts`` topic) and
``rollout.decisions`` from their beginnings (``read_committed``), so the API answers from memory and
reflects the engine within a poll. Endpoints:

=========================================  =========================================================
``GET /v1/rollouts``                        every model's rollout: id, status, stage, routes, versions
``GET /v1/rollouts/<model>``                one rollout, with its last decision and evidence
``GET /v1/rollouts/<model>/decisions``      the decisions of its current rollout, oldest first
``GET /v1/rollouts/<model>/report``         its HTML report (as ``shadowcanary report`` writes it)
``GET /v1/rollouts/<model>/verdict``        Argo Rollouts' ``web`` provider: ``{"verdict": ...}``
                                            (see :mod:`evaluators.policy.verdicts`)
``POST /v1/flagger/<kind>``                 a Flagger webhook (``confirm-promotion``, ``rollout``,
                                            ...): 200 to go on, else halt; the model is
                                            ``metadata.model`` of Flagger's payload, or its ``name``
``GET /healthz``                            ``{"status", "current"}``: whether the history is read
=========================================  =========================================================
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import BaseModel, ConfigDict

from evaluators.policy.verdicts import flagger_answer, verdict_of
from schemas.codec import DecodeError, decode
from schemas.control import Decision
from schemas.internal_topics import ENGINE_KEY, rollouts_topic_name
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.errors import KafkaUnavailableError
from streams.kafka.reading import read_to_end
from streams.kafka.settings import KafkaSettings
from streams.serving.http_json import Answer, JsonServer

log = logging.getLogger("shadowcanary.api")

DEFAULT_PORT = 8788
_PREFIX = "/v1/rollouts"
_FLAGGER = "/v1/flagger/"


class FlaggerPayload(BaseModel):
    """What Flagger posts to a webhook (its documented fields; others are kept, not read)."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    phase: str | None = None
    metadata: dict[str, str] | None = None


class RolloutFeed(BackgroundService):
    """The engine's saved state and every decision, kept current from the topics."""

    thread_name = "shadowcanary-api-feed"

    def __init__(self, settings: KafkaSettings, topics: Topics) -> None:
        super().__init__()
        self.settings = settings
        self.topics = [rollouts_topic_name(topics), topics.decisions]
        self._lock = threading.Lock()
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, list[Decision]] = {}  # rollout id -> its decisions, in order
        #: Set once both topics' history has been read.
        self.current = threading.Event()

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if topic == self.topics[0]:
            if key == ENGINE_KEY and value is not None:
                state = orjson.loads(value)
                with self._lock:
                    self.rollouts = state.get("rollouts", {})
            return
        try:
            decision = decode(Decision, value)
        except DecodeError:
            return
        with self._lock:
            self.decisions.setdefault(decision.rollout_id, []).append(decision)

    def _run(self) -> None:
        ends: list[TopicPartition] = []
        for topic in self.topics:  # each one's history, once it exists (the worker creates its own)
            while not self._stop.is_set():
                try:
                    history, topic_ends = read_to_end(self.settings, topic, timeout=30)
                except (KafkaUnavailableError, KafkaException) as exc:  # the broker away: keep trying
                    topic_ends, reason = [], str(exc)
                else:
                    reason = "it has no partitions yet"
                if topic_ends:
                    for message in history:
                        self._apply(topic, message.key(), message.value())
                    ends += topic_ends
                    break
                log.warning("api: cannot read %s yet (%s); retrying", topic, reason)
                self._stop.wait(1.0)
        if self._stop.is_set():
            return
        self.current.set()
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": f"shadowcanary-api-{uuid.uuid4()}", "enable.auto.commit": False,
            "isolation.level": "read_committed"}))
        try:
            consumer.assign(ends)
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.25):
                    if message.error() is None:
                        self._apply(message.topic(), message.key(), message.value())
                self.went_round()
        finally:
            consumer.close()

    def rollout(self, model: str) -> tuple[dict[str, Any] | None, list[Decision]]:
        with self._lock:
            rollout = self.rollouts.get(model)
            return rollout, list(self.decisions.get(rollout["id"], [])) if rollout else []

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.rollouts)


def _summary(model: str, rollout: dict[str, Any]) -> dict[str, Any]:
    spec = rollout["spec"]
    return {"model": model, "rollout_id": rollout["id"], "status": rollout["status"], "stage": rollout["stage"],
            "stages": len(spec.get("steps") or [1]), "mode": spec["mode"], "baseline": spec["baseline"],
            "candidate": spec["candidate"], "routes": rollout.get("routes"), "shadow": rollout.get("shadow")}


class RolloutApi:
    """The HTTP answers, from a :class:`RolloutFeed`."""

    def __init__(self, feed: RolloutFeed, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.feed = feed
        self.http = JsonServer(self.get, self.post, host, port, get_paths=self._is_get,
                               post_paths=lambda path: path.startswith(_FLAGGER), name="shadowcanary-api")

    @staticmethod
    def _is_get(path: str) -> bool:
        return path == "/healthz" or path.startswith(_PREFIX)

    def get(self, path: str) -> Answer | None:
        if path == "/healthz":
            return 200, {"status": "ok", "current": self.feed.current.is_set()}
        if path == _PREFIX:
            return 200, [_summary(model, r) for model, r in sorted(self.feed.all().items())]
        if not path.startswith(_PREFIX + "/"):
            return None
        model, _, what = path[len(_PREFIX) + 1:].partition("/")
        rollout, decisions = self.feed.rollout(model)
        last = decisions[-1] if decisions else None
        if what == "verdict":
            return 200 if rollout is not None else 404, verdict_of(model, rollout, last).as_json()
        if rollout is None:
            return 404, {"error": f"no rollout of {model}"}
        if what == "":
            return 200, _summary(model, rollout) | {
                "last_decision": last.model_dump(mode="json") if last is not None else None}
        if what == "decisions":
            return 200, [d.model_dump(mode="json") for d in decisions]
        if what == "report":  # the HTML report, read from the live topics now (a few seconds)
            from streams.cli.report import live_report
            try:
                _, document, _ = live_report(self.feed.settings, model, rollout["id"])
            except LookupError as exc:
                return 404, {"error": str(exc)}
            return 200, document.encode(), "text/html; charset=utf-8"
        return None

    def post(self, path: str, body: Any) -> Answer | None:
        if not path.startswith(_FLAGGER):
            return None
        payload = FlaggerPayload.model_validate(body)
        model = (payload.metadata or {}).get("model") or payload.name
        rollout, decisions = self.feed.rollout(model)
        return flagger_answer(path[len(_FLAGGER):], verdict_of(model, rollout, decisions[-1] if decisions else None))


__all__ = ["DEFAULT_PORT", "FlaggerPayload", "RolloutApi", "RolloutFeed"]

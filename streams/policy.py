"""The rollout engine in the stream: one owner, transactional outputs, state that survives restarts.

The engine runs beside the merger and only while this worker is the merging owner (the partials
topic has one partition, so Kafka makes exactly one worker the owner): it reads the merged totals
the owner holds. On becoming owner it opens a transactional producer with a fixed
``transactional.id`` (``<app-id>.policy``), which fences any previous owner still alive; loads the
engine's last state from the compacted internal topic ``shadowcanary.internal.rollouts``; replays
``rollout.control`` (epochs, people's commands) and ``rollout.specs``; then judges every rollout
every ``TICK_S``. Each tick's commands, decisions and alerts are published *in one transaction with
the engine state that produced them*: after a crash either all of them are visible (to
``read_committed`` readers: the router SDK, the CLI, the tests) and the state says so, or none is
and the new owner decides again. No command is issued twice and no epoch goes back.
"""

from __future__ import annotations

import logging
import threading
import time

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from evaluators.policy.engine import Output, RolloutEngine
from schemas.codec import DecodeError, decode, encode
from schemas.control import RoutingCommand
from schemas.rollout import RolloutSpec
from schemas.topics import Topics
from streams.config import KafkaSettings
from streams.merger import MergerService

log = logging.getLogger("shadowcanary.policy")

TICK_S = 0.25
#: Without outputs, the state is saved at most this often (a restart re-scores what came after).
SAVE_EVERY_S = 5.0
STATE_KEY = b"engine"


def rollouts_topic_name(topics: Topics) -> str:
    """Internal (not part of the contract): the engine's state, compacted, one record."""
    return topics.prefix + "shadowcanary.internal.rollouts"


def now_ms() -> int:
    return int(time.time() * 1000)


def read_to_end(settings: KafkaSettings, topic: str) -> list:
    """Every committed record of ``topic``, from the beginning to its current end."""
    consumer = Consumer(settings.confluent_config(**{
        "group.id": "unused", "enable.auto.commit": False, "isolation.level": "read_committed"}))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        out = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                message = consumer.poll(2.0)
                if message is None:
                    break  # transaction markers take offsets: the last data record may be below high - 1
                if message.error() is None:
                    out.append(message)
                    if message.offset() >= high - 1:
                        break
        return out
    finally:
        consumer.close()


def load_engine_state(settings: KafkaSettings, topics: Topics) -> dict | None:
    state = None
    for message in read_to_end(settings, rollouts_topic_name(topics)):
        if message.key() == STATE_KEY and message.value() is not None:
            state = orjson.loads(message.value())
    return state


class PolicyService:
    """Runs the engine in a thread of its own while ``merger`` is the owner."""

    def __init__(self, settings: KafkaSettings, topics: Topics, app_id: str, merger: MergerService) -> None:
        self.settings = settings
        self.topics = topics
        self.transactional_id = f"{app_id}.policy"
        self.merger = merger
        self.engine: RolloutEngine | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadowcanary-policy", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.merger.owner:
                self._stop.wait(0.2)
                continue
            try:
                self._own()
            except Exception:  # the next owner (maybe this worker again) starts from the saved state
                log.exception("policy engine stopped; restarting from its saved state")
                self._stop.wait(1.0)

    def _own(self) -> None:
        producer = Producer(self.settings.confluent_config(**{
            "transactional.id": self.transactional_id, "enable.idempotence": True, "linger.ms": 0}))
        producer.init_transactions(30)
        engine = RolloutEngine(load_engine_state(self.settings, self.topics))
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": "unused", "enable.auto.commit": False, "isolation.level": "read_committed",
            "auto.offset.reset": "earliest"}))
        try:
            specs: dict[str, tuple[RolloutSpec | None, str]] = {}
            for message in read_to_end(self.settings, self.topics.control):
                self._on_control(engine, message.value())
            for message in read_to_end(self.settings, self.topics.specs):
                specs[message.key().decode()] = self._spec_of(message)
            ends = []
            for topic in (self.topics.control, self.topics.specs):
                for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                    high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                    ends.append(TopicPartition(topic, partition, high))
            consumer.assign(ends)
            with self.lock:
                self.engine = engine
            outputs = []
            totals, _ = self.merger.totals()
            for model, (spec, rollout_id) in specs.items():
                outputs += self._on_spec(engine, model, spec, rollout_id, totals)
            self._publish(producer, engine, outputs)
            saved = time.monotonic()
            log.info("policy engine owner: %d rollouts", len(engine.rollouts))
            while not self._stop.is_set() and self.merger.owner:
                outputs = []
                totals, _ = self.merger.totals()
                for message in consumer.consume(100, TICK_S):
                    if message.error() is not None:
                        continue
                    if message.topic() == self.topics.control:
                        self._on_control(engine, message.value())
                    else:
                        spec, rollout_id = self._spec_of(message)
                        outputs += self._on_spec(engine, message.key().decode(), spec, rollout_id, totals)
                with self.lock:
                    outputs += engine.tick(now_ms(), totals)
                if outputs or time.monotonic() - saved > SAVE_EVERY_S:
                    self._publish(producer, engine, outputs)
                    saved = time.monotonic()
        finally:
            with self.lock:
                self.engine = None
            consumer.close()

    @staticmethod
    def _spec_of(message) -> tuple[RolloutSpec | None, str]:
        rollout_id = f"{message.key().decode()}@{message.partition()}:{message.offset()}"
        if message.value() is None:
            return None, rollout_id
        try:
            return decode(RolloutSpec, message.value()), rollout_id
        except DecodeError as exc:
            log.warning("ignoring an invalid spec on %s: %s", message.topic(), exc)
            return None, rollout_id

    @staticmethod
    def _on_spec(engine: RolloutEngine, model: str, spec: RolloutSpec | None, rollout_id: str,
                 totals: dict) -> list[Output]:
        if spec is None:
            return engine.stop(model, now_ms())
        return engine.start(spec, now_ms(), totals, rollout_id=rollout_id)

    @staticmethod
    def _on_control(engine: RolloutEngine, value: bytes | None) -> None:
        try:
            engine.observe_command(decode(RoutingCommand, value))
        except DecodeError:
            pass  # a router ignores it too

    def _publish(self, producer: Producer, engine: RolloutEngine, outputs: list[Output]) -> None:
        topic_of = {"control": self.topics.control, "decisions": self.topics.decisions, "alerts": self.topics.alerts}
        producer.begin_transaction()
        try:
            for output in outputs:
                producer.produce(topic_of[output.topic], key=output.key.encode(), value=encode(output.message))
            producer.produce(rollouts_topic_name(self.topics), key=STATE_KEY, value=orjson.dumps(engine.to_state()))
            producer.commit_transaction(30)
        except KafkaException:
            producer.abort_transaction(30)
            raise
        for output in outputs:
            log.info("%s %s: %s", output.topic, output.key, getattr(output.message, "reason", ""))

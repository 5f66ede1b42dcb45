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

import contextlib
import logging
import time

import orjson
from confluent_kafka import Consumer, KafkaException, Producer

from evaluators.policy.drift_guardrails import DriftView
from evaluators.policy.engine import Output, RolloutEngine
from schemas.codec import DecodeError, decode, encode
from schemas.control import RoutingCommand
from schemas.rollout import RolloutSpec
from schemas.signing import Signer
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.config import KafkaSettings
from streams.merger import MergerService
from streams.reading import read_to_end
from streams.telemetry import COMMANDS_REFUSED, DECISIONS

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


def load_engine_state(settings: KafkaSettings, topics: Topics) -> dict | None:
    state = None
    for message in read_to_end(settings, rollouts_topic_name(topics))[0]:
        if message.key() == STATE_KEY and message.value() is not None:
            state = orjson.loads(message.value())
    return state


class PolicyService(BackgroundService):
    """Runs the engine in a thread of its own while ``merger`` is the owner."""

    thread_name = "shadowcanary-policy"

    def __init__(self, settings: KafkaSettings, topics: Topics, app_id: str, merger: MergerService,
                 signer: Signer | None = None) -> None:
        super().__init__()
        self.signer = signer
        self.settings = settings
        self.topics = topics
        self.transactional_id = f"{app_id}.policy"
        self.merger = merger
        #: The engine while this worker owns it (read by the exporter), else None.
        self.engine: RolloutEngine | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.went_round()
            if not self.merger.owner:
                self._stop.wait(0.2)
                continue
            try:
                self._own()
            except KafkaException as exc:  # the broker away, or a transaction it did not finish
                log.warning("policy engine stopped (%s); restarting from its saved state", exc.args[0].str())
                self._stop.wait(1.0)
            except Exception:  # the next owner (maybe this worker again) starts from the saved state
                log.exception("policy engine stopped; restarting from its saved state")
                self._stop.wait(1.0)

    def _own(self) -> None:
        producer = Producer(self.settings.confluent_config(**{
            "transactional.id": self.transactional_id, "enable.idempotence": True, "linger.ms": 0}))
        producer.init_transactions(30)
        engine = self.engine = RolloutEngine(load_engine_state(self.settings, self.topics), self.signer)
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": "unused", "enable.auto.commit": False, "isolation.level": "read_committed",
            "auto.offset.reset": "earliest"}))
        try:
            specs: dict[str, tuple[RolloutSpec | None, str]] = {}
            commands, control_ends = read_to_end(self.settings, self.topics.control)
            for message in commands:
                self._on_control(engine, message.value())
            records, specs_ends = read_to_end(self.settings, self.topics.specs)
            for message in records:
                specs[message.key().decode()] = self._spec_of(message)
            consumer.assign(control_ends + specs_ends)  # live from where the replay ended
            outputs = []
            totals = self.merger.guardrail_totals()
            for model, (spec, rollout_id) in specs.items():
                outputs += self._on_spec(engine, model, spec, rollout_id, totals)
            self._publish(producer, engine, outputs)
            saved = time.monotonic()
            log.info("policy engine owner: %d rollouts", len(engine.rollouts))
            while not self._stop.is_set() and self.merger.owner:
                self.went_round()
                outputs = []
                messages = [m for m in consumer.consume(100, TICK_S) if m.error() is None]
                # Merging every partition's totals is the costly part: only when something reads them.
                needed = engine.active() or any(m.topic() == self.topics.specs for m in messages)
                totals = self.merger.guardrail_totals() if needed else {}
                for message in messages:
                    if message.topic() == self.topics.control:
                        self._on_control(engine, message.value())
                    else:
                        spec, rollout_id = self._spec_of(message)
                        outputs += self._on_spec(engine, message.key().decode(), spec, rollout_id, totals)
                drift = DriftView(*self.merger.drift()) if needed else DriftView()
                outputs += engine.tick(now_ms(), totals, drift)
                if outputs or time.monotonic() - saved > SAVE_EVERY_S:
                    self._publish(producer, engine, outputs)
                    saved = time.monotonic()
        finally:
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
            command = decode(RoutingCommand, value)
        except DecodeError:
            return  # a router ignores it too
        refused = engine.observe_command(command)
        if refused is not None:
            COMMANDS_REFUSED.inc()
            log.warning("ignoring command %s (%s %s by %s) on rollout.control: %s", command.command_id,
                        command.action, command.model, command.issuer, refused)

    def _publish(self, producer: Producer, engine: RolloutEngine, outputs: list[Output]) -> None:
        producer.begin_transaction()
        try:
            for output in outputs:  # output.topic is control, decisions or alerts: a Topics attribute
                producer.produce(getattr(self.topics, output.topic), key=output.key.encode(),
                                 value=encode(output.message))
            producer.produce(rollouts_topic_name(self.topics), key=STATE_KEY, value=orjson.dumps(engine.to_state()))
            producer.commit_transaction(30)
        except KafkaException:
            # Whatever became of the transaction, the next owner's producer settles it (its
            # init_transactions) before reading the saved state back: an abort that fails too (a
            # commit still in progress) changes nothing.
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(30)
            raise
        for output in outputs:
            log.info("%s %s: %s", output.topic, output.key, getattr(output.message, "reason", ""))
            if output.topic == "decisions":
                DECISIONS.labels(output.key, output.message.action).inc()

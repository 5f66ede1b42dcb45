"""The rollout engine in the stream: one owner, transactional outputs, state that survives restarts.

The engine runs beside the merger and only while this worker is the merging owner (the partials
topic has one partition, so Kafka makes exactly one worker the owner): it reads the merged totals
the owner holds. On becoming owner it opens a transactional producer with a fixed
``transactional.id`` (``<app-id>.policy``), which fences any previous owner still alive; loads the
engine's last state from the compacted internal topic ``shadowcanary.internal.rollouts``; replays
``rollout.control`` (epochs, people's commands) and ``rollout.specs``; then judges every rollout
every ``TICK_S``, and as soon as the merger has merged new totals (not sooner than ``MIN_TICK_S``
after the last tick, nor than four times its cost: a label's way to a decision does not wait for
the next tick). Each tick's commands, decisions and alerts are published *in one transaction with
the engine state that produced them*: after a crash either all of them are visible (to
``read_committed`` readers: the router SDK, the CLI, the tests) and the state says so, or none is
and the new owner decides again. No command is issued twice and no epoch goes back.

Records on ``rollout.specs`` and ``rollout.control`` that are not what they should be are refused
(:mod:`evaluators.policy.control_records`): they change nothing, and each is told once, an alert and
a dead letter in the same transaction as the state that records it was told.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer

from evaluators.policy.control_records import (
    ReadRecord,
    Refusal,
    ToldPositions,
    latest_specs,
    read_command_record,
    read_spec_record,
    refusal_alert,
)
from evaluators.policy.drift_guardrails import DriftView
from evaluators.policy.engine import Output, RolloutEngine
from evaluators.policy.registry_writes import RegistryWrite, outcome_write
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from schemas.internal_topics import ENGINE_KEY, rollouts_topic_name
from schemas.monitoring import Alert
from schemas.rollout import RolloutSpec
from schemas.signing import Signer
from schemas.topics import Topics
from streams.background import BackgroundService
from streams.kafka.reading import read_to_end
from streams.kafka.settings import KafkaSettings
from streams.worker.merger import MergerService
from streams.worker.registry import ModelRegistry
from streams.worker.telemetry import COMMANDS_REFUSED, CONTROL_RECORDS_REFUSED, DECISIONS

log = logging.getLogger("shadowcanary.policy")

TICK_S = 0.25
#: The shortest time between two ticks woken by new totals; and at least ``TICK_COST_RATIO`` times
#: the last tick's own time, so that the engine takes at most about a quarter of a core however many
#: partitions it merges (merging every partition's totals is a tick's costly part).
MIN_TICK_S = 0.05
TICK_COST_RATIO = 4.0
#: Without outputs, the state is saved at most this often (a restart re-scores what came after).
SAVE_EVERY_S = 5.0
#: In the saved state: per control topic partition, the offset after the last refusal told.
TOLD_KEY = "told"
#: The registry writes decided but not yet taken by the registry (streams.worker.registry's outbox), in order.
REGISTRY_OUTBOX_KEY = "registry_outbox"


def now_ms() -> int:
    return int(time.time() * 1000)


def load_engine_state(settings: KafkaSettings, topics: Topics) -> dict | None:
    state = None
    for message in read_to_end(settings, rollouts_topic_name(topics))[0]:
        if message.key() == ENGINE_KEY and message.value() is not None:
            state = orjson.loads(message.value())
    return state


class PolicyService(BackgroundService):
    """Runs the engine in a thread of its own while ``merger`` is the owner."""

    thread_name = "shadowcanary-policy"

    def __init__(self, settings: KafkaSettings, topics: Topics, app_id: str, merger: MergerService,
                 signer: Signer | None = None, registry: ModelRegistry | None = None) -> None:
        super().__init__()
        self.signer = signer
        #: The model registry each rollout's versions are read from and its outcome written to, if any.
        self.registry = registry
        self.settings = settings
        self.topics = topics
        self.transactional_id = f"{app_id}.policy"
        self.merger = merger
        #: The engine while this worker owns it (read by the exporter), else None.
        self.engine: RolloutEngine | None = None
        #: Registry writes saved with the decisions that call for them, by rollout id, until written.
        self._outbox: dict[str, RegistryWrite] = {}
        #: Rollout ids whose write the registry took (filled by its writer thread).
        self._written: set[str] = set()
        self._written_lock = threading.Lock()

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
        state = load_engine_state(self.settings, self.topics) or {}
        engine = self.engine = RolloutEngine(state, self.signer,
                                             tracked_segments=self.merger.merger.config.segments_of)
        told = ToldPositions(state.get(TOLD_KEY))
        self._outbox = {write["rollout_id"]: write for write in state.get(REGISTRY_OUTBOX_KEY, [])}
        if self.registry is not None:
            for write in self._outbox.values():  # decided by an earlier owner, not known to be written
                self.registry.submit(write, self._on_written)
        consumer = Consumer(self.settings.confluent_config(**{
            "group.id": "unused", "enable.auto.commit": False, "isolation.level": "read_committed",
            "auto.offset.reset": "earliest"}))
        try:
            refused: list[Refused] = []
            commands, control_ends = read_to_end(self.settings, self.topics.control)
            for message in commands:
                self._on_control(engine, _read(message), told, refused)
            records, specs_ends = read_to_end(self.settings, self.topics.specs)
            wanted, refused_specs = latest_specs([_read(message) for message in records])
            for record, read in refused_specs:
                self._refuse(record, read.model, read.refusal, told, refused)
            consumer.assign(control_ends + specs_ends)  # live from where the replay ended
            outputs = []
            totals = self.merger.guardrail_totals()
            for model, (read, rollout_id) in wanted.items():
                outputs += self._on_spec(engine, model, read.spec, rollout_id, totals)
            self._publish(producer, engine, outputs, refused, told)
            saved = ticked = time.monotonic()
            earliest = ticked + MIN_TICK_S
            log.info("policy engine owner: %d rollouts", len(engine.rollouts))
            while not self._stop.is_set() and self.merger.owner:
                self.went_round()
                outputs, refused = [], []
                self._wait_for_news(ticked + TICK_S, earliest)
                ticked = time.monotonic()
                messages = [m for m in consumer.consume(100, 0) if m.error() is None]
                # Merging every partition's totals is the costly part: only when something reads them.
                needed = engine.active() or any(m.topic() == self.topics.specs for m in messages)
                totals = self.merger.guardrail_totals() if needed else {}
                for message in messages:
                    record = _read(message)
                    if message.topic() == self.topics.control:
                        self._on_control(engine, record, told, refused)
                        continue
                    read = read_spec_record(record.key, record.value)
                    if read.refusal is not None:
                        self._refuse(record, read.model, read.refusal, told, refused)
                    else:
                        outputs += self._on_spec(engine, read.model, read.spec, record.rollout_id, totals)
                drift = self.merger.monitor_view() if needed else DriftView()
                outputs += engine.tick(now_ms(), totals, drift)
                if outputs or refused or time.monotonic() - saved > SAVE_EVERY_S:
                    self._publish(producer, engine, outputs, refused, told)
                    saved = time.monotonic()
                earliest = ticked + max(MIN_TICK_S, TICK_COST_RATIO * (time.monotonic() - ticked))
        finally:
            self.engine = None
            if self.registry is not None:
                self.registry.forget_queued()  # the next owner sends what is still in the outbox
            consumer.close()

    def _wait_for_news(self, deadline: float, earliest: float) -> None:
        """Until the merger has merged new totals (not before ``earliest``) or ``deadline``."""
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            if self.merger.merged.wait(deadline - now):
                came = time.monotonic()
                if earliest > came:  # (from when the news came: waiting for it may have passed ``earliest``)
                    self._stop.wait(min(earliest, deadline) - came)
                self.merger.merged.clear()
                return

    def _on_spec(self, engine: RolloutEngine, model: str, spec: RolloutSpec | None, rollout_id: str,
                 totals: dict) -> list[Output]:
        if spec is None:
            return engine.stop(model, now_ms())
        outputs = engine.start(spec, now_ms(), totals, rollout_id=rollout_id)
        rollout = engine.rollouts.get(model)
        if (self.registry is not None and spec.registry is not None and rollout is not None
                and "versions" not in rollout):  # read once per rollout (a new owner keeps them)
            engine.annotate(model, rollout["id"], self.registry.versions(spec))
        return outputs

    def _on_control(self, engine: RolloutEngine, record: ReadRecord, told: ToldPositions,
                    refused: list[Refused]) -> None:
        command = read_command_record(record.value)
        if isinstance(command, Refusal):  # a router refuses it too; no epoch moves
            model = record.key.decode("utf-8", "replace") if record.key else None
            self._refuse(record, model, command, told, refused)
            return
        refusal = engine.observe_command(command, raw=record.value)
        if refusal is not None:
            COMMANDS_REFUSED.inc()
            log.warning("ignoring command %s (%s %s by %s) on rollout.control: %s", command.command_id,
                        command.action, command.model, command.issuer, refusal)

    @staticmethod
    def _refuse(record: ReadRecord, model: str | None, refusal: Refusal, told: ToldPositions,
                refused: list[Refused]) -> None:
        """Tell a refused control record once: an alert and a dead letter, in the next transaction."""
        if not told.is_new(record):
            return  # told by an earlier owner (the offsets it told are in the saved state)
        told.tell(record)
        alert = refusal_alert(record.topic, record.partition, record.offset, model, refusal, now_ms())
        letter = DeadLetter(record.key, record.value, record.topic, record.partition, record.offset,
                            refusal.reason, refusal.detail)
        refused.append(Refused(alert, letter))

    def _publish(self, producer: Producer, engine: RolloutEngine, outputs: list[Output],
                 refused: list[Refused], told: ToldPositions) -> None:
        """Outputs, refusals (alert and dead letter each) and the state that produced them (the
        engine's and the refusals told): one transaction."""
        decided = self._decided_writes(engine, outputs)
        producer.begin_transaction()
        try:
            for output in outputs:  # output.topic is control, decisions or alerts: a Topics attribute
                producer.produce(getattr(self.topics, output.topic), key=output.key.encode(),
                                 value=encode(output.message))
            for item in refused:
                producer.produce(self.topics.alerts, key=item.alert.model.encode(), value=encode(item.alert))
                producer.produce(self.topics.dlq, key=item.letter.key, value=item.letter.value,
                                 headers=item.letter.headers())
            state = {**engine.to_state(), TOLD_KEY: told.to_state(), REGISTRY_OUTBOX_KEY: self._pending_writes()}
            producer.produce(rollouts_topic_name(self.topics), key=ENGINE_KEY, value=orjson.dumps(state))
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
        for write in decided:  # committed with the decisions: now the registry may take them
            self.registry.submit(write, self._on_written)
        if refused:
            by_reason = Counter((item.letter.source_topic, item.letter.reason) for item in refused)
            for (topic, reason), n in by_reason.items():
                CONTROL_RECORDS_REFUSED.labels(topic, reason).inc(n)
            # One line per transaction, however many: each is on evaluator.alerts and evaluator.dlq.
            log.warning("refused %d control record(s), which changed nothing (%s); each is alerted on %s "
                        "and dead-lettered on %s; first: %s", len(refused),
                        ", ".join(f"{topic} {reason}: {n}" for (topic, reason), n in sorted(by_reason.items())),
                        self.topics.alerts, self.topics.dlq, refused[0].alert.message)


    def _decided_writes(self, engine: RolloutEngine, outputs: list[Output]) -> list[RegistryWrite]:
        """The registry writes ``outputs``' decisions call for, put in the outbox (saved with them)."""
        if self.registry is None:
            return []
        decided = []
        for output in outputs:
            spec = engine.spec_of(output.key) if output.topic == "decisions" else None
            write = outcome_write(spec, output.message) if spec is not None else None
            if write is not None:
                self._outbox[write["rollout_id"]] = write
                decided.append(write)
        return decided

    def _on_written(self, write: RegistryWrite) -> None:
        with self._written_lock:
            self._written.add(write["rollout_id"])

    def _pending_writes(self) -> list[RegistryWrite]:
        """The outbox less what the registry has taken, in order (what the next owner must send)."""
        with self._written_lock:
            written, self._written = self._written, set()
        for rollout_id in written:
            self._outbox.pop(rollout_id, None)
        return list(self._outbox.values())


@dataclass(frozen=True)
class Refused:
    """A refused control record as told: its alert and its dead letter."""

    alert: Alert
    letter: DeadLetter


def _read(message: Message) -> ReadRecord:
    return ReadRecord(message.topic(), message.partition(), message.offset(), message.key(), message.value())

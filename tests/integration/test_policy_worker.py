"""The rollout engine through the real broker: specs in, commands, decisions and alerts out."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, decode
from schemas.control import Decision, RoutingCommand
from schemas.monitoring import Alert
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000


def spec(model: str) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "model": model, "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
        "steps": [50, 100], "bake": {"min_duration": "0s", "min_samples": 150},
        # A tolerance, so that an equal candidate is not rolled back by the test's own alpha.
        "guardrails": [{"metric": "accuracy", "max_degradation": 0.03},
                       {"metric": "error_rate", "max": 0.05, "critical": True}]})


def publish_three_step_rollout(producer: ContractProducer, topics: Topics, model: str) -> None:
    """The accuracy spec of ``model`` with three stages (10%, 50%, 100%), on rollout.specs."""
    three = spec(model).model_dump(mode="json")
    three["steps"] = [10, 50, 100]
    producer.send(topics.specs, model, RolloutSpec.model_validate(three))
    producer.flush()


def traffic(producer: ContractProducer, topics: Topics, model: str, accuracy: dict[str, float], n: int,
            rng: random.Random, start: int = 0, flush: bool = True) -> None:
    for i in range(start, start + n):
        rid, ts = f"{model}-{i}", T0 + i * 10
        version = "v2" if i % 2 else "v1"
        label = rng.randint(0, 1)
        prediction = label if rng.random() < accuracy[version] else 1 - label
        producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model=model, ts=ts))
        producer.send(topics.responses, rid, InferenceResponse(
            request_id=rid, model=model, version=version, role="primary" if version == "v1" else "canary",
            ts=ts + 5, prediction=prediction, latency_ms=8.0))
        producer.send(topics.labels, rid, GroundTruth(request_id=rid, model=model, ts=ts + 50, label=label))
    if flush:
        producer.flush(60)


def wait_for_commands(settings, topics: Topics, done, timeout: float = 150.0,
                      between=lambda: None) -> list[RoutingCommand]:
    """Read rollout.control until ``done``; ``between`` runs before each read (more traffic)."""
    deadline = time.monotonic() + timeout
    commands: list[RoutingCommand] = []
    while time.monotonic() < deadline:
        between()
        commands = [decode(RoutingCommand, m.value()) for m in read_topic(settings, topics.control, linger=2)]
        if done(commands):
            break
    return commands


def test_a_worse_candidate_is_rolled_back_and_an_equal_one_completes(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    app_id = f"policy-{uuid.uuid4().hex[:8]}"
    worker = start_evaluator(kafka_settings, app_id, str(tmp_path / "w0"), "--label-timeout", "60s",
                             "--expiry-grace", "5s", "--metrics-port", "0", "--task", "bad=binary",
                             "--task", "good=binary")
    try:
        producer = ContractProducer(kafka_settings)
        for model in ("bad", "good"):
            producer.send(topics.specs, model, spec(model))
        producer.flush()
        time.sleep(8)  # the worker joins its groups and the engine starts both rollouts
        rng = random.Random(3)
        sent = [0]

        def more_traffic() -> None:  # in rounds, so that every stage gets samples of its own
            for model, accuracy in (("bad", {"v1": 0.95, "v2": 0.70}), ("good", {"v1": 0.95, "v2": 0.95})):
                traffic(producer, topics, model, accuracy, 500, rng, start=sent[0])
            sent[0] += 500

        def settled(commands):
            by_model = {c.model: c for c in commands}
            return (by_model.get("bad") and by_model["bad"].action == "rollback"
                    and by_model.get("good") and by_model["good"].action == "promote")

        commands = wait_for_commands(kafka_settings, topics, settled, between=more_traffic)
        alive = worker.poll() is None
    finally:
        stop_workers(worker)
    assert alive
    bad = [c for c in commands if c.model == "bad"]
    good = [c for c in commands if c.model == "good"]
    assert [c.action for c in bad] == ["set_routes", "rollback"]
    assert bad[-1].routes == {"v1": 100.0} and "accuracy" in bad[-1].reason
    assert [(c.action, c.routes) for c in good] == [("set_routes", {"v1": 50.0, "v2": 50.0}),
                                                    ("set_routes", {"v2": 100.0}),
                                                    ("promote", {"v2": 100.0})]
    for model_commands in (bad, good):  # epochs strictly increase, every command once
        assert [c.epoch for c in model_commands] == list(range(len(model_commands)))
    decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=1)]
    rollback = next(d for d in decisions if d.model == "bad" and d.action == "rollback")
    accuracy = next(e for e in rollback.evidence if e.metric == "accuracy")
    assert accuracy.verdict == "fail" and accuracy.candidate.value < accuracy.baseline.value
    alerts = [decode(Alert, m.value()) for m in read_topic(kafka_settings, topics.alerts, linger=1)]
    assert [(a.model, a.kind) for a in alerts] == [("bad", "rollback")]

"""More rollout scenarios through the real broker: errors roll a candidate back before any label,
a latency regression is rolled back, no labels at all holds and alerts, and a worker killed
(SIGKILL) mid-rollout resumes without repeating or regressing commands."""

from __future__ import annotations

import random
import signal
import time
import uuid

import pytest

from schemas import InferenceRequest, InferenceResponse, Topics, decode
from schemas.control import Decision, RoutingCommand
from schemas.monitoring import Alert
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import spec as accuracy_spec
from tests.integration.test_policy_worker import traffic, wait_for_commands
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000


def unlabelled(producer: ContractProducer, topics: Topics, model: str, n: int, start: int, rng: random.Random,
               error_rate: dict[str, float], latency: dict[str, float]) -> None:
    """Responses with no ground truth: v1 primary, v2 canary, alternating."""
    for i in range(start, start + n):
        rid, ts = f"{model}-{i}", T0 + i * 10
        version = "v2" if i % 2 else "v1"
        failed = rng.random() < error_rate[version]
        producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model=model, ts=ts))
        producer.send(topics.responses, rid, InferenceResponse(
            request_id=rid, model=model, version=version, role="primary" if version == "v1" else "canary",
            ts=ts + 5, prediction=None if failed else 1, error="timeout" if failed else None,
            latency_ms=latency[version] * (0.5 + rng.random())))
    producer.flush(60)


def test_errors_latency_and_missing_labels_without_any_label(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=3, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    base = {"baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary", "steps": [50, 100]}
    specs = {
        # 20% errors: the critical error-rate guardrail rolls it back; no label ever arrives.
        "errors": {**base, "model": "errors", "bake": {"min_duration": "0s", "min_samples": 1_000_000},
                   "guardrails": [{"metric": "accuracy", "max_degradation": 0.02},
                                  {"metric": "error_rate", "max": 0.05, "critical": True}]},
        # p99 latency three times the baseline's, against at most 20% worse. (Without labels a bake
        # in labelled samples never ends: only a failure can move these two.)
        "latency": {**base, "model": "latency", "bake": {"min_duration": "0s", "min_samples": 1_000_000},
                    "guardrails": [{"metric": "latency_p99_ms", "max_degradation_relative": 0.2, "critical": True}]},
        # Only an accuracy guardrail and no labels: the stage is baked by time, there is no data: hold.
        "nolabels": {**base, "model": "nolabels", "bake": {"min_duration": "0s", "min_samples": 0},
                     "guardrails": [{"metric": "accuracy", "max_degradation": 0.02}]},
    }
    worker = start_evaluator(kafka_settings, f"scen-{uuid.uuid4().hex[:6]}", str(tmp_path / "w"),
                             "--label-timeout", "1h", "--metrics-port", "0",
                             *[arg for model in specs for arg in ("--task", f"{model}=binary")])
    try:
        producer = ContractProducer(kafka_settings)
        for model, document in specs.items():
            producer.send(topics.specs, model, RolloutSpec.model_validate(document))
        producer.flush()
        time.sleep(8)
        rng, sent = random.Random(11), [0]

        def more() -> None:
            unlabelled(producer, topics, "errors", 300, sent[0], rng, {"v1": 0.01, "v2": 0.20}, {"v1": 20, "v2": 20})
            unlabelled(producer, topics, "latency", 300, sent[0], rng, {"v1": 0.0, "v2": 0.0}, {"v1": 20, "v2": 60})
            unlabelled(producer, topics, "nolabels", 300, sent[0], rng, {"v1": 0.0, "v2": 0.0}, {"v1": 20, "v2": 20})
            sent[0] += 300

        def settled(commands) -> bool:
            last = {c.model: c.action for c in commands}
            return last.get("errors") == "rollback" and last.get("latency") == "rollback"

        commands = wait_for_commands(kafka_settings, topics, settled, between=more)
        time.sleep(2)
        decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=2)]
        alerts = [decode(Alert, m.value()) for m in read_topic(kafka_settings, topics.alerts, linger=1)]
        commands = [decode(RoutingCommand, m.value()) for m in read_topic(kafka_settings, topics.control, linger=1)]
    finally:
        stop_workers(worker)
    by_model = {m: [c.action for c in commands if c.model == m] for m in specs}
    assert by_model == {"errors": ["set_routes", "rollback"], "latency": ["set_routes", "rollback"],
                        "nolabels": ["set_routes"]}
    errors = next(d for d in decisions if d.model == "errors" and d.action == "rollback")
    assert "error_rate" in errors.reason
    assert all(e.candidate.samples == 0 for e in errors.evidence if e.metric == "accuracy")  # no label at all
    latency = next(d for d in decisions if d.model == "latency" and d.action == "rollback")
    assert "latency_p99_ms" in latency.reason
    held = [d for d in decisions if d.model == "nolabels"]
    assert [d.action for d in held] == ["hold"] and "no data for accuracy" in held[0].reason
    assert [(a.model, a.kind) for a in alerts if a.model == "nolabels"] == [("nolabels", "labels")]


def test_a_worker_killed_mid_rollout_resumes_without_repeating_or_regressing(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=3, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    app_id = f"kill-roll-{uuid.uuid4().hex[:6]}"
    args = ("--label-timeout", "60s", "--expiry-grace", "5s", "--metrics-port", "0", "--task", "walk=binary")
    document = accuracy_spec("walk").model_dump(mode="json")
    document["steps"] = [10, 25, 50, 100]
    walk = RolloutSpec.model_validate(document)
    worker = start_evaluator(kafka_settings, app_id, str(tmp_path / "w"), *args)
    kills = 0
    try:
        producer = ContractProducer(kafka_settings)
        producer.send(topics.specs, "walk", walk)
        producer.flush()
        time.sleep(8)
        rng, sent = random.Random(5), [0]
        # Traffic for one stage at a time, so that each kill lands mid-rollout (no backlog of stages):
        # a chunk holds exactly one stage's bake of candidate labels (every other request is v2). A
        # restarted worker waits for the group to drop its dead predecessor (the session timeout)
        # and rebuilds its tables: more traffic only if a stage stalls well after that.
        chunk = 2 * walk.bake_at(0).min_samples
        paced = {"for": 0, "at": 0.0, "killed": 0.0}

        def more() -> None:
            nonlocal worker, kills
            steps = len([c for c in read_topic(kafka_settings, topics.control, linger=0.5) if c.value()])
            if kills < 2 and steps >= 2 + kills:  # after the first and the second step: SIGKILL
                worker.send_signal(signal.SIGKILL)
                worker.wait(30)
                kills += 1
                paced["killed"] = time.monotonic()
                worker = start_evaluator(kafka_settings, app_id, str(tmp_path / "w"), *args)
            stalled = time.monotonic() - max(paced["at"], paced["killed"] + 60) > 30
            if steps > paced["for"] or stalled:
                traffic(producer, topics, "walk", {"v1": 0.95, "v2": 0.95}, chunk, rng, start=sent[0])
                sent[0] += chunk
                paced.update({"for": steps, "at": time.monotonic()})

        commands = wait_for_commands(kafka_settings, topics, lambda cs: any(c.action == "promote" for c in cs),
                                     timeout=420, between=more)
        time.sleep(3)
        commands = [decode(RoutingCommand, m.value()) for m in read_topic(kafka_settings, topics.control, linger=2)]
    finally:
        stop_workers(worker)
    assert kills == 2
    assert [c.epoch for c in commands] == list(range(len(commands)))  # none repeated, none skipped
    assert len({c.command_id for c in commands}) == len(commands)
    assert [c.routes.get("v2", 0.0) for c in commands] == [10.0, 25.0, 50.0, 100.0, 100.0]
    assert [c.action for c in commands] == ["set_routes"] * 4 + ["promote"]

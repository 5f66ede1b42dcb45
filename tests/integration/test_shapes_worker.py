"""schema_compatible through the real broker: a candidate that answers class names where the
baseline answers indices is rolled back for that, before its accuracy can be judged."""

from __future__ import annotations

import random
import subprocess
import time
import uuid

import pytest

from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, decode
from schemas.control import Decision
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import wait_for_commands
from tests.kafka_helpers import cli, read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000
NAMES = {0: "malignant", 1: "benign"}


def test_a_candidate_answering_class_names_is_rolled_back_for_its_schema(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    worker = start_evaluator(kafka_settings, f"shapes-{uuid.uuid4().hex[:8]}", str(tmp_path / "w0"),
                             "--label-timeout", "60s", "--expiry-grace", "5s", "--metrics-port", "0",
                             "--task", "cancer=binary")
    try:
        producer = ContractProducer(kafka_settings)
        producer.send(topics.specs, "cancer", RolloutSpec.model_validate({
            "model": "cancer", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
            "steps": [50, 100], "bake": {"min_duration": "0s", "min_samples": 100},
            "guardrails": [{"metric": "schema_compatible", "critical": True},
                           {"metric": "accuracy", "max_degradation": 0.03, "critical": True}]}))
        producer.flush()
        time.sleep(8)  # the worker joins its groups and the engine starts the rollout
        rng, sent = random.Random(2), [0]

        def more_traffic() -> None:  # responses only: the labels have not come yet
            for i in range(sent[0], sent[0] + 200):
                rid, ts, version = f"cancer-{i}", T0 + i * 10, "v2" if i % 2 else "v1"
                prediction = rng.randint(0, 1)
                producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model="cancer", ts=ts))
                producer.send(topics.responses, rid, InferenceResponse(
                    request_id=rid, model="cancer", version=version, role="primary" if version == "v1" else "canary",
                    ts=ts + 5, prediction=NAMES[prediction] if version == "v2" else prediction, latency_ms=8.0))
            producer.flush(60)
            sent[0] += 200

        commands = wait_for_commands(kafka_settings, topics, lambda cs: any(c.action == "rollback" for c in cs),
                                     between=more_traffic)
        # Time moves on past the windows' close (late events on every source of every partition), so
        # the merging owner learns the versions' shapes from them; `rollout status` shows them.
        late = T0 + sent[0] * 10 + 300_000
        for k in range(40):
            rid = f"tick-{k}"
            producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model="cancer", ts=late))
            producer.send(topics.responses, rid, InferenceResponse(request_id=rid, model="cancer", version="v1",
                                                                   role="primary", ts=late, prediction=0))
            producer.send(topics.labels, rid, GroundTruth(request_id=rid, model="cancer", ts=late, label=0))
        producer.flush(30)
        status, deadline = "", time.monotonic() + 90
        while status.count("answers):") < 2 and time.monotonic() < deadline:
            time.sleep(2)
            status = subprocess.run(cli(kafka_settings, "rollout", "status", "cancer"), capture_output=True,
                                    text=True, timeout=60).stdout
        alive = worker.poll() is None
    finally:
        stop_workers(worker)
    assert "v1 (primary" in status and "predictions integer (0, 1)" in status
    assert 'v2 (canary' in status and 'predictions string ("benign", "malignant")' in status
    assert alive
    assert [c.action for c in commands] == ["set_routes", "rollback"]
    assert commands[-1].routes == {"v1": 100.0}
    assert commands[-1].reason == ("rollback: output schema differs from the baseline's: its predictions are "
                                   "string, the baseline's integer.")
    decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=1)]
    rollback = next(d for d in decisions if d.action == "rollback")
    assert rollback.reason.startswith("output schema differs from the baseline's")
    verdicts = {e.metric: e.verdict for e in rollback.evidence}
    assert verdicts == {"schema_compatible": "fail", "accuracy": "undecided"}

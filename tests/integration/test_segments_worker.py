"""Per-segment guardrails through the real broker: a candidate better on average but worse in one
region is rolled back and the decision names the region; the worker publishes each segment's windows
and exports each segment's metrics and the fairness gap."""

from __future__ import annotations

import random
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, decode
from schemas.control import Decision
from schemas.monitoring import MetricsSnapshot
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import wait_for_commands
from tests.kafka_helpers import read_topic, send_ticks, start_evaluator, stop_workers, wait_for

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000
MODEL = "loans"
REGIONS = {"eu": 0.5, "us": 0.35, "apac": 0.15}
#: The candidate: better in eu and us, much worse in apac, better on average (0.9025 against 0.9).
ACCURACY = {"v1": dict.fromkeys(REGIONS, 0.90), "v2": {"eu": 0.96, "us": 0.96, "apac": 0.55}}


def spec() -> RolloutSpec:
    return RolloutSpec.model_validate({
        "model": MODEL, "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary", "steps": [50, 100],
        "bake": {"min_duration": "0s", "min_samples": 3000},
        "guardrails": [{"metric": "accuracy", "max_degradation": 0.0, "per_segment": True}],
        "segments": ["region"]})


def traffic(producer: ContractProducer, topics: Topics, n: int, rng: random.Random, start: int) -> None:
    for i in range(start, start + n):
        rid, ts = f"{MODEL}-{i}", T0 + i * 10
        region = rng.choices(list(REGIONS), weights=list(REGIONS.values()))[0]
        version = "v2" if i % 2 else "v1"
        label = rng.randint(0, 1)
        prediction = label if rng.random() < ACCURACY[version][region] else 1 - label
        producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model=MODEL, ts=ts,
                                                             attributes={"region": region}))
        producer.send(topics.responses, rid, InferenceResponse(
            request_id=rid, model=MODEL, version=version, role="primary" if version == "v1" else "canary",
            ts=ts + 5, prediction=prediction, latency_ms=8.0))
        producer.send(topics.labels, rid, GroundTruth(request_id=rid, model=MODEL, ts=ts + 50, label=label))
    producer.flush(60)


def test_a_regression_in_one_segment_is_rolled_back_naming_the_segment(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    port = free_port()
    worker = start_evaluator(kafka_settings, f"seg-{uuid.uuid4().hex[:8]}", str(tmp_path / "w"),
                             "--label-timeout", "60s", "--expiry-grace", "1s", "--window", "10s",
                             "--metrics-port", str(port),
                             "--metrics-host", "127.0.0.1", "--task", f"{MODEL}=binary",
                             "--segments", f"{MODEL}=region:5")
    try:
        producer = ContractProducer(kafka_settings)
        producer.send(topics.specs, MODEL, spec())
        producer.flush()
        rng, sent = random.Random(4), [0]

        def more_traffic() -> None:
            traffic(producer, topics, 2_000, rng, sent[0])
            sent[0] += 2_000

        commands = wait_for_commands(kafka_settings, topics, lambda cs: any(c.action == "rollback" for c in cs),
                                     timeout=240, between=more_traffic)
        # Time passes every window's close: each version's windows, and each segment's, are published.
        send_ticks(kafka_settings, topics, 2, T0 + 86_400_000)
        snapshots: list[MetricsSnapshot] = []

        def every_window_published() -> bool:
            snapshots[:] = [decode(MetricsSnapshot, m.value())
                            for m in read_topic(kafka_settings, topics.metrics, linger=1)]
            whole = sum(s.labelled for s in snapshots if s.segment is None)
            return whole >= sent[0] and sum(s.labelled for s in snapshots if s.segment) == whole

        assert wait_for(every_window_published, 120, 2.0), [(s.segment, s.labelled) for s in snapshots][-10:]
        exported = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        alive = worker.poll() is None
    finally:
        stop_workers(worker)
    assert alive
    assert [c.action for c in commands if c.model == MODEL] == ["set_routes", "rollback"]
    decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=1)]
    rollback = next(d for d in decisions if d.model == MODEL and d.action == "rollback")
    assert "accuracy in segment region=apac" in rollback.reason
    failing = [e for e in rollback.evidence if e.verdict == "fail"]
    assert [e.segment for e in failing] == ["region=apac"]
    assert failing[0].candidate.value < 0.7 < failing[0].baseline.value
    overall = next(e for e in rollback.evidence if e.segment is None)
    assert overall.verdict != "fail" and overall.candidate.value > 0.88  # better on average
    # Each segment's windows on the metrics topic (every labelled request in exactly one region), and
    # the segment series on /metrics.
    assert {s.segment for s in snapshots if s.segment} == {"region=eu", "region=us", "region=apac"}
    assert sum(s.labelled for s in snapshots if s.segment is None) == sent[0]
    samples = [s for family in text_string_to_metric_families(exported) for s in family.samples]
    accuracy = {(s.labels["version"], s.labels["segment"]): s.value for s in samples
                if s.name == "shadowcanary_segment_metric" and s.labels["metric"] == "accuracy"}
    assert accuracy[("v2", "region=apac")] < 0.7 < accuracy[("v1", "region=apac")]
    gap = next(s for s in samples if s.name == "shadowcanary_segment_gap" and s.labels["version"] == "v2"
               and s.labels["metric"] == "accuracy")
    assert gap.labels["worst"] == "region=apac" and gap.value > 0.3

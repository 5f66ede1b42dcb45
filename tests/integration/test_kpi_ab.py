"""An A/B on a business KPI through the real broker: a candidate that lowers conversion is rolled
back; an equal one completes once non-inferiority is shown."""

from __future__ import annotations

import random
import uuid
from html import escape

import pytest

from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, decode
from schemas.control import Decision
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import wait_for_commands
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000


def spec(model: str) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "model": model, "baseline": "v1", "candidate": "v2", "mode": "ab", "task": "binary", "steps": [50],
        "bake": {"min_duration": "0s", "min_samples": 200},
        "guardrails": [{"metric": "outcome.converted", "max_degradation": 0.05, "critical": True},
                       {"metric": "error_rate", "max": 0.05, "critical": True}]})


def kpi_traffic(producer: ContractProducer, topics: Topics, model: str, conversion: dict[str, float], n: int,
                rng: random.Random, start: int) -> None:
    """Requests split 50/50, each labelled with whether it converted."""
    for i in range(start, start + n):
        rid, ts = f"{model}-{i}", T0 + i * 10
        version = "v2" if i % 2 else "v1"
        converted = rng.random() < conversion[version]
        producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model=model, ts=ts))
        producer.send(topics.responses, rid, InferenceResponse(
            request_id=rid, model=model, version=version, role="primary" if version == "v1" else "canary",
            ts=ts + 5, prediction=1, score=0.7, latency_ms=8.0))
        producer.send(topics.labels, rid, GroundTruth(request_id=rid, model=model, ts=ts + 50, label=1,
                                                      outcomes={"converted": 1.0 if converted else 0.0}))
    producer.flush(60)


def test_an_ab_on_conversion_rolls_back_a_worse_candidate_and_completes_an_equal_one(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    worker = start_evaluator(kafka_settings, f"kpi-{uuid.uuid4().hex[:8]}", str(tmp_path / "w"),
                             "--label-timeout", "60s", "--metrics-port", "0", "--task", "worse=binary",
                             "--task", "equal=binary")
    try:
        producer = ContractProducer(kafka_settings)
        for model in ("worse", "equal"):
            producer.send(topics.specs, model, spec(model))
        producer.flush()
        rng, sent = random.Random(8), [0]

        def more_traffic() -> None:
            for model, conversion in (("worse", {"v1": 0.30, "v2": 0.15}), ("equal", {"v1": 0.30, "v2": 0.30})):
                kpi_traffic(producer, topics, model, conversion, 1_000, rng, sent[0])
            sent[0] += 1_000

        def settled(commands) -> bool:
            last = {c.model: c.action for c in commands}
            return last.get("worse") == "rollback" and last.get("equal") == "promote"

        commands = wait_for_commands(kafka_settings, topics, settled, timeout=240, between=more_traffic)
        alive = worker.poll() is None
    finally:
        stop_workers(worker)
    assert alive
    assert [c.action for c in commands if c.model == "worse"] == ["set_routes", "rollback"]
    assert [c.action for c in commands if c.model == "equal"] == ["set_routes", "promote"]
    decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=1)]
    rollback = next(d for d in decisions if d.model == "worse" and d.action == "rollback")
    conversion = next(e for e in rollback.evidence if e.metric == "outcome.converted")
    assert conversion.verdict == "fail" and "outcome.converted" in rollback.reason
    assert conversion.candidate.value < 0.25 < conversion.baseline.value
    assert conversion.candidate.upper < conversion.baseline.lower or conversion.statistic >= conversion.threshold
    complete = next(d for d in decisions if d.model == "equal" and d.action == "complete")
    passed = next(e for e in complete.evidence if e.metric == "outcome.converted")
    assert passed.verdict == "pass" and passed.candidate.samples >= 200
    # The report of the real rollout, from the live topics: its decisions, and a panel per guardrail.
    from click.testing import CliRunner

    from streams.cli.main import cli

    result = CliRunner().invoke(cli, ["--bootstrap", kafka_settings.bootstrap_servers, "--topic-prefix",
                                      kafka_settings.topic_prefix, "report", "--model", "worse", "--out",
                                      str(tmp_path / "worse.html")])
    assert result.exit_code == 0, result.output
    assert f"rollout {rollback.rollout_id}" in result.output and "2 commands, 1 decisions" in result.output
    html = (tmp_path / "worse.html").read_text()
    assert "outcome.converted: per-window values" in html and "error rate: per-window values" in html
    assert escape(rollback.reason) in html
    # The same panels as a replay of the recorded traffic under the same spec.
    import re

    import yaml

    recorded = tmp_path / "recorded"
    runner = CliRunner()
    result = runner.invoke(cli, ["--bootstrap", kafka_settings.bootstrap_servers, "--topic-prefix",
                                 kafka_settings.topic_prefix, "record", "--out", str(recorded)])
    assert result.exit_code == 0, result.output
    spec_file = tmp_path / "worse.yaml"
    spec_file.write_text(yaml.safe_dump(spec("worse").model_dump(mode="json")))
    result = runner.invoke(cli, ["replay", *[str(p) for p in sorted(recorded.glob("*.jsonl"))], "--spec",
                                 str(spec_file), "--task", "worse=binary", "--label-timeout", "60s", "--out",
                                 str(tmp_path / "replayed")])
    assert result.exit_code == 0, result.output
    replayed = (tmp_path / "replayed" / "report.html").read_text()

    def panels(document: str) -> set[str]:
        return {title.strip() for title in re.findall(r"([\w.@ ()]+): per-window values", document)}
    assert panels(html) == panels(replayed) == {"accuracy", "outcome.converted", "error rate"}

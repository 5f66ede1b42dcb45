"""The read API against a real worker's rollouts, queried exactly as Argo Rollouts' web metric
provider (GET, JSON, a jsonPath condition on the result) and Flagger's webhooks (POST of Flagger's
payload; 200 goes on, anything else halts) query it: a passing, a failing and a data-less rollout."""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import uuid

import orjson
import pytest

from schemas import Topics, decode
from schemas.control import Decision
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_scenarios import unlabelled
from tests.integration.test_policy_worker import spec, traffic, wait_for_commands
from tests.kafka_helpers import cli, read_topic, start_evaluator, stop_workers, wait_for


def call(port: int, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=orjson.dumps(body) if body is not None else None,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


def flagger(port: int, kind: str, model: str) -> int:
    """A Flagger webhook call (its payload as Flagger's docs give it), the model in metadata."""
    return call(port, "POST", f"/v1/flagger/{kind}", {
        "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b",
        "metadata": {"model": model, "type": "bash"}})[0]


pytestmark = pytest.mark.kafka


def test_argo_and_flagger_get_the_verdicts_of_passing_failing_and_data_less_rollouts(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    worker = start_evaluator(kafka_settings, f"api-{uuid.uuid4().hex[:6]}", str(tmp_path / "w"),
                             "--label-timeout", "60s", "--metrics-port", "0",
                             *[a for m in ("good", "bad", "nolabels") for a in ("--task", f"{m}=binary")])
    port = free_port()
    server = subprocess.Popen(cli(kafka_settings, "api", "--port", str(port)), stderr=subprocess.PIPE, text=True)
    try:
        producer = ContractProducer(kafka_settings)
        nolabels = spec("nolabels").model_dump(mode="json") | {
            "bake": {"min_duration": "0s", "min_samples": 0},
            "guardrails": [{"metric": "accuracy", "max_degradation": 0.03}],
        }
        for message in (spec("good"), spec("bad"), RolloutSpec.model_validate(nolabels)):
            producer.send(topics.specs, message.model, message)
        producer.flush()
        rng, sent = random.Random(6), [0]

        def more() -> None:
            for model, accuracy in (("bad", {"v1": 0.95, "v2": 0.70}), ("good", {"v1": 0.95, "v2": 0.95})):
                traffic(producer, topics, model, accuracy, 500, rng, start=sent[0])
            unlabelled(producer, topics, "nolabels", 200, sent[0], rng, {"v1": 0.0, "v2": 0.0}, {"v1": 20, "v2": 20})
            sent[0] += 500

        def settled(commands) -> bool:
            last = {c.model: c.action for c in commands}
            holds = {d.model for d in (decode(Decision, m.value()) for m in
                                       read_topic(kafka_settings, topics.decisions, linger=0.5)) if d.action == "hold"}
            return last.get("bad") == "rollback" and last.get("good") == "promote" and "nolabels" in holds

        wait_for_commands(kafka_settings, topics, settled, between=more)

        def verdicts() -> dict:
            return {m: call(port, "GET", f"/v1/rollouts/{m}/verdict")[1].get("verdict")
                    for m in ("good", "bad", "nolabels")}
        expected = {"good": "pass", "bad": "fail", "nolabels": "no_data"}
        assert wait_for(lambda: verdicts() == expected, 60, 0.5), verdicts()
        # Argo Rollouts' web provider: successCondition result.verdict == "pass", failureCondition "fail".
        status, result = call(port, "GET", "/v1/rollouts/bad/verdict")
        assert status == 200 and result["status"] == "rolled_back"
        assert any(g["metric"] == "accuracy" and g["verdict"] == "fail" for g in result["guardrails"])
        assert call(port, "GET", "/v1/rollouts/unknown/verdict") == (404, {
            "model": "unknown", "verdict": "unknown", "reason": "no rollout of unknown", "rollout_id": None,
            "status": None, "stage": None, "guardrails": []})
        # Flagger: 200 goes on; anything else halts.
        answers = {(kind, m): flagger(port, kind, m) for kind in ("confirm-promotion", "rollout",
                                                                  "confirm-traffic-increase")
                   for m in ("good", "bad", "nolabels")}
        assert answers == {
            ("confirm-promotion", "good"): 200,
            ("confirm-promotion", "bad"): 403,
            ("confirm-promotion", "nolabels"): 403,
            ("rollout", "good"): 200,
            ("rollout", "bad"): 500,
            ("rollout", "nolabels"): 200,
            ("confirm-traffic-increase", "good"): 200,
            ("confirm-traffic-increase", "bad"): 403,
            ("confirm-traffic-increase", "nolabels"): 403,
        }
        assert call(port, "POST", "/v1/flagger/confirm-promotion", {"namespace": "test"})[0] == 400  # no name
        listing = call(port, "GET", "/v1/rollouts")[1]
        assert {r["model"]: r["status"] for r in listing} == {"bad": "rolled_back", "good": "completed",
                                                              "nolabels": "running"}  # holding: no data
        status, decisions = call(port, "GET", "/v1/rollouts/bad/decisions")
        assert status == 200 and decisions[-1]["action"] == "rollback"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/v1/rollouts/bad/report")
        response = connection.getresponse()
        page = response.read().decode()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/html")
        assert "accuracy: per-window values" in page and decisions[-1]["reason"] in page
        # A person pauses the data-less rollout from a pipeline: the command and decision as JSON.
        paused = subprocess.run(cli(kafka_settings, "rollout", "pause", "nolabels", "--reason", "labels are late today",
                                    "--user", "ci", "--output", "json"),
                                capture_output=True, text=True, timeout=120)
        assert paused.returncode == 0, paused.stderr
        published = json.loads(paused.stdout)
        assert published["command"]["action"] == "pause" and published["command"]["issuer"] == "cli:ci"
        assert published["decision"]["action"] == "hold" and "labels are late today" in published["decision"]["reason"]
        assert wait_for(lambda: {r["model"]: r["status"] for r in call(port, "GET", "/v1/rollouts")[1]}["nolabels"]
                        == "paused", 60, 0.5)
    finally:
        stop_workers(worker)
        server.terminate()
        server.communicate(timeout=30)

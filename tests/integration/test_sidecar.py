"""The sidecar against a real broker, driven by a real HTTP client in another language (Node) and by
Python's http.client: it routes exactly as the SDK does, obeys only signed commands, logs events to
the contract's topics, and answers bad input with a status and a reason."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

import orjson
import pytest

from schemas import decode
from schemas.inference import GroundTruth, InferenceRequest
from schemas.signing import HmacKey, sign_command
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from streams.serving.router import Router
from tests.integration.test_router import command
from tests.kafka_helpers import cli, read_topic, wait_for

pytestmark = pytest.mark.kafka
SECRET = b"sidecar-test-secret-32-bytes-long"
KEY = HmacKey(SECRET)
CLIENT = Path(__file__).resolve().parents[2] / "tools" / "sidecar-client" / "route.mjs"


def call(port: int, method: str, path: str, body: object | bytes | None = None) -> tuple[int, dict | str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, (json.loads(text) if response.getheader("Content-Type") == "application/json" else text)


@pytest.fixture
def running_sidecar(kafka_settings, contract_topics, tmp_path):
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(SECRET)
    producer = ContractProducer(kafka_settings)
    producer.send(contract_topics.control, "fraud", sign_command(command(1, 20, shadow=["v3"]), KEY))
    producer.flush()
    port = free_port()
    process = subprocess.Popen(
        cli(kafka_settings, "sidecar", "--baseline", "fraud=v1", "--verify-key", str(key_file), "--port", str(port)),
        stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _ready(port), 60), "the sidecar did not read the control topic in time"
        yield port, producer
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr


def _ready(port: int) -> bool:
    try:
        status, body = call(port, "GET", "/healthz")
    except OSError:
        return False
    return status == 200 and body["routes_current"] and body["commands_applied"] == 1


def test_a_node_client_gets_the_sdks_answers_for_10000_subjects(kafka_settings, contract_topics, running_sidecar):
    port, producer = running_sidecar
    result = subprocess.run(["node", str(CLIENT), f"http://127.0.0.1:{port}", "fraud", "10000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    router = Router(kafka_settings, baselines={"fraud": "v1"}, verifier=KEY)
    router.start()
    try:
        assert router.wait_ready(30)
        expected = []
        for subject, *_ in answers:
            assignment = router.route("fraud", subject)
            expected.append([subject, assignment.serve, list(assignment.mirror), assignment.role])
    finally:
        router.stop()
    assert len(answers) == 10_000 and answers == expected
    share = sum(a[1] == "v2" for a in answers) / len(answers)
    assert 0.18 < share < 0.22 and all(a[2] == ["v3"] for a in answers)
    # A forged command changes nothing; a signed one moves every client at once.
    producer.send(contract_topics.control, "fraud", sign_command(command(2, 100), HmacKey(b"a guess" * 5)))
    producer.send(contract_topics.control, "fraud", sign_command(command(3, 100), KEY))
    producer.flush()
    assert wait_for(lambda: call(port, "POST", "/v1/route", {"model": "fraud", "subject": "user-1"})[1]["serve"]
                    == "v2", 30)
    assert call(port, "GET", "/healthz")[1]["commands_applied"] == 2
    status, metrics = call(port, "GET", "/metrics")
    assert status == 200 and 'outcome="bad signature"' in metrics


def test_the_log_endpoints_publish_events_and_bad_input_gets_a_reason(kafka_settings, contract_topics,
                                                                       running_sidecar):
    port, _ = running_sidecar
    for i in range(50):
        assert call(port, "POST", "/v1/log/request", {"request_id": f"s{i}", "model": "fraud",
                                                       "ts": 1_790_000_000_000 + i})[0] == 202
        assert call(port, "POST", "/v1/log/response", {"request_id": f"s{i}", "model": "fraud", "version": "v1",
                                                        "role": "primary", "ts": 1_790_000_000_005 + i,
                                                        "prediction": 1, "latency_ms": 3.5})[0] == 202
        assert call(port, "POST", "/v1/log/label", {"request_id": f"s{i}", "model": "fraud",
                                                     "ts": 1_790_000_000_050 + i, "label": 1})[0] == 202
    requests = read_topic(kafka_settings, contract_topics.requests, expected=50, linger=1)
    labels = read_topic(kafka_settings, contract_topics.labels, expected=50, linger=1)
    assert sorted(decode(InferenceRequest, m.value()).request_id for m in requests) == sorted(
        f"s{i}" for i in range(50)
    )
    assert {decode(GroundTruth, m.value()).label for m in labels} == {1}
    partition_of = {m.key(): m.partition() for m in requests}
    assert all(partition_of[m.key()] == m.partition() for m in labels)
    cases = [
        ("POST", "/v1/route", b"{not json", 400, "not JSON"),
        ("POST", "/v1/route", {"model": "fraud"}, 400, "subject"),
        ("POST", "/v1/log/response", {"request_id": "x", "model": "fraud"}, 400, "version"),
        ("POST", "/v1/log/label", {"request_id": "x", "model": "fraud", "ts": 1}, 400, "label or outcomes"),
        ("POST", "/v1/nothing", {}, 404, "no such endpoint"),
        ("POST", "/v1/route", {"model": "unknown", "subject": "u"}, 404, "no routes and no baseline"),
        ("GET", "/v1/route", None, 405, "takes POST"),
        ("POST", "/healthz", {}, 405, "takes GET"),
    ]
    for method, path, body, status, reason in cases:
        got_status, got = call(port, method, path, body)
        assert got_status == status and reason in got["error"], (path, got_status, got)
    status, answer = call(port, "POST", "/v1/route", {"model": "fraud", "subject": "u1", "attributes": {"a": "b"}})
    assert status == 200 and answer["serve"] in ("v1", "v2")

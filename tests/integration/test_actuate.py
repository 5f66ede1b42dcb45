"""`shadowcanary actuate` against a real broker: each verified command of the model becomes a
VirtualService (or InferenceService) object; forged and other models' commands produce nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from schemas.signing import HmacKey, sign_command
from streams.kafka.producer import ContractProducer
from tests.integration.test_router import command
from tests.kafka_helpers import cli, wait_for

pytestmark = pytest.mark.kafka
SECRET = b"actuator-test-secret-32-bytes-long"
KEY = HmacKey(SECRET)


def test_verified_commands_become_virtual_services_and_forged_ones_nothing(kafka_settings, contract_topics, tmp_path):
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(SECRET)
    producer = ContractProducer(kafka_settings)
    producer.send(contract_topics.control, "fraud", sign_command(command(1, 10), KEY))
    producer.flush()
    out = tmp_path / "objects"
    process = subprocess.Popen(cli(kafka_settings, "actuate", "istio", "--model", "fraud", "--name", "fraud",
                                   "--namespace", "prod", "--host", "fraud.prod.svc.cluster.local",
                                   "--verify-key", str(key_file), "--out", str(out)),
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (out / "fraud-000001.json").exists(), 60)
        forged = sign_command(command(2, 100), HmacKey(b"not the evaluator's secret at all"))
        other_model = sign_command(command(3, 100, model="pricing"), KEY)
        producer.send(contract_topics.control, "fraud", forged)
        producer.send(contract_topics.control, "pricing", other_model)
        producer.send(contract_topics.control, "fraud", sign_command(command(4, 50), KEY))
        producer.send(contract_topics.control, "fraud", sign_command(command(5, 0, action="rollback",
                                                                             routes={"v1": 100.0}), KEY))
        producer.flush()
        assert wait_for(lambda: (out / "fraud-000005.json").exists(), 60)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["fraud-000001.json", "fraud-000004.json", "fraud-000005.json",
                                                    "fraud-current.json"]
    objects = {p.name: json.loads(p.read_text()) for p in out.iterdir()}

    def weights(name: str) -> list:
        return [(r["destination"]["subset"], r["weight"]) for r in objects[name]["spec"]["http"][0]["route"]]

    assert weights("fraud-000001.json") == [("v1", 90), ("v2", 10)]
    assert weights("fraud-000004.json") == [("v1", 50), ("v2", 50)]
    assert weights("fraud-000005.json") == [("v1", 100)] == weights("fraud-current.json")
    assert "objects written 3, commands refused 1" in stderr  # the forged one; pricing's is not fraud's


def test_once_writes_the_command_in_force_for_kubectl(kafka_settings, contract_topics):
    producer = ContractProducer(kafka_settings)
    for epoch, canary in ((1, 10), (2, 50)):
        producer.send(contract_topics.control, "fraud", command(epoch, canary))
    producer.flush()
    result = subprocess.run(cli(kafka_settings, "actuate", "kserve", "--model", "fraud", "--name", "fraud-isvc",
                                "--once"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["kind"] == "InferenceService" and obj["metadata"]["name"] == "fraud-isvc"
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 50

"""A command the evaluator signs, read from rollout.control through the real broker, verifies in a
second language (Node: RFC 8785 and node:crypto), as a router written in it would check it; the
same record altered by one byte does not."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from schemas import Topics
from schemas.signing import generate_key
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import spec
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka

NODE_VERIFIER = Path(__file__).resolve().parents[2] / "tools" / "command-verify" / "verify.mjs"


def node_verifies(record: Path, public_key: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(NODE_VERIFIER), "record", str(record), "--public-key", str(public_key)],
                          capture_output=True, text=True, timeout=60)


def test_a_command_the_evaluator_signs_verifies_in_node_and_a_tampered_one_does_not(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    private, public = generate_key("ed25519", tmp_path / "evaluator.key")
    worker = start_evaluator(kafka_settings, f"interop-{uuid.uuid4().hex[:8]}", str(tmp_path / "w"),
                             "--metrics-port", "0", "--task", "fraud=binary",
                             global_args=("--signing-key", str(private)))
    try:
        producer = ContractProducer(kafka_settings)
        producer.send(topics.specs, "fraud", spec("fraud"))  # its first stage is a signed command
        producer.flush()
        records = read_topic(kafka_settings, topics.control, expected=1, timeout=90)
    finally:
        stop_workers(worker)
    assert records, "the evaluator published no command"
    raw = records[0].value()
    assert b'"signature":"ed25519:' in raw and b'"v1":50.0' in raw  # written as Python writes it: 50.0
    record = tmp_path / "command.json"
    record.write_bytes(raw)
    good = node_verifies(record, public)
    assert good.returncode == 0 and good.stdout.strip() == "signature good", good.stderr
    record.write_bytes(raw.replace(b'"v1":50.0', b'"v1":50.5').replace(b'"v2":50.0', b'"v2":49.5'))
    bad = node_verifies(record, public)
    assert bad.returncode == 1 and "bad signature (ed25519)" in bad.stderr

"""`shadowcanary labels load` against the real broker: every good row is published once, on the
partition of its request (murmur2 on request_id, as the requests are); bad rows are named by line."""

from __future__ import annotations

import subprocess

import pytest

from schemas import GroundTruth, InferenceRequest, decode
from streams.kafka.producer import ContractProducer
from tests.kafka_helpers import cli, read_topic

pytestmark = pytest.mark.kafka


def test_labels_load_publishes_each_good_row_on_its_requests_partition(kafka_settings, contract_topics, tmp_path):
    producer = ContractProducer(kafka_settings)
    for i in range(1000):
        producer.send(contract_topics.requests, f"r{i}", InferenceRequest(request_id=f"r{i}", model="fraud",
                                                                          ts=1_790_000_000_000 + i))
    producer.flush()
    rows = ["request_id,is_fraud,chargeback"] + [f"r{i},{i % 2},{i * 0.5}" for i in range(1000)]
    rows[11] = "r10,1,lots"  # line 12: a bad outcome
    rows[501] = ",1,2"  # line 502: no request id
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    result = subprocess.run(
        cli(kafka_settings, "labels", "load", str(path), "--id-column", "request_id", "--label-column", "is_fraud",
            "--model", "fraud", "--outcome", "chargeback=chargeback"),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "published 998 labels, skipped 2 rows" in result.stdout
    assert "line 12: column 'chargeback': 'lots' is not a number" in result.stderr
    assert "line 502: column 'request_id' (the request id) is empty" in result.stderr
    labels = read_topic(kafka_settings, contract_topics.labels, expected=998, linger=1)
    decoded = {decode(GroundTruth, m.value()).request_id: m for m in labels}
    assert len(labels) == 998 and set(decoded) == {f"r{i}" for i in range(1000)} - {"r10", "r500"}
    assert decode(GroundTruth, decoded["r7"].value()).outcomes == {"chargeback": 3.5}
    requests = read_topic(kafka_settings, contract_topics.requests, expected=1000, linger=1)
    partition_of = {m.key(): m.partition() for m in requests}
    assert all(partition_of[m.key()] == m.partition() for m in labels)

"""Drift through the real broker: a canary whose ``amount`` feature shifts mid-way raises exactly one
drift alert (that feature, that version) and none for the other features and versions; the window
snapshots carry the scores, and the worker's endpoint exports them."""

from __future__ import annotations

import random
import urllib.request
import uuid

import orjson
import pytest

from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from tests.kafka_helpers import read_topic, send_ticks, start_evaluator, stop_workers, wait_for

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000
WINDOW_MS = 1000
WINDOWS = 16
SHIFT_FROM = 8  # the canary's amounts are 60% larger from this window on
PER_WINDOW = 500
PARTITIONS = 3


def _events(topics: Topics):
    rng = random.Random(2026)
    for i in range(WINDOWS * PER_WINDOW):
        ts = T0 + i * WINDOW_MS // PER_WINDOW
        rid = f"r{i}"
        version = "v2" if rng.random() < 0.4 else "v1"
        shifted = version == "v2" and i >= SHIFT_FROM * PER_WINDOW
        features = {"amount": round(rng.lognormvariate(4, 0.5) * (1.6 if shifted else 1.0), 2),
                    "country": rng.choice(["fr", "de", "us", "jp"]), "items": rng.randint(1, 6)}
        label = rng.randint(0, 1)
        prediction = label if rng.random() < 0.85 else 1 - label
        yield ts, topics.requests, rid, InferenceRequest(request_id=rid, model="pay", ts=ts, features=features)
        yield ts, topics.responses, rid, InferenceResponse(
            request_id=rid, model="pay", version=version, role="primary" if version == "v1" else "canary",
            ts=ts + 3, prediction=prediction, latency_ms=5.0)
        yield ts + 200, topics.labels, rid, GroundTruth(request_id=rid, model="pay", ts=ts + 200, label=label)


def _scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def test_a_shifted_feature_raises_exactly_one_alert(kafka_bootstrap, tmp_path):
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"d{uuid.uuid4().hex[:10]}.")
    create_topics(settings, TopicLayout(inference_partitions=PARTITIONS, evaluator_partitions=1))
    topics = Topics(settings.topic_prefix)
    events = sorted(_events(topics), key=lambda e: e[0])
    windows = {(m.version, (e - T0 + 3) // WINDOW_MS) for e, _, _, m in events if isinstance(m, InferenceResponse)}
    producer = ContractProducer(settings)
    for _, topic, key, message in events:
        producer.send(topic, key, message)
    producer.flush(60)
    send_ticks(settings, topics, PARTITIONS, T0 + 86_400_000)
    port = free_port()
    worker = start_evaluator(settings, f"drift-{uuid.uuid4().hex[:6]}", str(tmp_path / "worker"),
                             "--label-timeout", "2s", "--expiry-grace", "1s", "--window", "1s",
                             "--task", "pay=binary", "--drift-reference-windows", "3",
                             "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    try:
        snapshots = [orjson.loads(m.value()) for m in
                     read_topic(settings, topics.metrics, expected=len(windows), timeout=180, linger=3)]
        assert len(snapshots) == len(windows)
        # The owner sends a window's alerts with the window: all are in once the last window is.
        alerts = [orjson.loads(m.value()) for m in read_topic(settings, topics.alerts, linger=3)]
        drift = [a for a in alerts if a["kind"] == "drift"]
        assert [(a["model"], a["version"], a["feature"], a["status"]) for a in drift] == [
            ("pay", "v2", "amount", "firing")], drift
        assert drift[0]["value"] < drift[0]["threshold"]
        by_window = {(s["version"], s["window"]["start"]): s["drift"] for s in snapshots}
        # PSI on a few hundred values is noisy (why alarms rest on the KS test): the shift stands out.
        v2_psi = [
            round(d["amount.psi"], 3) for (v, _), d in sorted(by_window.items()) if v == "v2" and "amount.psi" in d
        ]
        v1_psi = [
            round(d["amount.psi"], 3) for (v, _), d in sorted(by_window.items()) if v == "v1" and "amount.psi" in d
        ]
        shifted = v2_psi[SHIFT_FROM - 3:SHIFT_FROM + 4]  # the reference is the first 3 windows
        assert min(shifted) > 2 * max(v1_psi), (v1_psi, v2_psi)
        text = ""

        def exported() -> bool:
            nonlocal text
            text = _scrape(port)
            return 'shadowcanary_drift_firing{feature="amount",model="pay",version="v2"} 1.0' in text
        assert wait_for(exported, 30, 0.5), text[-3000:]
        assert 'shadowcanary_drift_score{against="baseline",feature="amount",measure="psi",model="pay",' \
               'version="v2"}' in text, "\n".join(
                line for line in text.splitlines() if "drift_score" in line and "v2" in line)
        assert text.count("shadowcanary_drift_firing{") == 1
    finally:
        stop_workers(worker)

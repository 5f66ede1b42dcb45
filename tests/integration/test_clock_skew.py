"""A client whose clock runs two hours ahead, through the real broker and a real worker: its events
do not move the partitions' time past the worker's clock plus the tolerance, so the other requests'
labels, arriving a minute after their responses, still join (issue: no silent loss in the join)."""

from __future__ import annotations

import time
import urllib.request
import uuid

import orjson
import pytest

from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers, wait_for

pytestmark = pytest.mark.kafka
PARTITIONS = 2


def _scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def _sample(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_client_clock_two_hours_ahead_expires_nothing_and_is_alerted_once(kafka_bootstrap, tmp_path):
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"c{uuid.uuid4().hex[:10]}.")
    create_topics(settings, TopicLayout(inference_partitions=PARTITIONS, evaluator_partitions=1))
    topics = Topics(settings.topic_prefix)
    port = free_port()
    worker = start_evaluator(settings, f"skew-{uuid.uuid4().hex[:6]}", str(tmp_path / "worker"),
                             "--label-timeout", "10m", "--expiry-grace", "0s", "--idle-after", "1s",
                             "--task", "pay=binary", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    producer = ContractProducer(settings)
    try:
        now = int(time.time() * 1000)
        for i in range(1000):
            rid = f"r{i}"
            producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model="pay", ts=now + i))
            producer.send(topics.responses, rid, InferenceResponse(
                request_id=rid, model="pay", version="v1", role="primary", ts=now + i, prediction=i % 2,
                latency_ms=4.0))
        producer.flush(60)
        ahead = now + 2 * 3_600_000
        # One client two hours ahead, on both partitions' worth of ids ("skewed" lands on one).
        producer.send(topics.requests, "skewed", InferenceRequest(request_id="skewed", model="pay", ts=ahead))
        producer.send(topics.responses, "skewed", InferenceResponse(
            request_id="skewed", model="pay", version="v1", role="primary", ts=ahead, prediction=1, latency_ms=4.0))
        producer.send(topics.labels, "skewed", GroundTruth(request_id="skewed", model="pay", ts=ahead, label=1))
        producer.flush(60)
        time.sleep(3)  # the worker has read the skewed triple (and sources went idle) before the labels come
        for i in range(1000):
            rid = f"r{i}"
            producer.send(topics.labels, rid, GroundTruth(request_id=rid, model="pay", ts=now + i + 60_000,
                                                          label=i % 2))
        producer.flush(60)
        text = ""

        def all_labelled() -> bool:
            nonlocal text
            text = _scrape(port)
            return _sample(text, "shadowcanary_labelled_responses_total", model="pay", version="v1",
                           role="primary") == 1001
        assert wait_for(all_labelled, 180, 1.0), "\n".join(line for line in text.splitlines() if "pay" in line)
        assert _sample(text, "shadowcanary_expired_responses_total", model="pay", version="v1", role="primary") == 0
        for topic in ("inference.requests", "inference.responses", "inference.labels"):
            assert _sample(text, "shadowcanary_future_events_total", topic=topic, model="pay") == 1
        assert _sample(text, "shadowcanary_past_events_total", topic="inference.labels", model="pay") == 0
        time.sleep(3)  # a second look by the owner raises nothing new
        alerts = [orjson.loads(m.value()) for m in read_topic(settings, topics.alerts, linger=3)]
        skew = [a for a in alerts if a["kind"] == "schema"]
        assert len(skew) == 1, alerts
        assert skew[0]["model"] == "pay" and "ahead of the evaluator's clock" in skew[0]["message"]
        assert 7000 <= skew[0]["value"] <= 7200
    finally:
        stop_workers(worker)

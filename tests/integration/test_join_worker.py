"""The streaming join, through the real broker, in real worker processes: exact counts despite
SIGKILLs mid-stream, and the same result from two workers sharing the partitions as from one."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
import pytest

from evaluators.counts import MODEL_COUNTS, JoinCounts
from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, encode
from schemas.internal_topics import partials_topic_name
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.kafka_helpers import read_topic, rebalance_lines, send_ticks, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka

TIMEOUT_S, GRACE_S = 60, 30
VERSIONS = [("v1", "primary"), ("v2", "canary"), ("v3", "shadow")]
T0 = 1_780_000_000_000


@dataclass
class Scenario:
    events: list[tuple[str, str, bytes]] = field(default_factory=list)  # (topic, key, value) in send order
    expected: dict = field(default_factory=dict)


def build_scenario(topics: Topics, n_requests: int, seed: int) -> Scenario:
    """Requests every 100 ms with three versions; labels on time, late or never; some duplicates;
    shuffled within windows much shorter than the grace (bounded disorder, as between real topics)."""
    rng = random.Random(seed)
    timed: list[tuple[int, str, str, bytes]] = []
    versions = defaultdict(lambda: dict.fromkeys(("responses", "errors", "joined", "expired", "agreement"), 0))
    models = dict.fromkeys(MODEL_COUNTS, 0)  # no clock skew here: those counts stay 0
    for i in range(n_requests):
        rid, ts = f"req-{seed}-{i}", T0 + i * 100
        timed.append((ts, topics.requests, rid, encode(InferenceRequest(request_id=rid, model="m", ts=ts,
                                                                       features={"amount": float(i % 97)}))))
        models["requests"] += 1
        fate = rng.choices(["on_time", "late", "never"], [0.7, 0.1, 0.2])[0]
        # On time: within the timeout of the response (ts + 20). Late: beyond it.
        label_ts = ts + (rng.randint(1, 30_000) if fate == "on_time" else 20 + 61_000 + rng.randint(0, 60_000))
        for version, role in VERSIONS:
            error = "boom" if rng.random() < 0.03 else None
            timed.append((ts + 20, topics.responses, rid, encode(InferenceResponse(
                request_id=rid, model="m", version=version, role=role, ts=ts + 20, latency_ms=5.0,
                prediction=None if error else rng.randint(0, 1), error=error))))
            counts = versions[("m", version, role)]
            counts["responses"] += 1
            counts["errors"] += error is not None
            counts["agreement"] += role == "shadow"
            if fate == "on_time":
                counts["joined"] += 1
            else:  # never labelled within the timeout (the label, if any, is late)
                counts["expired"] += 1
        if fate != "never":
            timed.append((label_ts, topics.labels, rid, encode(GroundTruth(request_id=rid, model="m", ts=label_ts,
                                                                          label=1))))
            models["labels"] += 1
            models["late_labels"] += fate == "late"
    duplicates = rng.sample(timed, k=len(timed) // 50)
    for ts, topic, key, value in duplicates:
        timed.append((ts + rng.randint(0, 2_000), topic, key, value))
        kind = {topics.requests: "requests", topics.responses: "responses", topics.labels: "labels"}[topic]
        models[f"duplicate_{kind}"] += 1
    timed.sort(key=lambda e: e[0])
    # Bounded disorder: shuffle within windows of 40 events (about a second of event time).
    events = []
    for start in range(0, len(timed), 40):
        window = timed[start:start + 40]
        rng.shuffle(window)
        events += [(topic, key, value) for _, topic, key, value in window]
    return Scenario(events, {"versions": {k: dict(v) for k, v in versions.items()}, "models": {"m": models}})


def start_worker(settings, app_id: str, state_dir: str) -> subprocess.Popen:
    return start_evaluator(settings, app_id, state_dir, "--label-timeout", f"{TIMEOUT_S}s",
                           "--expiry-grace", f"{GRACE_S}s", "--batch-size", "300", "--metrics-port", "0",
                           "--loglevel", "info")


def read_counts(settings, topics: Topics, seconds: float = 3.0) -> JoinCounts:
    """The latest partial state of each partition, merged."""
    latest = {m.key(): orjson.loads(m.value())
              for m in read_topic(settings, partials_topic_name(topics), linger=seconds)
              if m.key().startswith(b"h/") and m.value() is not None}
    total = JoinCounts()
    for partial in latest.values():
        total.merge(JoinCounts.from_state(partial["counts"]))
    return total


def model_counts(counts: JoinCounts) -> dict:
    state = counts.to_state()
    return {"versions": {tuple(k.split("\x1f")): v for k, v in state["versions"].items() if k.startswith("m\x1f")},
            "models": {m: v for m, v in state["models"].items() if m == "m"}}


def wait_for(settings, topics, expected: dict, timeout: float = 360) -> dict:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = model_counts(read_counts(settings, topics))
        if seen == expected:
            return seen
        time.sleep(2)
    return seen


def produce(settings, events, pace_per_second: float | None = None) -> None:
    producer = ContractProducer(settings)
    started = time.monotonic()
    for i, (topic, key, value) in enumerate(events):
        producer.send(topic, key, value)
        if pace_per_second and i % 200 == 0:
            producer.raw.poll(0)
            ahead = i / pace_per_second - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(60)


def _prepare(kafka_settings, n_requests: int, seed: int):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    scenario = build_scenario(topics, n_requests, seed)
    return topics, scenario


def test_counts_stay_exact_when_the_worker_is_killed_twice_mid_stream(kafka_settings, tmp_path):
    topics, scenario = _prepare(kafka_settings, 4000, seed=11)
    app_id = f"kill-{uuid.uuid4().hex[:8]}"
    state_dir = str(tmp_path / "worker")
    producer = threading.Thread(target=produce, args=(kafka_settings, scenario.events, 700.0))
    worker = start_worker(kafka_settings, app_id, state_dir)
    producer.start()
    try:
        for pause in (10, 10):
            time.sleep(pause)
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            worker = start_worker(kafka_settings, app_id, state_dir)
        producer.join()
        send_ticks(kafka_settings, topics, 4, T0 + 10 * 86_400_000)
        seen = wait_for(kafka_settings, topics, scenario.expected)
    finally:
        stop_workers(worker)
    assert seen == scenario.expected
    log = open(state_dir + ".log", "rb").read().decode(errors="replace")
    assert "rebuilding state from the changelog" in log  # the restarts really were unclean


def test_two_workers_in_one_group_give_the_same_result_as_one(kafka_settings, tmp_path):
    topics, scenario = _prepare(kafka_settings, 3000, seed=12)
    app_id = f"pair-{uuid.uuid4().hex[:8]}"
    # The second worker joins once the first is up, as in a rolling deployment; then the data flows.
    workers = [start_worker(kafka_settings, app_id, str(tmp_path / "w0"))]
    time.sleep(10)
    workers.append(start_worker(kafka_settings, app_id, str(tmp_path / "w1")))
    time.sleep(10)
    try:
        produce(kafka_settings, scenario.events)
        send_ticks(kafka_settings, topics, 4, T0 + 10 * 86_400_000)
        seen = wait_for(kafka_settings, topics, scenario.expected)
        alive = [w.poll() is None for w in workers]
    finally:
        stop_workers(*workers)
    assert alive == [True, True]
    assert seen == scenario.expected, rebalance_lines([str(tmp_path / "w0"), str(tmp_path / "w1")])

"""Record and replay: a scenario through the real broker and the streaming evaluator, recorded with
``shadowcanary record`` and replayed with ``shadowcanary replay`` (no broker), gives the same
decisions (actions, steps and epochs, in order), the same commands and the same metric snapshots."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from schemas import Topics, decode
from schemas.control import Decision
from schemas.spec_yaml import dump_spec_yaml
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import spec, traffic, wait_for_commands
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka
T0 = 1_790_000_000_000
WORKER_ARGS = ("--window", "1s", "--label-timeout", "2s", "--expiry-grace", "1s", "--task", "bad=binary",
               "--task", "good=binary")
# A live worker lets time pass on a source that is caught up and silent (idle): right for a live
# stream, but then whether a label beat its response's expiry depends on when the producer flushed.
# The recorded scenario must not depend on timing, so no source turns idle here, and the end of the
# traffic is a far-future event on every input topic and partition.
NEVER_IDLE = ("--idle-after", "1d")
# The stream looks at the running totals at each heartbeat (wall clock), the replay after each batch
# of events: the same decisions come out only where the evidence is not borderline at any look. So
# the bad candidate is far worse (it fails before its bake ends, whenever the looks fall) and the
# good one better: an equal one leans to fail at its bake about one time in eight, and a look that
# sees it lean holds for one more bake (a ``hold`` decision) where another look would not.


def send_ticks_on_every_input(settings, topics: Topics, partitions: int, ts: int) -> None:
    from confluent_kafka import Producer

    from schemas import GroundTruth, InferenceRequest, InferenceResponse, encode

    producer = Producer(settings.confluent_config())
    for partition in range(partitions):
        rid = f"tick-{partition}"
        for topic, message in ((topics.requests, InferenceRequest(request_id=rid, model="tick", ts=ts)),
                               (topics.responses, InferenceResponse(request_id=rid, model="tick", version="t",
                                                                    role="primary", ts=ts, prediction=0)),
                               (topics.labels, GroundTruth(request_id=rid, model="tick", ts=ts, label=0))):
            producer.produce(topic, key=rid, partition=partition, value=encode(message))
    producer.flush(30)


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "SHADOWCANARY_TOPIC_PREFIX": settings.topic_prefix}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _jsonl(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _snapshot_key(s: dict) -> tuple:
    return s["model"], s["version"], s["role"], s["window"]["start"]


def _counts(s: dict) -> tuple:
    return tuple(s.get(k, 0) for k in ("requests", "responses", "errors", "labelled", "expired"))


def test_a_recorded_scenario_replays_to_the_same_decisions_and_snapshots(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=3, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    worker = start_evaluator(kafka_settings, f"replay-{uuid.uuid4().hex[:6]}", str(tmp_path / "w"),
                             *WORKER_ARGS, *NEVER_IDLE, "--metrics-port", "0")
    try:
        producer = ContractProducer(kafka_settings)
        for model in ("bad", "good"):
            producer.send(topics.specs, model, spec(model))
        producer.flush()
        time.sleep(8)  # the worker starts both rollouts before any traffic, as the replay does
        rng, sent = random.Random(7), [0]

        def more_traffic() -> None:  # both models' rows interleaved: produced in event-time order
            for i in range(sent[0], sent[0] + 500):
                for model, accuracy in (("bad", {"v1": 0.95, "v2": 0.50}), ("good", {"v1": 0.95, "v2": 0.99})):
                    traffic(producer, topics, model, accuracy, 1, rng, start=i, flush=False)
            producer.flush(60)
            sent[0] += 500

        def settled(commands):
            last = {c.model: c.action for c in commands}
            return last.get("bad") == "rollback" and last.get("good") == "promote"

        wait_for_commands(kafka_settings, topics, settled, between=more_traffic)
        send_ticks_on_every_input(kafka_settings, topics, 3, T0 + 86_400_000)  # every window closes
        windows = {(m, "v2" if i % 2 else "v1", (i * 10 + 5) // 1000) for m in ("bad", "good") for i in range(sent[0])}
        stream_snapshots = [orjson.loads(m.value()) for m in
                            read_topic(kafka_settings, topics.metrics, expected=len(windows), timeout=180)]
        stream_decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions)]
        stream_commands = [orjson.loads(m.value()) for m in read_topic(kafka_settings, topics.control)]
    finally:
        stop_workers(worker)
    published = {(s["model"], s["version"], s["window"]["start"]) for s in stream_snapshots}
    assert len(stream_snapshots) == len(windows), (sorted(windows), sorted(published))

    recorded = cli(kafka_settings, "record", "--out", str(tmp_path / "rec"))
    assert recorded.returncode == 0, recorded.stderr
    specs = []
    for model in ("bad", "good"):
        path = tmp_path / f"{model}.yaml"
        path.write_text(dump_spec_yaml(spec(model)))
        specs += ["--spec", str(path)]
    files = sorted(str(p) for p in (tmp_path / "rec").glob("*.jsonl"))
    replayed = cli(kafka_settings, "replay", *specs, *WORKER_ARGS, "--out", str(tmp_path / "out"), *files)
    assert replayed.returncode == 0, replayed.stderr

    decisions = [Decision.model_validate(d) for d in _jsonl(tmp_path / "out" / "decisions.jsonl")]
    for model in ("bad", "good"):
        ours = [(d.action, d.step) for d in decisions if d.model == model]
        theirs = [(d.action, d.step) for d in stream_decisions if d.model == model]
        assert ours == theirs, (model, ours, theirs)
    commands = _jsonl(tmp_path / "out" / "commands.jsonl")
    for model in ("bad", "good"):
        ours = [(c["action"], c["epoch"], c["routes"]) for c in commands if c["model"] == model]
        theirs = [(c["action"], c["epoch"], c["routes"]) for c in stream_commands if c["model"] == model]
        assert ours == theirs, (model, ours, theirs)

    # The ticks' own window closes in the replay (its input ends) but needs a later tick in the stream.
    snapshots = {_snapshot_key(s): s for s in _jsonl(tmp_path / "out" / "snapshots.jsonl") if s["model"] != "tick"}
    assert set(snapshots) == {_snapshot_key(s) for s in stream_snapshots}
    for theirs in stream_snapshots:
        ours = snapshots[_snapshot_key(theirs)]
        assert _counts(ours) == _counts(theirs), _snapshot_key(theirs)
        assert ours["metrics"].keys() == theirs["metrics"].keys()
        for name, value in theirs["metrics"].items():
            assert ours["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
        assert ours["latency_ms"] == pytest.approx(theirs["latency_ms"])
        assert ours["drift"].keys() == theirs["drift"].keys()
        for name, value in theirs["drift"].items():
            assert ours["drift"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name

"""The ingestion bridges through the real broker: KServe's payload logger CloudEvents (binary and
structured mode) and Seldon Core 2's protobuf records go through ``shadowcanary ingest``, are joined
and scored by an evaluator worker and reach ``evaluator.metrics``; malformed records reach the DLQ
with their reasons; and the counts stay exact when a bridge is SIGKILLed mid-stream."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka.admin import NewTopic

from evaluators.ingest.oip import encode_protobuf
from evaluators.ingest.samples import read_records
from evaluators.ingest.translate import SELDON_TOPIC, ExternalRecord, Translator
from schemas import GroundTruth, Topics
from schemas.ingest import IngestMapping
from streams.kafka.admin import TopicLayout, admin_client, create_topics
from streams.kafka.producer import ContractProducer, make_producer
from tests.kafka_helpers import read_topic, send_ticks, start_evaluator, stop_workers, wait_for

pytestmark = pytest.mark.kafka
DATA = Path(__file__).parent.parent / "data" / "ingest"
KSERVE_MAPPING = """source: kserve
model: iris-k
versions:
  default: {version: v1, role: primary}
  canary: {version: v2, role: canary}
"""
SELDON_MAPPING = """source: seldon
model: iris-s
versions:
  iris: {version: v1, role: primary}
  iris-v2: {version: v2, role: canary}
outputs: {prediction: predict}
features: {names: [sepal_length, sepal_width, petal_length, petal_width]}
"""


def make_external_topics(settings, partitions: dict[str, int]) -> None:
    admin = admin_client(settings)
    for future in admin.create_topics([NewTopic(name, n, 1) for name, n in partitions.items()]).values():
        future.result(30)


def start_bridge(settings, source: str, mapping: Path, topics: list[str], app_id: str, instance: str,
                 log: Path) -> subprocess.Popen:
    env = {**os.environ, **settings.environment()}
    args = [sys.executable, "-m", "streams.cli", "ingest", source, "--mapping", str(mapping), "--app-id", app_id,
            "--instance-id", instance, "--batch-size", "500"]
    for topic in topics:
        args += ["--topic", topic]
    return subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def kserve_record(topic: str, kind: str, rid: str, endpoint: str, ts_ms: int, data: dict, structured: bool):
    """A KServe payload-logger record as Knative's KafkaSink writes it: binary (ce_ headers) or structured."""
    attributes = {"specversion": "1.0", "id": rid, "source": "http://localhost:9081/",
                  "type": f"org.kubeflow.serving.inference.{kind}", "inferenceservicename": "sklearn-iris",
                  "namespace": "default", "component": "predictor", "endpoint": endpoint,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"}
    if structured:
        value = orjson.dumps({**attributes, "datacontenttype": "application/json", "data": data})
        return topic, rid, value, [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    headers = [(f"ce_{k}", v.encode()) for k, v in attributes.items()] + [("content-type", b"application/json")]
    return topic, rid, orjson.dumps(data), headers


def produce(settings, records, pace_per_second: float | None = None) -> None:
    producer = make_producer(settings)
    started = time.monotonic()
    for i, (topic, key, value, headers) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        if pace_per_second and i % 100 == 0:
            producer.poll(0)
            ahead = i / pace_per_second - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(60) == 0


def malformed(kserve_topic: str, seldon_topic: str | None) -> tuple[list, Counter]:
    """The committed malformed samples, sent to the bridges' topics (without ``seldon_topic``, only
    KServe's); the reasons expected on the DLQ."""
    lines = (DATA / "malformed.jsonl").read_bytes().splitlines()
    out, reasons = [], Counter()
    for line, record in zip(lines, read_records(lines)):
        if record.topic.startswith("seldon.") and seldon_topic is None:
            continue
        topic = seldon_topic if record.topic.startswith("seldon.") else kserve_topic
        out.append((topic, record.key, record.value, list(record.headers or [])))
        reasons[(topic, orjson.loads(line)["expect"]["reason"])] += 1
    return out, reasons


def committed_samples(kserve_topic: str, seldon: dict[str, str]) -> tuple[list, Counter]:
    """The valid samples of tests/data/ingest/ (built from each tool's documentation) on the test's
    topics, and the events the mappings make of them offline (``--try``'s translation)."""
    kserve = Translator(IngestMapping.model_validate(yaml.safe_load(KSERVE_MAPPING)))
    seldon_translator = Translator(IngestMapping.model_validate(yaml.safe_load(SELDON_MAPPING)))
    out, events = [], Counter()
    for name in ("kserve_binary.jsonl", "kserve_structured.jsonl", "seldon.jsonl"):
        for record in read_records((DATA / name).read_bytes().splitlines()):
            match = SELDON_TOPIC.match(record.topic)
            topic = seldon[f"{match['model']}.{match['direction']}"] if match else kserve_topic
            out.append((topic, record.key, record.value, list(record.headers or [])))
            translator = seldon_translator if match else kserve
            for event in translator.translate(ExternalRecord(topic, record.key, record.value, record.headers,
                                                             record.timestamp_ms)):
                events[(event.kind, event.model, event.request_id, getattr(event, "version", None))] += 1
    return out, events


def test_kserve_and_seldon_records_are_bridged_joined_scored_and_dead_lettered(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=3, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    prefix = kafka_settings.topic_prefix
    kserve_topic = f"{prefix}kserve-payloads"
    seldon = {name: f"{prefix}seldon.mesh.model.{name}" for name in ("iris.inputs", "iris.outputs", "iris-v2.outputs")}
    make_external_topics(kafka_settings, {kserve_topic: 3, **{t: 2 for t in seldon.values()}})
    (tmp_path / "kserve.yaml").write_text(KSERVE_MAPPING)
    (tmp_path / "seldon.yaml").write_text(SELDON_MAPPING)
    worker = start_evaluator(kafka_settings, f"ingest-{uuid.uuid4().hex[:6]}", str(tmp_path / "w"), "--window", "1s",
                             "--label-timeout", "3s", "--expiry-grace", "1s", "--metrics-port", "0",
                             "--task", "iris-k=multiclass", "--task", "iris-s=multiclass", "--loglevel", "info")
    app = f"bridge-{uuid.uuid4().hex[:6]}"
    bridges = [start_bridge(kafka_settings, "kserve", tmp_path / "kserve.yaml", [kserve_topic], f"{app}-k", "k0",
                            tmp_path / "kserve.log"),
               # Seldon's topics by a pattern, as a deployment that adds models would subscribe
               start_bridge(kafka_settings, "seldon", tmp_path / "seldon.yaml",
                            [f"^{re.escape(prefix)}seldon\\.mesh\\.model\\..*"], f"{app}-s", "s0",
                            tmp_path / "seldon.log")]
    try:
        rng = random.Random(5)
        now = int(time.time() * 1000)
        records, labels, expected = [], [], Counter()
        for i in range(300):  # KServe: v1 payloads, half structured; every tenth request has two rows
            endpoint, version = ("canary", "v2") if i % 2 else ("default", "v1")
            rows = 2 if i % 10 == 0 else 1
            rid, ts = f"k-{i}", now + i * 5
            classes = [rng.randint(0, 2) for _ in range(rows)]
            structured = i % 4 >= 2
            records.append(kserve_record(kserve_topic, "request", rid, endpoint, ts,
                                         {"instances": [[5.1, 3.5, 1.4, 0.2]] * rows}, structured))
            records.append(kserve_record(kserve_topic, "response", rid, endpoint, ts + 3,
                                         {"predictions": classes}, structured))
            ids = [rid] if rows == 1 else [f"{rid}#{r}" for r in range(rows)]
            for row_id, predicted in zip(ids, classes):
                label = predicted if rng.random() < 0.8 else (predicted + 1) % 3
                labels.append(GroundTruth(request_id=row_id, model="iris-k", ts=ts + 50, label=label))
                expected[("iris-k", version)] += 1
        for i in range(200):  # Seldon: protobuf OIP; the request id is the key
            model, version = ("iris-v2", "v2") if i % 2 else ("iris", "v1")
            rid, ts = f"s-{i}", now + i * 5
            predicted = rng.randint(0, 2)
            request = encode_protobuf({"model_name": model, "inputs": [{"name": "predict", "datatype": "FP32",
                                       "shape": ["1", "4"], "contents": {"fp32_contents": [6.3, 3.3, 6.0, 2.5]}}]},
                                      "request")
            response = encode_protobuf({"model_name": f"{model}_1", "outputs": [{"name": "predict", "datatype": "INT64",
                                        "shape": ["1", "1"], "contents": {"int64_contents": [str(predicted)]}}]},
                                       "response")
            records.append((seldon["iris.inputs"], rid, request, [("x-request-id", rid.encode())]))
            records.append((seldon[f"{model}.outputs"], rid, response, [("x-request-id", rid.encode())]))
            labels.append(GroundTruth(request_id=rid, model="iris-s", ts=ts + 50, label=predicted))
            expected[("iris-s", version)] += 1
        bad, reasons = malformed(kserve_topic, seldon["iris.outputs"])
        samples, sample_events = committed_samples(kserve_topic, seldon)
        produce(kafka_settings, records + samples + bad)
        producer = ContractProducer(kafka_settings)
        for label in labels:
            producer.send(topics.labels, label.request_id, label)
        producer.flush()
        # Stream time is event time: a later event closes the windows. The bridges write in
        # transactions, so the worker must see through their commit markers to find the response
        # topic caught up (idle) and let time pass on it.
        send_ticks(kafka_settings, topics, 3, now + 86_400_000)

        def scored() -> Counter:
            totals: Counter = Counter()
            for message in read_topic(kafka_settings, topics.metrics, linger=1):
                snapshot = orjson.loads(message.value())
                totals[(snapshot["model"], snapshot["version"])] += snapshot.get("labelled", 0)
            return totals

        assert wait_for(lambda: scored() == expected, 150, 2), (scored(), expected)
        alive = [b.poll() is None for b in bridges] + [worker.poll() is None]
    finally:
        stop_workers(*bridges, worker)
    assert alive == [True, True, True]
    snapshots = [orjson.loads(m.value()) for m in read_topic(kafka_settings, topics.metrics, linger=1)]
    accuracy = [s["metrics"]["accuracy"] for s in snapshots if s["model"] == "iris-s" and s.get("labelled")]
    assert accuracy and all(a == 1.0 for a in accuracy)  # Seldon's labels are its predictions
    letters = read_topic(kafka_settings, topics.dlq, linger=1)
    seen = Counter((dict(m.headers())["source.topic"].decode(), dict(m.headers())["reason"].decode()) for m in letters)
    assert seen == reasons
    assert all(dict(m.headers())["error"] for m in letters)
    # the committed samples' events, as --try makes them, are on the contract's topics
    written = Counter()
    for topic, kind in ((topics.requests, "request"), (topics.responses, "response")):
        for message in read_topic(kafka_settings, topic, linger=1):
            event = orjson.loads(message.value())
            written[(kind, event["model"], event["request_id"], event.get("version"))] += 1
    assert not sample_events - written, sample_events - written
    kserve_samples = Counter(kind for kind, model, *_ in sample_events.elements() if model == "iris-k")
    stopped = (tmp_path / "kserve.log").read_text()
    line = (f"ingest stopped: {600 + 11 + sum(1 for r in samples if r[0] == kserve_topic)} records read, "
            f"{330 + kserve_samples['request']} requests and {330 + kserve_samples['response']} responses written, "
            f"11 dead letters")
    assert line in stopped, (line, stopped[-2000:])


def test_counts_stay_exact_when_a_bridge_is_killed_twice_mid_stream(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    source = f"{kafka_settings.topic_prefix}kserve-payloads"
    make_external_topics(kafka_settings, {source: 4})
    (tmp_path / "kserve.yaml").write_text(KSERVE_MAPPING)
    n, now = 8000, int(time.time() * 1000)
    records = []
    for i in range(n):
        endpoint = "canary" if i % 2 else "default"
        records.append(kserve_record(source, "request", f"r-{i}", endpoint, now + i, {"instances": [[1.0, 2.0]]},
                                     i % 3 == 0))
        records.append(kserve_record(source, "response", f"r-{i}", endpoint, now + i + 2, {"predictions": [i % 3]},
                                     i % 3 == 1))
    bad, reasons = malformed(source, None)
    for j, record in enumerate(bad):  # malformed records spread through the stream
        records.insert((j + 1) * len(records) // (len(bad) + 1), record)
    app, log, second_log = f"kill-{uuid.uuid4().hex[:6]}", tmp_path / "bridge.log", tmp_path / "second.log"
    bridge = start_bridge(kafka_settings, "kserve", tmp_path / "kserve.yaml", [source], app, "b0", log)
    sender = threading.Thread(target=produce, args=(kafka_settings, records, 1200.0))
    sender.start()
    second = None
    try:
        for started, pause in enumerate((5, 5), start=1):
            # Killed mid stream: once it runs (on a loaded machine its start can take longer than the pause).
            assert wait_for(lambda n=started: log.read_text().count("ingest kserve (") == n, 60), log.read_text()
            time.sleep(pause)
            bridge.send_signal(signal.SIGKILL)
            bridge.wait(30)
            bridge = start_bridge(kafka_settings, "kserve", tmp_path / "kserve.yaml", [source], app, "b0", log)
            if second is None:  # a second bridge joins the group: they share the partitions
                second = start_bridge(kafka_settings, "kserve", tmp_path / "kserve.yaml", [source], app, "b1",
                                      second_log)
        sender.join()
        requests = read_topic(kafka_settings, topics.requests, expected=n, timeout=120)
        responses = read_topic(kafka_settings, topics.responses, expected=n, timeout=60)
        letters = read_topic(kafka_settings, topics.dlq, expected=len(bad), timeout=30)
        alive = [bridge.poll() is None, second.poll() is None]
    finally:
        stop_workers(*[b for b in (bridge, second) if b is not None])
    assert alive == [True, True]
    for written in (requests, responses):
        ids = Counter(m.key().decode() for m in written)
        assert len(ids) == n and set(ids.values()) == {1}, ids.most_common(3)  # each once, none lost
    versions = Counter(orjson.loads(m.value())["version"] for m in responses)
    assert versions == {"v1": n // 2, "v2": n // 2}
    seen = Counter((dict(m.headers())["source.topic"].decode(), dict(m.headers())["reason"].decode()) for m in letters)
    assert seen == reasons
    text = log.read_text()
    assert text.count("ingest kserve (") == 3 and text.count("ingest stopped") == 1  # two unclean ends
    # the second bridge held partitions and wrote some of the events
    stopped = [line for line in second_log.read_text().splitlines() if line.startswith("ingest stopped")]
    assert "assignment: " in second_log.read_text() and stopped and " 0 requests" not in stopped[0], stopped

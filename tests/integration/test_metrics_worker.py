"""Windowed and cumulative metrics through the real broker and a real worker, against scikit-learn.

Real models (trained on datasets that ship with scikit-learn) serve a stream as baseline (v1,
primary) and a weaker canary (v2); the binary model also has a shadow (v3). Every closed window on
``evaluator.metrics`` must equal scikit-learn on the pairs of that window, each published once; the
running totals on the worker's Prometheus endpoint must equal scikit-learn on all pairs, and the
endpoint must pass ``promtool check metrics``.
"""

from __future__ import annotations

import random
import shutil
import subprocess
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
from tests.kafka_helpers import read_topic, send_ticks, start_evaluator, stop_workers
from tests.ml_fixtures import served, sklearn_metrics

pytestmark = pytest.mark.kafka

T0 = 1_790_000_000_000
WINDOW_MS, STEP_MS, LABEL_AFTER_MS = 1000, 10, 150
PARTITIONS = 3
MODELS = {"bin": "binary", "multi": "multiclass", "reg": "regression", "rank": "ranking"}
ROLES = {"v1": "primary", "v2": "canary", "v3": "shadow"}


def _rows(model: str):
    data = served(MODELS[model])
    versions = ["v1", "v2", "v3"] if model == "bin" else ["v1", "v2"]
    for i, label in enumerate(data.labels):
        ts = T0 + i * STEP_MS
        yield i, ts, label, data, versions


def _latency(model: str, version: str, i: int) -> float:
    return random.Random(f"{model}{version}{i}").lognormvariate(3, 0.7)


class Run:
    def __init__(self, settings: KafkaSettings, port: int) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.port = port


@pytest.fixture(scope="module")
def run(kafka_bootstrap, tmp_path_factory):
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    create_topics(settings, TopicLayout(inference_partitions=PARTITIONS, evaluator_partitions=2))
    topics = Topics(settings.topic_prefix)
    events = []  # (event time, topic, key, message): sent in event-time order, as a live stream is
    for model in MODELS:
        for i, ts, label, data, versions in _rows(model):
            rid = f"{model}-{i}"
            events.append((ts, topics.requests, rid, InferenceRequest(request_id=rid, model=model, ts=ts,
                                                                      features=data.features[i])))
            for version in versions:
                source = "v2" if version == "v3" else version  # the shadow runs the canary's model
                events.append((ts, topics.responses, rid, InferenceResponse(
                    request_id=rid, model=model, version=version, role=ROLES[version], ts=ts,
                    prediction=data.predictions[source][i], score=data.scores[source][i],
                    latency_ms=_latency(model, version, i))))
            events.append((ts + LABEL_AFTER_MS, topics.labels, rid, GroundTruth(
                request_id=rid, model=model, ts=ts + LABEL_AFTER_MS, label=label,
                outcomes={"revenue": float(i % 5)})))
    producer = ContractProducer(settings)
    for _, topic, key, message in sorted(events, key=lambda e: e[0]):
        producer.send(topic, key, message)
    producer.flush(60)
    send_ticks(settings, topics, PARTITIONS, T0 + 86_400_000)
    state_dir = str(tmp_path_factory.mktemp("metrics") / "worker")
    port = free_port()
    args = ["--label-timeout", "2s", "--expiry-grace", "1s", "--window", f"{WINDOW_MS // 1000}s",
            "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--ranking-k", "5", "--ranking-k", "10"]
    for model, task in MODELS.items():
        args += ["--task", f"{model}={task}"]
    worker = start_evaluator(settings, f"metrics-{uuid.uuid4().hex[:6]}", state_dir, *args)
    result = Run(settings, port)
    expected = sum(len({(ts - T0) // WINDOW_MS for _, ts, *_ in _rows(m)}) * (3 if m == "bin" else 2)
                   for m in MODELS)
    result.snapshots = [orjson.loads(m.value()) for m in
                        read_topic(settings, topics.metrics, expected=expected, timeout=240, linger=5)]
    result.expected_windows = expected
    result.scrape = _scrape_until_complete(port)
    yield result
    stop_workers(worker)


def _scrape_until_complete(port: int, timeout: float = 60) -> str:
    """The endpoint's text once the merged totals cover every labelled response."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            time.sleep(0.5)
            continue
        want = len(served("binary").labels)
        if f'shadowcanary_labelled_responses_total{{model="bin",role="primary",version="v1"}} {float(want)}' in text:
            return text
        time.sleep(0.5)
    return text


def _pairs(model: str, version: str, window_start: int | None):
    labels, predictions, scores = [], [], []
    source = "v2" if version == "v3" else version
    for i, ts, label, data, _ in _rows(model):
        if window_start is None or (ts - T0) // WINDOW_MS * WINDOW_MS + T0 == window_start:
            labels.append(label)
            predictions.append(data.predictions[source][i])
            scores.append(data.scores[source][i])
    return labels, predictions, scores


def _reference(model: str, version: str, window_start: int | None) -> dict[str, float]:
    labels, predictions, scores = _pairs(model, version, window_start)
    try:
        return sklearn_metrics(MODELS[model], labels, predictions, scores)
    except ValueError:  # a window without every class: sklearn's multiclass AUC refuses; compare the rest
        from sklearn import metrics as sk

        assert MODELS[model] == "multiclass"
        return {"accuracy": sk.accuracy_score(labels, predictions),
                "f1": sk.f1_score(labels, predictions, average="macro", zero_division=0)}


def test_every_window_is_published_once(run):
    ids = [s["snapshot_id"] for s in run.snapshots]
    assert len(ids) == run.expected_windows == len(set(ids))


@pytest.mark.parametrize("model", list(MODELS))
def test_windowed_metrics_equal_sklearn_on_the_windows_pairs(run, model):
    checked = 0
    for snapshot in run.snapshots:
        if snapshot["model"] != model:
            continue
        start = int(_utc_ms(snapshot["window"]["start"]))
        labels, _, _ = _pairs(model, snapshot["version"], start)
        assert snapshot["labelled"] == snapshot["responses"] == len(labels)
        assert snapshot["requests"] == len(labels) and snapshot["expired"] == 0
        assert snapshot["role"] == ROLES[snapshot["version"]]
        for name, value in _reference(model, snapshot["version"], start).items():
            assert snapshot["metrics"][name] == pytest.approx(value, abs=1e-9, rel=1e-9), (name, start)
            checked += 1
        latencies = sorted(_latency(model, snapshot["version"], i) for i, ts, *_ in _rows(model)
                           if (ts - T0) // WINDOW_MS * WINDOW_MS + T0 == start)
        p99 = latencies[int(0.99 * (len(latencies) - 1))]
        assert snapshot["latency_ms"]["p99"] == pytest.approx(p99, rel=0.0101)
    assert checked > 20


def _utc_ms(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


@pytest.mark.parametrize("model", list(MODELS))
def test_running_totals_on_the_endpoint_equal_sklearn_on_all_pairs(run, model):
    values = _parse(run.scrape)
    for version in (["v1", "v2", "v3"] if model == "bin" else ["v1", "v2"]):
        for name, value in _reference(model, version, None).items():
            key = ("shadowcanary_version_metric", (("metric", name), ("model", model),
                                                   ("role", ROLES[version]), ("version", version)))
            assert values[key] == pytest.approx(value, abs=1e-9, rel=1e-9), (version, name)


def test_shadow_agreement_with_the_primary(run):
    values = _parse(run.scrape)
    _, primary, _ = _pairs("bin", "v1", None)
    _, shadow, _ = _pairs("bin", "v3", None)
    agreement = sum(a == b for a, b in zip(primary, shadow)) / len(primary)
    key = ("shadowcanary_version_metric", (("metric", "agreement"), ("model", "bin"), ("role", "shadow"),
                                           ("version", "v3")))
    assert values[key] == pytest.approx(agreement, abs=1e-12) and agreement < 1


def _parse(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_endpoint_passes_promtool_check_metrics(run):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is installed by `make test-tools`"
    result = subprocess.run([promtool, "check", "metrics"], input=run.scrape, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("shadowcanary_responses_total", "shadowcanary_latency_seconds", "shadowcanary_label_delay_seconds",
                 "shadowcanary_label_coverage_ratio", "shadowcanary_consumer_lag_records",
                 "shadowcanary_records_ingested_total", "shadowcanary_windows_published_total"):
        assert name in run.scrape
    stages = {labels[0][1]: value for (name, labels), value in _parse(run.scrape).items()
              if name == "shadowcanary_worker_stage_seconds_total"}
    assert {"consume", "decode", "join", "metrics", "outputs", "transaction", "local state"} <= set(stages), stages
    assert "state read" not in stages  # timed apart only with --time-state
    assert all(seconds >= 0 for seconds in stages.values()) and stages["join"] > 0

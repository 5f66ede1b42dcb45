"""``rollout start --watch`` for a CI pipeline, through the real broker and a real worker: exit 0 when
the rollout completes, 1 when it is rolled back, 3 when it is still waiting for evidence at the
timeout; ``--output json`` gives one object per change."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import uuid

import pytest
import yaml

from schemas import Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import spec, traffic
from tests.kafka_helpers import cli, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka


def watch_start(settings, spec_path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(cli(settings, "rollout", "start", "-f", str(spec_path), "--watch", "--every", "1s", *args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    """The first line ``process`` prints (empty if none comes within ``timeout``)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def test_watch_exits_0_on_completion_1_on_rollback_and_3_when_held_past_its_timeout(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    models = {"good": {"v1": 0.9, "v2": 0.9}, "bad": {"v1": 0.9, "v2": 0.5}, "quiet": None}
    args = [arg for model in models for arg in ("--task", f"{model}=binary")]
    worker = start_evaluator(kafka_settings, f"watch-{uuid.uuid4().hex[:8]}", str(tmp_path / "w"), "--label-timeout",
                             "60s", "--expiry-grace", "5s", "--metrics-port", "0", *args)
    watchers = {}
    try:
        time.sleep(8)  # the worker joins its groups
        for model in models:
            path = tmp_path / f"{model}.yaml"
            path.write_text(yaml.safe_dump(spec(model).model_dump(mode="json")))
            watchers[model] = watch_start(kafka_settings, path, "--timeout", "25s" if model == "quiet" else "180s",
                                          *(["--output", "json"] if model == "good" else []))
        # Traffic starts once the JSON watcher has looked once: with a stage of 150 samples at 200
        # requests a second, a watcher still starting up could first see the rollout at stage 2.
        first_line = _first_line(watchers["good"], 60)
        producer, rng, sent = ContractProducer(kafka_settings), random.Random(5), 0
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and any(w.poll() is None for m, w in watchers.items() if m != "quiet"):
            for model, accuracy in models.items():
                if accuracy is not None and watchers[model].poll() is None:
                    traffic(producer, topics, model, accuracy, 200, rng, start=sent)
            sent += 200
            time.sleep(1)
        for watcher in watchers.values():
            watcher.wait(60)
    finally:
        stop_workers(worker)
        for watcher in watchers.values():
            if watcher.poll() is None:
                watcher.kill()
    out = {model: watcher.communicate() for model, watcher in watchers.items()}
    out["good"] = (first_line + out["good"][0], out["good"][1])
    codes = {model: watcher.returncode for model, watcher in watchers.items()}
    assert codes == {"good": 0, "bad": 1, "quiet": 3}, out
    lines = [json.loads(line) for line in out["good"][0].splitlines()]
    assert lines[0]["status"] == "running" and lines[0]["stage"] == 1 and lines[0]["rollout_id"].startswith("good@")
    assert lines[-1]["outcome"] == "completed" and lines[-1]["exit"] == 0
    assert "rolled back" in out["bad"][0] and "guardrail failed" in out["bad"][0]
    assert "still held after 25s" in out["quiet"][0] or "still running after 25s" in out["quiet"][0], out["quiet"]

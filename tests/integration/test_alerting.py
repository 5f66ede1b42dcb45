"""A rollback reaches people: the evaluator's metrics, scraped by a real Prometheus that evaluates
the shipped alert rules, reach a real Alertmanager (Debian's packages, on 127.0.0.1), which delivers
a notification to a webhook receiver with the model, both versions, the reason and where the
decision is."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from schemas import Topics
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_scenarios import unlabelled
from tests.integration.test_policy_worker import wait_for_commands
from tests.kafka_helpers import start_evaluator, stop_workers, wait_for
from tests.test_deploy import DEPLOY

pytestmark = pytest.mark.kafka
EVALUATION_S, GROUP_WAIT_S = 1, 1


class Receiver:
    """A webhook receiver: every notification Alertmanager posts, with when it arrived."""

    def __init__(self) -> None:
        self.notifications: list[tuple[float, dict]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def rollbacks(self) -> list[tuple[float, dict]]:
        return [(at, alert) for at, note in self.notifications for alert in note["alerts"]
                if alert["labels"].get("alertname") == "ShadowCanaryRollback" and alert["status"] == "firing"]


def test_a_rollback_reaches_a_webhook_through_prometheus_and_alertmanager(kafka_settings, tmp_path):
    prometheus, alertmanager = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
    assert prometheus and alertmanager, "prometheus and prometheus-alertmanager are installed by `make test-tools`"
    create_topics(kafka_settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    metrics_port, am_port, prom_port = free_port(), free_port(), free_port()
    receiver = Receiver()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "webhook", "group_by": ["alertname", "model"], "group_wait": f"{GROUP_WAIT_S}s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": receiver.url, "send_resolved": False}]}]}))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": f"{EVALUATION_S}s"},
                "rule_files": [str(p) for p in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [
                    {"job_name": "shadowcanary", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
                ],
            }
        )
    )
    processes = [
        subprocess.Popen([alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
                          f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                          "--cluster.listen-address="],
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "alertmanager.log", "wb")),
        subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'prom'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))]
    worker = start_evaluator(kafka_settings, f"alert-{uuid.uuid4().hex[:6]}", str(tmp_path / "w"),
                             "--label-timeout", "1h", "--metrics-port", str(metrics_port), "--metrics-host",
                             "127.0.0.1", "--task", "errors=binary")
    try:
        producer = ContractProducer(kafka_settings)
        producer.send(topics.specs, "errors", RolloutSpec.model_validate({
            "model": "errors", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
            "steps": [50, 100], "bake": {"min_duration": "0s", "min_samples": 1_000_000},
            "guardrails": [{"metric": "error_rate", "max": 0.05, "critical": True}]}))
        producer.flush()
        rng, sent = random.Random(4), [0]

        def more() -> None:
            unlabelled(producer, topics, "errors", 300, sent[0], rng, {"v1": 0.01, "v2": 0.25}, {"v1": 20, "v2": 20})
            sent[0] += 300

        commands = wait_for_commands(kafka_settings, topics,
                                     lambda cs: any(c.action == "rollback" for c in cs), between=more)
        rollback = next(c for c in commands if c.action == "rollback")
        assert wait_for(lambda: receiver.rollbacks(), 60, 0.2), (
            (tmp_path / "prometheus.log").read_text()[-1500:] + (tmp_path / "alertmanager.log").read_text()[-1500:])
    finally:
        stop_workers(worker)
        for process in processes:
            process.terminate()
            process.wait(20)
    arrived, alert = receiver.rollbacks()[0]
    labels, annotations = alert["labels"], alert["annotations"]
    assert labels["model"] == "errors" and labels["candidate"] == "v2" and labels["baseline"] == "v1"
    assert labels["rollout_id"] == rollback.rollout_id and "error_rate" in labels["reason"]
    assert annotations["summary"] == "errors: candidate v2 rolled back to v1"
    assert annotations["decision"].startswith(f"rollout {rollback.rollout_id} on rollout.decisions")
    # Measured, not a timing target: at most a scrape (1 s), a rule evaluation (1 s) and the group
    # wait (1 s) after the decision.
    print(f"rollback to webhook: {arrived - rollback.issued_at.timestamp():.1f} s after the decision")

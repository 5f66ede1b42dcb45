"""The worker as Prometheus and Grafana see it: every metric a dashboard or alert rule queries is one
the running worker exports, and a real Prometheus server (Debian's package, on 127.0.0.1) scrapes a
worker, loads the alert rules, and answers queries for guardrail and per-version metrics."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from schemas import Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import traffic
from tests.kafka_helpers import start_evaluator, stop_workers, wait_for
from tests.test_deploy import DEPLOY, queried_metrics

pytestmark = pytest.mark.kafka
MODEL = "obs"


def _spec() -> dict:
    # Needs far more samples than the test sends: the rollout stays running at 50%.
    return {"model": MODEL, "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
            "steps": [50, 100], "bake": {"min_duration": "1h", "min_samples": 1_000_000},
            "guardrails": [{"metric": "accuracy", "max_degradation": 0.05},
                           {"metric": "error_rate", "max": 0.05, "critical": True}]}


def _scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def exported_names(text: str) -> set[str]:
    """Every series name a query may use: sample names, and each family's names by type."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type in ("summary", "histogram"):
            names.update({family.name + "_count", family.name + "_sum"})
    return names


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    from streams.kafka.settings import KafkaSettings
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"o{uuid.uuid4().hex[:10]}.")
    create_topics(settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(settings.topic_prefix)
    port = free_port()
    process = start_evaluator(settings, f"obs-{uuid.uuid4().hex[:6]}", str(tmp_path_factory.mktemp("obs") / "w"),
                              "--label-timeout", "30s", "--expiry-grace", "2s", "--task", f"{MODEL}=binary",
                              "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    producer = ContractProducer(settings)
    from schemas.rollout import RolloutSpec
    producer.send(topics.specs, MODEL, RolloutSpec.model_validate(_spec()))
    producer.send(topics.responses, "broken", b'{"request_id": "broken"')  # a dead letter
    producer.flush()
    rng, sent = random.Random(5), [0]

    def ready() -> bool:
        traffic(producer, topics, MODEL, {"v1": 0.9, "v2": 0.9}, 200, rng, start=sent[0])
        sent[0] += 200
        text = _scrape(port)
        return 'shadowcanary_guardrail_value{' in text and "shadowcanary_dead_letters_total{" in text
    try:
        assert wait_for(ready, 120, 1.0), _scrape(port)[-2000:]
        yield port
    finally:
        stop_workers(process)


def test_every_metric_a_dashboard_or_rule_queries_is_exported(worker):
    names = exported_names(_scrape(worker))
    for source, metrics in queried_metrics().items():
        missing = sorted(m for m in metrics if m not in names)
        assert not missing, f"{source} queries metrics the worker does not export: {missing}"
    # And the check can fail: a renamed metric is caught.
    assert "shadowcanary_rollout_decision_total" not in names


def test_a_real_prometheus_scrapes_the_worker_and_answers_queries(worker, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus (Debian's package) is installed by `make test-tools`"
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(p) for p in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))],
              "scrape_configs": [{"job_name": "shadowcanary",
                                  "static_configs": [{"targets": [f"127.0.0.1:{worker}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))

    def query(expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        except OSError:
            return []
        return body["data"]["result"] if body.get("status") == "success" else []

    try:
        guardrail = f'shadowcanary_guardrail_value{{model="{MODEL}",guardrail="accuracy",estimate="value"}}'
        assert wait_for(lambda: len(query(guardrail)) == 2, 60, 1.0), (tmp_path / "prometheus.log").read_text()[-2000:]
        sides = {r["metric"]["side"]: float(r["value"][1]) for r in query(guardrail)}
        assert set(sides) == {"baseline", "candidate"} and all(0.7 < v <= 1.0 for v in sides.values())
        accuracy = query(f'shadowcanary_version_metric{{model="{MODEL}",metric="accuracy"}}')
        assert {r["metric"]["version"] for r in accuracy} == {"v1", "v2"}
        assert query('up{job="shadowcanary"}')[0]["value"][1] == "1"
        split = query(f'shadowcanary_rollout_traffic_percent{{model="{MODEL}"}}')
        assert {r["metric"]["version"]: float(r["value"][1]) for r in split} == {"v1": 50.0, "v2": 50.0}
        rules = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).read())
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        groups = yaml.safe_load((DEPLOY / "prometheus/rules/shadowcanary.yml").read_text())["groups"]
        in_file = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
        assert "ShadowCanaryDrift" in loaded and loaded == in_file
    finally:
        server.terminate()
        server.wait(20)

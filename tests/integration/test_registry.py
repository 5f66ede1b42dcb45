"""The model registry through a real MLflow tracking server (its own package, SQLite backend, on
127.0.0.1) and a real worker: decisions carry each version's registry metadata; a promotion sets
the alias on the candidate's version; a rollback tags it with the decision."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import urllib.request
import uuid

import pytest

from schemas import Topics, decode
from schemas.control import Decision
from schemas.rollout import RolloutSpec
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from tests.integration.test_policy_worker import spec, traffic, wait_for_commands
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers, wait_for

pytestmark = pytest.mark.kafka


def start_mlflow(folder, port: int) -> subprocess.Popen:
    """A real MLflow tracking server (SQLite) on 127.0.0.1:``port``, once it answers its health check."""
    binary = shutil.which("mlflow") or str(__import__("pathlib").Path(sys.executable).parent / "mlflow")
    process = subprocess.Popen([binary, "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                                "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "mlflow.log", "wb"))

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
        except OSError:
            return False
    if not wait_for(healthy, 120, 0.5):
        process.terminate()
        raise AssertionError((folder / "mlflow.log").read_text()[-2000:])
    return process


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    process = start_mlflow(tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def register_versions(client, name: str) -> dict[str, str]:
    """A registered model with versions 1 and 2 (each from a run); their run ids by version."""
    client.create_registered_model(name)
    runs = {}
    for number in ("1", "2"):
        run = client.create_run(experiment_id="0", tags={"team": "fraud"})
        runs[number] = run.info.run_id
        client.create_model_version(name, source=f"s3://models/{name}/{number}", run_id=run.info.run_id,
                                    description=f"{name} build {number}", tags={"card": f"cards/{name}-{number}.md"})
    return runs


def test_decisions_carry_registry_metadata_and_outcomes_reach_the_registry(kafka_settings, tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    runs = {(name, number): run for name in ("bad-model", "good-model")
            for number, run in register_versions(client, name).items()}
    create_topics(kafka_settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    worker = start_evaluator(kafka_settings, f"reg-{uuid.uuid4().hex[:6]}", str(tmp_path / "w"),
                             "--label-timeout", "60s", "--metrics-port", "0", "--mlflow-uri", mlflow_server,
                             "--task", "bad=binary", "--task", "good=binary")
    try:
        producer = ContractProducer(kafka_settings)
        for model in ("bad", "good"):
            document = spec(model).model_dump(mode="json") | {
                "registry": {"name": f"{model}-model", "versions": {"v1": "1", "v2": "2"}}}
            producer.send(topics.specs, model, RolloutSpec.model_validate(document))
        producer.flush()
        rng, sent = random.Random(9), [0]

        def more() -> None:
            for model, accuracy in (("bad", {"v1": 0.95, "v2": 0.70}), ("good", {"v1": 0.95, "v2": 0.95})):
                traffic(producer, topics, model, accuracy, 500, rng, start=sent[0])
            sent[0] += 500

        def settled(commands) -> bool:
            last = {c.model: c.action for c in commands}
            return last.get("bad") == "rollback" and last.get("good") == "promote"

        wait_for_commands(kafka_settings, topics, settled, between=more)
        champion = lambda: _alias(client, "good-model")  # noqa: E731
        tagged = lambda: client.get_model_version("bad-model", "2").tags.get("shadowcanary.decision")  # noqa: E731
        assert wait_for(lambda: champion() == "2" and tagged() == "rolled_back", 30, 0.5), (champion(), tagged())
    finally:
        stop_workers(worker)
    decisions = [decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=1)]
    rollback = next(d for d in decisions if d.model == "bad" and d.action == "rollback")
    complete = next(d for d in decisions if d.model == "good" and d.action == "complete")
    for decision, name in ((rollback, "bad-model"), (complete, "good-model")):
        assert set(decision.versions) == {"v1", "v2"}
        candidate = decision.versions["v2"]
        assert (candidate.name, candidate.version, candidate.run_id) == (name, "2", runs[(name, "2")])
        assert candidate.source == f"s3://models/{name}/2" and candidate.description == f"{name} build 2"
        assert candidate.tags["card"] == f"cards/{name}-2.md"
    tags = client.get_model_version("bad-model", "2").tags
    assert tags["shadowcanary.rollout_id"] == rollback.rollout_id and "accuracy" in tags["shadowcanary.reason"]
    assert _alias(client, "bad-model") is None  # a rolled-back candidate is nobody's champion
    assert "shadowcanary.decision" not in client.get_model_version("good-model", "2").tags


def _alias(client, name: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, "champion").version
    except Exception:
        return None


def test_an_outcome_the_registry_missed_is_written_by_the_next_owner(kafka_settings, tmp_path):
    """The registry is away while a worker rolls a candidate back: the tag write is kept in the
    engine's saved state (the outbox) and retried; the worker is killed. The next worker of the app,
    with the registry back, writes the tag from the saved state."""
    from mlflow.tracking import MlflowClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    create_topics(kafka_settings, TopicLayout(inference_partitions=2, evaluator_partitions=1))
    topics = Topics(kafka_settings.topic_prefix)
    app = f"reg-{uuid.uuid4().hex[:6]}"
    args = ("--label-timeout", "60s", "--metrics-port", "0", "--mlflow-uri", uri, "--task", "bad=binary")
    first = start_evaluator(kafka_settings, app, str(tmp_path / "w1"), *args)
    try:
        producer = ContractProducer(kafka_settings)
        document = spec("bad").model_dump(mode="json") | {
            "registry": {"name": "bad-model", "versions": {"v1": "1", "v2": "2"}}}
        producer.send(topics.specs, "bad", RolloutSpec.model_validate(document))
        producer.flush()
        rng, sent = random.Random(4), [0]

        def more() -> None:
            traffic(producer, topics, "bad", {"v1": 0.95, "v2": 0.70}, 500, rng, start=sent[0])
            sent[0] += 500

        commands = wait_for_commands(kafka_settings, topics, lambda cs: any(c.action == "rollback" for c in cs),
                                     between=more)
        assert any(c.action == "rollback" for c in commands)
        log = tmp_path / "w1.log"
        assert wait_for(lambda: "registry: writing bad-model version 2" in log.read_text(), 60, 0.5), \
            log.read_text()[-3000:]
    finally:
        first.kill()  # SIGKILL: nothing is flushed or handed over
        first.wait(30)
    server = start_mlflow(tmp_path, port)
    second = None
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        register_versions(client, "bad-model")
        second = start_evaluator(kafka_settings, app, str(tmp_path / "w2"), *args)
        tag = lambda key: client.get_model_version("bad-model", "2").tags.get(key)  # noqa: E731
        assert wait_for(lambda: tag("shadowcanary.decision") == "rolled_back", 120, 0.5), \
            (tmp_path / "w2.log").read_text()[-3000:]
        rollback = next(decode(Decision, m.value()) for m in read_topic(kafka_settings, topics.decisions, linger=1)
                        if decode(Decision, m.value()).action == "rollback")
        assert tag("shadowcanary.rollout_id") == rollback.rollout_id and "accuracy" in tag("shadowcanary.reason")
        assert _alias(client, "bad-model") is None
    finally:
        if second is not None:
            stop_workers(second)
        server.terminate()
        server.wait(30)

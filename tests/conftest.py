"""Fixtures shared by the suite. Integration tests get a real Kafka broker, never a mock:

1. ``KAFKA_BOOTSTRAP`` when it is set (an existing cluster);
2. else testcontainers' Kafka, when a Docker engine answers;
3. else the project's own local KRaft broker (``streams.kafka.local_broker``) on a free port, in a
   temporary folder, stopped and removed when the session ends.

Every test gets its own topic prefix, so tests never see each other's events.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from schemas.topics import Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import LocalBroker, free_port
from streams.kafka.settings import KafkaSettings

KAFKA_IMAGE = "apache/kafka:4.3.1"
ROOT = Path(__file__).resolve().parents[1]

# Tests write only under temporary folders: Hypothesis keeps its examples and caches there, not in
# ./.hypothesis.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "shadowcanary-hypothesis")

#: What the repository's top folder held when the session started (pytest's own cache aside).
_ROOT_ENTRIES: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    _ROOT_ENTRIES.update(path.name for path in ROOT.iterdir())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A session that left files or folders in the repository's top folder fails: tests write only
    under temporary folders."""
    left = sorted({path.name for path in ROOT.iterdir()} - _ROOT_ENTRIES - {".pytest_cache"})
    if left and _ROOT_ENTRIES:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"tests left these in the repository's top folder: {', '.join(left)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka cluster for the whole session."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    port = free_port()
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=port, controller_port=free_port())
    broker.up()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        broker.down(purge=True)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings with a topic prefix of this test's own."""
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def contract_topics(kafka_settings: KafkaSettings) -> Topics:
    """The contract's topics, created under this test's prefix (inference topics: 4 partitions)."""
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    return Topics(kafka_settings.topic_prefix)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

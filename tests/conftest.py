"""Fixtures shared by the suite. Integration tests get a real Kafka broker, never a mock:

1. ``KAFKA_BOOTSTRAP`` when it is set (an existing cluster);
2. else testcontainers' Kafka, when a Docker engine answers;
3. else the project's own local KRaft broker (``streams.local_broker``) on a free port, in a
   temporary folder, stopped and removed when the session ends.

Every test gets its own topic prefix, so tests never see each other's events.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from schemas.topics import Topics
from streams.admin import TopicLayout, create_topics
from streams.config import KafkaSettings
from streams.local_broker import LocalBroker, free_port

KAFKA_IMAGE = "apache/kafka:4.3.1"


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

"""Reading what reached a topic, for assertions in integration tests, and running the CLI on them."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Message

from schemas import InferenceRequest, Topics, encode
from streams.kafka.producer import make_producer
from streams.kafka.settings import KafkaSettings
from streams.worker.process import start_evaluator, stop_workers  # noqa: F401 (the tests' helpers)


def cli(settings: KafkaSettings, *args: str) -> list[str]:
    """The command line of ``shadowcanary [args]`` against ``settings``' cluster and topic prefix."""
    return [sys.executable, "-m", "streams.cli", "--bootstrap", settings.bootstrap_servers,
            "--topic-prefix", settings.topic_prefix, *args]


def read_topic(settings: KafkaSettings, topic: str, expected: int | None = None, timeout: float = 120,
               linger: float = 3.0) -> list[Message]:
    """Every record of ``topic`` from the beginning: until ``expected`` arrived (or ``timeout``), then
    ``linger`` seconds more, so that anything beyond the expected count (a duplicate) shows too."""
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"reader-{uuid.uuid4()}", "auto.offset.reset": "earliest", "enable.auto.commit": False,
        # The worker writes its outputs in transactions: read only what committed, as every reader must.
        "isolation.level": "read_committed"}))
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + (timeout if expected is not None else linger)
    try:
        while time.monotonic() < deadline and (expected is None or len(out) < expected):
            out += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
        lingered = time.monotonic() + linger
        while expected is not None and time.monotonic() < lingered:
            out += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return out


def send_ticks(settings: KafkaSettings, topics: Topics, partitions: int, ts: int) -> None:
    """One far-future request on every partition, so every partition's time passes every expiry."""
    producer = make_producer(settings)
    for partition in range(partitions):
        rid = f"tick-{partition}"
        producer.produce(topics.requests, key=rid, partition=partition,
                         value=encode(InferenceRequest(request_id=rid, model="tick", ts=ts)))
    producer.flush(30)


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def rebalance_lines(dirs: list[str]) -> str:
    """What each worker (state folder ``dirs[i]``, log beside it) logged of its group, its restores
    and its producer, for a failing assertion."""
    marks = ("assignment: ", "revoking", "lost", "restor", "consumer", "producer", "WARNING", "ERROR")
    return "\n".join(f"w{i} {line}" for i, folder in enumerate(dirs) if Path(folder + ".log").exists()
                     for line in Path(folder + ".log").read_text(errors="replace").splitlines()
                     if any(mark in line for mark in marks))

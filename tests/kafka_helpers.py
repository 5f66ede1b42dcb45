"""Reading what reached a topic, for assertions in integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Message

from schemas import InferenceRequest, Topics, encode
from streams.config import KafkaSettings
from streams.producer import make_producer


def read_topic(settings: KafkaSettings, topic: str, expected: int | None = None, timeout: float = 120,
               linger: float = 3.0) -> list[Message]:
    """Every record of ``topic`` from the beginning: until ``expected`` arrived (or ``timeout``), then
    ``linger`` seconds more, so that anything beyond the expected count (a duplicate) shows too."""
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"reader-{uuid.uuid4()}", "auto.offset.reset": "earliest", "enable.auto.commit": False}))
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


def start_evaluator(settings: KafkaSettings, app_id: str, state_dir: str, *args: str) -> subprocess.Popen:
    """``shadowcanary evaluate`` in a process of its own; its log goes to ``<state_dir>.log``."""
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "SHADOWCANARY_TOPIC_PREFIX": settings.topic_prefix}
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "evaluate", "--app-id", app_id, "--state-dir", state_dir, *args],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(state_dir + ".log"), "ab"))


def stop_workers(*workers: subprocess.Popen, timeout: float = 60) -> None:
    """Ask each worker to stop cleanly (SIGTERM, as Ctrl-C would); kill the ones that do not."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()

"""Run a faust-streaming app inside a test's event loop, against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import AsyncIterator

import faust

from streams.config import KafkaSettings


def make_test_app(settings: KafkaSettings, name: str | None = None) -> faust.App:
    return faust.App(
        name or f"test-{uuid.uuid4().hex[:8]}",
        broker=settings.faust_broker_url(),
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
    )


@contextlib.asynccontextmanager
async def running(app: faust.App) -> AsyncIterator[faust.App]:
    """Start ``app`` (producer, consumer, agents) and stop it afterwards."""
    app.loop = asyncio.get_running_loop()
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)

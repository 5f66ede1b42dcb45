"""Join throughput through the real broker, as a ratio to raw consumption of the same topics.

Both sides read the same pre-produced topics from the beginning, in the same run: (1) raw aiokafka
consumption (what any consumer pays: fetch and iterate records), (2) the evaluator's join worker
(faust, decode, join, RocksDB table with changelog, partial states). The ratio is (2)/(1).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer

from bench.broker import broker
from bench.report import Result
from evaluators.join import JoinConfig
from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, encode
from streams.admin import TopicLayout, admin_client, create_topics, ensure_internal_topic
from streams.app import AppOptions, create_app
from streams.config import KafkaSettings
from streams.join_worker import JoinWorker, partials_topic_name
from streams.producer import make_producer

PARTITIONS = 4


def produce_stream(settings: KafkaSettings, topics: Topics, n_requests: int) -> int:
    producer = make_producer(settings, **{"linger.ms": 50, "batch.num.messages": 10000,
                                          "queue.buffering.max.messages": 1_000_000})
    t0 = 1_780_000_000_000
    count = 0
    for i in range(n_requests):
        rid = f"req-{i}"
        ts = t0 + i * 10
        values = [(topics.requests, encode(InferenceRequest(request_id=rid, model="m", ts=ts,
                                                            features={"amount": float(i % 100), "country": "NL"})))]
        for version, role in (("v1", "primary"), ("v2", "canary")):
            values.append((topics.responses, encode(InferenceResponse(
                request_id=rid, model="m", version=version, role=role, ts=ts + 5, prediction=i % 2,
                score=0.7, latency_ms=4.2))))
        if i % 4:
            values.append((topics.labels, encode(GroundTruth(request_id=rid, model="m", ts=ts + 2000, label=1))))
        for topic, value in values:
            while True:
                try:
                    producer.produce(topic, key=rid, value=value)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(120)
    return count


async def raw_consumption(settings: KafkaSettings, topics: Topics, expected: int) -> float:
    consumer = AIOKafkaConsumer(topics.requests, topics.responses, topics.labels, group_id=f"raw-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **settings.aiokafka_kwargs())
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    seen += record.value is not None
    finally:
        await consumer.stop()
    return expected / (time.perf_counter() - started)


async def faust_stream_alone(settings: KafkaSettings, topics: Topics, expected: int) -> float:
    """faust's own ceiling: an agent over the same topics that only counts its batches."""
    app = create_app(settings, AppOptions(app_id=f"bench-faust-{uuid.uuid4().hex[:8]}"))
    source = app.topic(topics.requests, topics.responses, topics.labels, key_type=None, value_type=None,
                       key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "started": None}

    async def count(stream):
        async for events in stream.take_events(5000, within=0.25):
            seen["started"] = seen["started"] or time.perf_counter()
            seen["n"] += len(events)

    app.agent(source, name="count")(count)
    app.loop = asyncio.get_running_loop()
    await app.start()
    try:
        while seen["n"] < expected:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - seen["started"]
    finally:
        await app.stop()
    return expected / elapsed


async def join_throughput(settings: KafkaSettings, topics: Topics, expected: int, state_dir: str) -> float:
    options = AppOptions(app_id=f"bench-{uuid.uuid4().hex[:8]}", store="rocksdb://", batch_size=5000,
                         data_dir=state_dir)
    app = create_app(settings, options)
    worker = JoinWorker(app, topics, JoinConfig(label_timeout_ms=3_600_000), PARTITIONS, options)
    app.loop = asyncio.get_running_loop()
    await app.start()
    try:
        while worker.events_processed < expected:
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - worker.first_batch_at
    finally:
        await app.stop()
    return expected / elapsed


def run(n_requests: int = int(os.environ.get("BENCH_JOIN_REQUESTS", "60000"))) -> list[Result]:
    import tempfile

    with broker() as bootstrap:
        settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bj{uuid.uuid4().hex[:6]}.")
        create_topics(settings, TopicLayout(inference_partitions=PARTITIONS))
        topics = Topics(settings.topic_prefix)
        ensure_internal_topic(admin_client(settings), partials_topic_name(topics), PARTITIONS, compacted=True)
        events = produce_stream(settings, topics, n_requests)
        raw = asyncio.run(raw_consumption(settings, topics, events))
        faust_alone = asyncio.run(faust_stream_alone(settings, topics, events))
        with tempfile.TemporaryDirectory() as state_dir:
            joined = asyncio.run(join_throughput(settings, topics, events, state_dir))
    ratio = joined / raw
    return [
        Result("join", "raw aiokafka consumption, same topics", raw, "events/s"),
        Result("join", "faust stream alone (agent only counting)", faust_alone, "events/s",
               note="faust's per-event ceiling on this machine, before any work"),
        Result("join", "join worker throughput (1 worker)", joined, "events/s", ">= 30,000/s", joined >= 30_000,
               note="goal 100,000/s"),
        Result("join", "join / raw consumption", ratio, "ratio", ">= 0.3", ratio >= 0.3, note="goal 0.5"),
    ]

"""Join throughput through the real broker, every engine on the same pre-produced topics in one run.

The rows, all reading the same four-partition topics from the beginning (at least a million events
by default, ``BENCH_JOIN_REQUESTS`` requests of 3.75 events each):

1. raw confluent-kafka batch consumption (``Consumer.consume``): what any reader pays;
2. the same consumer decoding and validating every record as the worker does: the floor of any
   worker;
3. a faust-streaming agent that only counts its batches (faust was the first engine; it stays as a
   peer to beat);
4. a quixstreams app that only counts;
5. the worker end to end (:class:`streams.worker.loop.BatchLoop` over the join stage: decode, join,
   metrics, RocksDB, changelog, partials, one transaction per batch);
6. the pure join core plus decode over the same records, without Kafka (in-memory store), so the
   engine's own cost per event is (5) minus (6).
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer

from bench.broker import broker
from bench.report import Result
from evaluators.accumulators import evaluator_accumulator
from evaluators.join import Accumulator, Incoming, JoinConfig, JoinPartition
from evaluators.metrics import MetricsConfig
from evaluators.stage_clock import WORKER_STAGES
from schemas import GroundTruth, InferenceRequest, InferenceResponse, Topics, encode
from schemas.catalog import model_for_topic
from schemas.dead_letter import decode_or_dead_letter
from schemas.fast_codec import decode_fast
from schemas.internal_topics import changelog_topic_name, partials_topic_name
from streams.kafka.admin import TopicLayout, admin_client, create_topics, ensure_internal_topic
from streams.kafka.producer import make_producer
from streams.kafka.settings import KafkaSettings
from streams.worker.gc_pace import pace_cycle_collector
from streams.worker.join_stage import SOURCE_CODES, JoinStage
from streams.worker.loop import INPUT_TOPICS, BatchLoop, LoopOptions
from streams.worker.store import PartitionStore

PARTITIONS = 4
CONFIG = JoinConfig(label_timeout_ms=3_600_000)
BATCH = LoopOptions.batch_size


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


def _consumer(settings: KafkaSettings) -> Consumer:
    return Consumer(settings.confluent_config(**{
        "group.id": f"raw-{uuid.uuid4()}", "auto.offset.reset": "earliest", "enable.auto.commit": False}))


def confluent_consumption(settings: KafkaSettings, topics: Topics, expected: int, decode: bool,
                          keep: list | None = None) -> float:
    """Batch ``consume()``; with ``decode``, every record decoded and validated as the worker does.
    ``keep``: receives (topic, partition, offset, value) of every record (for the core's row)."""
    consumer = _consumer(settings)
    names = [topics.name(n) for n in INPUT_TOPICS]
    models = {topics.name(n): model_for_topic(n) for n in INPUT_TOPICS}
    consumer.subscribe(names)
    seen, started = 0, None
    try:
        while seen < expected:
            batch = consumer.consume(BATCH, 1.0)
            if started is None and batch:
                started = time.perf_counter()
            for message in batch:
                if message.error() is not None:
                    continue
                seen += 1
                if decode:
                    topic = message.topic()
                    decode_or_dead_letter(models[topic], message.value(), message.key(), topic,
                                          message.partition(), message.offset(), decode_fast)
                if keep is not None:
                    keep.append((message.topic(), message.partition(), message.offset(), message.value()))
    finally:
        consumer.close()
    return expected / (time.perf_counter() - started)


def core_alone(settings: KafkaSettings, topics: Topics, records: list, metrics: bool = True,
               decode_only: bool = False) -> float:
    """Decode + the join core (with the metric accumulator unless ``metrics`` is False) over the
    same records, in memory, in the same per-partition batches of ``BATCH``: no Kafka, no RocksDB, no
    transactions. ``decode_only``: the decoding alone, over the same records."""
    models = {topics.name(n): model_for_topic(n) for n in INPUT_TOPICS}
    codes = {topics.name(n): SOURCE_CODES[n] for n in INPUT_TOPICS}
    accumulator = evaluator_accumulator(MetricsConfig(), CONFIG.settle_ms) if metrics else Accumulator.from_state
    joins = {p: JoinPartition(PartitionStore.in_memory(), CONFIG, "bench", accumulator) for p in range(PARTITIONS)}
    sources = {p: [f"{code}{p}" for code in codes.values()] for p in range(PARTITIONS)}
    now = time.time_ns() // 1_000_000
    started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        by_partition: dict[int, list[Incoming]] = defaultdict(list)
        for topic, partition, offset, value in records[start:start + BATCH]:
            message, _ = decode_or_dead_letter(models[topic], value, None, topic, partition, offset, decode_fast)
            by_partition[partition].append(Incoming(message, f"{codes[topic]}{partition}", offset))
        if decode_only:
            continue
        for partition, incoming in by_partition.items():
            join = joins[partition]
            join.process(incoming, sources=sources[partition], now_ms=now)
            join.store.commit_local(0)
    return len(records) / (time.perf_counter() - started)


async def _faust_count(settings: KafkaSettings, topics: Topics, expected: int, data_dir: str) -> float:
    import faust

    app = faust.App(f"bench-faust-{uuid.uuid4().hex[:8]}", broker=";".join(
        f"kafka://{s}" for s in settings.bootstrap_servers.split(",")), store="memory://", web_enabled=False,
        datadir=data_dir,
        topic_replication_factor=1, consumer_auto_offset_reset="earliest", broker_max_poll_records=5000,
        stream_buffer_maxsize=20_000)
    source = app.topic(topics.requests, topics.responses, topics.labels, key_type=None, value_type=None,
                       key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "started": None}

    async def count(stream):
        async for events in stream.take_events(BATCH, within=0.25):
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


def faust_alone(settings: KafkaSettings, topics: Topics, expected: int) -> float:
    """faust's own ceiling: an agent over the same topics that only counts its batches."""
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as data_dir:  # faust's own folder, not the repo's
        return asyncio.run(_faust_count(settings, topics, expected, data_dir))


def quixstreams_alone(settings: KafkaSettings, topics: Topics, expected: int) -> float:
    """A quixstreams app over the same topics that only counts (no state, no output)."""
    from quixstreams import Application

    scratch = tempfile.TemporaryDirectory(prefix="bench-quix-")  # its state folder, not ./state
    app = Application(broker_address=settings.bootstrap_servers, consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", loglevel="WARNING", use_changelog_topics=False,
                      state_dir=scratch.name)
    seen = {"n": 0, "started": None}

    def count(_value) -> None:
        if seen["started"] is None:
            seen["started"] = time.perf_counter()
        seen["n"] += 1
        if seen["n"] >= expected:
            seen["elapsed"] = time.perf_counter() - seen["started"]
            app.stop()

    for name in (topics.requests, topics.responses, topics.labels):
        app.dataframe(app.topic(name, value_deserializer="bytes", key_deserializer="bytes")).update(count)
    try:
        app.run()
    finally:
        scratch.cleanup()
    return expected / seen["elapsed"]


def worker_end_to_end(settings: KafkaSettings, topics: Topics, expected: int, state_dir: str,
                      stage_seconds: dict[str, float] | None = None) -> float:
    """The worker's rate; ``stage_seconds`` receives its loop's seconds per stage (its own clock)."""
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_internal_topic(admin_client(settings), changelog_topic_name(topics, app_id), PARTITIONS, compacted=True)
    stage = JoinStage(settings, topics, app_id, CONFIG, MetricsConfig(),
                       Path(tempfile.mkdtemp(dir=state_dir)), "bench", time_state=True)
    loop = BatchLoop(settings, topics, stage, LoopOptions(app_id=app_id, batch_size=BATCH))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        while loop.records_done < expected:
            time.sleep(0.05)
            if not thread.is_alive():
                raise RuntimeError("the worker's loop stopped")
        elapsed = time.perf_counter() - loop.first_batch_at
    finally:
        stop.set()
        thread.join(60)
    if stage_seconds is not None:
        stage_seconds.update(loop.stage_seconds)
    return expected / elapsed


def run(n_requests: int = int(os.environ.get("BENCH_JOIN_REQUESTS", "270000"))) -> list[Result]:
    pace_cycle_collector()  # as the worker's process does (every row runs at its pace)
    with broker() as bootstrap:
        settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bj{uuid.uuid4().hex[:6]}.")
        create_topics(settings, TopicLayout(inference_partitions=PARTITIONS))
        topics = Topics(settings.topic_prefix)
        ensure_internal_topic(admin_client(settings), partials_topic_name(topics), 1, compacted=True)
        events = produce_stream(settings, topics, n_requests)
        records: list = []
        raw = confluent_consumption(settings, topics, events, decode=False, keep=records)
        # The kept records (a million tuples) would be scanned by every full collection of the
        # rows after, the worker's included: out of the collector's sight, they cost nothing.
        gc.collect()
        gc.freeze()
        decoded = confluent_consumption(settings, topics, events, decode=True)
        faust = faust_alone(settings, topics, events)
        quix = quixstreams_alone(settings, topics, events)
        measured: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as state_dir:
            worker = worker_end_to_end(settings, topics, events, state_dir, measured)
        core = core_alone(settings, topics, records)
    join_only = core_alone(settings, topics, records, metrics=False)
    decode_alone = core_alone(settings, topics, records, decode_only=True)
    engine_us = 1e6 / worker - 1e6 / core
    stage_us = {"consume (raw batch consume)": 1e6 / raw, "decode + validate": 1e6 / decode_alone,
                "join (state in memory, no metrics)": 1e6 / join_only - 1e6 / decode_alone,
                "metrics and drift accumulators": 1e6 / core - 1e6 / join_only,
                "engine: RocksDB, changelog, partials, transactions, beyond consume": engine_us - 1e6 / raw}
    profile = [Result("join", f"µs per event: {stage}", us, "µs") for stage, us in stage_us.items()]
    # The worker's own clock, in the same run: each second of its loop charged to one stage.
    profile += [Result("join", f"worker's clock, µs per event: {stage}", 1e6 * seconds / events, "µs",
                       note=WORKER_STAGES.get(stage, ""))
                for stage, seconds in sorted(measured.items(), key=lambda item: -item[1])]
    profile.append(Result("join", "worker's clock, µs per event: all stages", 1e6 * sum(measured.values()) / events,
                          "µs", note=f"against {1e6 / worker:.1f} µs an event of wall time"))
    return profile + [
        Result("join", f"events in the topics ({PARTITIONS} partitions)", events, "events"),
        Result("join", "raw confluent-kafka batch consume", raw, "events/s"),
        Result("join", "consume + decode every record (the floor of any worker)", decoded, "events/s"),
        Result("join", "faust-streaming agent only counting", faust, "events/s", note="the first engine, a peer"),
        Result("join", "quixstreams app only counting", quix, "events/s", note="a peer"),
        Result("join", "join core + decode, no Kafka (in memory)", core, "events/s"),
        Result("join", "join core without metrics + decode, no Kafka", join_only, "events/s"),
        Result("join", "worker end to end (1 worker, transactions, RocksDB)", worker, "events/s",
               note="goal 100,000/s (the core's speed is its own issue)"),
        Result("join", "worker / consume+decode", worker / decoded, "ratio"),
        Result("join", "worker / faust agent counting", worker / faust, "ratio", ">= 5", worker / faust >= 5),
        Result("join", "engine cost over core+decode", engine_us, "µs/event", "<= 3", engine_us <= 3),
    ]

"""The ingestion bridges: records/s translated alone (KServe binary and structured CloudEvents, Seldon
protobuf), and through the real broker (consume, translate, produce the contract's events, commit the
transaction) against consume plus JSON parsing alone of the same topic, in one run."""

from __future__ import annotations

import os
import threading
import time
import uuid

import orjson
from confluent_kafka import Consumer
from confluent_kafka.admin import NewTopic

from bench.broker import broker
from bench.report import Result
from evaluators.ingest.oip import encode_protobuf
from evaluators.ingest.translate import ExternalRecord, Translator
from schemas.ingest import IngestMapping
from streams.ingest.bridge import build_bridge
from streams.kafka.admin import TopicLayout, admin_client, create_topics
from streams.kafka.producer import make_producer
from streams.kafka.settings import KafkaSettings

RECORDS = int(os.environ.get("BENCH_INGEST_RECORDS", "200000"))
TRANSLATE = int(os.environ.get("BENCH_INGEST_TRANSLATE", "50000"))
T0 = 1_796_205_600_000
KSERVE = IngestMapping.model_validate({"source": "kserve", "model": "iris", "versions": {
    "default": {"version": "v1"}, "canary": {"version": "v2", "role": "canary"}}})
SELDON = IngestMapping.model_validate({"source": "seldon", "model": "iris", "versions": {
    "iris": {"version": "v1"}, "iris-v2": {"version": "v2", "role": "canary"}}})


def kserve_records(topic: str, n: int, structured: bool = False) -> list[ExternalRecord]:
    """A KServe payload log: a one-row request and its response per pair, half on the canary."""
    out = []
    for i in range(n):
        kind = "response" if i % 2 else "request"
        rid, endpoint = f"r-{i // 2}", "canary" if (i // 2) % 2 else "default"
        data = {"predictions": [i % 3]} if kind == "response" else {"instances": [[6.8, 2.8, 4.8, 1.4]]}
        attributes = {"specversion": "1.0", "id": rid, "source": "http://localhost:9081/",
                      "type": f"org.kubeflow.serving.inference.{kind}", "time": "2026-12-02T10:00:00.123456Z",
                      "inferenceservicename": "iris", "namespace": "prod", "component": "predictor",
                      "endpoint": endpoint}
        if structured:
            out.append(ExternalRecord(topic, rid.encode(), orjson.dumps({**attributes, "data": data}),
                                      [("content-type", b"application/cloudevents+json")], T0 + i))
        else:
            headers = [(f"ce_{k}", v.encode()) for k, v in attributes.items()] + [("content-type", b"application/json")]
            out.append(ExternalRecord(topic, rid.encode(), orjson.dumps(data), headers, T0 + i))
    return out


def seldon_records(n: int) -> list[ExternalRecord]:
    out = []
    for i in range(n):
        rid = f"s-{i // 2}"
        if i % 2 == 0:
            value = encode_protobuf({"inputs": [{"name": "predict", "datatype": "FP32", "shape": ["1", "4"],
                                                 "contents": {"fp32_contents": [6.8, 2.8, 4.8, 1.4]}}]}, "request")
            topic = "seldon.prod.model.iris.inputs"
        else:
            value = encode_protobuf({"outputs": [{"name": "predict", "datatype": "INT64", "shape": ["1", "1"],
                                                  "contents": {"int64_contents": [str(i % 3)]}}]}, "response")
            topic = f"seldon.prod.model.{'iris-v2' if (i // 2) % 2 else 'iris'}.outputs"
        out.append(ExternalRecord(topic, rid.encode(), value, [("x-request-id", rid.encode())], T0 + i))
    return out


def translate_rate(mapping: IngestMapping, records: list[ExternalRecord]) -> float:
    translator = Translator(mapping)
    started = time.perf_counter()
    for record in records:
        translator.translate(record)
    return len(records) / (time.perf_counter() - started)


def consume_and_parse(settings: KafkaSettings, topic: str, n: int) -> float:
    """The floor: read the topic and parse every value as JSON, nothing else."""
    consumer = Consumer(settings.confluent_config(**{"group.id": f"floor-{uuid.uuid4().hex[:6]}",
                                                     "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    seen, started = 0, None
    try:
        while seen < n:
            messages = consumer.consume(2000, 1.0)
            if messages and started is None:
                started = time.perf_counter()
            for message in messages:
                if message.error() is None:
                    orjson.loads(message.value())
                    seen += 1
    finally:
        consumer.close()
    return n / (time.perf_counter() - started)


def bridge_rate(settings: KafkaSettings, topic: str, n: int) -> float:
    loop = build_bridge(settings, KSERVE, [topic], f"bench-{uuid.uuid4().hex[:6]}", batch_size=2000)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 600
    while loop.records_done < n and time.monotonic() < deadline:
        time.sleep(0.05)
    finished = time.perf_counter()
    stop.set()
    thread.join(60)
    assert loop.records_done == n and loop.stage.written["response"] == n // 2, (loop.records_done, loop.stage.written)
    return n / (finished - loop.first_batch_at)


def run(records: int = RECORDS) -> list[Result]:
    results = []
    for name, mapping, sample in (
            ("KServe binary CloudEvents (v1)", KSERVE, kserve_records("logs", TRANSLATE)),
            ("KServe structured CloudEvents (v1)", KSERVE, kserve_records("logs", TRANSLATE, structured=True)),
            ("Seldon protobuf (OIP)", SELDON, seldon_records(TRANSLATE))):
        results.append(Result("ingest", f"translate only: {name}", translate_rate(mapping, sample), "records/s",
                              note=f"{TRANSLATE:,} records, half requests, half responses; pydantic-validated events"))
    with broker() as bootstrap:
        settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bi{uuid.uuid4().hex[:6]}.")
        create_topics(settings, TopicLayout(inference_partitions=6))
        topic = f"{settings.topic_prefix}kserve-payloads"
        admin = admin_client(settings)  # kept: its futures die with it
        for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
            future.result(30)
        producer = make_producer(settings)
        for record in kserve_records(topic, records):
            while True:
                try:
                    producer.produce(topic, key=record.key, value=record.value, headers=record.headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(120)
        floor = consume_and_parse(settings, topic, records)
        bridged = bridge_rate(settings, topic, records)
    note = f"{records:,} KServe binary records, 6 partitions, one bridge, batches of 2,000 in transactions"
    results += [Result("ingest", "consume + JSON parse alone (the floor)", floor, "records/s", note=note),
                Result("ingest", "bridge: consume, translate, produce, commit", bridged, "records/s",
                       note=f"{note}; {bridged / floor:.2f} of the floor")]
    return results

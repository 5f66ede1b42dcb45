"""confluent-kafka (librdkafka) and faust-streaming (aiokafka) agree, through a real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from streams.admin import admin_client
from streams.config import KafkaSettings
from streams.producer import ContractProducer
from tests.faust_harness import make_test_app, running, wait_until
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.kafka


def _create_topic(settings: KafkaSettings, name: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


def _consume_all(settings: KafkaSettings, topic: str, expected: int) -> list:
    return [(m.key(), m.value(), m.partition()) for m in read_topic(settings, topic, expected, timeout=60, linger=0)]


def test_confluent_murmur2_and_faust_agree_on_partitions_of_10000_request_ids(kafka_settings):
    partitions = 12
    ids = [f"req-{uuid.uuid4()}" for _ in range(10_000)]
    confluent_topic = f"{kafka_settings.topic_prefix}by-confluent"
    faust_topic = f"{kafka_settings.topic_prefix}by-faust"
    _create_topic(kafka_settings, confluent_topic, partitions)
    _create_topic(kafka_settings, faust_topic, partitions)

    producer = ContractProducer(kafka_settings)
    for request_id in ids:
        producer.send(confluent_topic, request_id, b"{}")
    producer.flush()

    async def produce_with_faust() -> None:
        app = make_test_app(kafka_settings)
        topic = app.topic(faust_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw")
        async with running(app):
            futures = [await topic.send(key=rid.encode(), value=b"{}") for rid in ids]
            await asyncio.gather(*futures)

    asyncio.run(produce_with_faust())

    by_confluent = {k.decode(): p for k, _, p in _consume_all(kafka_settings, confluent_topic, len(ids))}
    by_faust = {k.decode(): p for k, _, p in _consume_all(kafka_settings, faust_topic, len(ids))}
    assert len(by_confluent) == len(by_faust) == len(ids)
    disagreements = [rid for rid in ids if by_confluent[rid] != by_faust[rid]]
    assert disagreements == []
    # Not a degenerate agreement: the keys really spread over every partition.
    assert set(by_confluent.values()) == set(range(partitions))


def test_faust_consumes_what_confluent_produced(kafka_settings):
    topic_name = f"{kafka_settings.topic_prefix}c2f"
    _create_topic(kafka_settings, topic_name, 3)
    sent = {f"k{i}".encode(): f'{{"n": {i}}}'.encode() for i in range(500)}
    producer = ContractProducer(kafka_settings)
    for key, value in sent.items():
        producer.send(topic_name, key, value)
    producer.flush()

    received: dict[bytes, bytes] = {}

    async def consume_with_faust() -> None:
        app = make_test_app(kafka_settings)
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw")

        @app.agent(topic)
        async def collect(stream):
            async for event in stream.events():
                received[event.key] = event.value

        async with running(app):
            await wait_until(lambda: len(received) >= len(sent), timeout=90)

    asyncio.run(consume_with_faust())
    assert received == sent


def test_confluent_consumes_what_faust_produced(kafka_settings):
    topic_name = f"{kafka_settings.topic_prefix}f2c"
    _create_topic(kafka_settings, topic_name, 3)
    sent = {f"k{i}".encode(): f'{{"n": {i}}}'.encode() for i in range(500)}

    async def produce_with_faust() -> None:
        app = make_test_app(kafka_settings)
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw")
        async with running(app):
            futures = [await topic.send(key=k, value=v) for k, v in sent.items()]
            await asyncio.gather(*futures)

    asyncio.run(produce_with_faust())
    received = {k: v for k, v, _ in _consume_all(kafka_settings, topic_name, len(sent))}
    assert received == sent

"""Thousands of generated malformed records, mixed with valid ones, through the real broker and the
worker's batch loop (its transactions included): every bad one in the DLQ with its reason, every good
one processed, exact counts, and the consumer never stops."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka.admin import NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import MAX_RECORD_BYTES
from schemas.topics import Topics
from streams.kafka.admin import admin_client, create_topics, wait_for_topics
from streams.kafka.producer import ContractProducer
from streams.worker.loop import BatchLoop, LoopOptions, Record, Transaction
from streams.worker.telemetry import DEAD_LETTERS
from tests.kafka_helpers import read_topic, wait_for
from tests.strategies import oversize, record

pytestmark = pytest.mark.kafka

OVERSIZE_RECORDS = 12
BAD_REASONS = {"empty", "oversize", "not_json", "not_object", "invalid"}


def generate_records(target: int) -> list[tuple[str, str, bytes | None, str]]:
    """``(contract topic, key, value, kind)``; kinds decided by construction."""
    batches: list[list] = []

    @settings(max_examples=target // 40 + 1, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.integers(0, 2**31).flatmap(lambda n: record(f"req-{n}")), min_size=40, max_size=40))
    def collect(batch):
        batches.append(batch)

    collect()
    records = []
    for i, (topic, value, kind) in enumerate(r for batch in batches for r in batch):
        records.append((topic, f"k{i}", value, kind))
    for j in range(OVERSIZE_RECORDS):
        key = f"big{j}"
        records.append(
            ("inference.requests", key, oversize("inference.requests", key, MAX_RECORD_BYTES + 10), "oversize")
        )
    random.Random(7).shuffle(records)
    return records


def _dead_letter_total() -> float:
    return sum(DEAD_LETTERS.labels(t, r)._value.get()
               for t in ("inference.requests", "inference.responses", "inference.labels") for r in BAD_REASONS)


def test_generated_malformed_records_all_reach_the_dlq_and_good_ones_are_processed(kafka_settings):
    records = generate_records(18_000)
    bad = {key: (topic, value, kind) for topic, key, value, kind in records if kind != "valid"}
    good = {key: topic for topic, key, _, kind in records if kind == "valid"}
    assert len(bad) >= 10_000
    assert {kind for _, _, kind in bad.values()} >= {
        "broken_json", "wrong_type", "missing_field", "nan", "unknown_role", "bad_timestamp", "garbage",
        "empty", "oversize"}

    # Input topics that accept records over the codec's 1 MiB limit, so oversize ones reach the evaluator.
    topics = Topics(kafka_settings.topic_prefix)
    admin = admin_client(kafka_settings)
    for future in admin.create_topics([
            NewTopic(topics.name(n), 4, 1, config={"max.message.bytes": str(4 * 1024 * 1024)})
            for n in ("inference.requests", "inference.responses", "inference.labels")]).values():
        future.result(30)
    wait_for_topics(admin, [topics.name(n) for n in ("inference.requests", "inference.responses",
                                                      "inference.labels")])
    create_topics(kafka_settings)

    producer = ContractProducer(kafka_settings, **{"message.max.bytes": 4 * 1024 * 1024})
    for topic, key, value, _ in records:
        producer.send(topics.name(topic), key, value)
    producer.flush(120)

    processed: Counter[str] = Counter()

    class CountingStage:
        """Counts the request ids of what the loop hands on, once its batch committed."""

        def __init__(self) -> None:
            self.batch: list[str] = []

        def assigned(self, partitions: list[int]) -> None: ...
        def restoring(self) -> set[int]: return set()
        def restore_step(self, wait_s: float) -> list[int]: return []
        def revoked(self, partitions: list[int], transaction: Transaction | None) -> None: ...
        def tick(self, transaction: Transaction) -> None: ...
        def observe(self, consumer) -> None: ...

        def process(self, partition: int, records: list[Record], transaction: Transaction) -> None:
            self.batch += [record.message.request_id for record in records]

        def committed(self) -> None:
            processed.update(self.batch)
            self.batch = []

        def aborted(self) -> None:
            self.batch = []

    # The processed keys are request ids; map them back to record keys.
    valid_ids = {}
    import orjson
    for _topic, key, value, kind in records:
        if kind == "valid":
            valid_ids.setdefault(orjson.loads(value)["request_id"], []).append(key)

    dead_before = _dead_letter_total()

    loop = BatchLoop(kafka_settings, topics, CountingStage(), LoopOptions(app_id=f"dlq-test-{uuid.uuid4().hex[:8]}"))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: sum(processed.values()) >= len(good)
                        and _dead_letter_total() - dead_before >= len(bad), timeout=300)
        # The consumer is still alive after all of that: one more good record gets through.
        sentinel = ContractProducer(kafka_settings)
        sentinel.send(topics.requests, "sentinel", b'{"request_id": "sentinel", "model": "m", "ts": 1}')
        sentinel.flush()
        assert wait_for(lambda: processed["sentinel"] == 1, timeout=60)
        time.sleep(1.0)  # let any duplicate show itself
    finally:
        stop.set()
        thread.join(30)

    assert sum(processed.values()) == len(good) + 1
    assert {rid: n for rid, n in processed.items() if rid != "sentinel"} == \
        {rid: len(keys) for rid, keys in valid_ids.items()}
    assert _dead_letter_total() - dead_before == len(bad)

    letters = read_topic(kafka_settings, topics.dlq, len(bad))
    assert len(letters) == len(bad), "every bad record exactly once in the DLQ"
    by_key = {m.key().decode(): m for m in letters}
    assert set(by_key) == set(bad)
    for key, message in by_key.items():
        topic, value, kind = bad[key]
        headers = dict(message.headers())
        assert message.value() == value or (value in (b"", None) and not message.value())
        assert headers["source.topic"].decode() == topics.name(topic)
        assert int(headers["source.partition"]) >= 0 and int(headers["source.offset"]) >= 0
        assert headers["error"], key
        reason = headers["reason"].decode()
        assert reason in BAD_REASONS
        if kind == "oversize":
            assert reason == "oversize"
        elif kind == "empty":
            assert reason == "empty"
        elif kind in ("wrong_type", "missing_field", "unknown_role", "bad_timestamp"):
            assert reason == "invalid"
            if kind == "unknown_role":
                assert headers["error"].startswith(b"role:")
            if kind == "bad_timestamp":
                assert headers["error"].startswith(b"ts:")
        elif kind in ("broken_json", "nan", "garbage"):
            assert reason in ("not_json", "not_object", "empty")

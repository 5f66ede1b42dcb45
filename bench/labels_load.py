"""``shadowcanary labels load`` on a 1,000,000-row CSV: rows/s checked alone (a dry run: read, parse,
validate) and published through the real broker (with the producer's batching, lz4 and murmur2
partitioning), in one run. 1% of the rows are bad (an outcome that is no number) and must be named
by line."""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from pathlib import Path

from bench.broker import broker
from bench.report import Result
from schemas.topics import Topics
from streams.ingest.label_files import LabelColumns, publish_labels
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings

ROWS = int(os.environ.get("BENCH_LABEL_ROWS", "1000000"))


def write_csv(path: Path, rows: int) -> int:
    """A labels file like a nightly job's: request id, label, two outcomes, a time. Returns the bad rows."""
    rng = random.Random(1)
    bad = 0
    with path.open("w") as handle:
        handle.write("request_id,is_fraud,chargeback,refund,ts\n")
        for i in range(rows):
            chargeback = f"{rng.random() * 100:.2f}"
            if i % 100 == 99:
                chargeback, bad = "n/a", bad + 1
            handle.write(f"req-{i:08d},{i % 2},{chargeback},{rng.random():.3f},{1_790_000_000_000 + i}\n")
    return bad


def run(rows: int = ROWS) -> list[Result]:
    columns = LabelColumns(id="request_id", label="is_fraud", model="fraud", ts_column="ts",
                           outcomes={"chargeback": "chargeback", "refund": "refund"})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.csv"
        expected_bad = write_csv(path, rows)
        started = time.perf_counter()
        published, bad = publish_labels(path, columns, None, None)
        checked = rows / (time.perf_counter() - started)
        assert len(bad) == expected_bad and published == rows - expected_bad
        with broker() as bootstrap:
            settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bl{uuid.uuid4().hex[:6]}.")
            create_topics(settings, TopicLayout(inference_partitions=6))
            producer = ContractProducer(settings)
            started = time.perf_counter()
            published, bad = publish_labels(path, columns, producer, Topics(settings.topic_prefix).labels)
            loaded = rows / (time.perf_counter() - started)
    note = f"{rows:,} rows, {expected_bad:,} bad (named by line)"
    return [Result("labels_load", "labels load, checked only (--dry-run)", checked, "rows/s", note=note),
            Result("labels_load", "labels load, published to the broker", loaded, "rows/s", note=note)]

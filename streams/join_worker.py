"""The join in the stream: one faust agent over the three co-partitioned inference topics.

Each batch is split by partition; each partition's events go through its
:class:`evaluators.join.JoinPartition` with the state in one changelog-backed table, and the
partition's partial state (the accumulator of facts, with its batch sequence) is published on an
internal compacted topic, keyed by partition, for the stage that merges partitions.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any, Callable

import faust
import orjson
from pydantic import BaseModel

from faust.types import TP

from evaluators.counts import JoinCounts
from evaluators.join import Accumulator, Incoming, JoinConfig, JoinPartition
from schemas.topics import Topics
from streams.app import INPUT_TOPICS, AppOptions, IngestAgent, raw_topic
from streams.state import TableStore, partition_context

#: Short source codes kept in the join state with each element's origin (topic code + partition).
SOURCE_CODES = {"inference.requests": "q", "inference.responses": "s", "inference.labels": "l"}
STATE_TABLE = "join-state"


def partials_topic_name(topics: Topics) -> str:
    """Internal (not part of the contract): the latest partial state of each input partition."""
    return topics.prefix + "shadowcanary.internal.partials"


class JoinWorker:
    def __init__(self, app: faust.App, topics: Topics, config: JoinConfig, partitions: int,
                 options: AppOptions = AppOptions(), run_id: str | None = None,
                 accumulator_from_state: Callable[[Any], Accumulator] = JoinCounts.from_state) -> None:
        self.config = config
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.app = app
        self.codes = {topics.name(n): SOURCE_CODES[n] for n in INPUT_TOPICS}
        # bytes key and value types make faust use its "raw" codec for the store and the changelog.
        self.table = app.Table(STATE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes,
                               default=None)
        self.store = TableStore(self.table)
        self.partials = raw_topic(app, partials_topic_name(topics))
        self.accumulator_from_state = accumulator_from_state
        self.joins: dict[int, JoinPartition] = {}
        self.batches = 0
        IngestAgent(app, topics, INPUT_TOPICS, self.handle, options, name="join")

    async def handle(self, batch: list[tuple[faust.EventT, BaseModel]]) -> None:
        by_partition: dict[int, list[tuple[faust.EventT, BaseModel]]] = defaultdict(list)
        for event, message in batch:
            by_partition[event.message.partition].append((event, message))
        for partition, items in by_partition.items():
            incoming = [Incoming(message, f"{self.codes[event.message.topic]}{partition}", event.message.offset)
                        for event, message in items]
            join = self.join_for(partition)
            with partition_context(items[-1][0]):
                fence = join.partition_state()["fence"]
            for item in incoming:
                fence[item.source] = max(item.offset, fence.get(item.source, -1))
            idle = await self.idle_sources(partition, fence)
            with partition_context(items[-1][0]):
                join.process(incoming, idle, [f"{code}{partition}" for code in self.codes.values()])
                state = join.partition_state()
            await self.partials.send(key=str(partition).encode(), value=orjson.dumps(
                {"partition": partition, "seq": state["seq"], "wm": state["wm"], "src": state["src"],
                 "fence": state["fence"], "idle": idle, "run": self.run_id, "acc": state["acc"]}))
        self.batches += 1

    def join_for(self, partition: int) -> JoinPartition:
        if partition not in self.joins:
            # Own key space per partition: faust's RocksDB store deletes a key in the partition that
            # last wrote it, so keys must never be shared between partitions.
            self.joins[partition] = JoinPartition(self.store, self.config, self.run_id,
                                                  self.accumulator_from_state, key_space=str(partition))
        return self.joins[partition]

    async def idle_sources(self, partition: int, last_offsets: dict[str, int]) -> list[str]:
        """The partition's sources the consumer has read to the end: nothing older waits there, so
        they need not hold the join's time back (see :mod:`evaluators.join`).

        The consumer's cached high watermark comes from its last fetch and may be stale, so a source
        it shows as caught up is confirmed against the broker's current end offset.
        """
        candidates: dict[TP, str] = {}
        for topic, code in self.codes.items():
            tp = TP(topic, partition)
            source = f"{code}{partition}"
            cached = self.app.consumer.highwater(tp)
            if cached is None or last_offsets.get(source, -1) + 1 >= cached:
                candidates[tp] = source
        if not candidates:
            return []
        end_offsets = await self.app.consumer.highwaters(*candidates)
        return [source for tp, source in candidates.items()
                if end_offsets.get(tp) is not None and last_offsets.get(source, -1) + 1 >= end_offsets[tp]]

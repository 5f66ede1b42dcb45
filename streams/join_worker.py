"""The join in the stream: one faust agent over the three co-partitioned inference topics.

Each batch is split by partition; each partition's events go through its
:class:`evaluators.join.JoinPartition` with the state in one changelog-backed table. The partition's
partial state goes to an internal compacted topic for the one owner that merges partitions
(:mod:`streams.merger`):

- ``w/<partition>/<snapshot id>``: the partition's part of a window that just closed, sent right
  after the batch that closed it is stored (and again after a restart: the key makes it idempotent);
- ``h/<partition>``: a heartbeat with the partition's stream time, exact counts and metric state
  per version (closed part and open windows, as stored: the owner merges them when it needs totals), at most every ``HEARTBEAT_S`` and always after the finals it covers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import faust
import orjson
from pydantic import BaseModel

from faust.types import TP

from evaluators.accumulators import evaluator_accumulator
from evaluators.join import Incoming, JoinConfig, JoinPartition
from evaluators.merging import snapshot_id
from evaluators.metrics import MetricsConfig
from schemas.topics import Topics
from streams.app import INPUT_TOPICS, AppOptions, IngestAgent, raw_topic
from streams.state import TableStore, partition_context

log = logging.getLogger("shadowcanary.join")

#: Short source codes kept in the join state with each element's origin (topic code + partition).
SOURCE_CODES = {"inference.requests": "q", "inference.responses": "s", "inference.labels": "l"}
STATE_TABLE = "join-state"


def partials_topic_name(topics: Topics) -> str:
    """Internal (not part of the contract): the latest partial state of each input partition."""
    return topics.prefix + "shadowcanary.internal.partials"


class JoinWorker:
    def __init__(self, app: faust.App, topics: Topics, config: JoinConfig, partitions: int,
                 options: AppOptions = AppOptions(), run_id: str | None = None,
                 metrics: MetricsConfig = MetricsConfig()) -> None:
        self.config = config
        self.metrics_config = metrics
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.app = app
        self.codes = {topics.name(n): SOURCE_CODES[n] for n in INPUT_TOPICS}
        # bytes key and value types make faust use its "raw" codec for the store and the changelog.
        self.table = app.Table(STATE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes,
                               default=None)
        self.store = TableStore(self.table)
        self.partials = raw_topic(app, partials_topic_name(topics))
        self.accumulator_from_state = evaluator_accumulator(metrics, config.settle_ms)
        self.joins: dict[int, JoinPartition] = {}
        self.sources: dict[int, list[str]] = {}
        self.end_offsets: dict[TP, int] = {}
        app.timer(1.0, name="join-end-offsets")(self.refresh_end_offsets)
        self.events_processed = 0
        self.first_batch_at: float | None = None
        IngestAgent(app, topics, INPUT_TOPICS, self.handle, options, name="join")

    async def handle(self, batch: list[tuple[faust.EventT, BaseModel]]) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.perf_counter()
        by_partition: dict[int, list[tuple[faust.EventT, BaseModel]]] = defaultdict(list)
        for event, message in batch:
            by_partition[event.message.partition].append((event, message))
        for partition, items in by_partition.items():
            incoming = [Incoming(message, f"{self.codes[event.message.topic]}{partition}", event.message.offset)
                        for event, message in items]
            join = self.join_for(partition)
            if join.last_state is None:
                # First batch since start: a crash may have come between storing the last batch and
                # publishing the windows it closed. Publish them again (same keys, same content).
                with partition_context(items[-1][0]):
                    stored = join.partition_state()
                if stored.get("acc"):
                    await self.send_finals(partition, stored["acc"]["metrics"]["closed"])
            with partition_context(items[-1][0]):
                join.process(incoming, sources=self.sources[partition], end_offsets=self.end_offsets_of(partition))
            await self.send_finals(partition, join.last_state["acc"]["metrics"]["closed"])
            # Right after the batch, in the agent: a worker never sends one for a partition it has
            # already handed over, so the newest heartbeat of a partition is always its newest state.
            await self.send_heartbeat(partition)
        self.events_processed += len(batch)

    async def send_finals(self, partition: int, closed: list[dict[str, Any]]) -> None:
        for window in closed:
            sid = snapshot_id(window["model"], window["version"], window["role"], window["start"])
            await self.partials.send(key=f"w/{partition}/{sid}".encode(),
                                     value=orjson.dumps({"partition": partition, **window}))

    async def send_heartbeat(self, partition: int) -> None:
        state = self.joins[partition].last_state
        acc = state["acc"]
        await self.partials.send(key=f"h/{partition}".encode(), value=orjson.dumps({
            "partition": partition, "seq": state["seq"], "wm": state["wm"], "src": state["src"],
            "fence": state["fence"], "run": self.run_id, "counts": acc["counts"],
            "v": acc["metrics"]["v"],
            "q": {model: entry["cum"] for model, entry in acc["metrics"]["q"].items()}}))

    def join_for(self, partition: int) -> JoinPartition:
        if partition not in self.joins:
            self.sources[partition] = [f"{code}{partition}" for code in self.codes.values()]
            # Own key space per partition: faust's RocksDB store deletes a key in the partition that
            # last wrote it, so keys must never be shared between partitions.
            self.joins[partition] = JoinPartition(self.store, self.config, self.run_id,
                                                  self.accumulator_from_state, key_space=str(partition))
        return self.joins[partition]

    def end_offsets_of(self, partition: int) -> dict[str, int]:
        """The newest known end offset of each of the partition's sources, for the join to tell which
        it has read to the end (see :mod:`evaluators.join`).

        "Newest known" is the larger of the consumer's cached high watermark (from its last fetch) and
        the end offset :meth:`refresh_end_offsets` last got from the broker (at most a second old).
        Asking the broker on every batch would stall the agent on the consumer thread. The cost: a
        record written within that second may be missed, so a source can count as caught up up to a
        second early; its records are then current ones, well within the expiry grace.
        """
        ends = {}
        for topic, code in self.codes.items():
            tp = TP(topic, partition)
            known = [e for e in (self.app.consumer.highwater(tp), self.end_offsets.get(tp)) if e is not None]
            if known:
                ends[f"{code}{partition}"] = max(known)
        return ends

    def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet applied per input topic partition this worker has worked on."""
        out = {}
        names = {code: topic for topic, code in self.codes.items()}
        for partition, join in list(self.joins.items()):
            fence = join.last_state["fence"] if join.last_state else {}
            for source in self.sources[partition]:
                topic = names[source[0]]
                end = self.end_offsets.get(TP(topic, partition))
                if end is not None:
                    out[(topic, partition)] = max(end - fence.get(source, -1) - 1, 0)
        return out

    async def refresh_end_offsets(self) -> None:
        """Ask the broker for the end offsets of the input partitions this worker owns."""
        try:
            assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self.codes]
            if assigned:
                self.end_offsets.update(await self.app.consumer.highwaters(*assigned))
        except Exception as exc:  # not started yet, rebalancing, broker away: try again next second
            log.debug("end offsets not refreshed: %r", exc)

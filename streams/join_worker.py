"""The join in the stream: one faust agent over the three co-partitioned inference topics.

Each batch is split by partition; each partition's events go through its
:class:`evaluators.join.JoinPartition` with the state in one changelog-backed table. The partition's
partial state goes to an internal compacted topic for the one owner that merges partitions
(:mod:`streams.merger`):

- ``w/<partition>/<snapshot id>``: the partition's part of a window that just closed, sent right
  after the batch that closed it is stored (and again after a restart: the key makes it idempotent);
- ``h/<partition>``: a heartbeat with the partition's stream time, exact counts and metric state
  per version (closed part and open windows, as stored: the owner merges them when it needs
  totals), after every batch the partition applies, so the newest heartbeat is its newest state.
"""

from __future__ import annotations

import asyncio
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
from evaluators.idleness import SourceIdleness
from evaluators.join import Incoming, JoinConfig, JoinPartition, caught_up_sources, fence_after
from evaluators.merging import heartbeat_partial, snapshot_id
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
        self.source_of: dict[int, dict[str, str]] = {}  # partition -> input topic -> source name
        self.topic_of_code = {code: topic for topic, code in self.codes.items()}
        # End offsets per input partition, each partition's three written together by one
        # observation (so a partition's view is always from one moment).
        self.end_offsets: dict[TP, int] = {}
        self.idleness: dict[int, SourceIdleness] = {}
        self.idle_used: dict[int, set[str]] = {}
        self.last_event: dict[int, faust.EventT] = {}
        self.lock = asyncio.Lock()
        app.timer(1.0, name="join-end-offsets")(self.refresh_end_offsets)
        app.on_partitions_revoked.connect(self.forget_revoked)
        self.events_processed = 0
        self.first_batch_at: float | None = None
        IngestAgent(app, topics, INPUT_TOPICS, self.handle, options, name="join")

    async def handle(self, batch: list[tuple[faust.EventT, BaseModel]]) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.perf_counter()
        by_partition: dict[int, list[tuple[faust.EventT, BaseModel]]] = defaultdict(list)
        for event, message in batch:
            by_partition[event.message.partition].append((event, message))
        async with self.lock:
            for partition, items in by_partition.items():
                join = self.join_for(partition)
                source_of = self.source_of[partition]
                incoming = [Incoming(message, source_of[event.message.topic], event.message.offset)
                            for event, message in items]
                self.last_event[partition] = items[-1][0]
                self.idleness[partition].arrived({item.source for item in incoming}, now_ms())
                await self.process(partition, join, incoming)
        self.events_processed += len(batch)

    async def process(self, partition: int, join: JoinPartition, incoming: list[Incoming]) -> None:
        """Apply one partition's events (none: time moves on idle sources), then publish the
        windows this closed and the partition's heartbeat."""
        event = self.last_event[partition]
        if join.last_state is None:
            # First batch since start: a crash may have come between storing the last batch and
            # publishing the windows it closed. Publish them again (same keys, same content).
            with partition_context(event):
                join.last_state = join.partition_state()
            if join.last_state.get("acc"):
                await self.send_finals(partition, join.last_state["acc"]["metrics"]["closed"])
        idleness = self.idleness[partition]
        idle: set[str] = set()
        silent = idleness.silent(now_ms())
        if silent:  # else nothing can be idle: skip the fence and the observation
            fence = fence_after(join.last_state["fence"], incoming)
            idle = idleness.idle(fence, await self.end_offsets_for(partition, fence, silent), now_ms())
        with partition_context(event):
            join.process(incoming, idle_sources=idle, sources=self.sources[partition])
        self.idle_used[partition] = idle
        await self.send_finals(partition, join.last_state["acc"]["metrics"]["closed"])
        # Right after the batch, in the agent's turn: a worker never sends one for a partition it has
        # already handed over, so the newest heartbeat of a partition is always its newest state.
        await self.send_heartbeat(partition)

    async def move_idle_partitions(self) -> None:
        """Let time move on partitions whose sources fell silent since their last batch (else the
        last events before a pause would wait for the next one to expire anything)."""
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic in self.codes}
        async with self.lock:
            for partition, join in list(self.joins.items()):
                if self.app.rebalancing or partition not in assigned or join.last_state is None:
                    continue
                fence = join.last_state["fence"]
                idle = self.idleness[partition].idle(fence, self.observation(partition), now_ms())
                if idle - self.idle_used.get(partition, set()):
                    await self.process(partition, join, [])

    async def send_finals(self, partition: int, closed: list[dict[str, Any]]) -> None:
        for window in closed:
            sid = snapshot_id(window["model"], window["version"], window["role"], window["start"])
            await self.partials.send(key=f"w/{partition}/{sid}".encode(),
                                     value=orjson.dumps({"partition": partition, **window}))

    async def send_heartbeat(self, partition: int) -> None:
        state = self.joins[partition].last_state
        await self.partials.send(key=f"h/{partition}".encode(),
                                 value=orjson.dumps(heartbeat_partial(partition, state, self.run_id)))

    async def forget_revoked(self, app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        """A partition handed over may come back after another worker moved it on: start it afresh
        (state from the table, windows re-published) rather than from what this worker last knew."""
        for tp in revoked:
            if tp.topic in self.codes:
                self.end_offsets.pop(tp, None)
                for known in (self.joins, self.idleness, self.idle_used, self.last_event):
                    known.pop(tp.partition, None)

    def join_for(self, partition: int) -> JoinPartition:
        if partition not in self.joins:
            self.source_of[partition] = {topic: f"{code}{partition}" for topic, code in self.codes.items()}
            self.sources[partition] = list(self.source_of[partition].values())
            self.idleness[partition] = SourceIdleness(self.sources[partition], self.config.idle_after_ms, now_ms())
            # Own key space per partition: faust's RocksDB store deletes a key in the partition that
            # last wrote it, so keys must never be shared between partitions.
            self.joins[partition] = JoinPartition(self.store, self.config, self.run_id,
                                                  self.accumulator_from_state, key_space=str(partition))
        return self.joins[partition]

    async def end_offsets_for(self, partition: int, fence: dict[str, int], silent: set[str]) -> dict[str, int]:
        """One observation of the end offsets of the partition's sources that is current for
        ``fence`` (the offsets applied once this batch is), for the join to tell which of the
        ``silent`` sources are read to their end (:func:`evaluators.join.caught_up_sources`).

        The last periodic observation serves if it is current. If not, and a silent source may be
        at its end (the consumer has fetched nothing past it), the broker is asked now: after the
        batch was fetched, so the answer covers every record in it. A stream with no silent source
        never pays that round trip.
        """
        observed = self.observation(partition)
        if caught_up_sources(fence, observed, self.sources[partition]) or not self.may_be_at_end(partition, fence, silent):
            return observed
        try:
            self.end_offsets.update(await self.app.consumer.highwaters(*self.input_tps(partition)))
        except Exception as exc:  # rebalancing or broker away: no source counts as caught up
            log.debug("end offsets of partition %d not observed: %r", partition, exc)
            return {}
        return self.observation(partition)

    def input_tps(self, partition: int) -> list[TP]:
        return [TP(topic, partition) for topic in self.codes]

    def observation(self, partition: int) -> dict[str, int]:
        """The last observed end offset of each of the partition's sources (by source name)."""
        return {f"{code}{partition}": self.end_offsets[tp]
                for tp, code in zip(self.input_tps(partition), self.codes.values()) if tp in self.end_offsets}

    def may_be_at_end(self, partition: int, fence: dict[str, int], sources: set[str]) -> bool:
        """Whether one of ``sources`` has nothing fetched past ``fence`` (its consumer high
        watermark, from the last fetch, is not ahead of it)."""
        for source in sources:
            highwater = self.app.consumer.highwater(TP(self.topic_of_code[source[0]], partition))
            if highwater is None or fence.get(source, -1) + 1 >= highwater:
                return True
        return False

    def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet applied per input topic partition this worker has worked on."""
        out = {}
        for partition, join in list(self.joins.items()):
            fence = join.last_state["fence"] if join.last_state else {}
            for source in self.sources[partition]:
                topic = self.topic_of_code[source[0]]
                end = self.end_offsets.get(TP(topic, partition))
                if end is not None:
                    out[(topic, partition)] = max(end - fence.get(source, -1) - 1, 0)
        return out

    def unstarted(self) -> int:
        """Records in input partitions this worker holds but has not applied a batch of since it
        started (their end offsets: an upper bound). Not lag: until the first batch, where the
        partition's state stands is not read yet."""
        return sum(end for tp, end in list(self.end_offsets.items()) if tp.partition not in self.joins)

    async def refresh_end_offsets(self) -> None:
        """Observe the end offsets of the input partitions this worker owns (for lag, and as the
        partitions' periodic observation: one request for all, so one moment per partition, up to
        the spread between brokers)."""
        try:
            assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self.codes]
            if assigned:
                self.end_offsets.update(await self.app.consumer.highwaters(*assigned))
        except Exception as exc:  # not started yet, rebalancing, broker away: try again next second
            log.debug("end offsets not refreshed: %r", exc)
            return
        await self.move_idle_partitions()


def now_ms() -> int:
    """Processing time for idleness (monotonic: wall-clock steps must not make sources idle)."""
    return time.monotonic_ns() // 1_000_000

"""One partition's join: :class:`JoinPartition` applies batches of events over a key-value store
(semantics and exactness: :mod:`evaluators.join`), with the batch's working set in ``_Batch``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, cast

from evaluators.facts import (
    AgreementFact,
    AttributedRecord,
    ClockSkew,
    Duplicate,
    Expired,
    Fact,
    JoinedRecord,
    LabelFact,
    LateLabel,
    RequestFact,
    ResponseFact,
    ServedFeatures,
    UnmatchedLabel,
)
from evaluators.join.config import JoinConfig
from evaluators.join.expiry import NEVER, ExpiryQueue, legacy_entries, new_queue_state
from evaluators.join.state import (
    ACCUMULATOR_PREFIX,
    CHUNK_PREFIX,
    LAYOUT,
    LEGACY_REQUEST_PREFIX,
    PARTITION_KEY,
    REQUEST_PREFIX,
    LabelEntry,
    PartitionState,
    RequestEntry,
    RequestState,
    ResponseEntry,
    request_id_of,
    request_key,
)
from evaluators.stage_clock import StageClock
from evaluators.store import KeyValueStore, PrefixedStore
from schemas.fast_codec import Event, LabelEvent, RequestEvent, ResponseEvent
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse

#: An input event: the hot path's Struct or the model (both carry ``kind`` and ``ts_ms``).
InputMessage = Event
RequestMessage = InferenceRequest | RequestEvent
ResponseMessage = InferenceResponse | ResponseEvent
LabelMessage = GroundTruth | LabelEvent


class Incoming(NamedTuple):
    """One decoded input event and where it came from (``source``: topic-partition, ``offset``)."""

    message: InputMessage
    source: str
    offset: int



class Accumulator:
    """What the join feeds: ``add(fact)``, or a batch's facts at once with ``add_all(facts)``;
    ``to_state()``/``from_state()`` for durability. The default keeps nothing (the metric stage
    provides the real one)."""

    def add(self, fact: Fact) -> None:
        pass

    def add_all(self, facts: list[Fact]) -> None:
        """A batch's facts, in order: the same as ``add`` on each (an accumulator may fold them by
        group)."""
        for fact in facts:
            self.add(fact)

    def advance(self, watermark: int) -> None:
        """Called once per batch, after its facts, with the partition's stream time."""

    def to_state(self) -> Any:
        return None

    @classmethod
    def from_state(cls, state: Any, records: KeyValueStore | None = None) -> Accumulator:
        """``state``: what ``to_state`` gave after the last batch. ``records``: a part of the join's
        store for state too large to write every batch (the metric windows): records it sets or
        deletes there are written with the batch."""
        return cls()


def fence_after(fence: dict[str, int], incoming: Iterable[Incoming]) -> dict[str, int]:
    """The last applied offset per source once ``incoming`` is applied over ``fence``."""
    after = dict(fence)
    for item in incoming:
        if item.offset > after.get(item.source, -1):
            after[item.source] = item.offset
    return after


def caught_up_sources(fence: dict[str, int], end_offsets: dict[str, int],
                      sources: Iterable[str] | None = None) -> set[str]:
    """The sources read to their end, by one observation of every source's end offset.

    ``end_offsets`` must be taken at one moment for all the partition's ``sources`` (default: those
    in ``fence``, the last applied offset per source). It is *current* only if every applied record
    is below its source's end: then the observation was made after all of them were written, so a
    source whose every record below its end is applied holds nothing older than what was read. An
    older observation proves nothing (records may have been written to one source after it and
    before the newer records read from another), so it makes no source caught up.

    >>> caught_up_sources({"q0": 9, "l0": 4}, {"q0": 12, "l0": 5})
    {'l0'}
    >>> caught_up_sources({"q0": 9, "l0": 4}, {"q0": 9, "l0": 5})  # q0 offset 9 is newer: stale
    set()
    """
    names = set(fence) | set(sources or ())
    if not names or any(name not in end_offsets or fence.get(name, -1) >= end_offsets[name]
                        for name in names):
        return set()
    return {name for name in names if fence.get(name, -1) + 1 >= end_offsets[name]}


class JoinPartition:
    """The join of one partition: ``process(batch)`` returns the facts that batch counted."""

    def __init__(self, store: KeyValueStore, config: JoinConfig, run_id: str,
                 accumulator_from_state: Callable[[Any, KeyValueStore], Accumulator] = Accumulator.from_state,
                 key_space: str = "") -> None:
        """``key_space`` keeps this partition's own keys (partition state, expiry chunks) apart from
        other partitions' in a store they share; request keys are unique to a partition anyway."""
        self.store = store
        self.config = config
        self.run_id = run_id
        self._accumulator_from_state = accumulator_from_state
        self.partition_key = f"{PARTITION_KEY}{key_space}"
        #: The partition state the last batch wrote (what a caller publishes, without reading it back).
        self.last_state: PartitionState | None = None
        self.chunk_prefix = f"{CHUNK_PREFIX}{key_space}:"
        #: The accumulator's own records (metric windows), apart from the join's keys.
        self.accumulator_records = PrefixedStore(store, f"{ACCUMULATOR_PREFIX}{key_space}:")
        #: Where batches are timed ("join", and "metrics" for the accumulator): the worker's, or one
        #: of its own that nobody reads (two clock reads a stage, per batch).
        self.clock = StageClock()

    # -- partition state -------------------------------------------------------------------------
    def partition_state(self) -> PartitionState:
        part = self.store.get(self.partition_key)
        if part is None:
            return {"seq": 0, "wm": 0, "src": {}, "fence": {}, "acc": None, "layout": LAYOUT,
                    "xq": new_queue_state()}
        if part.get("layout") != LAYOUT:
            # Written by the legacy layout: its request states stay readable for as long as any of
            # them can live; its queued entries and pending deletions name request ids.
            part["layout"] = LAYOUT
            part["legacy_until"] = part["wm"] + self.config.longest_life_ms()
            part["xq"]["open"] = legacy_entries(part["xq"]["open"])
            part["gc"] = [LEGACY_REQUEST_PREFIX + request_id for request_id in part.get("gc", ())]
        return part

    def fence(self) -> dict[str, int]:
        """The last applied offset per source, as of the last batch (empty before the first)."""
        return self.last_state["fence"] if self.last_state else {}

    def accumulated(self) -> Any:
        """The accumulator's state as the last batch left it (``None`` before a batch fed it): its
        shape is the accumulator's (:func:`evaluators.accumulators.closed_windows` reads it)."""
        return self.last_state["acc"] if self.last_state else None

    def accumulator(self) -> Accumulator:
        return self._accumulator_from_state(self.partition_state()["acc"], self.accumulator_records)

    # -- batch -----------------------------------------------------------------------------------
    def process(self, batch: Iterable[Incoming], idle_sources: Iterable[str] = (),
                sources: Iterable[str] | None = None, advance_to: int | None = None,
                now_ms: int | None = None) -> list[Fact]:
        """Apply a batch.

        ``sources``: every source of the partition, seen or not (default: those seen so far). A
        source with no event yet that is not idle holds time where it is: its first events may be
        old. ``idle_sources`` are those caught up (nothing older waits; see
        :func:`caught_up_sources` and :mod:`evaluators.idleness`), as of the end of this batch.
        ``advance_to``: stream time moves at least this far (the end of a replay: nothing more comes).
        ``now_ms``: the worker's clock (replay: its simulated clock). An event stamped more than
        ``max_future_skew_ms`` after it moves its source's time only that far (and is counted as a
        :class:`~evaluators.facts.ClockSkew`); without it, event times are taken as they come.
        """
        with self.clock.stage("join"):
            return self._process(batch, idle_sources, sources, advance_to, now_ms)

    def _process(self, batch: Iterable[Incoming], idle_sources: Iterable[str], sources: Iterable[str] | None,
                 advance_to: int | None, now_ms: int | None) -> list[Fact]:
        part = self.partition_state()
        # A partition state written before transactions may list deletions to redo.
        for key in part.get("gc", ()):
            self.store.delete(key)
        for number in part.get("gcx", ()):
            self.store.delete(f"{self.chunk_prefix}{number}")
        batch_ctx = _Batch(self, part)
        if now_ms is not None:
            batch_ctx.now = now_ms
            batch_ctx.horizon = now_ms + self.config.max_future_skew_ms
        batch_ctx.expected = frozenset(sources) if sources is not None else None
        fence: dict[str, int] = part["fence"]
        for incoming in batch:
            if incoming.offset <= fence.get(incoming.source, -1):
                continue  # already applied and counted before a restart
            batch_ctx.apply(incoming.message, [incoming.source, incoming.offset])
            if incoming.offset > batch_ctx.new_fence.get(incoming.source, -1):
                batch_ctx.new_fence[incoming.source] = incoming.offset
        # "Idle" describes the sources after this batch: only now may they stop holding time back.
        batch_ctx.idle = frozenset(idle_sources)
        batch_ctx.forced = advance_to if advance_to is not None else 0
        batch_ctx._advance()
        return batch_ctx.commit()


class _Batch:
    """One batch's working set: loaded request states, the facts they gave, and the writes to make."""

    def __init__(self, join: JoinPartition, part: PartitionState) -> None:
        self.join = join
        self.config = join.config
        self.store = join.store
        self.part = part
        self.seq = part["seq"] + 1
        self.states: dict[str, RequestState | None] = {}
        self.deleted: set[str] = set()
        self.facts: list[Fact] = []
        self.watermark: int = part["wm"]
        self.source_times: dict[str, int] = part.setdefault("src", {})
        self.idle: frozenset[str] = frozenset()
        self.expected: frozenset[str] | None = None
        self.forced = 0
        self.new_fence: dict[str, int] = dict(part["fence"])
        self.expiry = ExpiryQueue(part["xq"], join.store, join.chunk_prefix)
        #: The worker's clock, and the latest time an event may move its source to.
        self.now = 0
        self.horizon = NEVER
        #: Whether request states of the legacy layout may still be in the store.
        self.legacy = part.get("legacy_until", -1) >= part["wm"]
        self.migrated: list[str] = []

    def _stream_time(self) -> int:
        times = self.source_times
        names = self.expected if self.expected is not None else times.keys()
        idle = self.idle
        least = NEVER
        for name in names:
            if name in idle:
                continue
            time = times.get(name)
            if time is None:
                return self.watermark  # a source not heard from yet may still bring old events
            if time < least:
                least = time
        if least == NEVER:  # every source idle (or none known): time is the latest seen
            return max(times.values(), default=0)
        return least

    def _advance(self) -> None:
        now = max(self._stream_time(), self.forced)
        if now > self.watermark:
            self.watermark = now
            if self.expiry.next_due < now:
                self.expire_due()

    # -- state access ----------------------------------------------------------------------------
    def _load(self, key: str) -> RequestState | None:
        if key in self.states:
            return self.states[key]
        state = self.store.get(key)
        migrated = False
        if state is None and self.legacy and key[0] == REQUEST_PREFIX:
            state = self._migrate(key)
            migrated = state is not None
        self.states[key] = state
        if migrated and state is not None:
            self._schedule(key, state, self._natural_due(state))
        return state

    def _migrate(self, key: str) -> RequestState | None:
        """The legacy state of this key's request, if it belongs to this key's model: it moves to
        the new key (the legacy key is deleted with the batch's other garbage) and is queued anew."""
        legacy_key = LEGACY_REQUEST_PREFIX + request_id_of(key)
        state = self.states[legacy_key] if legacy_key in self.states else self.store.get(legacy_key)
        if state is None or request_key(state["m"], request_id_of(key)) != key:
            return None
        self._drop_legacy(legacy_key)
        return state

    def _drop_legacy(self, legacy_key: str) -> None:
        self.states[legacy_key] = None
        if legacy_key not in self.migrated:
            self.migrated.append(legacy_key)

    def _load_or_create(self, key: str, model: str, ts_ms: int) -> RequestState:
        state = self.states[key] if key in self.states else self._load(key)
        if state is None:
            state = {"m": model, "v": {}, "q": None, "y": None, "g": 0}
            self.states[key] = state
            self.deleted.discard(key)
            self._schedule(key, state, ts_ms + self.config.timeout_for(model) + self.config.expiry_grace_ms)
        return state

    def _schedule(self, key: str, state: RequestState, due_at: int) -> None:
        """Queue the state's (next) expiry; older queue entries of it become stale."""
        state["g"] += 1
        self.expiry.schedule(key, due_at, state["g"])

    # -- events ----------------------------------------------------------------------------------
    def apply(self, message: InputMessage, origin: list) -> None:
        """Apply one event. Time moves first: what is due before the new stream time expires first."""
        ts_ms = message.ts_ms
        kind = message.kind
        source = origin[0]
        moves_to = ts_ms
        if ts_ms > self.horizon:  # a clock running ahead moves time no further than the bound
            moves_to = self.horizon
            self.facts.append(ClockSkew(message.model, kind, "future", ts_ms - self.now))
        previous = self.source_times.get(source, -1)
        if moves_to > previous:
            self.source_times[source] = moves_to
            # Stream time is the least time over the active sources: a source that was ahead of it
            # was not the least, and moving it on leaves the least where it was (no source is idle
            # while a batch applies its events; see ``process``).
            if previous <= self.watermark or self.idle or self.expected == frozenset():
                self._advance()
        elif ts_ms + self.config.timeout_for(message.model) + self.config.expiry_grace_ms < self.watermark:
            # A clock running behind: due to expire on arrival. It affects only itself; counted.
            self.facts.append(ClockSkew(message.model, kind, "past", self.watermark - ts_ms))
        key = request_key(message.model, message.request_id)
        state = self._load_or_create(key, message.model, ts_ms)
        if kind == "response":
            self._apply_response(state, cast(ResponseMessage, message), ts_ms, origin)
        elif kind == "label":
            self._apply_label(state, cast(LabelMessage, message), ts_ms, origin)
        else:
            self._apply_request(state, cast(RequestMessage, message), ts_ms, origin)

    def _duplicate(self, state: RequestState, element: ResponseEntry | LabelEntry | RequestEntry, kind: str,
                   origin: list) -> None:
        # The same record read again (a replay after a restart) is not a duplicate; another record
        # with the same request (and version) is.
        if element["o"] != origin:
            self.facts.append(Duplicate(state["m"], kind))

    def _apply_request(self, state: RequestState, message: InferenceRequest | RequestEvent, ts_ms: int,
                       origin: list) -> None:
        if state["q"] is not None:
            self._duplicate(state, state["q"], "request", origin)
            return
        features = message.features
        request: RequestEntry = {"t": ts_ms, "f": features, "o": origin}
        if message.attributes:
            request["a"] = message.attributes
        state["q"] = request
        model = state["m"]
        self.facts.append(RequestFact(model, ts_ms, features))
        if not state.get("z"):  # responses that joined before their request: now their segments are known
            self._attribute_joined(message.request_id, state, request.get("a", {}))
        if features:
            for version, response in state["v"].items():
                self.facts.append(ServedFeatures(model, version, response["r"], response["t"], features))

    def _apply_response(self, state: RequestState, message: InferenceResponse | ResponseEvent,
                        ts_ms: int, origin: list) -> None:
        versions = state["v"]
        version = message.version
        if version in versions:
            self._duplicate(state, versions[version], "response", origin)
            return
        model, role, prediction = state["m"], message.role, message.prediction
        response: ResponseEntry = {"r": role, "t": ts_ms, "p": prediction, "c": message.score,
                                   "l": message.latency_ms, "x": message.error, "k": None, "o": origin}
        primary = _primary(versions) if role != "canary" else None
        versions[version] = response
        facts = self.facts
        facts.append(ResponseFact(model, version, role, ts_ms, response["l"], response["x"], prediction))
        request = state["q"]
        if request is not None and request["f"]:
            facts.append(ServedFeatures(model, version, role, ts_ms, request["f"]))
        label = state["y"]
        if label is not None and not state.get("z") and label["t"] - ts_ms <= self.config.timeout_for(model):
            self._join(message.request_id, state, version, response)
        # A shadow agrees (or not) with the request's first primary, whichever of them comes first.
        if role == "shadow" and primary is not None:
            self._agreement(state, version, response, primary)
        elif role == "primary" and primary is None:
            for other, shadow in versions.items():
                if shadow["r"] == "shadow":
                    self._agreement(state, other, shadow, version)

    def _apply_label(self, state: RequestState, message: GroundTruth | LabelEvent, ts_ms: int,
                     origin: list) -> None:
        if state["y"] is not None:
            self._duplicate(state, state["y"], "label", origin)
            return
        state["y"] = {"t": ts_ms, "y": message.label, "oc": message.outcomes, "late": None, "o": origin}
        self.facts.append(LabelFact(state["m"], ts_ms))
        if state.get("z"):  # the request already expired: the label joins nothing
            self._classify_unjoined_label(state)
            return
        timeout = self.config.timeout_for(state["m"])
        for version, response in state["v"].items():
            if response["k"] is None and ts_ms - response["t"] <= timeout:
                self._join(message.request_id, state, version, response)

    # -- effects: each counted once, when it happens ---------------------------------------------
    def _join(self, request_id: str, state: RequestState, version: str, response: ResponseEntry) -> None:
        """A response and the request's label, on time: a joined record."""
        response["k"] = "joined"
        request = state["q"]
        if request is None:
            self.facts.append(_joined_record(JoinedRecord, request_id, state, version, response, None, None))
        else:
            self.facts.append(_joined_record(JoinedRecord, request_id, state, version, response, request["f"],
                                             request.get("a", {})))

    def _attribute_joined(self, request_id: str, state: RequestState, attributes: dict[str, str] | None) -> None:
        """The records that joined without their request, for their segments (see
        :class:`~evaluators.facts.AttributedRecord`): ``attributes`` now known, or None (never)."""
        for version, response in state["v"].items():
            if response["k"] == "joined":
                self.facts.append(_joined_record(AttributedRecord, request_id, state, version, response, None,
                                                 attributes))

    def _agreement(self, state: RequestState, shadow_version: str, shadow: ResponseEntry,
                   primary_version: str) -> None:
        primary = state["v"][primary_version]
        self.facts.append(AgreementFact(state["m"], shadow_version, primary_version, shadow["t"], shadow["p"],
                                        primary["p"], shadow["c"], primary["c"]))

    def _expire_unjoined(self, state: RequestState) -> None:
        """Every response not joined by now never will be."""
        for version, response in state["v"].items():
            if response["k"] is None:
                response["k"] = "expired"
                self.facts.append(Expired(state["m"], version, response["r"], response["t"]))

    def _classify_unjoined_label(self, state: RequestState) -> None:
        """A label that joined nothing: late if the request had responses, unmatched if it had none."""
        label = state["y"]
        if label is None or label.get("late") is not None or state.get("u") is not None:
            return
        versions = state["v"]
        if any(r["k"] == "joined" for r in versions.values()):
            return
        if versions:
            label["late"] = 1
            first_response = min(r["t"] for r in versions.values())
            self.facts.append(LateLabel(state["m"], label["t"], label["t"] - first_response))
        else:
            state["u"] = 1
            self.facts.append(UnmatchedLabel(state["m"], label["t"]))

    # -- expiry ----------------------------------------------------------------------------------
    def expire_due(self) -> None:
        """Expire (or, on the second pass, delete) every request due before the watermark (see
        :mod:`evaluators.join.expiry`)."""
        while True:
            due = self.expiry.take_due(self.watermark)
            if not due:
                return
            for key, _, generation in due:
                self._expire(key, generation)

    def _natural_due(self, state: RequestState) -> int:
        """When the state should next be looked at: its tombstone's end, or the latest event time in
        it + ``label_timeout`` + grace."""
        if state.get("z"):
            return state["zd"]
        times = [r["t"] for r in state["v"].values()]
        times += [e["t"] for e in (state["y"], state["q"]) if e is not None]
        return max(times, default=0) + self.config.timeout_for(state["m"]) + self.config.expiry_grace_ms

    def _expire(self, key: str, generation: int) -> None:
        state = self._load(key)
        if state is None:
            return
        if key[0] == LEGACY_REQUEST_PREFIX:
            # A legacy state moves to its new key here, or has moved before (a crash may have kept
            # this copy): the new key's own entry expires it, so this copy is garbage.
            if self._load(request_key(state["m"], request_id_of(key))) is not None:
                self._drop_legacy(key)
                return
        if state["g"] != generation:
            return  # a stale entry: the state was queued again since
        if not state.get("z"):
            due_at = self._natural_due(state)
            if due_at >= self.watermark:  # a newer event of this request moved its expiry on
                self._schedule(key, state, due_at)
                return
            self._expire_unjoined(state)
            self._classify_unjoined_label(state)
            if state["q"] is None:  # records that joined without their request: no segment will be known
                self._attribute_joined(request_id_of(key), state, None)
            state["z"] = 1
            state["zd"] = self.watermark + self.config.tombstone_for(state["m"])
            self._schedule(key, state, state["zd"])
            return
        # Second pass: the tombstone has served its time. A response that came since expires now.
        self._expire_unjoined(state)
        self.states[key] = None
        self.deleted.add(key)

    # -- writes ----------------------------------------------------------------------------------
    def commit(self) -> list[Fact]:
        """Write the request states, the new expiry chunks and the partition state, and delete expired
        tombstones and spent chunks. The batch's writes are one unit: the worker's transaction
        commits all of them or none (a replay keeps them in memory)."""
        queue = self.expiry.seal(self.deleted)
        store = self.store
        for key, state in self.states.items():
            if state is not None and key not in self.deleted:
                store.set(key, state)
        self.expiry.write_chunks()
        with self.join.clock.stage("metrics"):
            accumulator = self.join._accumulator_from_state(self.part["acc"], self.join.accumulator_records)
            accumulator.add_all(self.facts)
            accumulator.advance(self.watermark)
            state = accumulator.to_state()
        self.join.last_state = {
            "seq": self.seq, "wm": self.watermark, "src": self.source_times, "fence": self.new_fence,
            "acc": state, "xq": queue, "layout": LAYOUT,
        }
        if self.legacy:
            self.join.last_state["legacy_until"] = self.part["legacy_until"]
        store.set(self.join.partition_key, self.join.last_state)
        for key in [*sorted(self.deleted), *self.migrated]:
            store.delete(key)
        self.expiry.delete_spent()
        return self.facts


def _joined_record(kind: type[JoinedRecord], request_id: str, state: RequestState, version: str,
                   response: ResponseEntry, features: dict[str, Any] | None,
                   attributes: dict[str, str] | None) -> JoinedRecord:
    """A response paired with its request's label (``kind``: the record, or its late attribution)."""
    label = state["y"]
    assert label is not None  # only a label makes one
    return kind(state["m"], version, response["r"], request_id, response["t"], label["t"], response["p"], response["c"],
                label["y"], label["oc"], response["l"], response["x"], features, attributes)


def _primary(versions: dict[str, ResponseEntry]) -> str | None:
    """The request's first primary version (the one shadows are compared with)."""
    for version, response in versions.items():
        if response["r"] == "primary":
            return version
    return None

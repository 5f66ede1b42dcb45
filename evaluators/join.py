"""Exact join of requests, responses (one per version) and delayed labels, over a key-value store.

Pure: no Kafka. Driven by batches of events of one partition and the sources they came from (the
partition of each input topic). **Time** is the partition's stream time: the smallest, over its
sources, of the latest event time seen on that source, leaving out sources the caller reports as
idle (caught up). A source that lags behind the others holds time back, so labels read minutes ahead
of their responses (topics are consumed at different rates, above all after a restart) do not expire
anything early. Time moves per event, before the event is applied, so results depend on the order of
events within each source, never on how they were batched. The stream, replay and tests behave alike.

**Semantics.** A version's response joins the request's label when the label's event time is at most
``label_timeout`` after the response's (order of arrival does not matter: label before response is
fine). Every response ends either *joined* or *expired* (not labelled within ``label_timeout``), once
time passes its event time + ``label_timeout`` + ``expiry_grace``. A label that joins nothing is
*late* if the request had responses, *unmatched* if it had none; that is decided when the request
expires (or when the label reaches an expired request), so it does not depend on arrival timing. The same response or label twice is a
*duplicate*, counted once. Label-free facts (latency, error, shadow agreement with the primary on
the same request) are emitted at once. Expired state is kept as a tombstone for ``tombstone_ttl``
(default: ``label_timeout``) so that a label arriving after expiry is recognised as late.

**Exactly-once counting under at-least-once delivery.** Every effect recorded in a request's state
(response seen, label seen, joined/late/expired, agreement) carries the mark ``[batch seq, run id]``
of the batch that counted it. The partition's state (watermark, expiry log, the accumulator of
facts, and a ledger ``run id -> last counted seq``) is written *after* the batch's request states, in
the same changelog partition. Since a changelog partition loses at most a suffix of its writes, a
surviving partition state implies the surviving request states of its batch. On the next load, an
effect whose mark the ledger does not cover (its batch's partition state was lost) is counted again,
exactly once; an event whose offset the partition state already covers is skipped.

>>> from schemas import InferenceResponse, GroundTruth
>>> from evaluators.store import DictStore
>>> join = JoinPartition(DictStore(), JoinConfig(label_timeout_ms=60_000), run_id="run-1")
>>> facts = join.process([
...     Incoming(GroundTruth(request_id="r1", model="m", ts=2_000, label=1), "labels-0", 0),
...     Incoming(InferenceResponse(request_id="r1", model="m", version="v2", role="canary", ts=1_000,
...                                prediction=1, latency_ms=5.0), "responses-0", 0)])
>>> sorted(type(f).__name__ for f in facts)
['JoinedRecord', 'LabelFact', 'ResponseFact']
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Union

from evaluators.facts import (
    AgreementFact, Duplicate, Expired, Fact, JoinedRecord, LabelFact, LateLabel, RequestFact, ResponseFact,
    ServedFeatures, UnmatchedLabel,
)
from evaluators.store import KeyValueStore
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.types import epoch_ms

InputMessage = Union[InferenceRequest, InferenceResponse, GroundTruth]

PARTITION_KEY = "p"
REQUEST_PREFIX = "r"
CHUNK_PREFIX = "x"
EXPIRY_CHUNK_SIZE = 2000
MAX_LEDGER_RUNS = 1000
_NEVER = 2**62


@dataclass(frozen=True)
class JoinConfig:
    label_timeout_ms: int = 7 * 86_400_000
    expiry_grace_ms: int = 10 * 60_000
    tombstone_ttl_ms: int | None = None
    #: Per-model label timeouts (from rollout specs); others use ``label_timeout_ms``.
    model_label_timeout_ms: dict[str, int] = field(default_factory=dict)
    #: Processing time a source read to its end must stay silent before it stops holding stream
    #: time back (see :mod:`evaluators.idleness`).
    idle_after_ms: int = 5_000

    def timeout_for(self, model: str) -> int:
        return self.model_label_timeout_ms.get(model, self.label_timeout_ms)

    def settle_ms(self, model: str) -> int:
        """How long after an event time every response up to it has joined or expired."""
        return self.timeout_for(model) + self.expiry_grace_ms + 1

    def tombstone_for(self, model: str) -> int:
        return self.tombstone_ttl_ms if self.tombstone_ttl_ms is not None else self.timeout_for(model)


class Incoming(NamedTuple):
    """One decoded input event and where it came from (``source``: topic-partition, ``offset``)."""

    message: InputMessage
    source: str
    offset: int



class Accumulator:
    """What the join feeds: ``add(fact)``; ``to_state()``/``from_state()`` for durability. The default
    keeps nothing (the metric stage provides the real one)."""

    def add(self, fact: Fact) -> None:
        pass

    def advance(self, watermark: int) -> None:
        """Called once per batch, after its facts, with the partition's stream time."""

    def to_state(self) -> Any:
        return None

    @classmethod
    def from_state(cls, state: Any) -> "Accumulator":
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
                 accumulator_from_state: Callable[[Any], Accumulator] = Accumulator.from_state,
                 key_space: str = "") -> None:
        """``key_space`` keeps this partition's own keys (partition state, expiry chunks) apart from
        other partitions' in a store they share; request keys are unique to a partition anyway."""
        self.store = store
        self.config = config
        self.run_id = run_id
        self._accumulator_from_state = accumulator_from_state
        self.partition_key = f"{PARTITION_KEY}{key_space}"
        #: The partition state the last batch wrote (what a caller publishes, without reading it back).
        self.last_state: dict[str, Any] | None = None
        self.chunk_prefix = f"{CHUNK_PREFIX}{key_space}:"

    # -- partition state -------------------------------------------------------------------------
    def partition_state(self) -> dict[str, Any]:
        return self.store.get(self.partition_key) or {
            "seq": 0, "runs": {}, "wm": 0, "src": {}, "fence": {}, "acc": None,
            "xq": {"next": 0, "chunks": {}, "open": []},
        }

    def accumulator(self) -> Accumulator:
        return self._accumulator_from_state(self.partition_state()["acc"])

    # -- batch -----------------------------------------------------------------------------------
    def process(self, batch: Iterable[Incoming], idle_sources: Iterable[str] = (),
                sources: Iterable[str] | None = None, advance_to: int | None = None) -> list[Fact]:
        """Apply a batch.

        ``sources``: every source of the partition, seen or not (default: those seen so far). A
        source with no event yet that is not idle holds time where it is: its first events may be
        old. ``idle_sources`` are those caught up (nothing older waits; see
        :func:`caught_up_sources` and :mod:`evaluators.idleness`), as of the end of this batch.
        ``advance_to``: stream time moves at least this far (the end of a replay: nothing more comes).
        """
        part = self.partition_state()
        # Deletions the previous batch made after its partition state may have been lost: redo them.
        for request_id in part.get("gc", ()):
            self.store.delete(REQUEST_PREFIX + request_id)
        for number in part.get("gcx", ()):
            self.store.delete(f"{self.chunk_prefix}{number}")
        batch_ctx = _Batch(self, part)
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
    """One batch's working set: loaded request states, marks, facts, and the writes to make."""

    def __init__(self, join: JoinPartition, part: dict[str, Any]) -> None:
        self.join = join
        self.config = join.config
        self.store = join.store
        self.part = part
        self.seq = part["seq"] + 1
        self.mark = [self.seq, join.run_id]
        self.ledger: dict[str, int] = part["runs"]
        self.states: dict[str, dict[str, Any] | None] = {}
        #: Expiry entries queued by this batch (new, or read back from a chunk and not yet due), a heap
        #: by due time: ``(due, order, [request_id, due, generation], is_new)``.
        self.pending: list[tuple[int, int, list, bool]] = []
        self._order = itertools.count()
        self.deleted: set[str] = set()
        self.facts: list[Fact] = []
        self.watermark: int = part["wm"]
        self.source_times: dict[str, int] = part.setdefault("src", {})
        self.idle: frozenset[str] = frozenset()
        self.expected: frozenset[str] | None = None
        self.forced = 0
        self.new_fence: dict[str, int] = dict(part["fence"])
        self.closed_chunks: list[tuple[str, dict[str, Any]]] = []
        self.popped_chunks: list[str] = []
        queue = part["xq"]
        self.chunk_min = min((e for e, _ in queue["chunks"].values()), default=_NEVER)
        self.open_min = min((e[1] for e in queue["open"]), default=_NEVER)
        self.next_due = min(self.chunk_min, self.open_min)

    def _stream_time(self) -> int:
        times = self.source_times
        names = self.expected if self.expected is not None else times.keys()
        active = [name for name in names if name not in self.idle]
        if not active:
            return max(times.values(), default=0)
        if any(name not in times for name in active):
            return self.watermark  # a source not heard from yet may still bring old events
        return min(times[name] for name in active)

    def _advance(self) -> None:
        now = max(self._stream_time(), self.forced)
        if now > self.watermark:
            self.watermark = now
            if self.next_due < now:
                self.expire_due()

    # -- marks -----------------------------------------------------------------------------------
    def _needs_count(self, mark: list | None) -> bool:
        """True for a new effect or one whose counting was lost with its batch."""
        if mark is None:
            return True
        seq, run = mark
        if seq <= self.ledger.get(run, -1):
            return False
        return not (seq == self.seq and run == self.join.run_id)

    # -- state access ----------------------------------------------------------------------------
    def _load(self, request_id: str) -> dict[str, Any] | None:
        if request_id in self.states:
            return self.states[request_id]
        state = self.store.get(REQUEST_PREFIX + request_id)
        if state is not None:
            state = self._rewind(state)
        self.states[request_id] = state
        return state

    def _lost(self, mark: list | None) -> bool:
        """A mark of a batch whose partition state was lost (so nothing it did was counted)."""
        return mark is not None and mark[0] is not None and mark[0] > self.ledger.get(mark[1], -1)

    def _rewind(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Take back what batches with a lost partition state did to this state: their events are
        replayed (their offsets were not committed) and redo it, in order. A state may otherwise be
        ahead of the replay, and expiry would judge it by events not yet replayed."""
        lost = self._lost
        if state["q"] is not None and lost(state["q"]["e"]):
            state["q"] = None
        for version in [v for v, r in state["v"].items() if lost(r["e"])]:
            del state["v"][version]
        for response in state["v"].values():
            if lost(response["j"]):
                response["j"] = response["k"] = None
            if lost(response["a"]):
                response["a"] = None
            if lost(response.get("sf")):
                response["sf"] = None
        label = state["y"]
        if label is not None:
            if lost(label["e"]):
                state["y"] = None
            elif lost(label.get("late")):
                label["late"] = None
        if lost(state.get("u")):
            state["u"] = None
        if lost(state.get("zm")):
            state["z"] = state["zm"] = state["zd"] = None
        if state["q"] is None and not state["v"] and state["y"] is None:
            return None
        return state

    def _load_or_create(self, request_id: str, model: str, ts_ms: int) -> dict[str, Any]:
        state = self._load(request_id)
        if state is None:
            state = {"m": model, "v": {}, "q": None, "y": None, "g": 0, "s": None}
            self.states[request_id] = state
            self.deleted.discard(request_id)
            self._schedule(request_id, state, ts_ms + self.config.timeout_for(model) + self.config.expiry_grace_ms)
        return state

    def _schedule(self, request_id: str, state: dict[str, Any], due_at: int) -> None:
        """Queue the state's (next) expiry; older queue entries of it become stale."""
        state["g"] += 1
        state["s"] = self.mark
        heapq.heappush(self.pending, (due_at, next(self._order), [request_id, due_at, state["g"]], True))
        if due_at < self.next_due:
            self.next_due = due_at

    # -- events ----------------------------------------------------------------------------------
    def apply(self, message: InputMessage, origin: list) -> None:
        """Apply one event. Time moves first: what is due before the new stream time expires first."""
        ts_ms = epoch_ms(message.ts)
        source = origin[0]
        if ts_ms > self.source_times.get(source, -1):
            self.source_times[source] = ts_ms
            self._advance()
        state = self._load_or_create(message.request_id, message.model, ts_ms)
        if isinstance(message, InferenceResponse):
            self._apply_response(state, message, ts_ms, origin)
        elif isinstance(message, GroundTruth):
            self._apply_label(state, message, ts_ms, origin)
        else:
            self._apply_request(state, message, ts_ms, origin)
        self._settle(message.request_id, state)

    def _duplicate(self, state: dict[str, Any], element: dict[str, Any], kind: str, origin: list) -> None:
        # The same record read again (a replay after a restart) is not a duplicate; another record
        # with the same request (and version) is.
        if element["o"] != origin:
            self.facts.append(Duplicate(state["m"], kind))

    def _apply_request(self, state: dict[str, Any], message: InferenceRequest, ts_ms: int, origin: list) -> None:
        if state["q"] is not None:
            self._duplicate(state, state["q"], "request", origin)
            return
        state["q"] = {"t": ts_ms, "f": message.features, "e": None, "o": origin}

    def _apply_response(self, state: dict[str, Any], message: InferenceResponse, ts_ms: int, origin: list) -> None:
        versions = state["v"]
        if message.version in versions:
            self._duplicate(state, versions[message.version], "response", origin)
            return
        versions[message.version] = {
            "r": message.role, "t": ts_ms, "p": message.prediction, "c": message.score,
            "l": message.latency_ms, "x": message.error, "e": None, "j": None, "k": None, "a": None,
            "o": origin,
        }

    def _apply_label(self, state: dict[str, Any], message: GroundTruth, ts_ms: int, origin: list) -> None:
        if state["y"] is not None:
            self._duplicate(state, state["y"], "label", origin)
            return
        state["y"] = {"t": ts_ms, "y": message.label, "oc": message.outcomes, "e": None, "late": None,
                      "o": origin}
        if state.get("z"):  # the request already expired: the label joins nothing
            self._classify_unjoined_label(state)

    # -- settling: pairs, agreement, counting ----------------------------------------------------
    def _settle(self, request_id: str, state: dict[str, Any]) -> None:
        """Form on-time pairs and shadow agreements, then count whatever is new."""
        versions = state["v"]
        label = state["y"]
        timeout = self.config.timeout_for(state["m"])
        primary = next((v for v, r in versions.items() if r["r"] == "primary"), None)
        open_for_pairs = label is not None and not state.get("z")
        for response in versions.values():
            if open_for_pairs and response["k"] is None and label["t"] - response["t"] <= timeout:
                response["k"] = "joined"
            if response["a"] is None and response["r"] == "shadow" and primary is not None:
                response["a"] = [None]
        self._count(request_id, state, primary)

    def _classify_unjoined_label(self, state: dict[str, Any]) -> None:
        """A label that joined nothing: late if the request had responses, unmatched if it had none."""
        label = state["y"]
        if label is None or label.get("late") is not None or state.get("u") is not None:
            return
        if any(r["k"] == "joined" for r in state["v"].values()):
            return
        if state["v"]:
            label["late"] = [None]
        else:
            state["u"] = [None]

    def _count(self, request_id: str, state: dict[str, Any], primary: str | None) -> None:
        """Emit a fact for every effect not yet counted, and mark it with this batch."""
        model = state["m"]
        mark = self.mark
        if self._needs_count(state["s"]):  # its expiry was queued by a batch whose queue was lost
            self._schedule(request_id, state, self._natural_due(state))
        request = state["q"]
        if request is not None and self._needs_count(request["e"]):
            request["e"] = mark
            self.facts.append(RequestFact(model, request["t"], request["f"]))
        label = state["y"]
        if label is not None:
            if self._needs_count(label["e"]):
                label["e"] = mark
                self.facts.append(LabelFact(model, label["t"]))
            late = label.get("late")
            if late is not None and (late == [None] or self._needs_count(late)):
                label["late"] = mark
                first_response = min((r["t"] for r in state["v"].values()), default=label["t"])
                self.facts.append(LateLabel(model, label["t"], label["t"] - first_response))
        for version, r in state["v"].items():
            if self._needs_count(r["e"]):
                r["e"] = mark
                self.facts.append(ResponseFact(model, version, r["r"], r["t"], r["l"], r["x"], r["p"]))
            if request is not None and request["f"] and self._needs_count(r.get("sf")):
                r["sf"] = mark
                self.facts.append(ServedFeatures(model, version, r["r"], r["t"], request["f"]))
            kind = r["k"]
            if kind is not None and self._needs_count(r["j"]):
                r["j"] = mark
                if kind == "joined":
                    features = request["f"] if request is not None else None
                    self.facts.append(JoinedRecord(model, version, r["r"], request_id, r["t"], label["t"],
                                                   r["p"], r["c"], label["y"], label["oc"], r["l"], r["x"],
                                                   features))
                else:
                    self.facts.append(Expired(model, version, r["r"], r["t"]))
            agreement = r["a"]
            if agreement is not None and (agreement == [None] or self._needs_count(agreement)) \
                    and primary is not None:
                r["a"] = mark
                p = state["v"][primary]
                self.facts.append(AgreementFact(model, version, primary, r["t"], r["p"], p["p"], r["c"], p["c"]))
        unmatched = state.get("u")
        if unmatched is not None and (unmatched == [None] or self._needs_count(unmatched)):
            state["u"] = mark
            self.facts.append(UnmatchedLabel(model, label["t"] if label else 0))

    # -- expiry ----------------------------------------------------------------------------------
    def expire_due(self) -> None:
        """Expire (or, on the second pass, delete) every request due before the watermark.

        Queue entries are ``[request_id, due, generation]``; they live in chunks (``x<n>``) indexed in
        the partition state by earliest and latest due time, plus a small open list in the partition
        state. A chunk with anything due is read; what is not yet due moves to a new chunk; the old
        one is deleted only after the partition state is written.
        """
        while True:
            due = self._take_due()
            if not due:
                return
            for request_id, _, generation in due:
                self._expire(request_id, generation)

    def _take_due(self) -> list[list]:
        """Every queued entry due before the watermark. Chunks and the open list are looked at only
        when their earliest due time has passed; this batch's own entries wait in a heap."""
        queue = self.part["xq"]
        watermark = self.watermark
        due: list[list] = []
        pending = self.pending
        if self.chunk_min < watermark:
            for number, (earliest, _latest) in list(queue["chunks"].items()):
                if earliest >= watermark:
                    continue
                chunk = self.store.get(f"{self.join.chunk_prefix}{number}")
                del queue["chunks"][number]
                self.popped_chunks.append(number)
                for entry in chunk["entries"] if chunk else ():
                    if entry[1] < watermark:
                        due.append(entry)
                    else:
                        heapq.heappush(pending, (entry[1], next(self._order), entry, False))
            self.chunk_min = min((e for e, _ in queue["chunks"].values()), default=_NEVER)
        if self.open_min < watermark:
            remaining: list[list] = []
            for entry in queue["open"]:
                (due if entry[1] < watermark else remaining).append(entry)
            queue["open"] = remaining
            self.open_min = min((e[1] for e in remaining), default=_NEVER)
        while pending and pending[0][0] < watermark:
            due.append(heapq.heappop(pending)[2])
        self.next_due = min(self.chunk_min, self.open_min, pending[0][0] if pending else _NEVER)
        return due

    def _natural_due(self, state: dict[str, Any]) -> int:
        """When the state should next be looked at: its tombstone's end, or the latest event time in
        it + ``label_timeout`` + grace."""
        if state.get("z"):
            return state["zd"]
        times = [r["t"] for r in state["v"].values()]
        times += [e["t"] for e in (state["y"], state["q"]) if e is not None]
        return max(times, default=0) + self.config.timeout_for(state["m"]) + self.config.expiry_grace_ms

    def _expire(self, request_id: str, generation: int) -> None:
        state = self._load(request_id)
        if state is None:
            return
        if state["g"] != generation:
            if self._needs_count(state["s"]):
                # Its current entry was queued by a batch whose queue was lost: this older entry
                # stands in. Recount what that batch did (this also queues the state again).
                self._settle(request_id, state)
            return
        if not state.get("z"):
            due_at = self._natural_due(state)
            if due_at >= self.watermark:  # a newer event of this request moved its expiry on
                self._schedule(request_id, state, due_at)
                return
            for response in state["v"].values():
                if response["k"] is None:
                    response["k"] = "expired"
            self._classify_unjoined_label(state)
            state["z"] = 1
            state["zm"] = self.mark
            state["zd"] = self.watermark + self.config.tombstone_for(state["m"])
            self._schedule(request_id, state, state["zd"])
            self._settle(request_id, state)
            return
        # Second pass: the tombstone has served its time. Anything that arrived since is settled first.
        for response in state["v"].values():
            if response["k"] is None:
                response["k"] = "expired"
        self._settle(request_id, state)
        self.states[request_id] = None
        self.deleted.add(request_id)

    # -- writes ----------------------------------------------------------------------------------
    def commit(self) -> list[Fact]:
        """Write request states and new expiry chunks, then the partition state, then the deletions
        of expired tombstones and spent chunks (in that order: see the module docstring)."""
        queue = self.part["xq"]
        entries = queue["open"] + [entry for _, _, entry, is_new in sorted(self.pending)
                                   if not (is_new and entry[0] in self.deleted)]
        queue["open"] = []
        for start in range(0, len(entries), EXPIRY_CHUNK_SIZE):
            piece = entries[start:start + EXPIRY_CHUNK_SIZE]
            if len(piece) < EXPIRY_CHUNK_SIZE // 4 and start + EXPIRY_CHUNK_SIZE >= len(entries):
                queue["open"] = piece  # a small remainder stays in the partition state
                break
            number = str(queue["next"])
            queue["next"] += 1
            dues = [entry[1] for entry in piece]
            queue["chunks"][number] = [min(dues), max(dues)]
            self.closed_chunks.append((number, {"entries": piece}))
        for request_id, state in self.states.items():
            if state is not None and request_id not in self.deleted:
                self.store.set(REQUEST_PREFIX + request_id, state)
        for number, chunk in self.closed_chunks:
            self.store.set(f"{self.join.chunk_prefix}{number}", chunk)
        accumulator = self.join._accumulator_from_state(self.part["acc"])
        for fact in self.facts:
            accumulator.add(fact)
        accumulator.advance(self.watermark)
        runs = dict(self.ledger)
        runs[self.join.run_id] = self.seq
        if len(runs) > MAX_LEDGER_RUNS:
            for run in sorted(runs, key=runs.__getitem__)[: len(runs) - MAX_LEDGER_RUNS]:
                del runs[run]
        deleted = sorted(self.deleted)
        self.join.last_state = {
            "seq": self.seq, "runs": runs, "wm": self.watermark, "src": self.source_times, "fence": self.new_fence,
            "acc": accumulator.to_state(), "xq": queue, "gc": deleted, "gcx": self.popped_chunks,
        }
        self.store.set(self.join.partition_key, self.join.last_state)
        # Deletions only now: were the partition state lost, a replay would need what they remove.
        for request_id in deleted:
            self.store.delete(REQUEST_PREFIX + request_id)
        for number in self.popped_chunks:
            self.store.delete(f"{self.join.chunk_prefix}{number}")
        return self.facts

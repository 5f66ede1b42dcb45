"""A partition's expiry queue: when each request's state is next looked at (to expire what never
joined, then to delete its tombstone), kept so that a batch reads only what is due.

Entries are ``[store key, due, generation]`` (:data:`~evaluators.join.state.ExpiryEntry`); an entry
whose generation is not its state's any more is stale and ignored (the state was queued again).
Entries live in **chunks** of :data:`~evaluators.join.state.EXPIRY_CHUNK_SIZE`, records of their own
(``x<key space>:<number>``) indexed in the partition state by earliest and latest due time, plus a
small **open** list in the partition state (:class:`~evaluators.join.state.ExpiryQueueState`).

One :class:`ExpiryQueue` serves one batch: :meth:`~ExpiryQueue.schedule` queues an entry,
:meth:`~ExpiryQueue.take_due` gives what is due before the stream time (reading a chunk only when its
earliest entry is due; what it holds that is not yet due is queued again), and
:meth:`~ExpiryQueue.seal` turns the batch's entries into new chunks and the open list. The chunk
records are written and the spent ones deleted with the batch's other writes
(:meth:`~ExpiryQueue.write_chunks`, :meth:`~ExpiryQueue.delete_spent`), in one transaction.

>>> from evaluators.store import DictStore
>>> store = DictStore()
>>> queue = ExpiryQueue(new_queue_state(), store, "x:")
>>> queue.schedule("k1:mr1", 100, 1); queue.schedule("k1:mr2", 300, 1)
>>> queue.take_due(200), queue.next_due
([['k1:mr1', 100, 1]], 300)
>>> state = queue.seal(deleted=set()); state["open"]
[['k1:mr2', 300, 1]]
"""

from __future__ import annotations

import heapq
import itertools

from evaluators.join.state import (
    EXPIRY_CHUNK_SIZE,
    LAYOUT,
    LEGACY_REQUEST_PREFIX,
    ExpiryChunk,
    ExpiryEntry,
    ExpiryQueueState,
)
from evaluators.store import KeyValueStore

#: A due time later than any event's.
NEVER = 2**62


def new_queue_state() -> ExpiryQueueState:
    return {"next": 0, "chunks": {}, "open": []}


def legacy_entries(entries: list[ExpiryEntry]) -> list[ExpiryEntry]:
    """Expiry entries of the legacy layout (``[request id, due, generation]``) as store keys."""
    return [[LEGACY_REQUEST_PREFIX + entry[0], *entry[1:]] for entry in entries]


class ExpiryQueue:
    """The expiry queue for one batch, over the partition state's ``state`` (changed in place) and
    the chunk records in ``store`` under ``chunk_prefix``."""

    def __init__(self, state: ExpiryQueueState, store: KeyValueStore, chunk_prefix: str) -> None:
        self.state = state
        self.store = store
        self.chunk_prefix = chunk_prefix
        #: Entries queued by this batch (new, or read back from a chunk and not yet due), a heap by
        #: due time: ``(due, order, entry, is_new)``.
        self.pending: list[tuple[int, int, ExpiryEntry, bool]] = []
        self._order = itertools.count()
        #: Chunks made by :meth:`seal`, to write; chunks read by :meth:`take_due`, to delete.
        self.sealed: list[tuple[str, ExpiryChunk]] = []
        self.spent: list[str] = []
        self.chunk_min = min((earliest for earliest, _ in state["chunks"].values()), default=NEVER)
        self.open_min = min((entry[1] for entry in state["open"]), default=NEVER)
        #: The earliest due time queued anywhere (a batch looks at the queue only once time passes it).
        self.next_due = min(self.chunk_min, self.open_min)

    def schedule(self, key: str, due_at: int, generation: int) -> None:
        """Queue a state's (next) expiry; its older entries become stale."""
        heapq.heappush(self.pending, (due_at, next(self._order), [key, due_at, generation], True))
        if due_at < self.next_due:
            self.next_due = due_at

    def take_due(self, watermark: int) -> list[ExpiryEntry]:
        """Every queued entry due before ``watermark``. Chunks and the open list are looked at only
        when their earliest due time has passed; this batch's own entries wait in a heap."""
        state = self.state
        due: list[ExpiryEntry] = []
        pending = self.pending
        if self.chunk_min < watermark:
            for number, (earliest, _latest) in list(state["chunks"].items()):
                if earliest >= watermark:
                    continue
                chunk: ExpiryChunk | None = self.store.get(f"{self.chunk_prefix}{number}")
                del state["chunks"][number]
                self.spent.append(number)
                entries = chunk["entries"] if chunk else []
                if chunk and chunk.get("layout") != LAYOUT:
                    entries = legacy_entries(entries)
                for entry in entries:
                    if entry[1] < watermark:
                        due.append(entry)
                    else:
                        heapq.heappush(pending, (entry[1], next(self._order), entry, False))
            self.chunk_min = min((earliest for earliest, _ in state["chunks"].values()), default=NEVER)
        if self.open_min < watermark:
            remaining: list[ExpiryEntry] = []
            for entry in state["open"]:
                (due if entry[1] < watermark else remaining).append(entry)
            state["open"] = remaining
            self.open_min = min((entry[1] for entry in remaining), default=NEVER)
        while pending and pending[0][0] < watermark:
            due.append(heapq.heappop(pending)[2])
        self.next_due = min(self.chunk_min, self.open_min, pending[0][0] if pending else NEVER)
        return due

    def seal(self, deleted: set[str]) -> ExpiryQueueState:
        """The batch's entries (less the new ones of states it deleted) and the open list, in due
        order, as full chunks to write and a small remainder that stays open; the queue's state."""
        state = self.state
        entries = state["open"] + [entry for _, _, entry, is_new in sorted(self.pending)
                                   if not (is_new and entry[0] in deleted)]
        state["open"] = []
        for start in range(0, len(entries), EXPIRY_CHUNK_SIZE):
            piece = entries[start:start + EXPIRY_CHUNK_SIZE]
            if len(piece) < EXPIRY_CHUNK_SIZE // 4 and start + EXPIRY_CHUNK_SIZE >= len(entries):
                state["open"] = piece  # a small remainder stays in the partition state
                break
            number = str(state["next"])
            state["next"] += 1
            dues = [entry[1] for entry in piece]
            state["chunks"][number] = [min(dues), max(dues)]
            self.sealed.append((number, {"entries": piece, "layout": LAYOUT}))
        return state

    def write_chunks(self) -> None:
        for number, chunk in self.sealed:
            self.store.set(f"{self.chunk_prefix}{number}", chunk)

    def delete_spent(self) -> None:
        for number in self.spent:
            self.store.delete(f"{self.chunk_prefix}{number}")


__all__ = ["NEVER", "ExpiryQueue", "legacy_entries", "new_queue_state"]

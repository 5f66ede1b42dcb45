"""One input partition's join state on this worker: a RocksDB database (rocksdict) or a dict, with
the writes of the batch in flight held apart until its transaction commits.

The join (:class:`evaluators.join.JoinPartition`) reads and writes through the
:class:`evaluators.store.KeyValueStore` protocol. Its writes go to ``pending`` first: they are what
the batch's changelog records carry, inside the batch's transaction. Only once the transaction has
committed are they applied to the database, in one RocksDB write batch together with the
**checkpoint**: the changelog offset the database then reflects. So the database is never ahead of
the committed changelog; it may be behind (a worker killed between commit and local write), which
restore repairs by reading the changelog after the checkpoint. A transaction that aborts drops
``pending``: the database still holds the state as of the last commit.

>>> store = PartitionStore.in_memory()
>>> store.set("k", {"a": 1}); store.get("k")
{'a': 1}
>>> [(key, value) for key, value in store.pending_records()]
[(b'k', b'{"a":1}')]
>>> store.commit_local(checkpoint=41); store.checkpoint(), store.get("k")
(41, {'a': 1})
>>> store.delete("k"); store.discard(); store.get("k")
{'a': 1}
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson

from evaluators.stage_clock import StageClock

#: The key of the checkpoint in the database (join keys are never empty-prefixed like this).
CHECKPOINT_KEY = b"\x00checkpoint"
#: Checkpoint of a store that reflects no changelog record yet.
NO_CHECKPOINT = -1


class PartitionStore:
    """The join state of one partition; ``mapping`` is a rocksdict ``Rdict`` or a dict (bytes to bytes)."""

    def __init__(self, mapping: MutableMapping[bytes, bytes], path: Path | None = None) -> None:
        self.mapping = mapping
        self.path = path
        #: Writes of the batch in flight: key -> encoded value, or None for a deletion.
        self.pending: dict[bytes, bytes | None] = {}
        #: Where reads and writes are timed ("state read", "state write"), if anywhere.
        self.clock: StageClock | None = None

    @classmethod
    def in_memory(cls) -> PartitionStore:
        return cls({})

    @classmethod
    def on_disk(cls, path: Path) -> PartitionStore:
        from rocksdict import Options, Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        return cls(Rdict(str(path), options=options), path)

    # -- the join's view (KeyValueStore) ---------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        clock = self.clock
        started = perf_counter() if clock is not None else 0.0
        raw_key = key.encode()
        if raw_key in self.pending:
            value = self.pending[raw_key]
        else:
            value = self.mapping.get(raw_key)
        state = None if value is None else orjson.loads(value)
        if clock is not None:
            clock.within("state read", perf_counter() - started)
        return state

    def set(self, key: str, value: dict[str, Any]) -> None:
        clock = self.clock
        started = perf_counter() if clock is not None else 0.0
        self.pending[key.encode()] = orjson.dumps(value)
        if clock is not None:
            clock.within("state write", perf_counter() - started)

    def delete(self, key: str) -> None:
        self.pending[key.encode()] = None

    # -- transactions ----------------------------------------------------------------------------
    def pending_records(self) -> Iterator[tuple[bytes, bytes | None]]:
        """The batch's writes as changelog records (a deletion is a tombstone)."""
        return iter(self.pending.items())

    def commit_local(self, checkpoint: int) -> None:
        """The batch's transaction committed: apply its writes with the new checkpoint, atomically."""
        self.apply(self.pending.items(), checkpoint)
        self.pending = {}

    def discard(self) -> None:
        """The batch's transaction aborted: forget its writes."""
        self.pending = {}

    # -- restore ---------------------------------------------------------------------------------
    def apply(self, records: Iterable[tuple[bytes, bytes | None]], checkpoint: int) -> None:
        """Apply changelog records (restore) or a committed batch, with the checkpoint they reach."""
        if isinstance(self.mapping, dict):
            for key, value in records:
                if value is None:
                    self.mapping.pop(key, None)
                else:
                    self.mapping[key] = value
            self.mapping[CHECKPOINT_KEY] = str(checkpoint).encode()
            return
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(CHECKPOINT_KEY, str(checkpoint).encode())
        self.mapping.write(batch)

    def checkpoint(self) -> int:
        """The changelog offset of the last record this store reflects (``NO_CHECKPOINT``: none)."""
        value = self.mapping.get(CHECKPOINT_KEY)
        return NO_CHECKPOINT if value is None else int(value)

    def close(self) -> None:
        close = getattr(self.mapping, "close", None)
        if close is not None:
            close()

    def destroy(self) -> None:
        """Close and remove the database (its checkpoint is not to be trusted)."""
        self.close()
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path)

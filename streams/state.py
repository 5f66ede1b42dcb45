"""The join's key-value store in the stream: a changelog-backed faust table (RocksDB through
rocksdict, or memory), values as orjson bytes.

faust routes a table write to the RocksDB database and the changelog partition of the *current
event*; :func:`partition_context` makes that the partition whose sub-batch is being processed, so all
of a partition's writes land in its own changelog partition, in order.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import faust
from faust.streams import _current_event

from evaluators.store import EncodedStore


class TableStore(EncodedStore):
    """:class:`evaluators.store.KeyValueStore` over a faust table of raw bytes (keys UTF-8 bytes, as
    they come back from the changelog on recovery)."""

    def __init__(self, table: faust.Table) -> None:
        super().__init__(table)


@contextlib.contextmanager
def partition_context(event: faust.EventT) -> Iterator[None]:
    """Make ``event`` faust's current event (and so its partition the one tables write to)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)

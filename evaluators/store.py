"""The key-value store the join keeps its state in: a dict in tests and replay, one RocksDB database
per partition with a transactional changelog in the stream (``streams.worker.store``). Values are
JSON-compatible dicts.

>>> store = DictStore()
>>> store.set("k", {"a": 1}); store.get("k"), store.get("missing")
({'a': 1}, None)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, TypeAlias

import orjson

#: A stored value: a JSON object, whose shape its user declares (a TypedDict of its own).
Record: TypeAlias = Any


class KeyValueStore(Protocol):
    def get(self, key: str) -> Record | None: ...

    def set(self, key: str, value: Record) -> None: ...

    def delete(self, key: str) -> None: ...


class PrefixedStore:
    """A part of a :class:`KeyValueStore`: its keys are the underlying store's with ``prefix``.

    >>> base = DictStore(); part = PrefixedStore(base, "w0:"); part.set("a", {"n": 1})
    >>> part.get("a"), list(base)
    ({'n': 1}, ['w0:a'])
    """

    def __init__(self, store: KeyValueStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def get(self, key: str) -> Record | None:
        return self.store.get(self.prefix + key)

    def set(self, key: str, value: Record) -> None:
        self.store.set(self.prefix + key, value)

    def delete(self, key: str) -> None:
        self.store.delete(self.prefix + key)


class DictStore:
    """In-memory store.

    With ``snapshot=True`` values are serialized on ``set`` and parsed on ``get``, as a real store
    does, and ``writes`` keeps every write in order (what a changelog would carry), so tests can
    rebuild the store from a prefix of it. Without, values are kept by reference (fast, for replay).
    """

    def __init__(self, snapshot: bool = False) -> None:
        self.snapshot = snapshot
        self.data: dict[str, Any] = {}
        self.writes: list[tuple[str, bytes | None]] = []

    def get(self, key: str) -> Record | None:
        value = self.data.get(key)
        if value is None or not self.snapshot:
            return value
        return orjson.loads(value)

    def set(self, key: str, value: Record) -> None:
        if self.snapshot:
            encoded = orjson.dumps(value)
            self.data[key] = encoded
            self.writes.append((key, encoded))
        else:
            self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        if self.snapshot:
            self.writes.append((key, None))

    def rebuild_from(self, writes: list[tuple[str, bytes | None]]) -> None:
        """Replace the contents with the result of replaying ``writes`` (a changelog prefix)."""
        self.writes = list(writes)
        self.data = {}
        for key, value in self.writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)


class EncodedStore:
    """A :class:`KeyValueStore` over any mutable mapping of bytes to bytes (a RocksDB
    database): keys as UTF-8, values as orjson.

    >>> store = EncodedStore({}); store.set("k", {"a": 1}); store.delete("missing"); store.get("k")
    {'a': 1}
    """

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping

    def get(self, key: str) -> Record | None:
        value = self.mapping.get(key.encode())
        return None if value is None else orjson.loads(value)

    def set(self, key: str, value: Record) -> None:
        self.mapping[key.encode()] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        try:
            del self.mapping[key.encode()]
        except KeyError:
            pass


class RocksStore(EncodedStore):
    """A store on disk (RocksDB through rocksdict, as the worker's tables use): for replays and
    benchmarks whose state is larger than memory.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = RocksStore(folder); store.set("k", {"a": 1}); value = store.get("k"); store.close()
    >>> value
    {'a': 1}
    """

    def __init__(self, path: str) -> None:
        from rocksdict import Rdict

        super().__init__(Rdict(path))

    def close(self) -> None:
        self.mapping.close()

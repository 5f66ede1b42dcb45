"""The join's persisted shapes, declared once: what a request's state, the partition state and an
expiry chunk hold, key by key, and the store keys they live under.

The keys are short because every request's state is written to RocksDB and the changelog each time
it changes (a few bytes a key, millions of requests); each one is named here, and code outside the
join reads none of them (it has :class:`~evaluators.join.JoinPartition`'s accessors).

>>> request_key("fraud", "r-1"), request_id_of(request_key("fraud", "r-1"))
('k5:fraudr-1', 'r-1')
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

#: Where an element was read: ``[source, offset]`` (a source is a topic code and a partition, ``q3``).
#: The same record read again after a restart has the same origin, so it is not a duplicate.
Origin = list

#: An expiry queue entry: ``[request state key, due (stream time, ms), generation]``.
ExpiryEntry = list


class RequestEntry(TypedDict):
    """The request itself, once read."""

    t: int  # its event time (epoch ms)
    f: dict[str, Any]  # its features
    o: Origin
    a: NotRequired[dict[str, str]]  # its attributes (kept when it has any: segments slice by them)


class ResponseEntry(TypedDict):
    """One version's response to the request."""

    r: str  # role: "primary", "canary" or "shadow"
    t: int  # its event time (epoch ms)
    p: Any  # prediction
    c: Any  # score
    l: float | None  # noqa: E741 (latency in ms)
    x: str | None  # error
    k: str | None  # what became of it: None while pending, "joined" or "expired" (a legacy batch mark: done)
    o: Origin


class LabelEntry(TypedDict):
    """The request's label, once read."""

    t: int  # its event time (epoch ms)
    y: Any  # label
    oc: dict[str, float]  # business outcomes
    late: int | None  # 1 once found late (the request had responses, none joined)
    o: Origin


class RequestState(TypedDict):
    """One model's state of one request, under :func:`request_key`."""

    m: str  # model
    v: dict[str, ResponseEntry]  # version -> its response
    q: RequestEntry | None  # the request
    y: LabelEntry | None  # the label
    g: int  # generation, bumped at each (re)scheduling of its expiry: older queue entries are stale
    z: NotRequired[int]  # 1 once expired: a tombstone, kept so a later label is known as late
    zd: NotRequired[int]  # when the tombstone goes (stream time)
    u: NotRequired[int]  # 1 once its label was found unmatched (the request had no response)


class ExpiryQueueState(TypedDict):
    """The expiry queue's index in the partition state: full chunks live in records of their own."""

    next: int  # the next chunk's number
    chunks: dict[str, list[int]]  # chunk number -> [earliest due, latest due]
    open: list[ExpiryEntry]  # a remainder too small for a chunk


class ExpiryChunk(TypedDict):
    """A chunk of expiry entries, under ``x<key space>:<number>``."""

    entries: list[ExpiryEntry]
    layout: NotRequired[int]  # LAYOUT (absent: entries name legacy request ids)


class PartitionState(TypedDict):
    """The join's state of one partition, under ``p<key space>``, written with every batch."""

    seq: int  # batches applied
    wm: int  # stream time (epoch ms)
    src: dict[str, int]  # source -> the latest event time it brought (bounded by the clock's horizon)
    fence: dict[str, int]  # source -> the last applied offset
    acc: Any  # the accumulator's state (:meth:`~evaluators.join.Accumulator.to_state`)
    xq: ExpiryQueueState
    layout: int  # LAYOUT
    legacy_until: NotRequired[int]  # until when legacy request states may still be read
    gc: NotRequired[list[str]]  # keys to delete, left by a state written before transactions
    gcx: NotRequired[list[str]]  # chunk numbers to delete, likewise


PARTITION_KEY = "p"
#: A request's state is keyed by (model, request id): ``k<len(model)>:<model><request id>``, so a
#: request id that a gateway gives several models is several independent joins.
REQUEST_PREFIX = "k"
#: The layout before that: ``r<request id>`` (one state per request id, holding its first model).
#: Read and moved to the new key lazily (see ``_Batch._load``); expiry entries and garbage lists of
#: that layout are converted when read.
LEGACY_REQUEST_PREFIX = "r"
#: Version of the key layout the partition state records (absent: the legacy layout).
LAYOUT = 2
CHUNK_PREFIX = "x"
#: Records the accumulator keeps apart from the partition state (``w<key space>:<its key>``).
ACCUMULATOR_PREFIX = "w"
EXPIRY_CHUNK_SIZE = 2000


def request_key(model: str, request_id: str) -> str:
    """The store key of one model's state of one request.

    >>> request_key("fraud", "r-1"), request_id_of(request_key("fraud", "r-1"))
    ('k5:fraudr-1', 'r-1')
    """
    return f"{REQUEST_PREFIX}{len(model)}:{model}{request_id}"


def request_id_of(key: str) -> str:
    """The request id in a store key (either layout)."""
    if key[0] == LEGACY_REQUEST_PREFIX:
        return key[1:]
    length, _, rest = key[1:].partition(":")
    return rest[int(length):]


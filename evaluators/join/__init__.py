"""Exact join of requests, responses (one per version) and delayed labels, over a key-value store.

Pure: no Kafka. Driven by batches of events of one partition and the sources they came from (the
partition of each input topic). **Time** is the partition's stream time: the smallest, over its
sources, of the latest event time seen on that source, leaving out sources the caller reports as
idle (caught up). A source that lags behind the others holds time back, so labels read minutes ahead
of their responses (topics are consumed at different rates, above all after a restart) do not expire
anything early. Time moves per event, before the event is applied, so results depend on the order of
events within each source, never on how they were batched. The stream, replay and tests behave alike.

**Keys.** A request's state is one model's: keyed by (model, request id) (:func:`request_key`), so
models sharing a request id (a gateway fanning one request out) are joined independently, and a
label joins the responses of its own model.

**Clocks.** Given the worker's clock (``now_ms``), an event stamped more than
``max_future_skew_ms`` ahead of it moves its source's time only that far; the event itself keeps its
timestamps. One far behind the partition's time (due on arrival) affects only itself. Both are
counted (:class:`~evaluators.facts.ClockSkew`).

**Semantics.** A version's response joins the request's label when the label's event time is at most
``label_timeout`` after the response's (order of arrival does not matter: label before response is
fine). Every response ends either *joined* or *expired* (not labelled within ``label_timeout``),
once time passes its event time + ``label_timeout`` + ``expiry_grace``. A label that joins nothing
is *late* if the request had responses, *unmatched* if it had none; that is decided when the request
expires (or when the label reaches an expired request), so it does not depend on arrival timing. The
same response or label twice is a *duplicate*, counted once. Label-free facts (latency, error,
shadow agreement with the primary on the same request) are emitted at once. Expired state is kept as
a tombstone for ``tombstone_ttl`` (default: ``label_timeout``) so that a label arriving after expiry
is recognised as late.

**Exactly once.** Each effect (response seen, label seen, joined, late, expired, shadow agreement)
is emitted as a fact once, at the event or expiry that causes it. A batch's writes (the request
states it changed, the partition state with its offsets, watermark, expiry queue and accumulated
facts) are one unit: the worker writes them to its changelog in the batch's Kafka transaction,
together with the input offsets, so they survive together or not at all, and a batch that did not
commit is read again from its first offset over the state before it. (Before the worker had
transactions, every effect carried the mark of the batch that counted it and the partition state a
ledger of counted batches, so that a changelog that lost a suffix of its writes was counted exactly
once; transactions made both unnecessary, and they are gone. A state written then still reads: a
mark counts as "done".) An event whose offset the partition state already covers is skipped.

>>> from schemas import InferenceResponse, GroundTruth
>>> from evaluators.store import DictStore
>>> join = JoinPartition(DictStore(), JoinConfig(label_timeout_ms=60_000), run_id="run-1")
>>> facts = join.process([
...     Incoming(GroundTruth(request_id="r1", model="m", ts=2_000, label=1), "labels-0", 0),
...     Incoming(InferenceResponse(request_id="r1", model="m", version="v2", role="canary", ts=1_000,
...                                prediction=1, latency_ms=5.0), "responses-0", 0)])
>>> sorted(type(f).__name__ for f in facts)
['JoinedRecord', 'LabelFact', 'ResponseFact']

The package: :mod:`~evaluators.join.config` (how it behaves), :mod:`~evaluators.join.state` (the
persisted shapes and store keys, declared once) and :mod:`~evaluators.join.partition` (one
partition's join and its batches).
"""

from evaluators.join.config import JoinConfig
from evaluators.join.expiry import ExpiryQueue
from evaluators.join.partition import (
    Accumulator,
    Incoming,
    InputMessage,
    JoinPartition,
    caught_up_sources,
    fence_after,
)
from evaluators.join.state import PartitionState, RequestState, request_id_of, request_key

__all__ = [
    "Accumulator",
    "ExpiryQueue",
    "Incoming",
    "InputMessage",
    "JoinConfig",
    "JoinPartition",
    "PartitionState",
    "RequestState",
    "caught_up_sources",
    "fence_after",
    "request_id_of",
    "request_key",
]

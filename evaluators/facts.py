"""What the join tells the metric stage: plain facts, one per counted effect.

Every fact is emitted exactly once per (request, version) effect, even across worker crashes (see
:mod:`evaluators.join`). The metric accumulators aggregate them per (model, version, role).

Facts are frozen msgspec Structs, not dataclasses: the join makes about two per event, and a Struct
is built in C (about 0.1 µs) where a frozen dataclass's ``__init__`` sets each field through
``object.__setattr__`` in Python (0.8 to 1.5 µs measured here). They hold no reference cycles, so
the cycle collector does not track them (``gc=False``).

>>> LabelFact("m", 1_000) == LabelFact(model="m", ts_ms=1_000), LabelFact("m", 1_000).ts_ms
(True, 1000)
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Fact(msgspec.Struct, frozen=True, gc=False):
    """The base of every fact."""


class RequestFact(_Fact, frozen=True, gc=False):
    """A request was seen (its features feed drift)."""

    model: str
    ts_ms: int
    features: dict[str, Any]


class ResponseFact(_Fact, frozen=True, gc=False):
    """A version answered (label-free: latency, errors, prediction distribution), at once."""

    model: str
    version: str
    role: str
    ts_ms: int
    latency_ms: float | None
    error: str | None
    prediction: Any


class ServedFeatures(_Fact, frozen=True, gc=False):
    """The features of a request a version answered (feature drift per version), once both are in."""

    model: str
    version: str
    role: str
    ts_ms: int  # event time of the response: window membership
    features: dict[str, Any]


class AgreementFact(_Fact, frozen=True, gc=False):
    """A shadow version's answer next to the primary's on the same request."""

    model: str
    version: str
    primary_version: str
    ts_ms: int
    prediction: Any
    primary_prediction: Any
    score: Any
    primary_score: Any


class JoinedRecord(_Fact, frozen=True, gc=False):
    """A version's response paired with the request's ground truth (label on time)."""

    model: str
    version: str
    role: str
    request_id: str
    ts_ms: int  # event time of the response: window membership
    label_ts_ms: int
    prediction: Any
    score: Any
    label: Any
    outcomes: dict[str, float]
    latency_ms: float | None
    error: str | None
    features: dict[str, Any] | None
    #: The request's attributes (``None``: the request was not seen), what segments slice by.
    attributes: dict[str, str] | None = None


class AttributedRecord(JoinedRecord, frozen=True, gc=False):
    """A joined record whose request was not seen when it joined, counted in its segments now: when
    its request (with the attributes segments slice by) arrives, or, if none ever does, when the
    request expires (``attributes`` None). Only segments count it; the version counted the record
    when it joined."""


class LabelFact(_Fact, frozen=True, gc=False):
    """A label arrived (label coverage and delay)."""

    model: str
    ts_ms: int


class LateLabel(_Fact, frozen=True, gc=False):
    """A label that joined none of the request's responses: later than ``label_timeout``."""

    model: str
    ts_ms: int
    delay_ms: int  # after the request's first response


class Expired(_Fact, frozen=True, gc=False):
    """A version's response that never got a label within ``label_timeout``."""

    model: str
    version: str
    role: str
    ts_ms: int


class UnmatchedLabel(_Fact, frozen=True, gc=False):
    """A label whose request never had a response before it expired."""

    model: str
    ts_ms: int


class Duplicate(_Fact, frozen=True, gc=False):
    """An event already applied (same request and version, or a second label): counted once."""

    model: str
    kind: str  # "request" | "response" | "label"


class ClockSkew(_Fact, frozen=True, gc=False):
    """An event stamped far from the partition's time: ``direction`` "future" (more than the
    tolerance ahead of the worker's clock: it did not move time past the bound) or "past" (so far
    behind the partition's time that it was due to expire on arrival)."""

    model: str
    kind: str  # "request" | "response" | "label"
    direction: str  # "future" | "past"
    skew_ms: int  # how far ahead of the worker's clock, or behind the partition's time


Fact = (RequestFact | ResponseFact | ServedFeatures | AgreementFact | JoinedRecord | AttributedRecord | LabelFact
        | LateLabel | Expired | UnmatchedLabel | Duplicate | ClockSkew)

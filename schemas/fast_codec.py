"""The hot path's decoder: the three inference messages as msgspec Structs, several times faster
than the pydantic models, with the models' accept/reject.

The pydantic models (:mod:`schemas.inference`) stay the contract's one source of truth: they make
the JSON Schema, the AsyncAPI document and every dead letter's reason. The Structs here mirror their
fields and constraints and are checked against them (``tests/test_fast_codec.py``: the same JSON
Schema constraints per field, and the same accept/reject and decoded values on generated valid and
invalid records and on every committed sample). A record the fast path refuses goes through the
models, which decide (so the accepted set is the models' by construction) and explain why.

Event time is decoded once into ``ts_ms`` (epoch milliseconds, what the core's clocks count in) by
the same function the models' timestamp type uses (:func:`schemas.types.timestamp_ms`); the models
offer the same ``ts_ms``, and both kinds carry ``kind`` ("request", "response", "label"), so the
core reads either without asking which it got.

>>> message = decode_fast(InferenceResponse, b'{"request_id": "r1", "model": "m", "version": "v2", '
...                       b'"role": "canary", "ts": "2023-11-14T22:13:20Z", "prediction": 1}')
>>> type(message).__name__, message.kind, message.ts_ms, message.prediction
('ResponseEvent', 'response', 1700000000000, 1)
>>> try:
...     decode_fast(InferenceResponse, b'{"request_id": "r1", "model": "m", "version": "v2", "role": "boss", "ts": 1}')
... except DecodeError as exc:
...     print(exc.reason, "|", exc.detail)  # the models' reason
invalid | role: Input should be 'primary', 'canary' or 'shadow'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
from pydantic import BaseModel

from schemas.codec import MAX_RECORD_BYTES, DecodeError, decode  # noqa: F401 (DecodeError: the doctest)
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.types import MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_SUBJECT_LENGTH, timestamp_ms

M = TypeVar("M", bound=BaseModel)

RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
#: The wire's ``ts``: an RFC 3339 string or epoch milliseconds, turned into ``ts_ms`` after decoding.
WireTimestamp = str | int | float
#: Integers the fast path decodes itself. orjson (the models' parser) reads integers from -2**63 to
#: 2**64 - 1 as integers and any other as a float, where msgspec keeps them whole: a record with an
#: integer outside (msgspec's bounds stop at 2**63 - 1) is left to the models, whose values count.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
FeatureValue = bool | Int64 | float | str | None


def _fits(value: Any) -> bool:
    """Whether every integer in a decoded JSON value is one the models read as an integer."""
    kind = type(value)
    if kind is int:
        return -(2**63) <= value <= 2**63 - 1
    if kind is list:
        return all(map(_fits, value))
    if kind is dict:
        return all(map(_fits, value.values()))
    return True


class RequestEvent(msgspec.Struct, gc=False):
    """:class:`schemas.inference.InferenceRequest` on the hot path."""

    kind: ClassVar[str] = "request"
    request_id: RequestId
    model: Name
    if TYPE_CHECKING:
        ts_ms: int  # what the core reads: epoch milliseconds, once __post_init__ has run
    else:
        ts_ms: WireTimestamp = msgspec.field(name="ts")
    features: dict[str, FeatureValue] = msgspec.field(default_factory=dict)
    subject: Annotated[str, msgspec.Meta(max_length=MAX_SUBJECT_LENGTH)] | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ts_ms = timestamp_ms(self.ts_ms)


class ResponseEvent(msgspec.Struct, gc=False):
    """:class:`schemas.inference.InferenceResponse` on the hot path."""

    kind: ClassVar[str] = "response"
    request_id: RequestId
    model: Name
    version: Name
    role: Literal["primary", "canary", "shadow"]
    if TYPE_CHECKING:
        ts_ms: int  # what the core reads: epoch milliseconds, once __post_init__ has run
    else:
        ts_ms: WireTimestamp = msgspec.field(name="ts")
    prediction: Any = None
    score: float | dict[str, float] | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.error is None and self.prediction is None:
            raise ValueError("prediction is required unless error is set")
        if not _fits(self.prediction):
            raise ValueError("an integer beyond 64 bits: the models decide")
        self.ts_ms = timestamp_ms(self.ts_ms)


class LabelEvent(msgspec.Struct, gc=False):
    """:class:`schemas.inference.GroundTruth` on the hot path."""

    kind: ClassVar[str] = "label"
    request_id: RequestId
    model: Name
    if TYPE_CHECKING:
        ts_ms: int  # what the core reads: epoch milliseconds, once __post_init__ has run
    else:
        ts_ms: WireTimestamp = msgspec.field(name="ts")
    label: Any = None
    outcomes: dict[str, float] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label is None and not self.outcomes:
            raise ValueError("label or outcomes is required")
        if not _fits(self.label):
            raise ValueError("an integer beyond 64 bits: the models decide")
        self.ts_ms = timestamp_ms(self.ts_ms)


#: Each model and the Struct that mirrors it.
FAST_STRUCTS: dict[type[BaseModel], type[msgspec.Struct]] = {
    InferenceRequest: RequestEvent, InferenceResponse: ResponseEvent, GroundTruth: LabelEvent,
}
_DECODERS = {model: msgspec.json.Decoder(struct) for model, struct in FAST_STRUCTS.items()}

#: What the hot path hands the core: a Struct, or (a record only the models accept) the model.
Event = RequestEvent | ResponseEvent | LabelEvent | InferenceRequest | InferenceResponse | GroundTruth


def decode_fast(model: type[M], data: bytes | None, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """Decode one record of ``model``'s topic: its Struct when the fast path accepts it; otherwise
    the models decide (:func:`schemas.codec.decode`): the model instance, or their
    :class:`~schemas.codec.DecodeError` with its reason."""
    if data and len(data) <= max_bytes:
        try:
            return _DECODERS[model].decode(data)
        except (msgspec.DecodeError, ValueError):
            pass
    return decode(model, data, max_bytes)


__all__ = ["Event", "FAST_STRUCTS", "LabelEvent", "RequestEvent", "ResponseEvent", "decode_fast"]

"""Bytes to contract models and back: the one code path every consumer and producer uses.

Decoding parses with orjson, which refuses NaN and Infinity anywhere in the document (pydantic's
own parser lets them through into free-form fields), then validates in pydantic's strict mode.
Every failure is a :class:`DecodeError` with a low-cardinality ``reason`` (for metrics labels) and a
``detail`` that names the field (for the dead-letter ``error`` header).

>>> from schemas.inference import GroundTruth
>>> decode(GroundTruth, b'{"request_id": "r1", "model": "m", "ts": 1700000000000, "label": 1}').label
1
>>> try:
...     decode(GroundTruth, b'{"request_id": "r1", "model": "m", "ts": "yesterday", "label": 1}')
... except DecodeError as exc:
...     print(exc.reason, "|", exc.detail)
invalid | ts: expected an RFC 3339 timestamp with a time zone, got 'yesterday'
"""

from __future__ import annotations

from typing import Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.errors import describe_validation_error

M = TypeVar("M", bound=BaseModel)

#: Records larger than this are refused before parsing (the contract's events are small).
MAX_RECORD_BYTES = 1024 * 1024

DecodeReason = Literal["empty", "oversize", "not_json", "not_object", "invalid"]


class DecodeError(ValueError):
    """A record that is not a valid contract message."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(model: type[M], data: bytes | None, max_bytes: int = MAX_RECORD_BYTES) -> M:
    """Parse and validate one record value as ``model``."""
    if not data:
        raise DecodeError("empty", "empty value (null or zero bytes)")
    if len(data) > max_bytes:
        raise DecodeError("oversize", f"value of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("not_object", f"expected a JSON object, got {type(document).__name__}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise DecodeError("invalid", describe_validation_error(exc)) from None


def encode(message: BaseModel) -> bytes:
    """The JSON bytes of a message (RFC 3339 timestamps, unknown fields kept)."""
    return message.__pydantic_serializer__.to_json(message)

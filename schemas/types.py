"""Field types shared by the contract's messages.

``Timestamp`` accepts an RFC 3339 string with a time zone, or epoch milliseconds as a JSON number,
and always serializes as RFC 3339 in UTC:

>>> from pydantic import TypeAdapter
>>> ts = TypeAdapter(Timestamp)
>>> ts.validate_python(1700000000000).isoformat()
'2023-11-14T22:13:20+00:00'
>>> ts.dump_json(ts.validate_python("2023-11-14T23:13:20+01:00"))
b'"2023-11-14T22:13:20Z"'

``Duration`` accepts seconds (a number) or a string such as ``"90s"``, ``"15m"``, ``"6h"``, ``"7d"``
and serializes as seconds:

>>> TypeAdapter(Duration).validate_python("15m")
900.0
"""

from __future__ import annotations

import math
import uuid
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictBool,
    WithJsonSchema,
    StrictFloat,
    StrictInt,
    StrictStr,
)

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
#: Epoch milliseconds accepted: years 1970 to 9999.
_MAX_EPOCH_MS = 253402300799999


def _parse_timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, bool):
        raise ValueError("expected an RFC 3339 string or epoch milliseconds, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH_MS:
            raise ValueError("epoch milliseconds out of range (1970 to 9999)")
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError(f"expected an RFC 3339 timestamp with a time zone, got {value[:40]!r}")
        try:
            return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"invalid timestamp {value[:40]!r}: {exc}") from None
    raise ValueError(f"expected an RFC 3339 string or epoch milliseconds, got {type(value).__name__}")


def epoch_ms(value: datetime) -> int:
    """A contract timestamp in epoch milliseconds, what the core's clocks count in."""
    return int(value.timestamp() * 1000)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return value.astimezone(timezone.utc)


def _format_timestamp(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    AfterValidator(_to_utc),
    PlainSerializer(_format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema({
        "anyOf": [{"type": "string", "format": "date-time", "description": "RFC 3339 with a time zone"},
                  {"type": "number", "minimum": 0, "maximum": _MAX_EPOCH_MS,
                   "description": "epoch milliseconds (accepted on input)"}],
    }),
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90, '15m', '6h' or '7d', got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError("duration must be a finite number of seconds >= 0")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration such as 90, '15m', '6h' or '7d', got {value!r}")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"expected a duration, got {type(value).__name__}")


Duration = Annotated[
    float,
    BeforeValidator(_parse_duration),
    Field(ge=0),
    WithJsonSchema({
        "anyOf": [{"type": "number", "minimum": 0, "description": "seconds"},
                  {"type": "string", "pattern": _DURATION.pattern,
                   "description": "a duration such as '90s', '15m', '6h', '7d'"}],
    }),
]

#: A feature value: number, string, bool or null (no nested objects).
FeatureValue = Union[StrictBool, StrictInt, StrictFloat, StrictStr, None]

#: Names: model, version, KPI and feature names.
Name = Annotated[str, Field(min_length=1, max_length=256)]

RequestId = Annotated[str, Field(min_length=1, max_length=128)]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

#: A UUID written as a string on the wire (lax: strict mode would want a uuid.UUID instance).
WireUUID = Annotated[uuid.UUID, Field(strict=False)]

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
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
#: Epoch milliseconds accepted: years 1970 to 9999.
_MAX_EPOCH_MS = 253402300799999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _parse_timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, bool):
        raise ValueError("expected an RFC 3339 string or epoch milliseconds, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH_MS:
            raise ValueError("epoch milliseconds out of range (1970 to 9999)")
        return from_epoch_ms(value)
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError(f"expected an RFC 3339 timestamp with a time zone, got {value[:40]!r}")
        try:
            return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"invalid timestamp {value[:40]!r}: {exc}") from None
    raise ValueError(f"expected an RFC 3339 string or epoch milliseconds, got {type(value).__name__}")


def from_epoch_ms(ms: float) -> datetime:
    """Epoch milliseconds as a UTC datetime, what a model's :data:`Timestamp` holds for them (exact
    for integers: a float division, ``fromtimestamp(ms / 1000)``, rounds 0.6% of them to the
    millisecond before).

    >>> from_epoch_ms(1700000000123).isoformat()
    '2023-11-14T22:13:20.123000+00:00'
    """
    return _EPOCH + timedelta(milliseconds=ms)


def epoch_ms(value: datetime) -> int:
    """A contract timestamp in epoch milliseconds, what the core's clocks count in (exact: whole
    milliseconds since the epoch, rounded down).

    >>> epoch_ms(datetime(2023, 11, 14, 22, 13, 20, 999, tzinfo=UTC))
    1700000000000
    """
    return (value - _EPOCH) // _ONE_MS


def timestamp_ms(value: Any) -> int:
    """A wire ``ts`` (RFC 3339 string or epoch milliseconds) straight to epoch milliseconds, with
    :data:`Timestamp`'s accept/reject (the hot path's decoder uses it; the result is what
    ``epoch_ms`` gives for the model's ``ts``).

    >>> timestamp_ms(1700000000000), timestamp_ms("2023-11-14T23:13:20+01:00")
    (1700000000000, 1700000000000)
    """
    if type(value) is int and 0 <= value <= _MAX_EPOCH_MS:
        return value  # exact either way
    if type(value) is str and value[-1:] == "Z":
        # The common form first, in UTC with "Z": "<19 characters>Z" or "<19>.<1 to 9 digits>Z".
        size = len(value)
        if size == 20 or (22 <= size <= 30 and value[19] == "."):
            base = _UTC_SECONDS.get(value[:19])
            if base is not None:
                if size == 20:
                    return base
                digits = value[20:-1]
                if digits.isascii() and digits.isdigit():
                    return base + int((digits + "00")[:3])
    if type(value) is str and len(value) >= 20:
        # RFC 3339 as "<19 characters of date and time>[.fraction]<zone>": the whole second is parsed
        # once (events come in time order, so most share a second with the one before) and the
        # fraction's first three digits added (the parser truncates a fraction; epoch_ms rounds down).
        if value[-1] in "Zz":
            zone, fraction = "Z", value[19:-1]
        else:
            zone, fraction = value[-6:], value[19:-6]
        digits = fraction[1:]
        if not fraction or (fraction[0] == "." and 1 <= len(digits) <= 9 and digits.isascii() and digits.isdigit()):
            second = value[:19] + zone
            base = _SECONDS.get(second)
            if base is None:
                try:
                    base = epoch_ms(_to_utc(_parse_timestamp(second)))
                except ValueError:
                    base = None  # the whole value's own error is raised below
                else:
                    if len(_SECONDS) >= _SECONDS_KEPT:
                        _SECONDS.clear()
                        _UTC_SECONDS.clear()
                    _SECONDS[second] = base
                    if zone == "Z":
                        _UTC_SECONDS[value[:19]] = base
            if base is not None:
                return base + (int((digits + "00")[:3]) if digits else 0)
    return epoch_ms(_to_utc(_parse_timestamp(value)))


#: Epoch milliseconds of recently seen whole seconds, by their text (see ``timestamp_ms``).
_SECONDS: dict[str, int] = {}
#: The same for UTC ("Z") seconds, by their first 19 characters: the common form's lookup.
_UTC_SECONDS: dict[str, int] = {}
_SECONDS_KEPT = 4096


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return value.astimezone(UTC)


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
FeatureValue = StrictBool | StrictInt | StrictFloat | StrictStr | None

#: Longest name (model, version, KPI, feature), request id and subject (the hot path's decoder
#: checks the same bounds: :mod:`schemas.fast_codec`).
MAX_NAME_LENGTH = 256
MAX_ID_LENGTH = 128
MAX_SUBJECT_LENGTH = 256

#: Names: model, version, KPI and feature names.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]

RequestId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

#: A UUID written as a string on the wire (lax: strict mode would want a uuid.UUID instance).
WireUUID = Annotated[uuid.UUID, Field(strict=False)]

"""Turning pydantic validation errors into messages that name the field.

>>> from pydantic import BaseModel, ValidationError
>>> class Step(BaseModel):
...     percent: int
>>> class Spec(BaseModel):
...     steps: list[Step]
>>> try:
...     Spec(steps=[{"percent": 5}, {"percent": "x"}])
... except ValidationError as exc:
...     print(describe_validation_error(exc))
steps[1].percent: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError


def field_path(loc: Iterable[Any]) -> str:
    """``("guardrails", 1, "metric")`` -> ``"guardrails[1].metric"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(value)"


#: A model validator names the field it blames at the start of its message: ``"steps[2]: ..."``.
_BLAMED_FIELD = re.compile(r"^([A-Za-z_][\w.@]*(?:\[\d+\])*(?:\.[A-Za-z_][\w@]*(?:\[\d+\])*)*): (.+)$", re.S)
_INDEX = re.compile(r"\[(\d+)\]")


def parse_path(path: str) -> tuple[Any, ...]:
    """``"guardrails[1].metric"`` -> ``("guardrails", 1, "metric")``."""
    parts: list[Any] = []
    for segment in path.split("."):
        name = _INDEX.split(segment)
        parts.append(name[0])
        parts.extend(int(i) for i in name[1::2])
    return tuple(p for p in parts if p != "")


def error_locations(exc: ValidationError) -> list[tuple[tuple[Any, ...], str]]:
    """``(location, message)`` for each error: pydantic's union-branch noise dropped, and the
    field a model validator blames (see ``_BLAMED_FIELD``) moved from the message into the location."""
    out: list[tuple[tuple[Any, ...], str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"]
                    if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        blamed = _BLAMED_FIELD.match(message)
        if blamed and error["type"] == "value_error":
            loc, message = loc + parse_path(blamed.group(1)), blamed.group(2)
        out.append((loc, message))
    return out


def error_messages(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field path, message)`` for each error."""
    return [(field_path(loc), message) for loc, message in error_locations(exc)]


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """One line naming the first ``limit`` bad fields."""
    messages = error_messages(exc)
    text = "; ".join(f"{path}: {message}" for path, message in messages[:limit])
    if len(messages) > limit:
        text += f" (and {len(messages) - limit} more)"
    return text

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

from typing import Any, Iterable

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


def error_messages(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field path, message)`` for each error, skipping pydantic's union-branch noise."""
    out: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        # Drop the names pydantic puts in loc for tagged/union branches and function validators.
        loc = [p for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append((field_path(loc), message))
    return out


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """One line naming the first ``limit`` bad fields."""
    messages = error_messages(exc)
    text = "; ".join(f"{path}: {message}" for path, message in messages[:limit])
    if len(messages) > limit:
        text += f" (and {len(messages) - limit} more)"
    return text

"""What a serving log record that cannot be translated says about itself."""

from __future__ import annotations

from typing import Any

import orjson


class BadRecord(ValueError):
    """A record the bridge cannot turn into contract events; it goes to ``evaluator.dlq``.

    ``reason`` is a low-cardinality category (the DLQ's ``reason`` header and the dead-letter
    counter's label): ``empty``, ``not_json``, ``not_protobuf``, ``not_cloudevent``,
    ``unknown_type``, ``unknown_version``, ``batch``, ``invalid``; ``detail`` names the field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_json(data: bytes | bytearray | memoryview | None, what: str) -> Any:
    """``data`` parsed as JSON; :class:`BadRecord` ``empty`` or ``not_json`` (naming ``what``) if it is not."""
    if not data:
        raise BadRecord("empty", f"{what}: empty")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("not_json", f"{what}: not JSON ({exc})") from None


def load_json_object(data: bytes | None, what: str, reason: str = "invalid") -> dict[str, Any]:
    """``data`` parsed as a JSON object; anything else is a :class:`BadRecord` (``reason``)."""
    document = load_json(data, what)
    if not isinstance(document, dict):
        raise BadRecord(reason, f"{what}: expected a JSON object")
    return document

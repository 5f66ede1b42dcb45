"""CloudEvents read from a Kafka record: the CloudEvents Kafka protocol binding, both content modes.

- **binary**: the attributes are headers ``ce_<name>`` (``ce-<name>`` is read too, as HTTP bridges
  copy them), ``content-type`` is the ``datacontenttype``, and the record's value is the data;
- **structured**: the value is the whole event as JSON (``content-type:
  application/cloudevents+json``, or no ``ce_`` header and a JSON object with ``specversion``), the
  data in ``data`` (JSON) or ``data_base64``.

>>> event = from_kafka([("ce_id", b"r1"), ("ce_type", b"t"), ("ce_specversion", b"1.0"),
...                     ("ce_source", b"s"), ("content-type", b"application/json")], b'{"a": 1}')
>>> event.attributes["id"], event.mode, event.json_data()
('r1', 'binary', {'a': 1})
>>> event = from_kafka([], b'{"specversion": "1.0", "id": "r1", "type": "t", "source": "s", "data": {"a": 1}}')
>>> event.attributes["type"], event.mode, event.json_data()
('t', 'structured', {'a': 1})
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from evaluators.ingest.errors import BadRecord, load_json, load_json_object

#: Attributes every CloudEvent has (CloudEvents 1.0).
REQUIRED = ("id", "source", "specversion", "type")
STRUCTURED_CONTENT_TYPE = "application/cloudevents"

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class CloudEvent:
    """The attributes (lower-case names, string values; ``datacontenttype`` included) and the data."""

    attributes: dict[str, str]
    data: Any
    mode: Literal["binary", "structured"]

    def json_data(self) -> Any:
        """The data as JSON: already parsed (structured mode with ``data``), or parsed from bytes."""
        if isinstance(self.data, (bytes, bytearray, memoryview)):
            return load_json(self.data, "data")
        if self.data is None:
            raise BadRecord("empty", "the event has no data")
        return self.data


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def from_kafka(headers: Headers | None, value: bytes | None) -> CloudEvent:
    """The CloudEvent a Kafka record carries; :class:`BadRecord` (``not_cloudevent``) if it is none."""
    headers = headers or []
    content_type = ""
    attributes: dict[str, str] = {}
    for name, raw in headers:
        if name[:3].lower() in ("ce_", "ce-"):
            attributes[name[3:].lower()] = _text(raw)
        elif name.lower() == "content-type":
            content_type = _text(raw)
    if content_type.startswith(STRUCTURED_CONTENT_TYPE) or (not attributes and value and value[:1] == b"{"):
        return _structured(value)
    if not attributes:
        raise BadRecord("not_cloudevent", "no ce_ headers and no structured CloudEvent in the value")
    if content_type:
        attributes["datacontenttype"] = content_type
    _check(attributes, "header ce_")
    return CloudEvent(attributes, value, "binary")


def _structured(value: bytes | None) -> CloudEvent:
    document = load_json_object(value, "a structured CloudEvent", "not_cloudevent")
    attributes = {k.lower(): v if isinstance(v, str) else orjson.dumps(v).decode()
                  for k, v in document.items() if k not in ("data", "data_base64")}
    _check(attributes, "")
    if "data_base64" in document:
        try:
            data: Any = base64.b64decode(document["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRecord("invalid", "data_base64: not base64") from None
    else:
        data = document.get("data")
    return CloudEvent(attributes, data, "structured")


def _check(attributes: dict[str, str], prefix: str) -> None:
    missing = [f"{prefix}{name}" for name in REQUIRED if not attributes.get(name)]
    if missing:
        raise BadRecord("not_cloudevent", f"missing CloudEvent attribute(s) {', '.join(missing)}")


__all__ = ["CloudEvent", "from_kafka"]

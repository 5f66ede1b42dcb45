"""Log records written down as JSON lines: how mappings are tried without a broker
(``shadowcanary ingest SOURCE --mapping M --try FILE``) and how the tests' samples are kept.

One record per line: ``topic``, ``key`` (text, optional), ``headers`` (an object or a list of
``[name, value]`` pairs, values as text), ``timestamp`` (epoch ms, optional), and the value as one
of ``value`` (JSON, written compactly), ``value_text`` (text as is) or ``value_base64`` (bytes,
e.g. a protobuf record).

>>> [r.headers for r in read_records(['{"topic": "t", "headers": {"ce_id": "1"}, "value": {"a": 1}}'])]
[[('ce_id', b'1')]]
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from evaluators.ingest.translate import ExternalRecord


class SampleError(ValueError):
    """A line that is not a written-down record; the message names the line and the field."""


def _headers(raw: Any, line: int) -> list[tuple[str, bytes | None]]:
    pairs = raw.items() if isinstance(raw, dict) else raw
    try:
        return [(str(name), None if value is None else str(value).encode()) for name, value in pairs]
    except (TypeError, ValueError):
        raise SampleError(f"line {line}: headers: expected an object or a list of [name, value] pairs") from None


def record_from_json(document: Any, line: int = 1) -> ExternalRecord:
    if not isinstance(document, dict) or not isinstance(document.get("topic"), str):
        raise SampleError(f"line {line}: expected an object with a topic")
    if "value" in document:
        value: bytes | None = orjson.dumps(document["value"])
    elif "value_text" in document:
        value = str(document["value_text"]).encode()
    elif "value_base64" in document:
        try:
            value = base64.b64decode(document["value_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise SampleError(f"line {line}: value_base64: not base64") from None
    else:
        value = None
    key = document.get("key")
    timestamp = document.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)):
        raise SampleError(f"line {line}: timestamp: expected epoch milliseconds")
    return ExternalRecord(document["topic"], None if key is None else str(key).encode(), value,
                          _headers(document.get("headers") or [], line), timestamp)


def read_records(lines: Iterable[str | bytes]) -> Iterator[ExternalRecord]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SampleError(f"line {number}: not JSON ({exc})") from None
        yield record_from_json(document, number)


__all__ = ["SampleError", "read_records", "record_from_json"]

"""Records that cannot be decoded or validated: what goes to ``evaluator.dlq`` and why.

The dead letter keeps the original key and bytes unchanged; the contract's headers say where it came
from and what is wrong (``error`` names the field). ``reason`` (a header added in v1) is the
low-cardinality category used as a metrics label.

>>> from schemas.inference import GroundTruth
>>> message, dead = decode_or_dead_letter(GroundTruth, b'{"request_id": "r"}', b"r", "inference.labels", 2, 41)
>>> message is None, dead.reason, dict(dead.headers())["source.offset"]
(True, 'invalid', b'41')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from schemas.codec import DecodeError, decode

M = TypeVar("M", bound=BaseModel)

#: Longest ``error`` header written (a huge validation message must not make the record oversize).
MAX_ERROR_HEADER = 2000


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    source_topic: str
    source_partition: int
    source_offset: int
    #: A :data:`~schemas.codec.DecodeReason`; on the control topics also ``no_key``,
    #: ``key_not_utf8`` or ``model_mismatch`` (:mod:`evaluators.policy.control_records`).
    reason: str
    error: str

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("error", self.error[:MAX_ERROR_HEADER].encode("utf-8", "replace")),
            ("reason", self.reason.encode()),
            ("source.topic", self.source_topic.encode()),
            ("source.partition", str(self.source_partition).encode()),
            ("source.offset", str(self.source_offset).encode()),
        ]


def decode_or_dead_letter(model: type[M], value: bytes | None, key: bytes | None, topic: str,
                          partition: int, offset: int,
                          decoder: Callable[[type[M], bytes | None], Any] = decode) -> tuple[Any, DeadLetter | None]:
    """``(message, None)`` for a good record, ``(None, dead letter)`` for a bad one; never raises.
    ``decoder``: :func:`schemas.codec.decode` (the model), or the hot path's
    :func:`schemas.fast_codec.decode_fast` (its Struct), which refuse alike."""
    try:
        return decoder(model, value), None
    except DecodeError as exc:
        return None, DeadLetter(key, value, topic, partition, offset, exc.reason, exc.detail)

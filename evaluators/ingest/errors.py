"""What a serving log record that cannot be translated says about itself."""

from __future__ import annotations


class BadRecord(ValueError):
    """A record the bridge cannot turn into contract events; it goes to ``evaluator.dlq``.

    ``reason`` is a low-cardinality category (the DLQ's ``reason`` header and the dead-letter
    counter's label): ``empty``, ``not_json``, ``not_protobuf``, ``not_cloudevent``,
    ``unknown_type``, ``unknown_version``, ``batch``, ``invalid``; ``detail`` names the field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

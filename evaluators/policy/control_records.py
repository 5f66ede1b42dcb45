"""What the policy owner makes of each record on the control topics, before the engine sees it.

``rollout.specs`` is keyed by model and compacted; a person or a pipeline writes it. A record there
is one of three things (:func:`read_spec_record`):

- a **spec**: a valid :class:`~schemas.rollout.RolloutSpec` whose ``model`` is the record's key;
- a **tombstone**: a null value under a readable key, which ends that model's rollout;
- a **refusal**: anything else (no key, a key that is not UTF-8, an empty, oversize, non-JSON or
  invalid value, a spec for another model than its key). A refusal changes nothing: a running
  rollout goes on under the last valid spec, which the engine keeps in its own state. It is told
  (:func:`refusal_alert`): an ``Alert`` of kind ``schema`` naming the record and the problem, the
  original bytes on ``evaluator.dlq``, and a counter.

``rollout.control`` carries commands; one that cannot be read (:func:`read_command_record`) is refused
and told the same way, and changes no epoch.

>>> read_spec_record(b"fraud", None).tombstone
True
>>> read_spec_record(None, b'{"model": "fraud"}').refusal.reason
'no_key'
>>> print(read_spec_record(b"fraud", b'{"model": "fraud", "baseline": "v1"}').refusal.detail)
candidate: Field required; mode: Field required; task: Field required
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codec import DecodeError, decode
from schemas.control import RoutingCommand
from schemas.monitoring import Alert
from schemas.rollout import RolloutSpec

#: Largest value accepted on the control topics (a spec people write is a few KiB).
MAX_CONTROL_RECORD_BYTES = 64 * 1024
#: Why a control record is refused (the counter's ``reason`` label and the dead letter's header).
REFUSAL_REASONS = ("no_key", "key_not_utf8", "empty", "oversize", "not_json", "not_object", "invalid",
                   "model_mismatch")
#: The alert's ``model`` when the record names none that can be read.
UNKNOWN_MODEL = "(unknown)"


@dataclass(frozen=True)
class Refusal:
    """Why a control record changes nothing: ``reason`` (one of ``REFUSAL_REASONS``) and ``detail``
    (the field and the problem)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class SpecRecord:
    """One record of ``rollout.specs``: ``model`` is its key when readable; ``spec`` a valid spec;
    neither ``spec`` nor ``refusal``: a tombstone."""

    model: str | None
    spec: RolloutSpec | None = None
    refusal: Refusal | None = None

    @property
    def tombstone(self) -> bool:
        return self.spec is None and self.refusal is None


def _key(key: bytes | None) -> tuple[str | None, Refusal | None]:
    if not key:
        return None, Refusal("no_key", "the record has no key (rollout.specs is keyed by model)")
    try:
        return key.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Refusal("key_not_utf8", f"the key is not UTF-8 text: {exc.reason} at byte {exc.start}")


def read_spec_record(key: bytes | None, value: bytes | None) -> SpecRecord:
    """Classify one ``rollout.specs`` record (see the module docstring)."""
    model, refusal = _key(key)
    if refusal is not None:
        return SpecRecord(model, refusal=refusal)
    if value is None:
        return SpecRecord(model)  # a tombstone: the rollout of ``model`` ends
    try:
        spec = decode(RolloutSpec, value, max_bytes=MAX_CONTROL_RECORD_BYTES)
    except DecodeError as exc:
        return SpecRecord(model, refusal=Refusal(exc.reason, exc.detail))
    if spec.model != model:
        return SpecRecord(model, refusal=Refusal(
            "model_mismatch", f"model: the spec is for {spec.model!r} but its key is {model!r}"))
    return SpecRecord(model, spec)


def read_command_record(value: bytes | None) -> RoutingCommand | Refusal:
    """One ``rollout.control`` record: the command, or why it cannot be read."""
    try:
        return decode(RoutingCommand, value, max_bytes=MAX_CONTROL_RECORD_BYTES)
    except DecodeError as exc:
        return Refusal(exc.reason, exc.detail)


def refusal_alert(topic: str, partition: int, offset: int, model: str | None, refusal: Refusal,
                  now_ms: int) -> Alert:
    """The alert that tells whoever watches ``evaluator.alerts`` a control record was refused.

    >>> alert = refusal_alert("rollout.specs", 0, 41, "fraud", Refusal("invalid", "steps[1].percent: too big"), 0)
    >>> alert.kind, alert.severity, alert.source_offset
    ('schema', 'warning', 41)
    >>> print(alert.message)  # doctest: +NORMALIZE_WHITESPACE
    refused a record on rollout.specs (partition 0, offset 41) for fraud: invalid: steps[1].percent: too big;
    it changed nothing
    """
    return Alert(model=model or UNKNOWN_MODEL, severity="warning", kind="schema", ts=now_ms,  # type: ignore[arg-type]  # validated from epoch ms
                 message=(f"refused a record on {topic} (partition {partition}, offset {offset}) for "
                          f"{model or 'no readable model'}: {refusal.reason}: {refusal.detail}; it changed nothing"),
                 source_topic=topic, source_partition=partition, source_offset=offset)


@dataclass(frozen=True)
class ReadRecord:
    """A control record as read: where it is, its key and value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def rollout_id(self) -> str:
        """The id a spec record gives the rollout it starts (:func:`spec_rollout_id`)."""
        model = self.key.decode("utf-8", "replace") if self.key else UNKNOWN_MODEL
        return spec_rollout_id(model, self.partition, self.offset)


def spec_rollout_id(model: str, partition: int, offset: int) -> str:
    """The id of the rollout a spec record starts: where the record is (``<model>@<partition>:<offset>``),
    so a new owner replaying the topic recognises a rollout it already runs, and whoever published
    the spec knows the id from the delivery report.

    >>> spec_rollout_id("fraud", 0, 17)
    'fraud@0:17'
    """
    return f"{model}@{partition}:{offset}"


#: Per model, what its history asks for and the rollout id it gives; and the refused records.
WantedSpecs = tuple[dict[str, tuple[SpecRecord, str]], list[tuple[ReadRecord, SpecRecord]]]


def latest_specs(records: list[ReadRecord]) -> WantedSpecs:
    """What the history of ``rollout.specs`` asks for: per model, its latest valid spec or tombstone
    (with the rollout id it gives), and the refused records. A model whose only records left are
    refused is not in the first: its rollout stays as the engine has it.

    >>> spec = b'{"model": "m", "baseline": "v1", "candidate": "v2", "mode": "shadow", "task": "binary"}'
    >>> history = [ReadRecord("s", 0, 0, b"m", spec), ReadRecord("s", 0, 1, b"m", b"steps: [10, 150]")]
    >>> wanted, refused = latest_specs(history)
    >>> wanted["m"][0].spec.candidate, wanted["m"][1], [(r.offset, s.refusal.reason) for r, s in refused]
    ('v2', 'm@0:0', [(1, 'not_json')])
    """
    wanted: dict[str, tuple[SpecRecord, str]] = {}
    refused: list[tuple[ReadRecord, SpecRecord]] = []
    for record in records:
        read = read_spec_record(record.key, record.value)
        if read.refusal is not None:
            refused.append((record, read))
        elif read.model is not None:  # a record that is not refused names its model
            wanted[read.model] = (read, record.rollout_id)
    return wanted, refused


class ToldPositions:
    """Per control topic partition, the offset after the last refused record told: saved with the
    engine's state (in the same transaction as the alerts), so a new owner replaying the topics tells
    each refusal once.

    >>> told = ToldPositions()
    >>> record = ReadRecord("rollout.specs", 0, 7, None, b"x")
    >>> told.is_new(record), told.tell(record), told.is_new(record), told.to_state()
    (True, None, False, {'rollout.specs:0': 8})
    """

    def __init__(self, state: dict[str, int] | None = None) -> None:
        self._next = dict(state or {})

    @staticmethod
    def _key(record: ReadRecord) -> str:
        return f"{record.topic}:{record.partition}"

    def is_new(self, record: ReadRecord) -> bool:
        return record.offset >= self._next.get(self._key(record), 0)

    def tell(self, record: ReadRecord) -> None:
        key = self._key(record)
        self._next[key] = max(self._next.get(key, 0), record.offset + 1)

    def to_state(self) -> dict[str, int]:
        return dict(self._next)

"""Labels from files: rows of a CSV or JSON Lines file as the contract's ``GroundTruth`` events.

Labels often come from batch jobs (chargebacks, nightly conversions) as files. Each row names the
request (``--id-column``), its label and/or business outcomes, and optionally its model and time.
A row that cannot become a ``GroundTruth`` is reported by its line and skipped; nothing here needs
Kafka (``shadowcanary labels load`` publishes what this yields).

Cell values: in JSON Lines they keep their JSON types. In CSV every cell is text, so the label is
read as ``--label-type`` says: ``auto`` (the default) takes a cell that is JSON (``1``, ``true``,
``[1, 2]``, ``"a"``) as that value and anything else as a string; ``string`` keeps the text;
``number`` requires a number; ``json`` requires JSON. Outcomes must be numbers (an empty cell: the
outcome is absent). Times are epoch milliseconds or ISO 8601 (a time without a zone is UTC); no
time column, or an empty cell: the time of loading.

>>> columns = LabelColumns(id="rid", label="y", model="fraud", outcomes={"chargeback": "cb"})
>>> g = label_of({"rid": "r1", "y": "1", "cb": "0"}, columns, now_ms=0)
>>> g.request_id, g.model, g.label, g.outcomes
('r1', 'fraud', 1, {'chargeback': 0.0})
>>> label_of({"rid": "", "y": "1"}, columns, now_ms=0)
Traceback (most recent call last):
ValueError: column 'rid' (the request id) is empty
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import ValidationError

from schemas.errors import describe_validation_error
from schemas.inference import GroundTruth

if TYPE_CHECKING:
    from streams.kafka.producer import ContractProducer

LabelType = Literal["auto", "string", "number", "json"]
FORMATS = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class LabelColumns:
    """Which columns (CSV) or fields (JSON Lines) hold what."""

    id: str
    label: str | None = None
    model: str | None = None  # every row's model, when no column names it
    model_column: str | None = None
    ts_column: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # KPI -> column
    label_type: LabelType = "auto"


@dataclass(frozen=True)
class BadRow:
    """A row that was skipped, and why."""

    line: int
    reason: str


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _label(value: Any, label_type: LabelType) -> Any:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str):  # JSON Lines: already typed
        if label_type == "string":
            return value if isinstance(value, str) else orjson.dumps(value).decode()
        if label_type == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"label {value!r} is not a number")
        return value
    text = value.strip()
    if label_type == "string":
        return text
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        if label_type == "auto":
            return text
        raise ValueError(f"label {text!r} is not {'a number' if label_type == 'number' else 'JSON'}") from None
    if label_type == "number" and (isinstance(parsed, bool) or not isinstance(parsed, (int, float))):
        raise ValueError(f"label {text!r} is not a number")
    return parsed


def _number(column: str, value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"column {column!r}: {value!r} is not a finite number")
    return number


def _timestamp(column: str, value: Any, now_ms: int) -> int:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return now_ms
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = _text(value)
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"column {column!r}: {text!r} is neither epoch milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def label_of(row: dict[str, Any], columns: LabelColumns, now_ms: int) -> GroundTruth:
    """The ``GroundTruth`` of one row; ``ValueError`` naming the column when it cannot be one."""
    request_id = row.get(columns.id)
    if request_id is None or (isinstance(request_id, str) and not request_id.strip()):
        raise ValueError(f"column {columns.id!r} (the request id) is empty")
    model = columns.model if columns.model_column is None else row.get(columns.model_column)
    if not model:
        raise ValueError(f"column {columns.model_column!r} (the model) is empty")
    label = _label(row.get(columns.label), columns.label_type) if columns.label else None
    outcomes = {}
    for kpi, column in columns.outcomes.items():
        value = _number(column, row.get(column))
        if value is not None:
            outcomes[kpi] = value
    ts = _timestamp(columns.ts_column, row.get(columns.ts_column), now_ms) if columns.ts_column else now_ms
    try:
        return GroundTruth(request_id=str(request_id).strip() if isinstance(request_id, str) else str(request_id),
                           model=str(model).strip(), ts=ts, label=label, outcomes=outcomes)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """(line, row) of a CSV or JSON Lines file; a line that is no row gives a :class:`BadRow`."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                if None in row:
                    yield (
                        reader.line_num,
                        BadRow(reader.line_num, f"{len(row[None])} more cells than the header has columns"),
                    )
                else:
                    yield reader.line_num, row
        return
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield line, BadRow(line, f"not JSON: {exc}")
                continue
            if not isinstance(row, dict):
                yield line, BadRow(line, "not a JSON object")
                continue
            yield line, row


def check_columns(path: Path, columns: LabelColumns) -> None:
    """``ValueError`` when ``path`` is not a supported file, or a CSV header lacks a named column."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: give a .csv or .jsonl file (JSON Lines: one object per line)")
    if path.suffix.lower() != ".csv":
        return
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    named = [("--id-column", columns.id), ("--label-column", columns.label), ("--model-column", columns.model_column),
             ("--ts-column", columns.ts_column), *((f"--outcome {kpi}", c) for kpi, c in columns.outcomes.items())]
    for option, column in named:
        if column is not None and column not in header:
            raise ValueError(f"{option}: no column {column!r} in {path.name} (columns: {', '.join(header)})")


def read_labels(path: Path, columns: LabelColumns, now_ms: int) -> Iterator[GroundTruth | BadRow]:
    """Every row of ``path`` as a ``GroundTruth``, or a :class:`BadRow` saying why it is not one."""
    for line, row in _rows(path):
        if isinstance(row, BadRow):
            yield row
            continue
        try:
            yield label_of(row, columns, now_ms)
        except ValueError as exc:
            yield BadRow(line, str(exc))


def publish_labels(path: Path, columns: LabelColumns, producer: ContractProducer | None, topic: str | None,
                   progress: Callable[[int], object] = lambda rows: None,
                   now_ms: int | None = None) -> tuple[int, list[BadRow]]:
    """Send every label of ``path`` (none with no ``producer``: a dry run) and flush; returns the
    labels sent and the rows skipped. ``progress(rows)`` is told every 10,000 rows."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    published = 0
    bad: list[BadRow] = []
    for count, item in enumerate(read_labels(path, columns, now_ms), start=1):
        if isinstance(item, BadRow):
            bad.append(item)
        else:
            if producer is not None:
                producer.send(topic, item.request_id, item)
            published += 1
        if count % 10_000 == 0:
            progress(10_000)
    if producer is not None:
        producer.flush(120)
    return published, bad


__all__ = ["BadRow", "LabelColumns", "check_columns", "label_of", "publish_labels", "read_labels"]

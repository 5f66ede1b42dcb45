"""Recorded events as JSON Lines: one contract message per line (as on the topic), one file per
input topic, in event-time order. ``shadowcanary record`` writes them; ``shadowcanary replay`` reads
them back merged into one event-time order.

Bad lines are reported with their file and line, counted, and skipped, and the run goes on: a line
that is not JSON or not a valid event, and one older than what its file already gave beyond a
reorder allowance (``REORDER``: records of several partitions interleave by a little).

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.jsonl").write_text('{"request_id": "r", "model": "m", "ts": 5}\\nnot json\\n')
>>> reader = EventFiles([folder / "a.jsonl"])
>>> [e.request_id for e in reader], [(p.line, p.reason) for p in reader.problems]
(['r'], [(2, 'not_json')])
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from schemas.codec import DecodeError
from schemas.fast_codec import Event, decode_fast
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.types import epoch_ms

#: Events a file may hold back (by event time) before a later line counts as out of order.
REORDER = 10_000


def event_type(document: dict) -> type[InferenceRequest | InferenceResponse | GroundTruth]:
    """Which input an event is, from its fields (a file may hold any mix)."""
    if "label" in document:
        return GroundTruth
    if "version" in document:
        return InferenceResponse
    return InferenceRequest


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}: {self.detail}"


@dataclass
class EventFiles:
    """Iterating gives every good event of ``paths`` in event-time order (ties: file order)."""

    paths: list[Path]
    problems: list[Problem] = field(default_factory=list)
    events: int = 0

    def __iter__(self) -> Iterator[Event]:
        streams = [self._ordered(path, index) for index, path in enumerate(self.paths)]
        for _, _, _, event in heapq.merge(*streams):
            self.events += 1
            yield event

    def _ordered(self, path: Path, index: int) -> Iterator[tuple[int, int, int, Event]]:
        """One file's events by time, within the reorder allowance; later stragglers are problems."""
        buffer: list[tuple[int, int, int, Event]] = []
        emitted = -1
        counter = itertools.count()
        for line_number, event in self._parse(path):
            ts = event.ts_ms
            if ts < emitted:
                self.problems.append(Problem(path, line_number, "out_of_order",
                                             f"event time {ts} is before {emitted}, already replayed"))
                continue
            heapq.heappush(buffer, (ts, index, next(counter), event))
            if len(buffer) > REORDER:
                item = heapq.heappop(buffer)
                emitted = item[0]
                yield item
        while buffer:
            yield heapq.heappop(buffer)

    def _parse(self, path: Path) -> Iterator[tuple[int, Event]]:
        with open(path, "rb") as lines:
            for number, raw in enumerate(lines, start=1):
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    document = orjson.loads(raw)
                    if not isinstance(document, dict):
                        raise DecodeError("not_object", f"expected a JSON object, got {type(document).__name__}")
                    yield number, decode_fast(event_type(document), raw)  # the hot path's decoder
                except orjson.JSONDecodeError as exc:
                    self.problems.append(Problem(path, number, "not_json", str(exc)))
                except DecodeError as exc:
                    self.problems.append(Problem(path, number, exc.reason, exc.detail))


def event_time_ms(value: bytes) -> int:
    """An event value's event time (epoch ms); -1 for a value that is not a valid event."""
    try:
        document = orjson.loads(value)
        return epoch_ms(event_type(document).model_validate(document).ts)
    except Exception:  # not JSON, not an object, not an event: replay reports it with its line
        return -1


def write_events(path: Path, values: list[bytes], until_ms: int | None = None) -> int:
    """Write raw event values to ``path`` in event-time order (as replay reads them), only those
    before ``until_ms`` if given; returns the number written. Values that are not events are
    written too (first): replay reports them."""
    timed = sorted(((event_time_ms(value), value) for value in values), key=lambda item: item[0])
    if until_ms is not None:
        timed = [(ts, value) for ts, value in timed if ts < until_ms]
    with open(path, "wb") as out:
        for _, value in timed:
            out.write(value.replace(b"\n", b" ") + b"\n")
    return len(timed)

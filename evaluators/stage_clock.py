"""Where a worker's time goes: exclusive seconds per named stage, measured as it works.

A :class:`StageClock` is entered and left around the parts of a batch (consuming, decoding, the
join, the metric accumulators, reading and writing state, the changelog, the transaction, ...);
stages nest, and each second is charged to the innermost stage open at the time, so the stages add
up to the time measured. It costs two ``perf_counter`` calls per stage entered (0.2 to 0.5 µs),
which is why the join enters it per batch, never per fact. Timing each state read and write
(:meth:`StageClock.within`) costs about 1 µs an event (3%), so the worker does it only when asked
(``evaluate --time-state``), as Kafka Streams keeps per-store timings to its DEBUG recording level.

The worker exports the totals (``shadowcanary_worker_stage_seconds_total``) and ``make bench``
divides them by the events processed: the README's table of microseconds per event by stage.

>>> clock = StageClock(now=iter([0.0, 1.0, 1.5, 4.0]).__next__)
>>> clock.enter("join"); clock.enter("state read"); clock.leave(); clock.leave()
>>> dict(clock.seconds)
{'join': 3.5, 'state read': 0.5}
>>> clock = StageClock(now=iter([0.0, 4.0]).__next__)
>>> clock.enter("join"); clock.within("state write", 1.0); clock.leave(); dict(clock.seconds)
{'state write': 1.0, 'join': 3.0}
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: The worker's stages and what each holds (the exported counter's label values; the bench's notes).
WORKER_STAGES = {
    "consume": "Consumer.consume calls that returned records",
    "decode": "decoding and validating every record, grouping by partition",
    "stage": "the join stage's own bookkeeping around the join",
    "join": "the join's events and expiry (with its state reads and writes unless they are timed apart)",
    "metrics": "the metric and drift accumulators (likewise)",
    "state read": "RocksDB reads and JSON parsing of request states and metric windows (evaluate --time-state)",
    "state write": "JSON serialization of the states a batch changed (evaluate --time-state)",
    "outputs": "producing changelog records, closed windows and heartbeats",
    "transaction": "send_offsets_to_transaction and commit_transaction",
    "local state": "the committed batch's RocksDB write batch",
    "tick": "moving time on silent partitions, held-back heartbeats",
    "restore": "reading changelogs into the stores of partitions assigned (their input paused meanwhile)",
}


class StageClock:
    """Exclusive seconds per stage since it was made (``seconds``); ``now``: the clock read."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._open: list[str] = []
        self._since = 0.0

    def enter(self, stage: str) -> None:
        """``stage`` begins (inside the stage open now, if any: that one stops being charged)."""
        now = self.now()
        if self._open:
            self.seconds[self._open[-1]] += now - self._since
        self._open.append(stage)
        self._since = now

    def leave(self) -> None:
        """The innermost open stage ends (the one around it is charged again)."""
        now = self.now()
        self.seconds[self._open.pop()] += now - self._since
        self._since = now

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """``enter`` and ``leave`` around a block, however it ends (a few per batch, not per event).

        >>> clock = StageClock(now=iter([0.0, 2.0]).__next__)
        >>> with clock.stage("decode"):
        ...     pass
        >>> dict(clock.seconds)
        {'decode': 2.0}
        """
        self.enter(stage)
        try:
            yield
        finally:
            self.leave()

    def within(self, stage: str, seconds: float) -> None:
        """Charge ``seconds``, measured apart inside the stage open now, to ``stage`` instead (what
        ``enter``/``leave`` around it would do, at half the cost: the state store's reads and
        writes, a few per event)."""
        self.seconds[stage] += seconds
        if self._open:
            self.seconds[self._open[-1]] -= seconds

    def add(self, stage: str, seconds: float) -> None:
        """Charge ``seconds`` measured apart (a call timed only when it turned out to do work)."""
        self.seconds[stage] += seconds

    def total(self) -> float:
        """The seconds charged since the last ``take``, all stages together."""
        return sum(self.seconds.values())

    def take(self) -> dict[str, float]:
        """The seconds charged since the last ``take``, per stage (for a counter to add)."""
        taken = dict(self.seconds)
        self.seconds.clear()
        return taken


__all__ = ["StageClock", "WORKER_STAGES"]

"""A worker's progress in its log, every ``PROGRESS_EVERY_S``: what an operator (or a failed demo)
reads first to tell a stalled join from a merger or policy engine that does not move on.

It runs in a thread of its own, so it keeps writing while the worker's loop is stuck: a line whose
joined count stays put while records wait says so (and since when), and a background loop (the
merger's, the policy engine's) that has not gone round for longer than a line's interval is named
with how long it has been stuck. When the join has not moved for two lines in a row, the worker logs
once, as an error, where the worker's loop stands: its thread's innermost frames.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence

from prometheus_client import REGISTRY

from evaluators.policy.engine import RolloutEngine
from streams.background import BackgroundService

log = logging.getLogger("shadowcanary.progress")

PROGRESS_EVERY_S = 30.0
#: How a progress line begins (the demo's log digest finds them by it).
LINE_PREFIX = "progress: "
#: Frames shown in a stall report (innermost first).
_FRAMES = 3


class ProgressLog(BackgroundService):
    """``joined()``: events the join has applied; ``lag()``: records behind per input partition;
    ``unstarted()``: records in held partitions the join has not started on; ``owner()``: whether
    this worker merges; ``engine()``: the policy engine it owns, if any; ``services``: the
    background loops to watch; ``where()``: where the worker's loop stands, for a stall report;
    ``restoring()``: the partitions held whose state is still being restored (paused meanwhile)."""

    thread_name = "shadowcanary-progress"

    def __init__(self, joined: Callable[[], int], lag: Callable[[], dict[tuple[str, int], int]],
                 owner: Callable[[], bool], engine: Callable[[], RolloutEngine | None],
                 services: Sequence[BackgroundService] = (), unstarted: Callable[[], int] = lambda: 0,
                 where: Callable[[], list[str]] = lambda: [], every_s: float = PROGRESS_EVERY_S,
                 loop_went_round: Callable[[], float] | None = None,
                 restoring: Callable[[], Collection[int]] = lambda: ()) -> None:
        """``loop_went_round()``: when the worker's loop last began a turn (``time.monotonic()``); a
        loop stuck in one call (a restore, a commit retried) is reported like a stalled join."""
        super().__init__()
        self.joined, self.lag, self.unstarted, self.owner, self.engine = joined, lag, unstarted, owner, engine
        self.services = services
        self.where = where
        self.every_s = every_s
        self.loop_went_round = loop_went_round
        self.restoring = restoring
        self._last_joined = -1
        self._still_since: float | None = None
        self._reported = False

    def line(self, now: float) -> str:
        joined = self.joined()
        behind, waiting = sum(self.lag().values()), self.unstarted()
        if joined == self._last_joined and behind + waiting > 0:
            self._still_since = self._still_since or now
        else:
            self._still_since = None
            if self.loop_stuck_for(now) < self.every_s:  # moving again: a new stall is reported anew
                self._reported = False
        self._last_joined = joined
        stalled = (f" (no progress for {self.stalled_for(now):.0f}s while records wait)"
                   if self._still_since is not None else "")
        not_started = f" (+{waiting:,} in partitions not started)" if waiting else ""
        published = REGISTRY.get_sample_value("shadowcanary_windows_published_total") or 0
        engine = self.engine()
        rollouts = "not owned here" if engine is None else f"{engine.active_count()} active"
        stuck = "".join(f"; {s.thread_name} loop stuck for {now - s.last_loop:.0f}s" for s in self.services
                        if now - s.last_loop > self.every_s)
        if self.loop_stuck_for(now) > self.every_s:
            stuck += f"; the worker's loop stuck in one turn for {self.loop_stuck_for(now):.0f}s"
        restoring = sorted(self.restoring())
        if restoring:
            stuck += f"; partitions {restoring} restoring"
        return (f"{LINE_PREFIX}{joined:,} events joined{stalled}, {behind:,} records behind{not_started}; "
                f"merger owner {'yes' if self.owner() else 'no'}, {published:,.0f} windows published; "
                f"rollouts {rollouts}{stuck}")

    def stalled_for(self, now: float) -> float:
        """How long the join has not moved while records wait (0: it moves)."""
        return 0.0 if self._still_since is None else now - self._still_since + self.every_s

    def loop_stuck_for(self, now: float) -> float:
        """How long the worker's loop has been in its current turn (0 when not watched)."""
        return 0.0 if self.loop_went_round is None else now - self.loop_went_round()

    def stall_report(self, now: float) -> str | None:
        """Once per stall, after two still lines (or a loop in one turn for as long): where the
        worker's loop stands."""
        stuck = self.loop_stuck_for(now) >= 2 * self.every_s
        if self._reported or (self.stalled_for(now) < 2 * self.every_s and not stuck):
            return None
        self._reported = True
        what = (f"the worker's loop has been in one turn for {self.loop_stuck_for(now):.0f}s" if stuck else
                f"join stalled: no events joined for {self.stalled_for(now):.0f}s while records wait")
        return "\n".join([f"{what}; where the worker's loop stands:", *(f"  {line}" for line in self.where())])

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                now = time.monotonic()
                log.info(self.line(now))
                report = self.stall_report(now)
                if report:
                    log.error(report)
            except Exception as exc:  # a view that changed under it: the next line will do
                log.debug("progress line skipped: %r", exc)


def thread_state(thread: threading.Thread) -> list[str]:
    """The innermost frames of ``thread`` (the worker's loop: busy in which call?), read from another
    thread: a best effort, for a stall report."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return [f"{thread.name}: not running"]
    frames = traceback.extract_stack(frame)[-_FRAMES:]
    return [f"{thread.name}: " + " <- ".join(_where(f.filename, f.lineno, f.name) for f in reversed(frames))]


def _where(filename: str, lineno: int | None, name: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{lineno} {name}"

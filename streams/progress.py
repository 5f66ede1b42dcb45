"""A worker's progress in its log, every ``PROGRESS_EVERY_S``: what an operator (or a failed demo)
reads first to tell a stalled join from a merger or policy engine that does not move on.

It runs in a thread of its own, so it keeps writing while faust's event loop is stuck: a line whose
joined count stays put while records wait says so (and since when), and a background loop (the
merger's, the policy engine's) that has not gone round for longer than a line's interval is named
with how long it has been stuck. When the join has not moved for two lines in a row, the worker logs
once, as an error, where the event loop stands: its thread's innermost frames and what each of its
tasks awaits.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from typing import Any, Callable, Sequence

from prometheus_client import REGISTRY

from evaluators.policy.engine import RolloutEngine
from streams.background import BackgroundService

log = logging.getLogger("shadowcanary.progress")

PROGRESS_EVERY_S = 30.0
#: How a progress line begins (the demo's log digest finds them by it).
LINE_PREFIX = "progress: "
#: Frames shown per task (innermost first) and tasks shown in a stall report.
_FRAMES, _TASKS = 3, 40


class ProgressLog(BackgroundService):
    """``joined()``: events the join has applied; ``lag()``: records behind per input partition;
    ``unstarted()``: records in held partitions the join has not started on; ``owner()``: whether
    this worker merges; ``engine()``: the policy engine it owns, if any; ``services``: the
    background loops to watch; ``where()``: the event loop's state, for a stall report."""

    thread_name = "shadowcanary-progress"

    def __init__(self, joined: Callable[[], int], lag: Callable[[], dict[tuple[str, int], int]],
                 owner: Callable[[], bool], engine: Callable[[], RolloutEngine | None],
                 services: Sequence[BackgroundService] = (), unstarted: Callable[[], int] = lambda: 0,
                 where: Callable[[], list[str]] = lambda: [], every_s: float = PROGRESS_EVERY_S) -> None:
        super().__init__()
        self.joined, self.lag, self.unstarted, self.owner, self.engine = joined, lag, unstarted, owner, engine
        self.services = services
        self.where = where
        self.every_s = every_s
        self._last_joined = -1
        self._still_since: float | None = None
        self._reported = False

    def line(self, now: float) -> str:
        joined = self.joined()
        behind, waiting = sum(self.lag().values()), self.unstarted()
        if joined == self._last_joined and behind + waiting > 0:
            self._still_since = self._still_since or now
        else:
            self._still_since, self._reported = None, False
        self._last_joined = joined
        stalled = (f" (no progress for {self.stalled_for(now):.0f}s while records wait)"
                   if self._still_since is not None else "")
        not_started = f" (+{waiting:,} in partitions not started)" if waiting else ""
        published = REGISTRY.get_sample_value("shadowcanary_windows_published_total") or 0
        engine = self.engine()
        rollouts = "not owned here" if engine is None else f"{engine.active_count()} active"
        stuck = "".join(f"; {s.thread_name} loop stuck for {now - s.last_loop:.0f}s" for s in self.services
                        if now - s.last_loop > self.every_s)
        return (f"{LINE_PREFIX}{joined:,} events joined{stalled}, {behind:,} records behind{not_started}; "
                f"merger owner {'yes' if self.owner() else 'no'}, {published:,.0f} windows published; "
                f"rollouts {rollouts}{stuck}")

    def stalled_for(self, now: float) -> float:
        """How long the join has not moved while records wait (0: it moves)."""
        return 0.0 if self._still_since is None else now - self._still_since + self.every_s

    def stall_report(self, now: float) -> str | None:
        """Once per stall, after two still lines: where the event loop stands."""
        if self._reported or self.stalled_for(now) < 2 * self.every_s:
            return None
        self._reported = True
        return "\n".join([f"join stalled: no events joined for {self.stalled_for(now):.0f}s while records wait; "
                          "where the event loop stands:", *(f"  {line}" for line in self.where())])

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


def event_loop_state(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> list[str]:
    """The innermost frames of the loop's thread (busy in a call?) and of what each task awaits
    (waiting on each other?), read from another thread: a best effort, for a stall report."""
    lines = []
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is not None:
        frames = traceback.extract_stack(frame)[-_FRAMES:]
        lines.append("loop thread: " + " <- ".join(_where(f.filename, f.lineno, f.name) for f in reversed(frames)))
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:  # the set changed while this thread read it
        return lines + ["(the tasks changed while being read)"]
    described = sorted(f"task {task.get_name()}: {' <- '.join(_await_chain(task.get_coro())[:_FRAMES])}"
                       for task in tasks)
    return lines + described[:_TASKS] + ([f"... and {len(described) - _TASKS} more"] if len(described) > _TASKS else [])


def _await_chain(coro: Any) -> list[str]:
    """Where a coroutine waits, innermost first, following what it awaits."""
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            chain.append(_where(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return list(reversed(chain))


def _where(filename: str, lineno: int | None, name: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{lineno} {name}"

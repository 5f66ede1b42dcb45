"""A worker's progress in its log, every ``PROGRESS_EVERY_S``: what an operator (or a failed demo)
reads first to tell a stalled join from a merger or policy engine that does not move on.

It runs in a thread of its own, so it keeps writing while faust's event loop is stuck: a line whose
joined count stays put while the lag grows says so (and says since when), and a background loop
(the merger's, the policy engine's) that has not gone round for longer than a line's interval is
named with how long it has been stuck.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from prometheus_client import REGISTRY

from evaluators.policy.engine import ACTIVE, RolloutEngine
from streams.background import BackgroundService

log = logging.getLogger("shadowcanary.progress")

PROGRESS_EVERY_S = 30.0


class ProgressLog(BackgroundService):
    """``joined()``: events the join has applied; ``lag()``: records behind per input partition;
    ``owner()``: whether this worker merges; ``engine()``: the policy engine it owns, if any;
    ``services``: the background loops to watch."""

    thread_name = "shadowcanary-progress"

    def __init__(self, joined: Callable[[], int], lag: Callable[[], dict[tuple[str, int], int]],
                 owner: Callable[[], bool], engine: Callable[[], RolloutEngine | None],
                 services: Sequence[BackgroundService] = (), every_s: float = PROGRESS_EVERY_S) -> None:
        super().__init__()
        self.joined, self.lag, self.owner, self.engine = joined, lag, owner, engine
        self.services = services
        self.every_s = every_s
        self._last_joined = -1
        self._still_since: float | None = None

    def line(self, now: float) -> str:
        joined = self.joined()
        behind = sum(self.lag().values())
        if joined == self._last_joined and behind > 0:
            self._still_since = self._still_since or now
        else:
            self._still_since = None
        self._last_joined = joined
        stalled = (f" (no progress for {now - self._still_since + self.every_s:.0f}s while behind)"
                   if self._still_since is not None else "")
        published = REGISTRY.get_sample_value("shadowcanary_windows_published_total") or 0
        engine = self.engine()
        rollouts = ("not owned here" if engine is None else
                    f"{sum(r['status'] in ACTIVE for r in engine.rollouts.values())} active")
        stuck = "".join(f"; {s.thread_name} loop stuck for {now - s.last_loop:.0f}s" for s in self.services
                        if now - s.last_loop > self.every_s)
        return (f"progress: {joined:,} events joined{stalled}, {behind:,} records behind; merger owner "
                f"{'yes' if self.owner() else 'no'}, {published:,.0f} windows published; rollouts {rollouts}"
                f"{stuck}")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                log.info(self.line(time.monotonic()))
            except Exception as exc:  # a view that changed under it: the next line will do
                log.debug("progress line skipped: %r", exc)

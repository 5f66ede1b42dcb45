"""Following one rollout to its end, for a CI pipeline (``rollout start --watch``, ``rollout status
--watch``): pure, over the engine's saved state, so the CLI only reads that state and waits.

The outcome and the exit code a pipeline acts on:

- ``completed`` (exit 0): every stage baked, or a person promoted it to the end;
- ``rolled_back`` (exit 1): a guardrail failed, or a person rolled it back; also ``aborted`` (its
  spec deleted) and ``replaced`` (a newer spec for the model replaced it);
- still ``running``, ``paused`` or ``held`` when the pipeline's patience runs out (exit 3).

>>> watch = RolloutWatch("fraud", rollout_id="fraud@0:7")
>>> watch.look({}) is None                                   # the engine has not started it yet
True
>>> watch.look({"fraud": {"id": "fraud@0:7", "status": "running", "stage": 1}}) is None
True
>>> watch.look({"fraud": {"id": "fraud@0:7", "status": "completed", "stage": 3}})
'completed'
>>> EXIT_CODES["completed"], EXIT_CODES["rolled_back"], EXIT_TIMEOUT
(0, 1, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The outcome of a rollout that ended, and the exit code of a watch that saw it.
EXIT_CODES = {"completed": 0, "rolled_back": 1, "aborted": 1, "replaced": 1}
#: A watch whose patience ran out while the rollout was still running, paused or held.
EXIT_TIMEOUT = 3


@dataclass
class RolloutWatch:
    """``rollout_id``: the rollout to follow (None: the model's current one, whatever it is)."""

    model: str
    rollout_id: str | None = None
    #: The rollout as last seen (its state in the engine), or None before it appears.
    last: dict[str, Any] | None = None

    def look(self, rollouts: dict[str, dict[str, Any]]) -> str | None:
        """The outcome once the rollout has ended (a key of ``EXIT_CODES``), else None."""
        current = rollouts.get(self.model)
        if current is None:
            return None
        if self.rollout_id is None:
            self.rollout_id = current["id"]
        if current["id"] != self.rollout_id:
            # Another rollout of the model: ours was replaced, if it had started; else not yet started.
            return "replaced" if self.last is not None else None
        self.last = current
        status = current["status"]
        return status if status in EXIT_CODES else None


__all__ = ["EXIT_CODES", "EXIT_TIMEOUT", "RolloutWatch"]

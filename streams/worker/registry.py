"""The model registry (MLflow) beside the policy engine: each rollout's versions read into its
decisions, and its outcome written back.

When a rollout's spec names a registered model (``registry: {name, versions, alias}``) and the
evaluator runs with ``--mlflow-uri``, :class:`ModelRegistry`:

- reads each named version (run id, source, description, tags) when the rollout starts, and the
  engine puts them in every decision (``Decision.versions``);
- after a decision is committed to ``rollout.decisions``: on completion sets the spec's alias
  (default ``champion``) on the candidate's version; on rollback tags the candidate's version with
  ``shadowcanary.decision=rolled_back``, ``shadowcanary.reason`` and ``shadowcanary.rollout_id``.

**Nothing is lost (an outbox).** The write a decision calls for
(:func:`evaluators.policy.registry_writes.outcome_write`) is saved in the engine's state in the very
transaction that publishes the decision, and leaves it only once the registry has taken it. Writes
go through a queue to a thread of their own, in order, so the policy engine never waits on the
registry; a registry that cannot be reached is logged and retried (every 2 s, then up to every 60 s)
while the rollout goes on (its decisions are on ``rollout.decisions`` whatever the registry says). A
worker that takes over the engine (after a crash, a restart, or a lost ownership) sends the saved
writes again: setting an alias or a tag twice is harmless, and a write the registry took shortly
before a crash may be sent once more.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from evaluators.policy.registry_writes import RegistryWrite
from schemas.control import RegistryVersion
from schemas.rollout import RolloutSpec

log = logging.getLogger("shadowcanary.registry")

#: Seconds an MLflow call may take (MLflow's own default is 120, with retries).
REQUEST_TIMEOUT_S = 10
#: Seconds between tries of a write the registry refused or did not answer: doubling up to the last.
RETRY_S = (2.0, 60.0)


class ModelRegistry:
    """MLflow's model registry at ``tracking_uri``."""

    def __init__(self, tracking_uri: str) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._writes: queue.SimpleQueue[tuple[int, RegistryWrite, Callable[[RegistryWrite], None]] | None] = \
            queue.SimpleQueue()
        #: Bumped by :meth:`forget_queued` (the policy thread only): writes queued under an older one are dropped.
        self._generation = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="shadowcanary-registry", daemon=True)
        self._thread.start()

    def versions(self, spec: RolloutSpec) -> dict[str, dict[str, Any]]:
        """Each version the spec maps, as the registry knows it (``RegistryVersion`` fields); a
        version the registry does not answer for is left out (and logged)."""
        found: dict[str, dict[str, Any]] = {}
        if spec.registry is None:
            return found
        for version, number in spec.registry.versions.items():
            try:
                entry = self.client.get_model_version(spec.registry.name, number)
            except Exception as exc:  # MlflowException, or the server away
                log.warning("registry: %s version %s (%s of %s): %s", spec.registry.name, number, version,
                            spec.model, exc)
                continue
            found[version] = RegistryVersion(
                name=spec.registry.name, version=str(entry.version), run_id=entry.run_id or None,
                source=entry.source or None, description=entry.description or None,
                tags={str(k): str(v) for k, v in (entry.tags or {}).items()}).model_dump(mode="json")
        return found

    def submit(self, write: RegistryWrite, on_written: Callable[[RegistryWrite], None]) -> None:
        """Queue ``write``; ``on_written(write)`` runs (in the writer's thread) once the registry took it."""
        self._writes.put((self._generation, write, on_written))

    def forget_queued(self) -> None:
        """Drop the writes queued so far (this worker no longer runs the engine: its successor
        sends them again from the saved state), including one being retried."""
        self._generation += 1

    def _apply(self, write: RegistryWrite) -> None:
        if write["alias"] is not None:
            self.client.set_registered_model_alias(write["name"], write["alias"], write["version"])
        for key, value in write["tags"].items():
            self.client.set_model_version_tag(write["name"], write["version"], key, value)

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            generation, write, on_written = item
            wait = RETRY_S[0]
            while generation == self._generation and not self._closed.is_set():
                try:
                    self._apply(write)
                except Exception as exc:
                    log.warning("registry: writing %s version %s for rollout %s failed (%s); trying again in "
                                "%.0f s (the decision stands on rollout.decisions)", write["name"],
                                write["version"], write["rollout_id"], exc, wait)
                    self._closed.wait(wait)
                    wait = min(wait * 2, RETRY_S[1])
                    continue
                on_written(write)
                break

    def close(self) -> None:
        """Stop the writer (queued writes stay in the engine's saved state)."""
        self._closed.set()
        self._writes.put(None)



__all__ = ["ModelRegistry"]

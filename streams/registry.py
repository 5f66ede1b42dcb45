"""The model registry (MLflow) beside the policy engine: each rollout's versions read into its
decisions, and its outcome written back.

When a rollout's spec names a registered model (``registry: {name, versions, alias}``) and the
evaluator runs with ``--mlflow-uri``, :class:`ModelRegistry`:

- reads each named version (run id, source, description, tags) when the rollout starts, and the
  engine puts them in every decision (``Decision.versions``);
- after a decision is committed to ``rollout.decisions``: on completion sets the spec's alias
  (default ``champion``) on the candidate's version; on rollback tags the candidate's version with
  ``shadowcanary.decision=rolled_back``, ``shadowcanary.reason`` and ``shadowcanary.rollout_id``.

**Nothing is lost (an outbox).** The write a decision calls for (:func:`outcome_write`, a
:class:`RegistryWrite`) is saved in the engine's state in the very transaction that publishes the
decision, and leaves it only once the registry has taken it. Writes go through a queue to a thread
of their own, in order, so the policy engine never waits on the registry; a registry that cannot be
reached is logged and retried (every 2 s, then up to every 60 s) while the rollout goes on (its
decisions are on ``rollout.decisions`` whatever the registry says). A worker that takes over the
engine (after a crash, a restart, or a lost ownership) sends the saved writes again: setting an
alias or a tag twice is harmless, and a write the registry took shortly before a crash may be sent
once more.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable, TypedDict

from schemas.control import Decision, RegistryVersion
from schemas.rollout import RolloutSpec

log = logging.getLogger("shadowcanary.registry")

#: Seconds an MLflow call may take (MLflow's own default is 120, with retries).
REQUEST_TIMEOUT_S = 10
#: Seconds between tries of a write the registry refused or did not answer: doubling up to the last.
RETRY_S = (2.0, 60.0)


class RegistryWrite(TypedDict):
    """One outcome to write to the registry, as saved in the engine's state until it is written."""

    rollout_id: str
    name: str  # the registered model
    version: str  # the candidate's registry version
    alias: str | None  # set on the version (a completed rollout), or None
    tags: dict[str, str]  # set on the version (a rolled-back rollout)


def outcome_write(spec: RolloutSpec, decision: Decision) -> RegistryWrite | None:
    """The registry's side of a ``decision``: the alias on completion, tags on rollback; None for
    other decisions, a shadow's completion, or a candidate the spec does not map.

    >>> spec = RolloutSpec.model_validate({"model": "m", "baseline": "v1", "candidate": "v2", "mode": "canary",
    ...     "task": "binary", "steps": [50, 100],
    ...     "guardrails": [{"metric": "accuracy", "max_degradation": 0.01}],
    ...     "registry": {"name": "fraud", "versions": {"v1": "3", "v2": "4"}}})
    >>> d = Decision(rollout_id="r1", model="m", step=1, action="complete", ts=0, reason="all passed")
    >>> outcome_write(spec, d)
    {'rollout_id': 'r1', 'name': 'fraud', 'version': '4', 'alias': 'champion', 'tags': {}}
    """
    registry = spec.registry
    number = registry.versions.get(spec.candidate) if registry is not None else None
    if registry is None or number is None:
        return None
    if decision.action == "complete" and spec.mode != "shadow":
        return RegistryWrite(rollout_id=decision.rollout_id, name=registry.name, version=number,
                             alias=registry.alias, tags={})
    if decision.action == "rollback":
        return RegistryWrite(rollout_id=decision.rollout_id, name=registry.name, version=number, alias=None,
                             tags={"shadowcanary.decision": "rolled_back", "shadowcanary.reason": decision.reason[:5000],
                                   "shadowcanary.rollout_id": decision.rollout_id})
    return None


class ModelRegistry:
    """MLflow's model registry at ``tracking_uri``."""

    def __init__(self, tracking_uri: str) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._writes: queue.Queue[tuple[int, RegistryWrite, Callable[[RegistryWrite], None]] | None] = queue.Queue()
        self._lock = threading.Lock()
        #: Bumped by :meth:`forget_queued`: writes queued under an older one are dropped.
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
        with self._lock:
            self._generation += 1

    def _apply(self, write: RegistryWrite) -> None:
        if write["alias"] is not None:
            self.client.set_registered_model_alias(write["name"], write["alias"], write["version"])
        for key, value in write["tags"].items():
            self.client.set_model_version_tag(write["name"], write["version"], key, value)

    def _write_loop(self) -> None:
        while True:
            item = self._writes.get()
            try:
                if item is None:
                    return
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
            finally:
                self._writes.task_done()

    def close(self) -> None:
        """Stop the writer (queued writes stay in the engine's saved state)."""
        self._closed.set()
        self._writes.put(None)



__all__ = ["ModelRegistry", "RegistryWrite", "outcome_write"]

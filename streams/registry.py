"""The model registry (MLflow) beside the policy engine: each rollout's versions read into its
decisions, and its outcome written back.

When a rollout's spec names a registered model (``registry: {name, versions, alias}``) and the
evaluator runs with ``--mlflow-uri``, :class:`ModelRegistry`:

- reads each named version (run id, source, description, tags) when the rollout starts, and the
  engine puts them in every decision (``Decision.versions``);
- after a decision is committed to ``rollout.decisions``: on completion sets the spec's alias
  (default ``champion``) on the candidate's version; on rollback tags the candidate's version with
  ``shadowcanary.decision=rolled_back``, ``shadowcanary.reason`` and ``shadowcanary.rollout_id``.

Writes go through a queue to a thread of their own, so the policy engine never waits on the
registry; a registry that cannot be reached is logged and the rollout goes on without it (its
decisions are on ``rollout.decisions`` whatever the registry says). A write lost to a crash between
the commit and the call is not redone (setting an alias or a tag twice would be harmless).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable

from schemas.control import Decision, RegistryVersion
from schemas.rollout import RolloutSpec

log = logging.getLogger("shadowcanary.registry")

#: Seconds an MLflow call may take (MLflow's own default is 120, with retries).
REQUEST_TIMEOUT_S = 10


class ModelRegistry:
    """MLflow's model registry at ``tracking_uri``."""

    def __init__(self, tracking_uri: str) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._writes: queue.Queue[Callable[[], Any] | None] = queue.Queue()
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

    def record(self, spec: RolloutSpec, decision: Decision) -> None:
        """Queue the registry's side of a committed ``decision``: the alias on completion, a tag on
        rollback (nothing for other decisions, or a candidate the spec does not map)."""
        registry = spec.registry
        number = registry.versions.get(spec.candidate) if registry is not None else None
        if registry is None or number is None:
            return
        if decision.action == "complete" and spec.mode != "shadow":
            self._writes.put(lambda: self.client.set_registered_model_alias(registry.name, registry.alias, number))
        elif decision.action == "rollback":
            tags = {"shadowcanary.decision": "rolled_back", "shadowcanary.reason": decision.reason[:5000],
                    "shadowcanary.rollout_id": decision.rollout_id}

            def tag() -> None:
                for key, value in tags.items():
                    self.client.set_model_version_tag(registry.name, number, key, value)
            self._writes.put(tag)

    def _write_loop(self) -> None:
        while True:
            write = self._writes.get()
            if write is None:
                return
            try:
                write()
            except Exception as exc:
                log.warning("registry: a write failed (%s); the decision stands on rollout.decisions", exc)
            finally:
                self._writes.task_done()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for queued writes (tests, shutdown); True when none is left."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._writes.join(), done.set()), daemon=True).start()
        return done.wait(timeout)


__all__ = ["ModelRegistry"]

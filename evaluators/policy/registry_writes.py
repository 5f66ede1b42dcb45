"""What a rollout's decision writes to its model registry: the alias on the candidate's version when
it completes, tags when it is rolled back (pure; :mod:`streams.worker.registry` sends it to MLflow and
the policy service keeps it in the engine's saved state until the registry has taken it).
"""

from __future__ import annotations

from typing import TypedDict

from schemas.control import Decision
from schemas.rollout import RolloutSpec


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
        return RegistryWrite(
            rollout_id=decision.rollout_id,
            name=registry.name,
            version=number,
            alias=None,
            tags={
                "shadowcanary.decision": "rolled_back",
                "shadowcanary.reason": decision.reason[:5000],
                "shadowcanary.rollout_id": decision.rollout_id,
            },
        )
    return None


__all__ = ["RegistryWrite", "outcome_write"]

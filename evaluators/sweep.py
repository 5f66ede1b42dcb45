"""Policy parameters to sweep in a replay: ``alpha=0.01,0.05``, ``bake.min_samples=200,1000``,
``guardrails.0.max_degradation=0.01,0.02``; every combination is one setting.

``alpha`` sets every guardrail's alpha; any other name is a dotted path into the spec (list items by
index). A setting that makes a spec invalid is reported with the field, like a bad YAML spec.

>>> from schemas.rollout import RolloutSpec
>>> spec = RolloutSpec.model_validate({"model": "m", "baseline": "a", "candidate": "b", "mode": "canary",
...     "task": "binary", "steps": [10, 100], "guardrails": [{"metric": "accuracy", "max_degradation": 0.01}]})
>>> grid = parse_sweep(["alpha=0.01,0.05", "bake.min_samples=100"])
>>> [(s, apply_setting(spec, s).guardrails[0].alpha) for s in grid]
[({'alpha': 0.01, 'bake.min_samples': 100}, 0.01), ({'alpha': 0.05, 'bake.min_samples': 100}, 0.05)]
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import yaml

from schemas.control import Decision
from schemas.rollout import RolloutSpec


def parse_sweep(items: list[str]) -> list[dict[str, Any]]:
    """``NAME=V1,V2`` items to every combination of values (values parsed as YAML scalars)."""
    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"expected NAME=VALUE[,VALUE...], got {item!r}")
        axes.append((name.strip(), [yaml.safe_load(v) for v in values.split(",")]))
    return [dict(zip([n for n, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


def apply_setting(spec: RolloutSpec, setting: dict[str, Any]) -> RolloutSpec:
    document = spec.model_dump(mode="json")
    for name, value in setting.items():
        if name == "alpha":
            for guardrail in document["guardrails"]:
                guardrail["alpha"] = value
            continue
        *parents, last = name.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return RolloutSpec.model_validate(document)


def describe(setting: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in setting.items())


def outcome(decisions: list[Decision], model: str) -> tuple[str, datetime | None]:
    """What a replay decided for ``model`` and when: rolled back or promoted (after how many
    steps), or still running.

    >>> outcome([], "m")
    ('still running (at step 0)', None)
    """
    mine = [d for d in decisions if d.model == model]
    steps = sum(1 for d in mine if d.action == "promote")
    final = next((d for d in mine if d.action in ("rollback", "complete")), None)
    if final is None:
        return f"still running (at step {steps})", None
    verb = "rolled back" if final.action == "rollback" else "promoted"
    return f"{verb} (after {steps} step{'s' * (steps != 1)})", final.ts

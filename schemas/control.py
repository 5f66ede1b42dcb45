"""What the evaluator (or a person through the CLI) tells routers, and why.

``RoutingCommand`` goes to ``rollout.control``; ``Decision`` to ``rollout.decisions``, the audit trail.

>>> cmd = RoutingCommand(model="fraud", epoch=3, issued_at=1700000000000, issuer="evaluator",
...                      action="set_routes", routes={"v1": 95, "v2": 5}, reason="step 2 of 5",
...                      rollout_id="r-1")
>>> cmd.canonical_json()[:33]
b'{"action":"set_routes","baseline"'
"""

from __future__ import annotations

import math
import uuid
from typing import Literal

import orjson
import rfc8785
from pydantic import Field, field_validator

from schemas.base import WireModel
from schemas.types import FiniteFloat, Name, Timestamp, WireUUID

CommandAction = Literal["set_routes", "rollback", "promote", "pause"]
DecisionAction = Literal["promote", "hold", "rollback", "complete"]
Verdict = Literal["pass", "fail", "undecided"]
#: The side of its bound an undecided guardrail's estimate is on.
Leaning = Literal["pass", "fail"]

#: Routes must sum to 100 within this tolerance (percentages written with decimals).
ROUTES_TOLERANCE = 1e-6


class RoutingCommand(WireModel):
    """Where a model's traffic goes; a router applies it only if ``epoch`` is higher than the last."""

    command_id: WireUUID = Field(default_factory=uuid.uuid4)
    model: Name
    epoch: int = Field(ge=0)
    issued_at: Timestamp
    issuer: str = Field(pattern=r"^(evaluator|cli:.+)$", max_length=256)
    action: CommandAction
    routes: dict[Name, FiniteFloat] = Field(description="Version to percent of served traffic; sums to 100.")
    shadow: list[Name] = Field(default_factory=list,
                               description="Versions that receive mirrored traffic and serve nobody.")
    reason: str = Field(min_length=1, max_length=4096)
    rollout_id: str = Field(min_length=1, max_length=256)
    baseline: Name | None = Field(None, description=(
        "Addition to the contract: the version that serves everyone outside the rollout's cohort "
        "(and everyone, when routers have no other instruction)."))
    signature: str | None = Field(None, description=(
        "<algorithm>:<base64>, HMAC-SHA256 (hmac-sha256) or Ed25519 (ed25519) over the command without "
        "signature, canonical as RFC 8785."))

    @field_validator("routes")
    @classmethod
    def _sum_to_100(cls, routes: dict[str, float]) -> dict[str, float]:
        if not routes:
            raise ValueError("at least one version must serve traffic")
        if any(p < 0 or p > 100 for p in routes.values()):
            raise ValueError("each route must be between 0 and 100 percent")
        total = math.fsum(routes.values())
        if abs(total - 100.0) > ROUTES_TOLERANCE:
            raise ValueError(f"routes must sum to 100, got {total:g}")
        return routes

    def canonical_json(self) -> bytes:
        """The bytes a signature covers, as the contract states them: the command's JSON object
        (as published: every field, null ones included, and any added by a newer writer) without
        ``signature``, canonical as RFC 8785 (JSON Canonicalization Scheme: keys sorted by UTF-16
        code units, no whitespace, numbers as ECMAScript writes them, so ``90.0`` is ``90``). Any
        language verifies it: parse the record, drop ``signature``, canonicalize, check.
        """
        return rfc8785.dumps(self.model_dump(mode="json", exclude={"signature"}))

    def legacy_canonical_json(self) -> bytes:
        """The form signed before RFC 8785 (keys sorted, compact, null fields left out, ``90.0``
        kept): still accepted by verifiers, so commands already on a topic keep verifying."""
        body = self.model_dump(mode="json", exclude={"signature"}, exclude_none=True)
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class Bounds(WireModel):
    """One version's estimate of a guardrail metric."""

    value: FiniteFloat | None = None
    samples: int = Field(0, ge=0)
    lower: FiniteFloat | None = None
    upper: FiniteFloat | None = None

    def describe(self) -> str:
        """``value [lower, upper]`` for people (the CLI, the demo, the report).

        >>> Bounds(value=0.9, samples=10, lower=0.8, upper=0.95).describe()
        '0.9 [0.8, 0.95]'
        """
        if self.value is None:
            return "no data"
        if self.lower is None or self.upper is None:
            return f"{self.value:.4g}"
        return f"{self.value:.4g} [{self.lower:.4g}, {self.upper:.4g}]"


class GuardrailEvidence(WireModel):
    """Why a guardrail holds the verdict it holds."""

    guardrail: str
    metric: str
    verdict: Verdict
    baseline: Bounds | None = None
    candidate: Bounds
    statistic: FiniteFloat | None = None
    threshold: FiniteFloat | None = None
    critical: bool = False
    detail: str | None = Field(
        None, description="Added in v1: what a failing check (schema_compatible) found, in words; a decision "
                          "that fails on it gives this as its reason.")
    leaning: Literal["pass", "fail"] | None = Field(
        None, description="Added in v1: the side of its bound the estimate is on while the verdict is undecided "
                          "(or the verdict's side); a baked stage waits while a guardrail leans to fail.")
    segment: str | None = Field(
        None, description="Added in v1: the segment judged (attribute=value, e.g. region=eu) by a per_segment "
                          "guardrail; none: all traffic. A segment with too little data stays undecided and does "
                          "not hold the rollout.")


class RegistryVersion(WireModel):
    """A version as the model registry knows it (read when its rollout started)."""

    name: str
    version: str
    run_id: str | None = None
    source: str | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Decision(WireModel):
    """Every promote, hold, rollback and completion, with the evidence behind it."""

    rollout_id: str = Field(min_length=1)
    model: Name
    step: int = Field(ge=0, description="Index of the step the rollout was at when deciding.")
    action: DecisionAction
    ts: Timestamp
    reason: str = Field(min_length=1)
    evidence: list[GuardrailEvidence] = Field(default_factory=list)
    versions: dict[str, RegistryVersion] | None = Field(
        None, description="Added in v1: the rollout's versions as its model registry knows them (when the spec "
                          "names one and the evaluator reaches it).")

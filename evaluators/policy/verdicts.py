"""A rollout's verdict for the progressive-delivery tools that ask for one: Argo Rollouts' ``web``
metric provider and Flagger's webhooks. Pure: the engine's saved state of the rollout and its last
decision in, the verdict and the HTTP answer out (``shadowcanary api`` serves them).

The verdict (``RolloutVerdict.verdict``):

- ``pass``: the rollout completed, or every guardrail of its last decision passed;
- ``fail``: it was rolled back or aborted, or a guardrail of its last decision failed;
- ``no_data``: a guardrail has no samples yet (no data never passes);
- ``undecided``: running, with evidence not yet conclusive;
- ``unknown``: no rollout of that model.

Argo Rollouts: an AnalysisTemplate's ``web`` metric reads ``GET /v1/rollouts/<model>/verdict`` with
``successCondition: result.verdict == "pass"`` and ``failureCondition: result.verdict == "fail"``;
anything else is inconclusive (the analysis pauses, as Argo does with an inconclusive result).

Flagger: a webhook's HTTP 200 lets the canary go on; anything else halts it (and counts toward its
failure threshold, for the kinds that roll back). :func:`flagger_answer` gives each kind its rule:

=============================  =================================================================
``confirm-rollout``            200 unless the verdict is ``fail`` or ``unknown`` (a gate: waits)
``pre-rollout``, ``rollout``   200 unless the verdict is ``fail``
``confirm-traffic-increase``   200 while ``pass`` or ``undecided``; waits on ``no_data`` and ``fail``
``confirm-promotion``          200 only on ``pass`` (promotion waits for the evidence)
``post-rollout``, ``rollback``, 200 (told, nothing to judge)
``event``
=============================  =================================================================

>>> verdict_of("fraud", {"id": "r1", "status": "completed", "stage": 2}, None).verdict
'pass'
>>> flagger_answer("confirm-promotion", verdict_of("fraud", None, None))[0]
403
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from schemas.control import Decision

VerdictName = Literal["pass", "fail", "no_data", "undecided", "unknown"]
FLAGGER_KINDS = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion",
                 "post-rollout", "rollback", "event")


@dataclass(frozen=True)
class RolloutVerdict:
    model: str
    verdict: VerdictName
    reason: str
    rollout_id: str | None = None
    status: str | None = None  # the engine's: running, held, paused, completed, rolled_back, aborted
    stage: int | None = None
    guardrails: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _guardrails(decision: Decision | None) -> list[dict[str, Any]]:
    if decision is None:
        return []
    return [{"guardrail": e.guardrail, "metric": e.metric, "segment": e.segment, "verdict": e.verdict,
             "critical": e.critical,
             "candidate": e.candidate.model_dump(mode="json"),
             "baseline": e.baseline.model_dump(mode="json") if e.baseline is not None else None}
            for e in decision.evidence]


def verdict_of(model: str, rollout: dict[str, Any] | None, decision: Decision | None) -> RolloutVerdict:
    """The verdict on ``model``'s rollout (the engine's saved state of it) and its last decision."""
    if rollout is None:
        return RolloutVerdict(model, "unknown", f"no rollout of {model}")
    status = rollout["status"]
    if decision is not None and decision.rollout_id != rollout["id"]:
        decision = None  # a decision of an earlier rollout of the model
    common = {"rollout_id": rollout["id"], "status": status, "stage": rollout.get("stage"),
              "guardrails": _guardrails(decision)}
    reason = decision.reason if decision is not None else "no decision yet"
    if status == "completed":
        return RolloutVerdict(model, "pass", reason, **common)
    if status in ("rolled_back", "aborted"):
        return RolloutVerdict(model, "fail", reason, **common)
    evidence = decision.evidence if decision is not None else []
    if any(e.verdict == "fail" for e in evidence):
        return RolloutVerdict(model, "fail", reason, **common)
    evidence = [e for e in evidence if e.segment is None]  # a segment's evidence only ever fails a rollout
    missing = [e.guardrail for e in evidence
               if e.candidate.samples == 0 or (e.baseline is not None and e.baseline.samples == 0)]
    if missing:
        return RolloutVerdict(model, "no_data", f"no data for {', '.join(missing)}", **common)
    if evidence and all(e.verdict == "pass" for e in evidence):
        return RolloutVerdict(model, "pass", reason, **common)
    return RolloutVerdict(model, "undecided", reason, **common)


def flagger_answer(kind: str, verdict: RolloutVerdict) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body a Flagger webhook of ``kind`` gets (200: go on)."""
    if kind not in FLAGGER_KINDS:
        return 404, {"error": f"unknown webhook kind {kind!r} (one of {', '.join(FLAGGER_KINDS)})"}
    name = verdict.verdict
    if kind == "confirm-rollout":
        go = name not in ("fail", "unknown")
    elif kind in ("pre-rollout", "rollout"):
        go = name != "fail"
    elif kind == "confirm-traffic-increase":
        go = name in ("pass", "undecided")
    elif kind == "confirm-promotion":
        go = name == "pass"
    else:
        go = True
    status = 200 if go else (500 if kind in ("pre-rollout", "rollout") else 403)
    return status, verdict.as_json() | {"webhook": kind}


__all__ = ["FLAGGER_KINDS", "RolloutVerdict", "flagger_answer", "verdict_of"]

"""Verdicts for Argo Rollouts and Flagger (evaluators/policy/verdicts.py)."""

from __future__ import annotations

import pytest

from evaluators.policy.verdicts import FLAGGER_KINDS, flagger_answer, verdict_of
from schemas.control import Bounds, Decision, GuardrailEvidence


def decision(rollout_id: str, *verdicts: tuple[str, int]) -> Decision:
    evidence = [GuardrailEvidence(guardrail=f"g{i}", metric="accuracy", verdict=verdict,
                                  candidate=Bounds(value=0.9 if n else None, samples=n))
                for i, (verdict, n) in enumerate(verdicts)]
    return Decision(rollout_id=rollout_id, model="m", step=0, action="promote", ts=0, reason="r", evidence=evidence)


@pytest.mark.parametrize("status, evidence, expected", [
    ("completed", [], "pass"),
    ("rolled_back", [("pass", 10)], "fail"),
    ("aborted", [], "fail"),
    ("running", [("pass", 10), ("fail", 10)], "fail"),
    ("held", [("fail", 10)], "fail"),
    ("running", [("undecided", 0)], "no_data"),
    ("running", [("pass", 10), ("pass", 20)], "pass"),
    ("running", [("pass", 10), ("undecided", 20)], "undecided"),
    ("running", None, "undecided"),
])
def test_the_verdict_of_a_rollout(status, evidence, expected):
    last = decision("r1", *evidence) if evidence is not None else None
    verdict = verdict_of("m", {"id": "r1", "status": status, "stage": 0}, last)
    assert verdict.verdict == expected and verdict.rollout_id == "r1"


def test_a_decision_of_an_earlier_rollout_is_not_the_evidence():
    verdict = verdict_of("m", {"id": "r2", "status": "running", "stage": 0}, decision("r1", ("fail", 10)))
    assert verdict.verdict == "undecided" and verdict.guardrails == []


def test_flagger_gets_200_only_where_its_webhook_kind_may_go_on():
    rollouts = {"pass": {"status": "completed"}, "fail": {"status": "rolled_back"},
                "undecided": {"status": "running"}, "no_data": {"status": "running"}}
    evidence = {"no_data": decision("r", ("undecided", 0))}
    answers = {}
    for name, rollout in rollouts.items():
        verdict = verdict_of("m", rollout | {"id": "r", "stage": 0}, evidence.get(name))
        assert verdict.verdict == name
        answers[name] = {kind: flagger_answer(kind, verdict)[0] for kind in FLAGGER_KINDS}
    unknown = {kind: flagger_answer(kind, verdict_of("m", None, None))[0] for kind in FLAGGER_KINDS}
    assert {kind: (answers["pass"][kind], answers["fail"][kind], answers["undecided"][kind], answers["no_data"][kind],
                   unknown[kind]) for kind in FLAGGER_KINDS} == {
        "confirm-rollout": (200, 403, 200, 200, 403),
        "pre-rollout": (200, 500, 200, 200, 200),
        "rollout": (200, 500, 200, 200, 200),
        "confirm-traffic-increase": (200, 403, 200, 403, 403),
        "confirm-promotion": (200, 403, 403, 403, 403),
        "post-rollout": (200, 200, 200, 200, 200),
        "rollback": (200, 200, 200, 200, 200),
        "event": (200, 200, 200, 200, 200),
    }
    assert flagger_answer("confirm-everything", verdict_of("m", None, None))[0] == 404


def test_a_segments_evidence_fails_a_verdict_but_never_holds_it():
    """Per-segment evidence counts as the engine counts it: a failing segment fails the verdict; a
    segment with little or no data makes it neither undecided nor no_data."""
    def with_segments(*segments: tuple[str, int]) -> Decision:
        last = decision("r1", ("pass", 10))
        extra = [GuardrailEvidence(guardrail="g0", metric="accuracy", verdict=verdict, segment=f"region=r{i}",
                                   candidate=Bounds(value=0.9 if n else None, samples=n))
                 for i, (verdict, n) in enumerate(segments)]
        return last.model_copy(update={"evidence": last.evidence + extra})

    running = {"id": "r1", "status": "running", "stage": 0}
    assert verdict_of("m", running, with_segments(("undecided", 0), ("undecided", 5))).verdict == "pass"
    failed = verdict_of("m", running, with_segments(("pass", 50), ("fail", 40)))
    assert failed.verdict == "fail" and {g["segment"] for g in failed.guardrails} == {None, "region=r0", "region=r1"}

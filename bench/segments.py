"""Guardrails per segment, through the rollout engine (no broker).

Each rollout is a canary (steps 10, 25, 50, 100%; a stage bakes 1,500 candidate labels) judged by
one guardrail, ``accuracy`` no worse than the baseline (alpha 0.01), ``per_segment`` over one request
attribute with 8 values of unequal sizes (30, 20, 15, 10, 10, 7, 5, 3% of traffic). Requests come in
looks of 500; every request is labelled; the engine looks at the running totals after each, exactly
as in the stream (:class:`evaluators.policy.engine.RolloutEngine`, slim states with their segments).

(a) false rollbacks over A/A rollouts (both versions 90% accurate in every segment);
(b) a candidate 10 points worse in the segment holding 10% of traffic and 2 points better in every
    other (so better on average): how often it is rolled back and the median candidate labels it
    takes, with the segments;
(c) the same candidate judged without segments (the guardrail on all traffic only): how often it
    is promoted.
"""

from __future__ import annotations

import statistics

import numpy as np

from bench.report import Result
from evaluators.metrics.version import SlimState, new_state, slim
from evaluators.policy.engine import RolloutEngine
from evaluators.segments import segment_id
from schemas.rollout import RolloutSpec

SHARES = (0.30, 0.20, 0.15, 0.10, 0.10, 0.07, 0.05, 0.03)
VALUES = tuple(f"s{i}" for i in range(len(SHARES)))
WEAK = 3  # the segment holding 10% of traffic where the candidate is worse
LOOK = 500
#: Candidate labels each stage bakes: enough for the smallest judged segment to carry evidence.
BAKE = 1_500
HORIZON_LOOKS = 2_000


def spec(per_segment: bool) -> RolloutSpec:
    guardrail = {"metric": "accuracy", "max_degradation": 0.0, "alpha": 0.01, "per_segment": per_segment}
    return RolloutSpec.model_validate({
        "model": "m", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
        "steps": [10, 25, 50, 100], "bake": {"min_samples": BAKE}, "guardrails": [guardrail],
        "segments": [{"attribute": "region", "max_values": len(VALUES)}] if per_segment else []})


def _slim(correct: np.ndarray, labelled: np.ndarray, segments: bool) -> SlimState:
    """A version's slim running total from its correct and labelled counts per segment."""
    def one(right: int, n: int) -> SlimState:
        state = new_state()
        state["n"] = state["lab"] = n
        state["cls"] = {"cm": {"1\x1f1": right, "1\x1f0": n - right}, "ll": [0, 0.0, 0.0], "br": [0, 0.0, 0.0],
                        "ece": [], "auc": {}, "coarse": False}
        return slim(state)

    total = one(int(correct.sum()), int(labelled.sum()))
    if segments:
        total["seg"] = {segment_id("region", value): one(int(correct[i]), int(labelled[i]))
                        for i, value in enumerate(VALUES) if labelled[i]}
    return total


def rollout(rng: np.random.Generator, base_accuracy: np.ndarray, cand_accuracy: np.ndarray,
            per_segment: bool) -> tuple[str, int, str]:
    """(final status, the candidate's labels at the end, the last decision's reason)."""
    engine = RolloutEngine()
    the_spec = spec(per_segment)
    correct = {"v1": np.zeros(len(SHARES), np.int64), "v2": np.zeros(len(SHARES), np.int64)}
    labelled = {"v1": np.zeros(len(SHARES), np.int64), "v2": np.zeros(len(SHARES), np.int64)}
    accuracy = {"v1": base_accuracy, "v2": cand_accuracy}

    def totals() -> dict[tuple[str, str, str], SlimState]:
        return {("m", v, "primary" if v == "v1" else "canary"): _slim(correct[v], labelled[v], per_segment)
                for v in ("v1", "v2")}

    engine.start(the_spec, 0, totals())
    reason = ""
    for look in range(1, HORIZON_LOOKS + 1):
        routes = engine.rollouts["m"]["routes"]
        share = routes.get("v2", 0.0) / 100
        per_segment_requests = rng.multinomial(LOOK, SHARES)
        to_candidate = rng.binomial(per_segment_requests, share)
        for version, served in (("v2", to_candidate), ("v1", per_segment_requests - to_candidate)):
            labelled[version] += served
            correct[version] += rng.binomial(served, accuracy[version])
        for output in engine.tick(look * 1_000, totals()):
            if output.topic == "decisions":
                reason = output.message.reason
        status = engine.rollouts["m"]["status"]
        if status in ("completed", "rolled_back"):
            return status, int(labelled["v2"].sum()), reason
    return engine.rollouts["m"]["status"], int(labelled["v2"].sum()), reason


def run(aa_rollouts: int = 1_000, power_rollouts: int = 200) -> list[Result]:
    rng = np.random.default_rng(2026)
    same = np.full(len(SHARES), 0.90)
    aa = [rollout(rng, same, same, per_segment=True) for _ in range(aa_rollouts)]
    false_rate = sum(status == "rolled_back" for status, _, _ in aa) / aa_rollouts
    worse = np.full(len(SHARES), 0.92)
    worse[WEAK] = 0.80
    average = float(np.dot(SHARES, worse))
    judged = [rollout(rng, same, worse, per_segment=True) for _ in range(power_rollouts)]
    caught = [labels for status, labels, _ in judged if status == "rolled_back"]
    named = sum(f"region={VALUES[WEAK]}" in reason for status, _, reason in judged if status == "rolled_back")
    blind = [rollout(rng, same, worse, per_segment=False) for _ in range(power_rollouts)]
    promoted = sum(status == "completed" for status, _, _ in blind) / power_rollouts
    return [
        Result("segments", f"A/A false rollback rate, 8 segments of unequal sizes, per-segment accuracy guardrail "
               f"(alpha 0.01, {aa_rollouts} rollouts)", 100 * false_rate, "%", "<= 1%", false_rate <= 0.01),
        Result("segments", f"candidate 10 points worse in a 10% segment, 2 better elsewhere (average "
               f"{100 * average:.1f}% vs 90%): rolled back with segments ({power_rollouts} rollouts)",
               100 * len(caught) / power_rollouts, "%", ">= 95%", len(caught) / power_rollouts >= 0.95),
        Result("segments", "  its median candidate labels at rollback",
               statistics.median(caught) if caught else float("nan"), "labels"),
        Result("segments", "  rollbacks whose decision names the segment", 100 * named / max(len(caught), 1), "%",
               "100%", named == len(caught)),
        Result("segments", f"the same candidate without segments: promoted ({power_rollouts} rollouts)",
               100 * promoted, "%", ">= 95%", promoted >= 0.95),
    ]

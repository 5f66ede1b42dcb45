"""Sequential guardrails against the naive repeated z-test, on simulated canaries (no broker).

Each rollout serves requests in looks of 100 at 10% canary traffic; every request is labelled. At
every look the engine's guardrail (``accuracy`` no worse than the baseline, alpha = 0.01) is judged
by :func:`evaluators.policy.guardrails.judge`, exactly as in the stream, and so is what existing
tools effectively do: a one-sided two-proportion z-test at the same looks, at the same alpha.

(a) false rollbacks over A/A rollouts (both 90% accurate) up to 5,000 canary labels;
(b) median canary labels to roll back a 90% -> 85% candidate (target <= 500; a sequential test that
    knew the baseline exactly needs about 370);
(c) the same for a 2-point drop (90% -> 88%);
(d) false rollbacks at the edge of an allowed degradation: 2 points allowed, the candidate exactly
    2 points worse (the one place where the paired test plugs in the baseline's rate, for the
    odds-ratio bound).
"""

from __future__ import annotations

import math
import random
import statistics

from bench.report import Result
from evaluators.metrics.version import new_state, slim
from evaluators.policy import guardrails as judging
from evaluators.policy.sequential import new_test
from schemas.rollout import Guardrail

GUARDRAIL = Guardrail(metric="accuracy", max_degradation=0.0, alpha=0.01)
SLACK_GUARDRAIL = Guardrail(metric="accuracy", max_degradation=0.02, alpha=0.01)
Z_ONE_SIDED = 2.326  # alpha = 0.01
LOOK, SHARE, HORIZON = 100, 0.10, 5_000


def _state(correct: int, n: int) -> dict:
    state = new_state()
    state["lab"] = n
    state["cls"] = {"cm": {"1\x1f1": correct, "1\x1f0": n - correct}}
    return slim(state)


def _naive_fails(cb: int, nb: int, cc: int, nc: int) -> bool:
    if nb == 0 or nc == 0:
        return False
    pooled = (cb + cc) / (nb + nc)
    se = math.sqrt(pooled * (1 - pooled) * (1 / nb + 1 / nc))
    return se > 0 and (cc / nc - cb / nb) / se < -Z_ONE_SIDED


def rollout(rng: random.Random, p_base: float, p_cand: float,
            guardrail: Guardrail = GUARDRAIL) -> tuple[int | None, int | None]:
    """Canary labels at the first rollback of the sequential test and of the naive one (None: never)."""
    test = new_test()
    empty = _state(0, 0)
    cb = nb = cc = nc = 0
    last_b = last_c = empty
    ours = naive = None
    while nc < HORIZON and (ours is None or naive is None):
        for _ in range(LOOK):
            if rng.random() < SHARE:
                nc += 1
                cc += rng.random() < p_cand
            else:
                nb += 1
                cb += rng.random() < p_base
        now_b, now_c = _state(cb, nb), _state(cc, nc)
        if ours is None:
            verdict = judging.judge(guardrail, test, (empty, last_b, now_b), (empty, last_c, now_c)).verdict
            if verdict == "fail":
                ours = nc
        if naive is None and _naive_fails(cb, nb, cc, nc):
            naive = nc
        last_b, last_c = now_b, now_c
    return ours, naive


def run(aa_rollouts: int = 1_000, power_rollouts: int = 200) -> list[Result]:
    rng = random.Random(2026)
    aa = [rollout(rng, 0.90, 0.90) for _ in range(aa_rollouts)]
    ours_rate = sum(o is not None for o, _ in aa) / aa_rollouts
    naive_rate = sum(n is not None for _, n in aa) / aa_rollouts
    results = [
        Result("policy", f"A/A false rollback rate, sequential (alpha 0.01, {aa_rollouts} rollouts)",
               100 * ours_rate, "%", "<= 1%", ours_rate <= 0.01),
        Result("policy", "A/A false rollback rate, naive repeated z-test (same looks)", 100 * naive_rate, "%"),
    ]
    edge = [rollout(rng, 0.90, 0.88, SLACK_GUARDRAIL)[0] for _ in range(aa_rollouts)]
    edge_rate = sum(o is not None for o in edge) / aa_rollouts
    results.append(Result("policy", f"false rollback rate at the edge of 2 points allowed (90% vs 88%, {aa_rollouts} "
                          "rollouts)", 100 * edge_rate, "%", "<= 1%", edge_rate <= 0.01))
    for drop, target in ((0.05, 500), (0.02, None)):
        runs = [rollout(rng, 0.90, 0.90 - drop) for _ in range(power_rollouts)]
        ours = [o if o is not None else HORIZON * 10 for o, _ in runs]
        naive = [n if n is not None else HORIZON * 10 for _, n in runs]
        median = statistics.median(ours)
        results.append(Result("policy", f"median canary labels to roll back 90% -> {90 - 100 * drop:.0f}%, sequential",
                              median, "labels", f"<= {target}" if target else "",
                              median <= target if target else None))
        results.append(Result("policy", f"median canary labels to roll back 90% -> {90 - 100 * drop:.0f}%, "
                              "naive z-test", statistics.median(naive), "labels"))
    return results

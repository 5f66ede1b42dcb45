"""Guardrails on means, ratios and scores: false rollbacks and power, against the naive repeated test.

Each row simulates 1,000 rollouts (no broker). At every look, both versions' new labelled samples
are added to their slim metric states and the guardrail is judged by
:func:`evaluators.policy.guardrails.judge`, exactly as the engine does in the stream; beside it, what
a team would do without sequential statistics: a one-sided z-test (Welch, on the same estimates and
the same delta-method variances) at the same looks and the same alpha.

- **A/A rows**: both versions equal, up to a horizon of about three times the fixed-horizon sample
  size below; the share of rollouts ever rolled back (target: at most alpha = 1%). Conversion also
  runs at a 10/90 split, with a rate that swings over the day (both versions share the hour), and
  with the split moving from 10/90 to 50/50 halfway while the rate swings.
- **Power rows**: the candidate worse by the named amount; the median candidate labels at the
  rollback, against the fixed-horizon candidate sample size for 80% power at the same alpha (a
  one-sided z-test planned in advance, computed here from the true distributions). Each twice:
  with the guardrail's ``min_detectable_effect`` set to that amount (the plan a fixed-horizon test
  needs too; the target applies here) and without it (the untuned mixture).
- **A/A rows with a planned effect**: the same equal versions, each guardrail tuned as in its power
  row; false rollbacks still at most alpha.
- **Moving on while undecided**: a three-stage canary (10%, 50%, 100%, each baked 60 s and 200
  labels) on a fleet of 40 labelled requests/s, under the engine's rule (wait up to one more bake
  while a guardrail leans to fail with evidence), waiting on any lean, and not waiting: what each
  saves bad candidates (promotions, exposure at 50% or more) and costs good ones (time to complete).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from bench.report import Result
from evaluators.metrics import sketch
from evaluators.metrics.classification import AUC_BINS
from evaluators.metrics.version import add_slim, slim
from evaluators.policy import asymptotic
from evaluators.policy import guardrails as judging
from evaluators.policy.engine import LEAN_EVIDENCE, RolloutEngine
from evaluators.policy.estimands import estimand_for
from schemas.rollout import Guardrail, RolloutSpec

ALPHA = 0.01
Z_ALPHA, Z_POWER = stats.norm.ppf(1 - ALPHA), stats.norm.ppf(0.8)
ROLLOUTS = 1_000

#: A version's labelled samples of one look: ``draw(rng, n, worse, hour)`` -> the slim state's parts.
Draw = Callable[[np.random.Generator, int, bool, float], dict]


def _delta(lab: int, sums: dict | None = None, cm: dict | None = None) -> dict:
    return {"n": 0, "err": 0, "lab": lab, "lat": sketch.new_sketch(), "cls": {"cm": cm} if cm else None,
            "pc": {}, "pm": [0, 0.0], "sums": sums or {}}


def _sums(name: str, values: np.ndarray) -> dict:
    return {name: [len(values), float(values.sum()), float((values * values).sum())]}


def conversion(base_rate: float, worse_rate: float, swing: float = 0.0) -> Draw:
    def draw(rng: np.random.Generator, n: int, worse: bool, hour: float) -> dict:
        rate = (worse_rate if worse else base_rate) * (1 + swing * math.sin(2 * math.pi * hour / 24))
        k = int(rng.binomial(n, rate))
        return _delta(n, {"outcome.converted": [n, float(k), float(k)]})
    return draw


#: Lognormal revenue with mean 12 and standard deviation 30.
_REVENUE_SIGMA = math.sqrt(math.log(1 + (30 / 12) ** 2))
_REVENUE_MU = math.log(12) - _REVENUE_SIGMA ** 2 / 2


def revenue(drop: float) -> Draw:
    def draw(rng: np.random.Generator, n: int, worse: bool, hour: float) -> dict:
        values = rng.lognormal(_REVENUE_MU, _REVENUE_SIGMA, n) * ((1 - drop) if worse else 1.0)
        return _delta(n, _sums("outcome.revenue", values))
    return draw


def ndcg(drop: float) -> Draw:
    """30% of queries find nothing relevant in the top 10 (NDCG 0), the rest Beta(2, 2): mean 0.35;
    a worse ranker's values are scaled to a mean ``drop`` lower."""
    def draw(rng: np.random.Generator, n: int, worse: bool, hour: float) -> dict:
        values = np.where(rng.random(n) < 0.3, 0.0, rng.beta(2, 2, n))
        if worse:
            values = values * (1 - drop / 0.35)
        return _delta(n, _sums("ndcg@10", values))
    return draw


def absolute_errors(rise: float) -> Draw:
    def draw(rng: np.random.Generator, n: int, worse: bool, hour: float) -> dict:
        values = rng.exponential(1.0 + (rise if worse else 0.0), n)
        return _delta(n, _sums("mae", values))
    return draw


#: A binary classifier: prevalence 30%, true positive rate 80%, false positive rate 10% (F1 0.787).
PREVALENCE, TPR, FPR = 0.3, 0.8, 0.1


def _cells(tpr: float) -> np.ndarray:
    """Probabilities of (tp, fn, fp, tn)."""
    return np.array([PREVALENCE * tpr, PREVALENCE * (1 - tpr), (1 - PREVALENCE) * FPR, (1 - PREVALENCE) * (1 - FPR)])


def _f1(tpr: float) -> float:
    tp, fn, fp, _ = _cells(tpr)
    return 2 * tp / (2 * tp + fp + fn)


def _tpr_for_f1(target: float) -> float:
    low, high = 0.0, TPR
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _f1(mid) < target else (low, mid)
    return (low + high) / 2


def classifier(f1_drop: float) -> Draw:
    worse_tpr = _tpr_for_f1(_f1(TPR) - f1_drop)

    def draw(rng: np.random.Generator, n: int, worse: bool, hour: float) -> dict:
        tp, fn, fp, tn = (int(x) for x in rng.multinomial(n, _cells(worse_tpr if worse else TPR)))
        return _delta(n, cm={"1\x1f1": tp, "1\x1f0": fn, "0\x1f1": fp, "0\x1f0": tn})
    return draw


def scores(separation: float = 1.5) -> Draw:
    """Scores: the logistic of N(separation, 1) for positives, of N(0, 1) for negatives (AUC 0.86)."""
    def draw(rng: np.random.Generator, n: int, worse: bool, hour: float) -> dict:
        positive = rng.random(n) < PREVALENCE
        raw = rng.normal(0.0, 1.0, n) + separation * positive
        index = np.minimum((AUC_BINS / (1 + np.exp(-raw))).astype(int), AUC_BINS - 1)
        bins = np.concatenate([np.bincount(index[positive], minlength=AUC_BINS),
                               np.bincount(index[~positive], minlength=AUC_BINS)])
        return _delta(n, {"roc_auc": {"1": [int(x) for x in bins]}})
    return draw


@dataclass(frozen=True)
class Scenario:
    name: str
    guardrail: Guardrail
    task: str
    draw: Draw
    look: int  # labels of both versions per look
    looks: int
    share: float = 0.5  # the candidate's share of traffic
    later_share: float | None = None  # the share from halfway on

    def planned(self, effect: float) -> Scenario:
        """The same scenario with its guardrail tuned to ``effect`` (``min_detectable_effect``)."""
        guardrail = self.guardrail.model_copy(update={"min_detectable_effect": effect})
        return replace(self, name=f"{self.name}, planned {effect:g}", guardrail=guardrail)

    def finer(self, factor: int) -> Scenario:
        """The same traffic looked at ``factor`` times as often."""
        return replace(self, look=self.look // factor, looks=self.looks * factor)


def _naive_fails(scenario: Scenario, estimand, base: tuple[dict, dict], cand: tuple[dict, dict]) -> bool:
    """One-sided z-test of the difference of the cumulative estimates (or of the candidate against
    an absolute bound), at ALPHA."""
    if scenario.guardrail.metric == "roc_auc":
        c = judging.auc_of(cand[1]["sums"].get("roc_auc"), None, scenario.task)
        b = judging.auc_of(base[1]["sums"].get("roc_auc"), None, scenario.task)
        if c is None or b is None:
            return False
        difference, variance = c[0] - b[0], c[1] + b[1]
    else:
        raw = estimand.raw
        c_value, c_var, c_n = asymptotic.estimate(estimand, raw(cand[0]), raw(cand[1]))
        b_value, b_var, b_n = asymptotic.estimate(estimand, raw(base[0]), raw(base[1]))
        if c_value is None or b_value is None or not c_var or not b_var:
            return False
        difference, variance = c_value - b_value, c_var / c_n + b_var / b_n
    lam, bound = judging.comparison_of(scenario.guardrail)
    good = (difference - bound) if scenario.guardrail.prefers_higher else (bound - difference)
    return good / math.sqrt(variance) < -Z_ALPHA


def simulate(
    scenario: Scenario, rng: np.random.Generator, worse: bool, naive: bool = True
) -> tuple[int | None, int | None]:
    """Candidate labels at the first rollback of the sequential guardrail and of the naive test."""
    guardrail = scenario.guardrail
    estimand = estimand_for(guardrail.metric, scenario.task)
    test = judging.new_test_for(guardrail)
    empty = slim(None)
    base, cand = slim(None), slim(None)
    ours = theirs = None
    candidate_labels = 0
    for look in range(scenario.looks):
        share = scenario.share if scenario.later_share is None or look < scenario.looks // 2 else scenario.later_share
        n_c = int(rng.binomial(scenario.look, share))
        hour = 24.0 * look / scenario.looks * 2  # two days over the horizon
        last_b, last_c = base, cand
        base = add_slim(slim(last_b), scenario.draw(rng, scenario.look - n_c, False, hour))
        cand = add_slim(slim(last_c), scenario.draw(rng, n_c, worse, hour))
        candidate_labels += n_c
        if ours is None:
            evidence = judging.judge(guardrail, test, (empty, last_b, base), (empty, last_c, cand), scenario.task)
            if evidence.verdict == "fail":
                ours = candidate_labels
        if naive and theirs is None and _naive_fails(scenario, estimand, (empty, base), (empty, cand)):
            theirs = candidate_labels
        if ours is not None and (theirs is not None or not naive):
            break
    return ours, theirs


def fixed_horizon(variance_base: float, variance_cand: float, effect: float, share: float) -> float:
    """Candidate samples a fixed-horizon one-sided z-test needs for 80% power at ALPHA, with the
    candidate taking ``share`` of the traffic."""
    ratio = (1 - share) / share  # baseline samples per candidate sample
    return (Z_ALPHA + Z_POWER) ** 2 * (variance_cand + variance_base / ratio) / effect ** 2


def _f1_variance(tpr: float) -> float:
    """Per-sample variance of F1's delta-method contribution, from the cell probabilities."""
    tp, fn, fp, _ = _cells(tpr)
    # u = (2 tp, positive + predicted positive) for the cells tp, fn, fp, tn
    u = np.array([[2, 2], [0, 1], [0, 1], [0, 0]], dtype=float)
    p = np.array([tp, fn, fp, 1 - tp - fn - fp])
    mean = p @ u
    covariance = (u * p[:, None]).T @ u - np.outer(mean, mean)
    gradient = np.array([1 / mean[1], -mean[0] / mean[1] ** 2])
    return float(gradient @ covariance @ gradient)


_NDCG_MEAN, _NDCG_VAR = 0.35, 0.7 * (0.05 + 0.25) - 0.35 ** 2


def scenarios_aa() -> list[Scenario]:
    g = Guardrail
    converted = g(metric="outcome.converted", max_degradation=0.0)
    return [
        Scenario("conversion 10%", converted, "binary", conversion(0.10, 0.10), 2_000, 50),
        Scenario("conversion 10% at a 10/90 split", converted, "binary", conversion(0.10, 0.10), 2_000, 50, share=0.1),
        Scenario("conversion 10% swinging +-50% over the day, 10/90", converted, "binary",
                 conversion(0.10, 0.10, swing=0.5), 2_000, 50, share=0.1),
        Scenario("conversion swinging, split 10/90 then 50/50", converted, "binary", conversion(0.10, 0.10, swing=0.5),
                 2_000, 50, share=0.1, later_share=0.5),
        Scenario("revenue (lognormal, mean 12, sd 30)", g(metric="outcome.revenue", max_degradation_relative=0.0),
                 "binary", revenue(0.0), 6_000, 50),
        Scenario("NDCG@10", g(metric="ndcg@10", max_degradation=0.0), "ranking", ndcg(0.0), 400, 50),
        Scenario("MAE", g(metric="mae", max_degradation_relative=0.0), "regression", absolute_errors(0.0), 200, 50),
        Scenario("F1", g(metric="f1", max_degradation=0.0), "binary", classifier(0.0), 500, 50),
        Scenario("ROC AUC", g(metric="roc_auc", max_degradation=0.0), "binary", scores(), 500, 40),
    ]


#: The planned effect of each A/A scenario's guardrail in the rows with a plan (the power rows'
#: amounts; 0.02 for ROC AUC).
PLANNED_EFFECTS = {"outcome.converted": 0.01, "outcome.revenue": 0.05, "ndcg@10": 0.02, "mae": 0.1, "f1": 0.03,
                   "roc_auc": 0.02}
#: Power rows look this many times as often as the A/A rows (about 40 looks before the fixed-horizon
#: size: a look is a batch in the stream, far finer still).
POWER_LOOKS_FINER = 2


def scenarios_power() -> list[tuple[Scenario, float]]:
    """(scenario with a worse candidate, fixed-horizon candidate samples)."""
    g = Guardrail
    revenue_var = 30.0 ** 2
    return [
        (Scenario("conversion 10% -> 9%", g(metric="outcome.converted", max_degradation=0.0), "binary",
                  conversion(0.10, 0.09), 2_000, 60),
         fixed_horizon(0.09, 0.09 * 0.91, 0.01, 0.5)),
        (Scenario("revenue -5%", g(metric="outcome.revenue", max_degradation_relative=0.0), "binary",
                  revenue(0.05), 6_000, 60),
         fixed_horizon(revenue_var, revenue_var * 0.95 ** 2, 0.6, 0.5)),
        (Scenario("NDCG@10 -0.02", g(metric="ndcg@10", max_degradation=0.0), "ranking", ndcg(0.02), 400, 60),
         fixed_horizon(_NDCG_VAR, _NDCG_VAR * (1 - 0.02 / 0.35) ** 2, 0.02, 0.5)),
        (Scenario("MAE +10%", g(metric="mae", max_degradation_relative=0.0), "regression",
                  absolute_errors(0.1), 200, 60),
         fixed_horizon(1.0, 1.1 ** 2, 0.1, 0.5)),
        (Scenario("F1 -0.03", g(metric="f1", max_degradation=0.0), "binary", classifier(0.03), 500, 60),
         fixed_horizon(_f1_variance(TPR), _f1_variance(_tpr_for_f1(_f1(TPR) - 0.03)), 0.03, 0.5)),
    ]


# -- moving on while undecided ---------------------------------------------------------------------
def staged_rollout(rng: np.random.Generator, worse: bool, lean_evidence: float | None,
                   rate: int = 40, accuracy: float = 0.90, drop: float = 0.04) -> tuple[str, float, int]:
    """A canary 10% -> 50% -> 100% on an accuracy guardrail, one look a second: ``(outcome, seconds,
    candidate requests served at the 50% stage or later)``."""
    spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="canary", task="binary",
                       steps=[10, 50, 100], bake={"min_duration": 60, "min_samples": 200},
                       guardrails=[{"metric": "accuracy", "max_degradation": 0.0}])
    engine = RolloutEngine(lean_evidence=lean_evidence)
    counts = {"v1": [0, 0], "v2": [0, 0]}  # correct, labelled

    def totals() -> dict:
        out = {}
        for version, (correct, n) in counts.items():
            state = slim(None)
            state["lab"] = state["n"] = n
            state["cls"] = {"cm": {"1\x1f1": correct, "1\x1f0": n - correct}}
            out[("m", version, "primary")] = state
        return out

    engine.start(spec, 0, totals())
    exposure = 0
    for second in range(1, 3_600):
        rollout = engine.rollouts["m"]
        if rollout["status"] != "running" and rollout["status"] != "held":
            return rollout["status"], float(second), exposure
        share = rollout["routes"].get("v2", 0.0) / 100
        n_c = int(rng.binomial(rate, share))
        p = accuracy - (drop if worse else 0.0)
        counts["v2"][0] += int(rng.binomial(n_c, p))
        counts["v2"][1] += n_c
        counts["v1"][0] += int(rng.binomial(rate - n_c, accuracy))
        counts["v1"][1] += rate - n_c
        if rollout["stage"] >= 1:
            exposure += n_c
        engine.tick(second * 1000, totals())
    return engine.rollouts["m"]["status"], 3_600.0, exposure


def run(rollouts: int = ROLLOUTS) -> list[Result]:
    rng = np.random.default_rng(2026)
    results: list[Result] = []
    for scenario in scenarios_aa():
        runs = [simulate(scenario, rng, worse=False) for _ in range(rollouts)]
        ours = sum(o is not None for o, _ in runs) / rollouts
        naive = sum(n is not None for _, n in runs) / rollouts
        results.append(
            Result(
                "policy_metrics",
                f"A/A false rollbacks, {scenario.name}, sequential ({rollouts} rollouts)",
                100 * ours,
                "%",
                "<= 1%",
                bool(ours <= ALPHA),
            )
        )
        results.append(Result("policy_metrics", f"A/A false rollbacks, {scenario.name}, naive repeated z-test",
                              100 * naive, "%"))
    for scenario in scenarios_aa():
        planned = scenario.planned(PLANNED_EFFECTS[scenario.guardrail.metric])
        ours = sum(simulate(planned, rng, worse=False, naive=False)[0] is not None for _ in range(rollouts)) / rollouts
        results.append(
            Result(
                "policy_metrics",
                f"A/A false rollbacks, {planned.name}, sequential ({rollouts} rollouts)",
                100 * ours,
                "%",
                "<= 1%",
                bool(ours <= ALPHA),
            )
        )
    for scenario, fixed in scenarios_power():
        scenario = scenario.finer(POWER_LOOKS_FINER)
        for tuned in (True, False):
            judged = scenario.planned(PLANNED_EFFECTS[scenario.guardrail.metric]) if tuned else scenario
            runs = [simulate(judged, rng, worse=True, naive=False) for _ in range(rollouts)]
            never = judged.looks * judged.look  # beyond the horizon: counted as more than any
            labels = [o if o is not None else never for o, _ in runs]
            median = statistics.median(labels)
            within = f"rolled back within the horizon: {sum(o is not None for o, _ in runs) / rollouts:.1%}"
            target = f"<= {fixed:,.0f} (fixed horizon, 80% power)"
            name = f"median candidate labels to roll back {judged.name}" + ("" if tuned else ", no planned effect")
            if tuned:
                results.append(Result("policy_metrics", name, median, "labels", target, bool(median <= fixed),
                                      note=f"{median / fixed:.2f} of the fixed horizon; {within}"))
            else:
                results.append(Result("policy_metrics", name, median, "labels",
                                      note=f"{median / fixed:.2f} of the fixed horizon ({fixed:,.0f}); {within}"))
    rules = ((LEAN_EVIDENCE, "waiting while leaning to fail with evidence (the rule)"),
             (-math.inf, "waiting on any lean to fail"), (None, "moving on when baked"))
    for worse in (True, False):
        which = "bad candidate (90% -> 86%)" if worse else "good candidate (equal)"
        for lean_evidence, rule_text in rules:
            runs = [staged_rollout(rng, worse, lean_evidence) for _ in range(rollouts // 5)]
            completed = [seconds for status, seconds, _ in runs if status == "completed"]
            if worse:
                results.append(Result("policy_metrics", f"{which}, {rule_text}: promoted to 100%",
                                      100 * len(completed) / len(runs), "%"))
                results.append(Result("policy_metrics", f"{which}, {rule_text}: mean candidate requests at 50% or more",
                                      statistics.mean(e for _, _, e in runs), "requests",
                                      note=f"reached the 50% stage: {sum(e > 0 for _, _, e in runs) / len(runs):.0%}"))
            else:
                results.append(Result("policy_metrics", f"{which}, {rule_text}: median seconds to complete",
                                      statistics.median(completed) if completed else math.inf, "s",
                                      note=f"completed: {len(completed) / len(runs):.0%}"))
    return results

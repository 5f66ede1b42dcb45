"""Judging one guardrail from metric states: pass, fail or undecided, with its evidence.

Two families of sequential test, both anytime-valid (looked at after every batch):

**Proportions of bad samples** (:mod:`evaluators.policy.sequential`, exact mixture SPRTs):

- ``accuracy``: wrong predictions among labelled ones;
- ``error_rate``: failed responses;
- ``latency_pXX_ms`` and ``label_delay_pXX_s``: samples over a bound. "p99 under 250 ms" is "at
  most 1% of responses over 250 ms"; against the baseline, the bound is the baseline's own quantile
  plus the allowed degradation. Their evidence is reported in the metric's unit
  (:func:`quantile_bounds`).

Against the baseline (accuracy, error rate), both versions' samples of each look go into a paired
test, conditional on the look's bad samples, so the baseline's rate is never plugged in as if
known; the allowed degradation becomes an odds-ratio bound. An absolute bound ``p0`` (or a latency
bound set by the baseline's quantile) is tested on the candidate's samples alone.

**Every other metric** (business outcomes, precision, recall, F1, ROC AUC, log loss, Brier, ECE,
MAE, RMSE, MAPE, R2, ranking metrics, agreement with the primary): asymptotic confidence sequences
on the metric's per-sample contributions, stratified by look, through the delta method for ratios
and scores (:mod:`evaluators.policy.estimands`, :mod:`evaluators.policy.asymptotic`).

:func:`unsupported_reason` names a guardrail no test can judge (say, a bound on the better side
only), and a spec using it is refused when validated rather than held forever.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from evaluators.metrics import classification, sketch
from evaluators.metrics.sketch import Sketch
from evaluators.metrics.version import SlimState, VersionState, new_state
from evaluators.policy import asymptotic, sequential
from evaluators.policy.estimands import estimand_for
from schemas.control import Bounds, GuardrailEvidence, Leaning, Verdict
from schemas.metric_names import lookup_metric
from schemas.rollout import Guardrail

#: Quantile metrics: the metric state's sketch and the quantile.
_QUANTILES = {"latency_p50_ms": ("lat", 0.5), "latency_p95_ms": ("lat", 0.95), "latency_p99_ms": ("lat", 0.99),
              "label_delay_p50_s": ("delay", 0.5), "label_delay_p95_s": ("delay", 0.95)}


#: A version's totals as a look reads them: slim, or whole (an empty state before any sample).
Totals = SlimState | VersionState

_PROPORTIONS = ("accuracy", "error_rate", *_QUANTILES)


def unsupported_reason(guardrail: Guardrail, task: str = "binary") -> str | None:
    """Why the engine cannot judge ``guardrail`` in a rollout of ``task`` (None when it can)."""
    if lookup_metric(guardrail.metric).kind == "check":
        return None  # judged by its monitor (evaluators/policy/schema_guardrail.py)
    if guardrail.metric.startswith("drift."):
        if guardrail.max is None:
            return f"{guardrail.metric}: give max, the drift size (PSI or Jensen-Shannon distance) it tolerates"
        return None
    estimand = estimand_for(guardrail.metric, task)
    if estimand is not None and estimand.absolute_only and guardrail.comparison == "baseline":
        return (f"{guardrail.metric} is measured against the primary itself, so the baseline has none: "
                f"give min (the share of requests on which the candidate must agree)")
    worse_side = "min" if guardrail.prefers_higher else "max"
    other = "max" if worse_side == "min" else "min"
    if guardrail.comparison == "absolute" and getattr(guardrail, worse_side) is None:
        return (f"{other} bounds the better side of {guardrail.metric}; give {worse_side} "
                f"(the bound it must not cross)")
    return None


def unplannable_reason(guardrail: Guardrail) -> str | None:
    """Why ``guardrail``'s ``min_detectable_effect`` cannot tune its test (None when it can, or it
    plans none)."""
    if guardrail.min_detectable_effect is None:
        return None
    if guardrail.metric in _QUANTILES or guardrail.metric.startswith("drift."):
        return (f"{guardrail.metric} takes no min_detectable_effect: a quantile is tested as the share of samples "
                f"over its bound, a drift score window by window")
    return None


def needs_labels(guardrail: Guardrail) -> bool:
    return lookup_metric(guardrail.metric).needs_labels


# -- counts of bad samples -------------------------------------------------------------------------
def bad_counts(metric: str, state: Totals, latency_bound: float | None = None) -> tuple[int, int]:
    """(bad samples, samples) of ``metric`` in a version's metric state (``latency_bound``: a
    quantile metric's, over which a sample is bad)."""
    if metric == "accuracy":
        return classification.wrong(state["cls"])
    if metric == "error_rate":
        return state["err"], state["n"]
    if latency_bound is None:
        raise ValueError(f"{metric}: a quantile's bad samples need its bound")
    values = _sketch_of(metric, state)
    return sketch.count_above(values, latency_bound), values["n"]


def _sketch_of(metric: str, state: Totals) -> Sketch:
    """The sketch of a quantile metric (an empty one in a state saved before slim states kept it)."""
    found = state["lat"] if _QUANTILES[metric][0] == "lat" else state.get("delay")
    return found or sketch.new_sketch()


def _diff(now: tuple[int, int], then: tuple[int, int]) -> tuple[int, int]:
    return now[0] - then[0], now[1] - then[1]


def since(metric: str, now: Totals, then: Totals, latency_bound: float | None = None) -> tuple[int, int]:
    return _diff(bad_counts(metric, now, latency_bound), bad_counts(metric, then, latency_bound))


def _quantile_since(metric: str, now: Totals, then: Totals) -> float | None:
    return sketch.quantile(sketch.subtract(_sketch_of(metric, now), _sketch_of(metric, then)), _QUANTILES[metric][1])


# -- the null rate ---------------------------------------------------------------------------------
def _absolute_bound(guardrail: Guardrail) -> float:
    """The bound an absolute guardrail must not cross: its ``min`` when higher is better, else its
    ``max`` (a spec giving only the other is refused first: :func:`unsupported_reason`)."""
    bound = guardrail.min if guardrail.prefers_higher else guardrail.max
    if bound is None:
        raise ValueError(unsupported_reason(guardrail) or f"{guardrail.metric}: no bound on its worse side")
    return bound


def null_rate(guardrail: Guardrail, base_bad: int, base_n: int) -> float | None:
    """The candidate's largest acceptable bad-sample rate; None while a baseline comparison has no
    baseline samples."""
    metric = guardrail.metric
    if metric in _QUANTILES:
        return 1 - _QUANTILES[metric][1]  # the bound itself moves with the baseline (latency_bound)
    if guardrail.comparison == "absolute":
        bound = _absolute_bound(guardrail)
        return (1 - bound) if guardrail.prefers_higher else bound
    if base_n <= 0:
        return None
    rate = base_bad / base_n
    if guardrail.max_degradation is not None:
        return min(rate + guardrail.max_degradation, 1.0)
    relative = guardrail.max_degradation_relative or 0.0
    if guardrail.prefers_higher:  # the metric (1 - rate) may fall by a fraction of itself
        return min(1 - (1 - rate) * (1 - relative), 1.0)
    return min(rate * (1 + relative), 1.0)


def planned_bad_rate(guardrail: Guardrail, p0: float, base_bad: int, base_n: int) -> float:
    """The bad-sample rate of a candidate worse than acceptable by the guardrail's
    ``min_detectable_effect`` (points of the metric, or a fraction of the baseline's value)."""
    effect = guardrail.min_detectable_effect or 0.0
    if guardrail.max_degradation_relative is not None and base_n > 0:
        rate = base_bad / base_n
        effect *= (1 - rate) if guardrail.prefers_higher else rate
    return min(p0 + effect, 1.0)


def latency_bound(guardrail: Guardrail, baseline_now: Totals, baseline_start: Totals) -> float | None:
    if guardrail.comparison == "absolute":
        return guardrail.max
    value = _quantile_since(guardrail.metric, baseline_now, baseline_start)
    if value is None:
        return None
    if guardrail.max_degradation is not None:
        return value + guardrail.max_degradation
    return value * (1 + (guardrail.max_degradation_relative or 0.0))


# -- judging ---------------------------------------------------------------------------------------
def _baseline_then(metric: str, start: Totals, last: Totals, now: Totals) -> tuple[Totals, Totals]:
    """The baseline (end, start) that sets the null rate for new samples: since the rollout began
    up to the last look; before it has any, its history before the rollout; with no history at
    all, what it has now (the first look only)."""
    empty: Totals = new_state()
    if since(metric, last, start, math.inf)[1] > 0:
        return last, start
    if bad_counts(metric, start, math.inf)[1] > 0:
        return start, empty
    return now, start


def _update_against_baseline(test: dict[str, Any], p0: float, base_then: tuple[int, int],
                             new_cand: tuple[int, int], new_base: tuple[int, int]) -> None:
    """The paired (conditional) test of the look's new samples of both versions, with the
    odds-ratio bound of ``p0`` over the baseline's rate so far; while the baseline has shown no bad
    sample and the guardrail allows some slack, that bound is infinite, so the candidate's samples
    are judged against ``p0`` itself (see :mod:`evaluators.policy.sequential`)."""
    base_bad, base_n = base_then
    rate = base_bad / base_n
    if p0 <= rate or base_bad > 0:
        sequential.update_paired(test, *new_cand, *new_base, sequential.log_odds_ratio(p0, rate))
    else:
        sequential.update(test, *new_cand, p0=p0)


def new_test_for(guardrail: Guardrail) -> dict[str, Any]:
    """A fresh sequential test of the kind ``guardrail`` needs."""
    if guardrail.metric in _PROPORTIONS:
        return sequential.new_test()
    return dict(asymptotic.new_test())


def judge(guardrail: Guardrail, test: dict[str, Any], base: tuple[SlimState, SlimState, SlimState],
          cand: tuple[SlimState, SlimState, SlimState], task: str = "binary") -> GuardrailEvidence:
    """Judge ``guardrail`` at a look (see :func:`judge_proportion` and :func:`judge_estimand`)."""
    if guardrail.metric in _PROPORTIONS:
        return judge_proportion(guardrail, test, base, cand)
    if not asymptotic.is_mean_test(test):  # a test saved before this kind existed: start it now
        test.clear()
        test.update(asymptotic.new_test())
    return judge_estimand(guardrail, test, base, cand, task)


def judge_proportion(guardrail: Guardrail, test: dict[str, Any], base: tuple[SlimState, SlimState, SlimState],
                     cand: tuple[SlimState, SlimState, SlimState]) -> GuardrailEvidence:
    """Update the guardrail's sequential ``test`` with the candidate's samples since the last look
    and judge it. ``base`` and ``cand``: each version's metric state at rollout start, at the last
    look, and now. The null rate scoring new samples uses the baseline up to the last look
    (predictable); the reported bounds use everything since the start."""
    metric = guardrail.metric
    b_start, b_last, b_now = base
    c_start, c_last, c_now = cand
    latency = metric in _QUANTILES
    b_then, b_start_then = _baseline_then(metric, b_start, b_last, b_now)
    bound_then = latency_bound(guardrail, b_then, b_start_then) if latency else None
    bound_now = latency_bound(guardrail, b_now, b_start) if latency else None
    if not latency or bound_then is not None:
        base_then = since(metric, b_then, b_start_then, bound_then)
        p0 = null_rate(guardrail, *base_then)
        new_cand = since(metric, c_now, c_last, bound_then)
        if p0 is not None and guardrail.min_detectable_effect is not None and not latency:
            sequential.plan(test, p0, planned_bad_rate(guardrail, p0, *base_then))
        if p0 is not None and guardrail.comparison == "baseline" and not latency:
            _update_against_baseline(test, p0, base_then, new_cand, since(metric, b_now, b_last))
        elif p0 is not None:
            sequential.update(test, *new_cand, p0=p0)
    ready = not latency or bound_now is not None
    cand_bad, cand_n = since(metric, c_now, c_start, bound_now) if ready else (0, 0)
    base_bad, base_n = since(metric, b_now, b_start, bound_now) if ready else (0, 0)
    p0_now = null_rate(guardrail, base_bad, base_n) if ready else None
    alpha = guardrail.alpha
    stat = sequential.statistic(test)
    threshold = math.log(1 / alpha)
    verdict: Verdict
    if cand_n == 0 or p0_now is None:
        verdict = "undecided"
    elif stat >= threshold:
        verdict = "fail"
    elif guardrail.comparison == "baseline" and not latency:
        # Non-inferiority shown: the whole confidence sequence of the difference is inside the slack.
        slack = p0_now - base_bad / base_n
        _, _, diff_upper = sequential.difference_bounds(cand_bad, cand_n, base_bad, base_n, alpha)
        verdict = "pass" if diff_upper < slack else "undecided"
    else:
        _, _, upper = sequential.proportion_bounds(cand_bad, cand_n, alpha)
        verdict = "pass" if upper < p0_now else "undecided"
    leaning: Leaning | None = None
    if verdict == "pass" or verdict == "fail":
        leaning = verdict
    elif cand_n and p0_now is not None:  # the candidate's bad rate against its largest acceptable one
        leaning = "fail" if cand_bad / cand_n > p0_now else "pass"
    as_metric = metric == "accuracy"  # reported as accuracy, not as its error rate

    def bounds(bad: int, n: int) -> Bounds:
        value, low, high = sequential.proportion_bounds(bad, n, alpha)
        if value is None:
            return Bounds(samples=0)
        if as_metric:
            value, low, high = 1 - value, 1 - high, 1 - low
        return Bounds(value=value, samples=n, lower=low, upper=high)

    if latency:  # reported in the metric's unit (ms, s), not as the share over the bound
        base_bounds = quantile_bounds(metric, b_now, b_start, alpha)
        cand_bounds = quantile_bounds(metric, c_now, c_start, alpha)
    else:
        base_bounds, cand_bounds = bounds(base_bad, base_n), bounds(cand_bad, cand_n)
    return GuardrailEvidence(
        guardrail=guardrail.label, metric=metric, verdict=verdict,
        baseline=base_bounds if guardrail.comparison == "baseline" else None,
        candidate=cand_bounds, statistic=round(stat, 6), threshold=round(threshold, 6),
        critical=guardrail.critical, leaning=leaning)


def quantile_bounds(metric: str, now: Totals, start: Totals, alpha: float) -> Bounds:
    """A quantile metric's value since ``start`` in its unit, with anytime-valid bounds: the sample
    quantiles at the ends of the confidence sequence of the share below the quantile (the
    binomial duality of order statistics; the sketch adds its 1% relative error)."""
    values = sketch.subtract(_sketch_of(metric, now), _sketch_of(metric, start))
    n = values["n"]
    value = sketch.quantile(values, _QUANTILES[metric][1]) if n > 0 else None
    if value is None:
        return Bounds(samples=0)
    q = _QUANTILES[metric][1]
    _, low, high = sequential.proportion_bounds(round(q * n), n, alpha)
    lower, upper = sketch.quantile(values, max(low, 0.0)), sketch.quantile(values, min(high, 1.0))
    return Bounds(value=value, samples=n, lower=lower if lower is not None else value,
                  upper=upper if upper is not None else value)


def comparison_of(guardrail: Guardrail) -> tuple[float, float]:
    """``(lam, bound)``: the guardrail asks whether ``M_c - lam * M_b`` is on the acceptable side of
    ``bound`` (at least it when higher is better, at most it otherwise).

    >>> comparison_of(Guardrail(metric="outcome.revenue", max_degradation_relative=0.05))
    (0.95, 0.0)
    >>> comparison_of(Guardrail(metric="mae", max_degradation=0.5))
    (1.0, 0.5)
    """
    higher = guardrail.prefers_higher
    if guardrail.comparison == "absolute":
        return 0.0, _absolute_bound(guardrail)
    if guardrail.max_degradation is not None:
        return 1.0, -guardrail.max_degradation if higher else guardrail.max_degradation
    relative = guardrail.max_degradation_relative or 0.0
    return (1.0 - relative if higher else 1.0 + relative), 0.0


def planned_effect(
    guardrail: Guardrail, test: dict[str, Any], baseline_value: Callable[[], float | None]
) -> float | None:
    """The guardrail's ``min_detectable_effect`` in the units of its contrast ``M_c - lam * M_b``: as
    given for an absolute bound or a difference; times the baseline's value (``baseline_value()``,
    read only until the test has fixed its mixture) for a relative change. None when it plans none,
    or its baseline has no value yet."""
    effect = guardrail.min_detectable_effect
    if effect is None or guardrail.max_degradation_relative is None or "planned" in test:
        return effect
    value = baseline_value()
    return effect * abs(value) if value is not None and math.isfinite(value) and value != 0 else None


def auc_of(bins: dict | None, then: dict | None, task: str) -> tuple[float, float, float] | None:
    """AUC, variance and effective count: the positive class's for a binary model, the mean over
    classes (one against the rest) for a multiclass one, their variances taken as independent."""
    bins, then = bins or {}, then or {}
    classes = [c for c in ("1", "true") if c in bins][:1] if task == "binary" else sorted(bins)
    found = [e for e in (asymptotic.auc_estimate(bins[c], then.get(c)) for c in classes) if e is not None]
    if not found:
        return None
    k = len(found)
    return (sum(e[0] for e in found) / k, sum(e[1] for e in found) / (k * k), min(e[2] for e in found))


def _judge_auc(guardrail: Guardrail, test: dict[str, Any], base: tuple[SlimState, SlimState, SlimState],
               cand: tuple[SlimState, SlimState, SlimState], task: str) -> GuardrailEvidence:
    """ROC AUC on the rollout's cumulative estimates (see :mod:`evaluators.policy.asymptotic`)."""
    lam, bound = comparison_of(guardrail)
    alpha = guardrail.alpha

    def since_start(versions: tuple[SlimState, SlimState, SlimState]) -> tuple[float, float, float] | None:
        return auc_of(versions[2].get("sums", {}).get("roc_auc"), versions[0].get("sums", {}).get("roc_auc"), task)

    c, b = since_start(cand), since_start(base) if guardrail.comparison == "baseline" else None

    def bounds(found: tuple[float, float, float] | None) -> Bounds:
        if found is None:
            return Bounds(samples=0)
        value, variance, effective = found
        r = asymptotic.radius(variance, effective, alpha)
        return Bounds(value=value, samples=int(effective), lower=max(value - r, 0.0), upper=min(value + r, 1.0))

    verdict: Verdict = "undecided"
    leaning: Leaning | None = None
    statistic = 0.0
    if c is not None and (b is not None or guardrail.comparison == "absolute") and math.isfinite(c[1]):
        estimate = c[0] - (lam * b[0] if b else 0.0)
        variance = c[1] + (lam * lam * b[1] if b else 0.0)
        effective = c[2] * b[2] / (c[2] + b[2]) if b else c[2]
        effect = planned_effect(guardrail, test, lambda: b[0] if b else None)
        mixtures = asymptotic.mixtures_of(test, variance * effective, effect)
        verdict, leaning, statistic = asymptotic.decide(estimate - bound, variance, effective, alpha, mixtures)
    return GuardrailEvidence(
        guardrail=guardrail.label, metric=guardrail.metric, verdict=verdict,
        baseline=bounds(b) if guardrail.comparison == "baseline" else None, candidate=bounds(c),
        statistic=round(statistic, 6), threshold=round(math.log(1 / alpha), 6), critical=guardrail.critical,
        leaning=leaning)


def judge_estimand(guardrail: Guardrail, test: dict[str, Any], base: tuple[SlimState, SlimState, SlimState],
                   cand: tuple[SlimState, SlimState, SlimState], task: str) -> GuardrailEvidence:
    """Update the guardrail's asymptotic ``test`` with both versions' samples since its last scored
    look and judge ``M_c - lam * M_b`` against its bound (:mod:`evaluators.policy.asymptotic`);
    each version's bounds are its own confidence sequence since the rollout's start."""
    if guardrail.metric == "roc_auc":
        return _judge_auc(guardrail, test, base, cand, task)
    estimand = estimand_for(guardrail.metric, task)
    if estimand is None:
        raise ValueError(unsupported_reason(guardrail, task) or f"{guardrail.metric}: not tested as an estimand")
    mean_test = cast(asymptotic.MeanTestState, test)  # judge() has made it one
    lam, bound = comparison_of(guardrail)
    c_raw = (estimand.raw(cand[0]), estimand.raw(cand[2]))
    b_raw = (estimand.raw(base[0]), estimand.raw(base[2])) if guardrail.comparison == "baseline" else None
    asymptotic.update(mean_test, estimand, c_raw, b_raw, lam)
    effect = planned_effect(guardrail, test, lambda: asymptotic.estimate(estimand, *b_raw)[0] if b_raw else None)
    verdict, leaning, statistic, _ = asymptotic.judgement(mean_test, estimand, c_raw, b_raw, lam, bound,
                                                          guardrail.prefers_higher, guardrail.alpha, effect)

    def bounds(raw: tuple[Any, Any]) -> Bounds:
        value, low, high, samples = asymptotic.level(estimand, raw[0], raw[1], guardrail.alpha)
        if value is None:
            return Bounds(samples=samples)
        if not (math.isfinite(low) and math.isfinite(high)):
            return Bounds(value=value, samples=samples)
        if estimand.bounded is not None:
            low, high = max(low, estimand.bounded[0]), min(high, estimand.bounded[1])
        return Bounds(value=value, samples=samples, lower=low, upper=high)

    return GuardrailEvidence(
        guardrail=guardrail.label, metric=guardrail.metric, verdict=verdict,
        baseline=bounds(b_raw) if b_raw is not None else None, candidate=bounds(c_raw),
        statistic=round(statistic, 6), threshold=round(math.log(1 / guardrail.alpha), 6),
        critical=guardrail.critical, leaning=leaning)

"""Judging one guardrail from metric states: pass, fail or undecided, with its evidence.

Every supported guardrail is a question about a proportion of *bad* samples, so one sequential
test (:mod:`evaluators.policy.sequential`) serves them all:

- ``accuracy``: wrong predictions among labelled ones;
- ``error_rate``: failed responses;
- ``latency_pXX_ms``: responses slower than a bound. "p99 under 250 ms" is "at most 1% of
  responses over 250 ms"; against the baseline, the bound is the baseline's own quantile plus the
  allowed degradation.

Against the baseline (accuracy, error rate), both versions' samples of each look go into a paired
test, conditional on the look's bad samples, so the baseline's rate is never plugged in as if
known; the allowed degradation becomes an odds-ratio bound. An absolute bound ``p0`` (or a latency
bound set by the baseline's quantile) is tested on the candidate's samples alone. Metrics of kind ``mean`` or ``score`` (F1, AUC, MAE, ...)
have no anytime-valid test here yet: :func:`unsupported_reason` names them, and a spec using
them is refused when validated rather than held forever.
"""

from __future__ import annotations

import math
from typing import Any

from evaluators.metrics import classification, sketch
from evaluators.metrics.version import new_state
from evaluators.policy import sequential
from schemas.control import Bounds, GuardrailEvidence
from schemas.metric_names import lookup_metric
from schemas.rollout import Guardrail

_QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def unsupported_reason(guardrail: Guardrail) -> str | None:
    """Why the engine cannot judge ``guardrail`` (None when it can)."""
    if lookup_metric(guardrail.metric).kind == "check":
        return None  # judged by its monitor (evaluators/policy/schema_guardrail.py)
    if guardrail.metric.startswith("drift."):
        if guardrail.max is None:
            return f"{guardrail.metric}: give max, the drift size (PSI or Jensen-Shannon distance) it tolerates"
        return None
    if guardrail.metric not in ("accuracy", "error_rate", *_QUANTILES):
        kind = lookup_metric(guardrail.metric).kind
        return (f"metric {guardrail.metric!r} ({kind}) has no anytime-valid test yet; guardrails may "
                f"use accuracy, error_rate, {', '.join(_QUANTILES)}")
    worse_side = "min" if guardrail.prefers_higher else "max"
    other = "max" if worse_side == "min" else "min"
    if guardrail.comparison == "absolute" and getattr(guardrail, worse_side) is None:
        return (f"{other} bounds the better side of {guardrail.metric}; give {worse_side} "
                f"(the bound it must not cross)")
    return None


def needs_labels(guardrail: Guardrail) -> bool:
    return lookup_metric(guardrail.metric).needs_labels


# -- counts of bad samples -------------------------------------------------------------------------
def bad_counts(metric: str, state: dict, latency_bound: float | None = None) -> tuple[int, int]:
    """(bad samples, samples) of ``metric`` in a version's metric state."""
    if metric == "accuracy":
        return classification.wrong(state.get("cls"))
    if metric == "error_rate":
        return state["err"], state["n"]
    return sketch.count_above(state["lat"], latency_bound), state["lat"]["n"]


def _diff(now: tuple[int, int], then: tuple[int, int]) -> tuple[int, int]:
    return now[0] - then[0], now[1] - then[1]


def since(metric: str, now: dict, then: dict, latency_bound: float | None = None) -> tuple[int, int]:
    return _diff(bad_counts(metric, now, latency_bound), bad_counts(metric, then, latency_bound))


def _quantile_since(now: dict, then: dict, q: float) -> float | None:
    return sketch.quantile(sketch.subtract(now["lat"], then["lat"]), q)


# -- the null rate ---------------------------------------------------------------------------------
def null_rate(guardrail: Guardrail, base_bad: int, base_n: int) -> float | None:
    """The candidate's largest acceptable bad-sample rate; None while a baseline comparison has no
    baseline samples."""
    metric = guardrail.metric
    if metric in _QUANTILES:
        return 1 - _QUANTILES[metric]  # the bound itself moves with the baseline (latency_bound)
    if guardrail.comparison == "absolute":
        return (1 - guardrail.min) if guardrail.prefers_higher else guardrail.max
    if base_n <= 0:
        return None
    rate = base_bad / base_n
    if guardrail.max_degradation is not None:
        return min(rate + guardrail.max_degradation, 1.0)
    relative = guardrail.max_degradation_relative or 0.0
    if guardrail.prefers_higher:  # the metric (1 - rate) may fall by a fraction of itself
        return min(1 - (1 - rate) * (1 - relative), 1.0)
    return min(rate * (1 + relative), 1.0)


def latency_bound(guardrail: Guardrail, baseline_now: dict, baseline_start: dict) -> float | None:
    if guardrail.comparison == "absolute":
        return guardrail.max
    value = _quantile_since(baseline_now, baseline_start, _QUANTILES[guardrail.metric])
    if value is None:
        return None
    if guardrail.max_degradation is not None:
        return value + guardrail.max_degradation
    return value * (1 + (guardrail.max_degradation_relative or 0.0))


# -- judging ---------------------------------------------------------------------------------------
def _baseline_then(metric: str, start: dict, last: dict, now: dict) -> tuple[dict, dict]:
    """The baseline (end, start) that sets the null rate for new samples: since the rollout began
    up to the last look; before it has any, its history before the rollout; with no history at
    all, what it has now (the first look only)."""
    empty = new_state()
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


def judge(guardrail: Guardrail, test: dict[str, Any], base: tuple[dict, dict, dict],
          cand: tuple[dict, dict, dict]) -> GuardrailEvidence:
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
    as_metric = metric == "accuracy"  # reported as accuracy, not as its error rate

    def bounds(bad: int, n: int) -> Bounds:
        value, low, high = sequential.proportion_bounds(bad, n, alpha)
        if value is None:
            return Bounds(samples=0)
        if as_metric:
            value, low, high = 1 - value, 1 - high, 1 - low
        return Bounds(value=value, samples=n, lower=low, upper=high)

    return GuardrailEvidence(
        guardrail=guardrail.label, metric=metric, verdict=verdict,
        baseline=bounds(base_bad, base_n) if guardrail.comparison == "baseline" else None,
        candidate=bounds(cand_bad, cand_n), statistic=round(stat, 6), threshold=round(threshold, 6),
        critical=guardrail.critical)

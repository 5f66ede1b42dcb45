"""Anytime-valid tests of means, ratios and scores: asymptotic confidence sequences on a stratified
difference, through the delta method.

A guardrail on such a metric ``M = g(E[u])`` (:mod:`evaluators.policy.estimands`) asks whether the
candidate's ``M_c`` is on the acceptable side of a bound: ``M_c - lam * M_b`` against ``bound``
(``lam`` = 1 and ``bound`` = the allowed degradation for a difference, ``lam`` = 1 -/+ the allowed
fraction and ``bound`` = 0 for a relative change, ``lam`` = 0 for an absolute bound).

**The martingale.** Each look's new samples form a stratum ``t`` (the two versions' samples of the
same period: a rate that swings over the day is shared by both and cancels, and a split of 10/90
weighs nothing). Each version's samples are linearized at its *reference*, its mean ``r`` of the
samples before the stratum (the delta method, with a predictable expansion point):
``x = g(r) + grad g(r) . (mean of u in the stratum - r)``, whose expectation is ``M`` up to
``O(|r - E u|^2)``. The stratum contributes ``h_t * (x_c - lam * x_b)`` with the count weight
``h_t = n_c n_b / (n_c + n_b)`` (``n_c`` for an absolute bound): a martingale whose drift is
``h_t * (M_c - lam * M_b)``. Its variance ``V`` is the sum of ``h_t^2 (s_c^2 / n_c + lam^2 s_b^2
/ n_b)``, with ``s^2`` each version's variance of ``grad g . u`` over the rollout (a consistent
estimate; the spread of a swinging rate only widens it).

**The boundary.** Robbins' normal mixture of ``exp(lambda S - lambda^2 V / 2)`` over positive
drifts ``lambda`` (one-sided, one per decision), in the scale-free form of the asymptotic confidence
sequences of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas ("Time-uniform central limit theory and
asymptotic confidence sequences", Ann. Statist. 2024, Theorem 2.2 and its martingale form): with
``H = sum h_t`` the effective sample count, ``s^2 = V / H`` and ``x`` the standardized distance of
the estimate ``S / H`` from a bound, the e-value is ``sqrt(rho / (H + rho)) exp(x^2 / 2) 2 Phi(x)``,
averaged over two mixture sizes ``rho`` (:data:`MIXTURE_SIZES`). Under the null it is a
nonnegative supermartingale as the samples grow, so it ever reaches ``1 / alpha`` with probability
tending to at most ``alpha``: looking after every batch costs nothing. It needs only finite
variances (not bounded samples), so it holds for revenue-like heavy tails as the samples grow;
early looks are protected by ``rho`` (the boundary is wide before a few hundred samples).

**Verdicts.** ``fail`` when the e-value against "acceptable" reaches ``1 / alpha`` (the confidence
sequence lies wholly on the wrong side of the bound), ``pass`` when the e-value against
"unacceptable" does, else ``undecided``, with the side the estimate leans to (:func:`decide`).

**ROC AUC** is a rank statistic, not a function of sample means: its test uses the rollout's
cumulative estimates (DeLong's placement variance from 200 score bins per version,
:func:`auc_estimate`) in the same boundary. Asymptotically the same (the AUC is asymptotically
linear in its placement values), but not stratified by look.

>>> from evaluators.policy.estimands import estimand_for
>>> e = estimand_for("outcome.converted", "binary")
>>> test, start = new_test(), [0, 0.0, 0.0]
>>> base = [0, 0.0, 0.0]; cand = [0, 0.0, 0.0]
>>> for _ in range(40):  # 5,000 labels per look at 50/50: 10% against 6% conversion
...     base = [base[0] + 2500, base[1] + 250, base[2] + 250]
...     cand = [cand[0] + 2500, cand[1] + 150, cand[2] + 150]
...     update(test, e, (start, cand), (start, base), lam=1.0)
>>> judgement(test, e, (start, cand), (start, base), lam=1.0, bound=0.0, higher_is_better=True, alpha=0.01)[0]
'fail'
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, NotRequired, TypedDict

import numpy as np
from scipy.special import log_ndtr

from evaluators.policy.estimands import Estimand, Moments
from schemas.control import Leaning, Verdict

#: The mixture's sizes ``rho``, in effective samples: each normal mixture's boundary is tightest
#: near its size; the e-value averages them, so the test is near its best from a few hundred
#: samples to tens of thousands (measured in ``bench/policy_metrics.py``).
MIXTURE_SIZES: tuple[float, ...] = (300.0, 3000.0)
#: Samples each version's reference needs before a look is scored (the first looks only set it).
MIN_REFERENCE = 30
#: A guardrail with a planned effect ``d`` (``min_detectable_effect``) mixes over drifts with a
#: normal prior centred at the planned drift ``m = d / s`` (``s``: the contrast's standard deviation
#: per effective sample) with standard deviation ``PLANNED_SPREAD * m``, cut at 0: close to the
#: sequential probability ratio test of ``d`` itself, and still as fast as the untuned mixture for a
#: drift half or twice as large (``bench/policy_metrics.py``; docs/statistics.md).
PLANNED_SPREAD = 0.5
#: The largest planned drift, in standard deviations per effective sample: a drift this large is
#: caught within about a thousand effective samples; a larger one is planned as this one, so that
#: the test never leans on the central limit theorem at a few dozen samples.
MAX_PLANNED_DRIFT = 0.1


class ReferencePoint(TypedDict):
    """Each version's raw sums (its estimand's part of the slim state) at the last scored look."""

    candidate: Any
    baseline: Any


class MeanTestState(TypedDict):
    """A guardrail's asymptotic test, kept in the rollout's state (JSON)."""

    kind: str  # "asymptotic" (proportion tests are the other kind: evaluators.policy.sequential)
    at: ReferencePoint | None  # where the next stratum starts; None before the first look
    weighted_sum: float  # S: sum of h_t * (x_c - lam * x_b) over scored strata
    weight: float  # H: sum of h_t, the effective sample count
    candidate_spread: float  # sum of h_t^2 / n_c (times s_c^2: the candidate's part of V)
    baseline_spread: float  # sum of h_t^2 * lam^2 / n_b
    n: int  # candidate samples scored
    #: The planned mixture ``[size, centre]``, fixed at the first judged look of a guardrail with a
    #: planned effect (see :func:`planned_mixture`); absent otherwise (:data:`MIXTURE_SIZES`).
    planned: NotRequired[list[float]]


def new_test() -> MeanTestState:
    return {"kind": "asymptotic", "at": None, "weighted_sum": 0.0, "weight": 0.0, "candidate_spread": 0.0,
            "baseline_spread": 0.0, "n": 0}


def is_mean_test(state: dict) -> bool:
    return state.get("kind") == "asymptotic"


def _linear(estimand: Estimand, reference: Moments, new: Moments, layout: Any) -> float | None:
    """``g(r) + grad g(r) . (mean of the new samples - r)``: the stratum's linearized estimate.
    Before the reference has :data:`MIN_REFERENCE` samples, a stratum that has them is expanded at
    its own mean (``g`` of it: biased by ``O(1 / n)`` only); None when neither has enough."""
    if reference.n < MIN_REFERENCE:
        if new.n < MIN_REFERENCE:
            return None
        return estimand.value(new.mean(), layout)
    r = reference.mean()
    value, gradient = estimand.value(r, layout), estimand.gradient(r, layout)
    if value is None or gradient is None:
        return None
    return value + float(gradient @ (new.mean() - r))


def update(test: MeanTestState, estimand: Estimand, cand: tuple[Any, Any], base: tuple[Any, Any] | None,
           lam: float) -> None:
    """Score the samples since the last scored look. ``cand``/``base``: each version's raw sums at
    the rollout's start and now (``base`` None for an absolute bound). Looks where a version has
    no new samples are carried into the next one; the first looks only set each version's reference."""
    c_start, c_now = cand
    b_start, b_now = base if base is not None else (None, None)
    at = test["at"]
    if at is None:  # the first look: the stratum starts at the rollout's start
        at = test["at"] = {"candidate": c_start, "baseline": b_start}
    c_layout = estimand.layout(c_now)
    c_new = estimand.moments(c_now, at["candidate"], c_layout)
    if c_new.n <= 0:
        return
    x_c = _linear(estimand, estimand.moments(at["candidate"], c_start, c_layout), c_new, c_layout)
    if base is None:
        weight, x = c_new.n, x_c
        b_part = 0.0
    else:
        b_layout = estimand.layout(b_now)
        b_new = estimand.moments(b_now, at["baseline"], b_layout)
        if b_new.n <= 0:
            return
        x_b = _linear(estimand, estimand.moments(at["baseline"], b_start, b_layout), b_new, b_layout)
        weight = c_new.n * b_new.n / (c_new.n + b_new.n)
        x = None if x_c is None or x_b is None else x_c - lam * x_b
        b_part = weight * weight * lam * lam / b_new.n
    if x is None:
        if max(c_new.n, b_new.n if base is not None else 0) >= MIN_REFERENCE:
            test["at"] = {"candidate": c_now, "baseline": b_now}  # g undefined there: skip the stratum
        return  # else carried on until its samples can be expanded
    test["at"] = {"candidate": c_now, "baseline": b_now}
    test["weighted_sum"] += weight * x
    test["weight"] += weight
    test["candidate_spread"] += weight * weight / c_new.n
    test["baseline_spread"] += b_part
    test["n"] += int(c_new.n)


def spread(estimand: Estimand, moments: Moments, layout: Any, other: float = 0.0) -> float | None:
    """The variance of ``grad g . u`` over ``moments`` (at their mean), regularized toward
    ``other`` (the other version's) or the worst case of a bounded sample by one pseudo-sample, so
    that a run of identical samples does not look certain."""
    if moments.n <= 0:
        return None
    mean = moments.mean()
    gradient = estimand.gradient(mean, layout)
    if gradient is None:
        return None
    variance = max(float(gradient @ moments.covariance() @ gradient), 0.0)
    prior = other
    if estimand.bounded is not None:
        low, high = estimand.bounded
        prior = max(prior, (high - low) ** 2 / 4)
    return (moments.n * variance + max(prior, variance)) / (moments.n + 1)


class Mixture(NamedTuple):
    """A normal prior over the drift per effective sample, in standard deviations, cut at 0:
    precision ``size`` (effective samples, Robbins' ``rho``) and mean ``centre``."""

    size: float
    centre: float = 0.0


#: The untuned mixtures: centred at 0, each tightest near its size, averaged.
DEFAULT_MIXTURES: tuple[Mixture, ...] = tuple(Mixture(size) for size in MIXTURE_SIZES)


def planned_mixture(per_sample_variance: float, effect: float) -> Mixture | None:
    """The mixture tuned to catch a contrast ``effect`` beyond its bound, with ``per_sample_variance``
    the contrast's variance per effective sample (None when either is not a positive finite number).

    >>> [round(x, 6) for x in planned_mixture(1.0, 0.05)]  # a twentieth of a standard deviation
    [1600.0, 0.05]
    >>> [round(x, 6) for x in planned_mixture(1.0, 1.0)]  # a large effect is planned as the largest drift
    [400.0, 0.1]
    """
    if not (math.isfinite(per_sample_variance) and math.isfinite(effect)) or per_sample_variance <= 0 or effect <= 0:
        return None
    drift = min(effect / math.sqrt(per_sample_variance), MAX_PLANNED_DRIFT)
    return Mixture(size=1.0 / (PLANNED_SPREAD * drift) ** 2, centre=drift)


def mixtures_of(test: MeanTestState | dict, per_sample_variance: float, effect: float | None) -> tuple[Mixture, ...]:
    """The mixtures ``test`` uses: its planned one when the guardrail plans an ``effect`` (fixed the
    first time it can be computed, from the variance then; a later variance does not move it), else
    :data:`DEFAULT_MIXTURES`."""
    if effect is None:
        return DEFAULT_MIXTURES
    planned = test.get("planned")
    if planned is None:
        mixture = planned_mixture(per_sample_variance, effect)
        if mixture is None:
            return DEFAULT_MIXTURES
        test["planned"] = [mixture.size, mixture.centre]
        return (mixture,)
    return (Mixture(*planned),)


def log_evidence(distance: float, variance: float, effective: float,
                 mixtures: tuple[Mixture, ...] = DEFAULT_MIXTURES) -> float:
    """Log of the one-sided normal-mixture e-value against a null ``distance`` away from the
    estimate: Robbins' mixture of ``exp(lambda S - lambda^2 H / 2)`` (``S``: the standardized sum,
    ``z sqrt(H)``) over positive drifts ``lambda`` with each of ``mixtures`` as the prior, averaged.
    A prior of precision ``rho`` and mean ``m`` cut at 0 gives ``sqrt(rho / A) exp(B^2 / (2 A) -
    m^2 rho / 2) Phi(B / sqrt(A)) / Phi(m sqrt(rho))`` with ``A = H + rho``, ``B = S + m rho``; at
    ``m = 0`` that is ``sqrt(rho / (H + rho)) exp(x^2 / 2) 2 Phi(x)``, ``x`` the standardized
    distance shrunk by ``sqrt(H / (H + rho))``. Each is a nonnegative supermartingale under the
    null (a mixture of likelihood ratios of drifts at least 0), so is their average, and by Ville's
    inequality it ever reaches ``1 / alpha`` with probability at most ``alpha``."""
    if effective <= 0 or variance <= 0:
        return 0.0
    terms = []
    standardized_sum = abs(distance) * math.sqrt(effective / variance)
    for rho, centre in mixtures:
        total = effective + rho
        shifted = standardized_sum + centre * rho
        terms.append(shifted * shifted / (2 * total) - centre * centre * rho / 2 - 0.5 * math.log(total / rho)
                     + float(log_ndtr(shifted / math.sqrt(total)) - log_ndtr(centre * math.sqrt(rho))))
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms) / len(terms))


def radius(variance: float, effective: float, alpha: float) -> float:
    """Distance from an estimate with ``variance`` from ``effective`` samples beyond which a value
    is excluded, on each side, at level ``alpha``: where :func:`log_evidence` reaches
    ``log(1 / alpha)`` (``variance * effective``: the per-sample scale).

    >>> round(radius(0.09 / 10_000, 10_000, 0.01), 4)  # a 10% rate, 10,000 samples
    0.0103
    """
    if effective <= 0 or not math.isfinite(variance) or variance <= 0:
        return math.inf if variance != 0 else 0.0
    target = math.log(1 / alpha)
    scale = math.sqrt(variance)
    low, high = 0.0, scale
    while log_evidence(high, variance, effective) < target:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if log_evidence(middle, variance, effective) < target:
            low = middle
        else:
            high = middle
    return high


def _version_spread(estimand: Estimand, start: Any, now: Any, other: float = 0.0) -> tuple[Moments, Any, float | None]:
    layout = estimand.layout(now)
    moments = estimand.moments(now, start, layout)
    return moments, layout, spread(estimand, moments, layout, other)


def estimate(estimand: Estimand, start: Any, now: Any) -> tuple[float | None, float | None, int]:
    """One version's value since ``start``, the variance of one sample's linearized contribution, and
    the samples (what a fixed-sample test reads)."""
    moments, layout, variance = _version_spread(estimand, start, now)
    value = estimand.value(moments.mean(), layout) if moments.n > 0 else None
    return value, variance, int(max(moments.n, 0))


def level(estimand: Estimand, start: Any, now: Any, alpha: float) -> tuple[float | None, float, float, int]:
    """One version's value since ``start`` with its confidence sequence: ``(value, lower, upper,
    samples)``."""
    moments, layout, variance = _version_spread(estimand, start, now)
    if moments.n <= 0 or variance is None:
        return None, -math.inf, math.inf, int(max(moments.n, 0))
    value = estimand.value(moments.mean(), layout)
    if value is None:
        return None, -math.inf, math.inf, int(moments.n)
    r = radius(variance / moments.n, moments.n, alpha)
    if not (math.isfinite(r) and math.isfinite(value)):
        return (value if math.isfinite(value) else None), -math.inf, math.inf, int(moments.n)
    return value, value - r, value + r, int(moments.n)


def judgement(test: MeanTestState, estimand: Estimand, cand: tuple[Any, Any], base: tuple[Any, Any] | None,
              lam: float, bound: float, higher_is_better: bool, alpha: float,
              effect: float | None = None) -> tuple[Verdict, Leaning | None, float, float]:
    """``(verdict, leaning, statistic, estimate)`` of ``M_c - lam * M_b`` against ``bound``:
    verdict ``fail``/``pass``/``undecided``; leaning ``"fail"`` or ``"pass"`` (the side of the
    estimate while undecided; None with no scored samples); statistic the log e-value against the
    bound on the failing side (0 on the other). ``effect``: the planned effect in the contrast's
    units, which tunes the mixture (:func:`mixtures_of`)."""
    weight = test["weight"]
    if weight <= 0:
        return "undecided", None, 0.0, math.nan
    c_moments, c_layout, c_var = _version_spread(estimand, *cand)
    b_var: float | None = 0.0
    if base is not None:
        _, _, b_var = _version_spread(estimand, *base, other=c_var or 0.0)
        if c_var is not None and b_var is not None:  # each regularized once, toward the other
            c_var = spread(estimand, c_moments, c_layout, other=b_var)
    if c_var is None or b_var is None:
        return "undecided", None, 0.0, math.nan
    variance_sum = c_var * test["candidate_spread"] + b_var * test["baseline_spread"]
    estimate = test["weighted_sum"] / weight
    variance = variance_sum / (weight * weight)
    if not (math.isfinite(variance) and math.isfinite(estimate)):  # sums past float range: no verdict
        return "undecided", None, 0.0, math.nan
    good = (estimate - bound) if higher_is_better else (bound - estimate)
    mixtures = mixtures_of(test, variance_sum / weight, effect)
    return (*decide(good, variance, weight, alpha, mixtures), estimate)


def decide(good: float, variance: float, effective: float, alpha: float,
           mixtures: tuple[Mixture, ...] = DEFAULT_MIXTURES) -> tuple[Verdict, Leaning, float]:
    """``(verdict, leaning, statistic)`` of an estimate ``good`` above its bound (below: on the
    failing side): each side tested one-sided at ``alpha``, failing against the null "acceptable"
    and passing against "unacceptable"; the statistic is the log e-value on the failing side."""
    evidence = log_evidence(good, variance, effective, mixtures)
    leaning: Leaning = "fail" if good < 0 else "pass"
    decided = evidence >= math.log(1 / alpha) and good != 0
    verdict: Verdict = leaning if decided else "undecided"
    return verdict, leaning, (evidence if good < 0 else 0.0)


# -- ROC AUC ---------------------------------------------------------------------------------------
def auc_estimate(bins: list[int] | None, then: list[int] | None) -> tuple[float, float, float] | None:
    """AUC, its variance (DeLong: placement values' variances over positives and negatives) and the
    effective count ``pos * neg / (pos + neg)`` of the samples between two binned score maps
    (``[positives per bin..., negatives per bin...]``; ties in a bin count one half).

    >>> auc_estimate([0, 5, 5, 0], None)[0], auc_estimate([5, 0, 5, 0], None)[0]  # apart; in one bin
    (1.0, 0.5)
    """
    if not bins:
        return None
    counts = np.array(bins, dtype=float)
    if then:
        counts = counts - np.array(then, dtype=float)
    half = len(counts) // 2
    pos, neg = counts[:half], counts[half:]
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos <= 0 or n_neg <= 0:
        return None
    neg_below = np.cumsum(neg) - neg
    pos_above = n_pos - np.cumsum(pos)
    placement_pos = (neg_below + 0.5 * neg) / n_neg  # per bin: share of negatives below a positive
    placement_neg = (pos_above + 0.5 * pos) / n_pos  # share of positives above a negative
    auc = float((pos * placement_pos).sum() / n_pos)
    var_pos = float((pos * (placement_pos - auc) ** 2).sum() / n_pos)
    var_neg = float((neg * (placement_neg - auc) ** 2).sum() / n_neg)
    # One pseudo-sample of the worst case keeps a perfect separation from looking certain.
    variance = (var_pos + 0.25 / n_pos) / n_pos + (var_neg + 0.25 / n_neg) / n_neg
    return auc, variance, n_pos * n_neg / (n_pos + n_neg)


__all__ = ["DEFAULT_MIXTURES", "MIXTURE_SIZES", "MeanTestState", "Mixture", "auc_estimate", "estimate", "judgement",
           "level", "log_evidence", "mixtures_of", "new_test", "planned_mixture", "radius", "update"]

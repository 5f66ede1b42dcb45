"""Anytime-valid statistics for guardrails: a proportion may be looked at after every label.

**Failing** uses *mixture sequential probability ratio tests* (Robbins 1970; the mSPRT of Johari,
Pekelis and Walsh, "Always valid inference", 2017) for a proportion of "bad" samples (wrong
predictions, errors, latencies over a bound). The alternatives are log-odds shifts ``d`` in
:data:`SHIFTS` above the null, mixed with equal weights. Each look multiplies every alternative's
likelihood ratio by that of the look's new samples; as long as each factor has expectation at most 1
under the null given the past, the mixture is a non-negative supermartingale, so by Ville's
inequality it ever reaches ``1/alpha`` with probability at most ``alpha``: looking after every
sample does not inflate false rollbacks. Two kinds of factor, chosen per look from the past only:

- :func:`update_paired` (a candidate against its baseline): *conditional* on how many of a look's
  samples are bad in both versions together, the candidate's share of them is Fisher's
  noncentral hypergeometric, with the odds ratio as its only parameter. The baseline's rate is a
  nuisance that drops out, so "no worse than the baseline" (odds ratio 1) is tested exactly, with
  no estimate of the baseline plugged in, and a rate that drifts over the day (both versions see
  the same hours) does not matter. The family has a monotone likelihood ratio, so the test is
  valid for the whole null "odds ratio at most the bound". Looks with samples of one version only
  are carried until the other has some (when to score depends on counts, not on outcomes). An
  allowed degradation (``p0 = p_b + d``) becomes the odds-ratio bound ``odds(p0) / odds(p_b)``
  with the baseline's rate so far plugged in: far less sensitive to the baseline's estimation
  error than plugging it into ``p0`` itself.
- :func:`update` (a known bound ``p0``): the binomial likelihood ratio of the candidate's new
  samples. Exact for absolute guardrails; also used against a baseline that has shown no bad
  sample yet, where the odds-ratio bound would be infinite (``p0`` is then the slack alone).

**Bounds and passing** use the two-sided normal-mixture confidence sequence (Robbins; Howard,
Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Ann. Statist. 2021, eq. (14)) with the plug-in variance of the asymptotic confidence sequences of
Waudby-Smith et al. ("Time-uniform central limit theory and asymptotic confidence sequences", 2021).

>>> state = new_test()
>>> for _ in range(10): update(state, bad=12, n=100, p0=0.05)  # 12% bad against an allowed 5%
>>> rejects(state, 0.01)
True
>>> paired = new_test()
>>> for _ in range(10): update_paired(paired, cand_bad=3, cand_n=20, base_bad=18, base_n=180)  # as good
>>> rejects(paired, 0.01)
False
>>> for _ in range(10): update_paired(paired, cand_bad=8, cand_n=20, base_bad=18, base_n=180)  # 40% vs 10%
>>> rejects(paired, 0.01)
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

#: Log-odds shifts of the alternatives: a doubling grid from "a little worse" (odds ratio 1.28:
#: 10% -> 12.5% bad) to "much worse" (7.4: 10% -> 45%). Larger regressions are caught by the top
#: one within a few samples anyway; every extra alternative costs ``log(len(SHIFTS)) / len``
#: of evidence in the mixture (measured in ``bench/policy.py``: this grid needs 8% fewer labels than
#: a six-point grid from 0.125 to 4 for a 5-point accuracy drop).
SHIFTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: The grid of tests saved before :data:`SHIFTS` changed (told apart by their number of ratios).
_FIRST_SHIFTS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Prior precision of the normal mixture, in units of information (1 / variance of the estimate):
#: tightest near that much information (a few hundred labels at typical rates).
MIXTURE_RHO = 250.0
_P_MIN, _P_MAX = 1e-9, 1 - 1e-9


def new_test() -> dict:
    """Log likelihood ratio per alternative, and the samples scored."""
    return {"llr": [0.0] * len(SHIFTS), "n": 0}


def _shifts(state: dict) -> tuple[float, ...]:
    planned = state.get("shifts")
    if planned is not None:
        return tuple(planned)
    return SHIFTS if len(state["llr"]) == len(SHIFTS) else _FIRST_SHIFTS


def plan(state: dict, p0: float, p1: float) -> None:
    """Tune a fresh test to catch a bad rate ``p1`` against the null rate ``p0`` fastest: the grid of
    :data:`SHIFTS` moved so that its second alternative is that log-odds shift (half, once, twice and
    four times it), kept in the state. Only before any sample is scored, and only for ``p1 > p0``.

    >>> state = new_test(); plan(state, 0.10, 0.12); [round(s, 3) for s in state["shifts"]]
    [0.102, 0.205, 0.41, 0.819]
    """
    if state["n"] or state.get("carry") or "shifts" in state or not 0 < p0 < p1 < 1:
        return
    shift = log_odds_ratio(p1, p0)
    grid = tuple(shift * s / SHIFTS[1] for s in SHIFTS)
    state["shifts"] = list(grid)
    state["llr"] = [0.0] * len(grid)


def _clip(p: float) -> float:
    return min(max(p, _P_MIN), _P_MAX)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def update(state: dict, bad: int, n: int, p0: float) -> None:
    """Score ``n`` new samples, ``bad`` of them bad, against the null rate ``p0`` (fixed before
    they were seen)."""
    _check_counts(bad, n)
    if n == 0:
        return
    p0 = _clip(p0)
    good = n - bad
    base = _logit(p0)
    llr = state["llr"]
    for i, shift in enumerate(_shifts(state)):
        p1 = _expit(base + shift)
        llr[i] += bad * math.log(p1 / p0) + good * math.log((1 - p1) / (1 - p0))
    state["n"] += n


def update_paired(state: dict, cand_bad: int, cand_n: int, base_bad: int, base_n: int,
                  log_odds_ratio_bound: float = 0.0) -> None:
    """Score a look's new samples of the candidate and the baseline together (same period) against
    the null "the candidate's odds of a bad sample are at most ``exp(log_odds_ratio_bound)`` times
    the baseline's" (0: no worse). The bound is fixed when a carried stratum opens."""
    carry = state.get("carry")
    if carry is None:
        if cand_n <= 0 and base_n <= 0:
            return
        carry = state["carry"] = [0, 0, 0, 0, log_odds_ratio_bound]
    carry[0] += cand_bad
    carry[1] += cand_n
    carry[2] += base_bad
    carry[3] += base_n
    cb, cn, bb, bn, theta0 = carry
    if cn <= 0 or bn <= 0:
        return  # one version only so far: no information yet, keep it for the next look
    _check_counts(cb, cn)
    _check_counts(bb, bn)
    del state["carry"]
    state["n"] += cn
    shifts = _shifts(state)
    llr = state["llr"]
    for i, value in enumerate(_conditional_llr(cb, cn, bb, bn, theta0, shifts)):
        llr[i] += value


def _check_counts(bad: int, n: int) -> None:
    """New samples are counts of one stream between two looks: never negative, bad ones among them."""
    if not 0 <= bad <= n:
        raise ValueError(f"inconsistent sample counts: {bad} bad of {n} (the view went back between looks?)")


def _conditional_llr(cand_bad: int, cand_n: int, base_bad: int, base_n: int, theta0: float,
                     shifts: tuple[float, ...]) -> list[float]:
    """Log likelihood ratio, per shift, of the candidate's share of the stratum's bad samples under
    the log odds ratio ``theta0 + shift`` against ``theta0`` (Fisher's noncentral hypergeometric)."""
    bad = cand_bad + base_bad
    low, high = max(0, bad - base_n), min(cand_n, bad)
    if low == high:
        return [0.0] * len(shifts)  # the margins fix the split: nothing to learn
    x = np.arange(low, high + 1)
    log_weight = (gammaln(cand_n + 1) - gammaln(x + 1) - gammaln(cand_n - x + 1)
                  + gammaln(base_n + 1) - gammaln(bad - x + 1) - gammaln(base_n - bad + x + 1))
    thetas = theta0 + np.concatenate(([0.0], np.asarray(shifts)))
    exponents = log_weight[None, :] + thetas[:, None] * x[None, :]
    # log-sum-exp per row, shifted by the row's largest term (scipy's logsumexp does the same, with
    # about 0.2 ms of dispatch per call: most of a look's time when every segment is judged)
    top = exponents.max(axis=1)
    log_norm = top + np.log(np.exp(exponents - top[:, None]).sum(axis=1))
    return [float(shift * cand_bad - (log_norm[i + 1] - log_norm[0])) for i, shift in enumerate(shifts)]


def log_odds_ratio(p: float, p_base: float) -> float:
    """``logit(p) - logit(p_base)``, rates clipped away from 0 and 1."""
    return _logit(_clip(p)) - _logit(_clip(p_base))


def statistic(state: dict) -> float:
    """Log of the mixture likelihood ratio (reject the null when it reaches ``log(1/alpha)``)."""
    llr = state["llr"]
    top = max(llr)
    return top + math.log(sum(math.exp(x - top) for x in llr) / len(llr))


def rejects(state: dict, alpha: float) -> bool:
    return statistic(state) >= math.log(1 / alpha)


def radius(information: float, alpha: float, rho: float = MIXTURE_RHO) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence for an estimate with
    ``information`` = 1 / its variance; infinite with no information.

    >>> round(radius(10_000, 0.01), 4)
    0.0364
    """
    if information <= 0:
        return math.inf
    v = information + rho
    return math.sqrt(v * math.log(v / (rho * alpha * alpha))) / information


def proportion_bounds(bad: int, n: int, alpha: float) -> tuple[float | None, float, float]:
    """Estimate and anytime-valid bounds of a proportion (clipped to [0, 1])."""
    if n <= 0:
        return None, 0.0, 1.0
    p = bad / n
    # A variance floor keeps the bounds honest at 0 or n bad samples.
    variance = max(p * (1 - p), 1.0 / n) / n
    r = radius(1 / variance, alpha)
    return p, max(0.0, p - r), min(1.0, p + r)


def difference_bounds(bad_a: int, n_a: int, bad_b: int, n_b: int, alpha: float) -> tuple[float | None, float, float]:
    """Estimate and anytime-valid bounds of ``rate_a - rate_b``."""
    if n_a <= 0 or n_b <= 0:
        return None, -1.0, 1.0
    pa, pb = bad_a / n_a, bad_b / n_b
    variance = max(pa * (1 - pa), 1.0 / n_a) / n_a + max(pb * (1 - pb), 1.0 / n_b) / n_b
    r = radius(1 / variance, alpha)
    return pa - pb, max(-1.0, pa - pb - r), min(1.0, pa - pb + r)

"""Anytime-valid statistics for guardrails: a proportion may be looked at after every label.

**Failing** uses a *mixture sequential probability ratio test* (Robbins 1970; the mSPRT of Johari,
Pekelis and Walsh, "Always valid inference", 2017) for a proportion ``p`` of "bad" samples
(wrong predictions, errors, latencies over a bound). The null is ``p <= p0`` (no worse than the
guardrail allows); the alternatives are ``logit(p0) + d`` for the log-odds shifts ``d`` in
:data:`SHIFTS`, mixed with equal weights. The mixture likelihood ratio is a non-negative
supermartingale under the null, so by Ville's inequality it ever reaches ``1/alpha`` with
probability at most ``alpha``: looking after every sample does not inflate false rollbacks.

``p0`` may move (it is the baseline's rate, plus the allowed degradation): each batch of new
samples is scored with the ``p0`` known *before* it (a predictable plug-in, as in Waudby-Smith and
Ramdas, "Estimating means of bounded random variables by betting", 2023), which keeps the
supermartingale property as long as ``p0`` does not overstate the baseline. The baseline's own
estimation error is the approximation; with the baseline serving most traffic it is small, and the
benchmark (``make bench``: A/A rollouts) measures the resulting false rollback rate.

**Bounds and passing** use the two-sided normal-mixture confidence sequence (Robbins; Howard,
Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Ann. Statist. 2021, eq. (14)) with the plug-in variance of the asymptotic confidence sequences of
Waudby-Smith et al. ("Time-uniform central limit theory and asymptotic confidence sequences", 2021).

>>> state = new_test()
>>> for _ in range(10): update(state, bad=12, n=100, p0=0.05)  # 12% bad against an allowed 5%
>>> round(statistic(state), 1) > math.log(1 / 0.01)
True
"""

from __future__ import annotations

import math

#: Log-odds shifts of the alternatives: a doubling grid from "a little worse" to "much worse".
SHIFTS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Prior precision of the normal mixture, in units of information (1 / variance of the estimate):
#: tightest near that much information (a few hundred labels at typical rates).
MIXTURE_RHO = 250.0
_P_MIN, _P_MAX = 1e-9, 1 - 1e-9


def new_test() -> dict:
    """Log likelihood ratio per alternative, and the samples scored."""
    return {"llr": [0.0] * len(SHIFTS), "n": 0}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def update(state: dict, bad: int, n: int, p0: float) -> None:
    """Score ``n`` new samples, ``bad`` of them bad, against the null rate ``p0`` (fixed before
    they were seen)."""
    if n <= 0:
        return
    p0 = min(max(p0, _P_MIN), _P_MAX)
    good = n - bad
    base = _logit(p0)
    llr = state["llr"]
    for i, shift in enumerate(SHIFTS):
        p1 = _expit(base + shift)
        llr[i] += bad * math.log(p1 / p0) + good * math.log((1 - p1) / (1 - p0))
    state["n"] += n


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

"""Regression state: running sums of absolute, squared and percentage errors, and the label variance.

R2 comes from river's ``R2`` over a ``stats.Var`` of the labels; partial variances merge with
river's parallel formula (``Var.__iadd__``). MAPE is a fraction (0.05 = 5%), as in scikit-learn,
with the same guard against zero labels.

>>> state = new_state()
>>> for y, p in [(3.0, 2.5), (-0.5, 0.0), (2.0, 2.0), (7.0, 8.0)]: add(state, y, p)
>>> values = compute(state); values["mae"], round(values["r2"], 4)
(0.5, 0.9486)
"""

from __future__ import annotations

import math
from typing import NotRequired, TypedDict

from river import metrics, stats

from evaluators.metrics.sums import RunningSum, mean_of, merge_sum, new_sum
from evaluators.metrics.sums import add as add_to_sum

_EPS = float.fromhex("0x1p-52")


class RegressionState(TypedDict):
    """A regression state (every running sum over the labelled predictions)."""

    ae: RunningSum  #: absolute errors
    se: RunningSum  #: squared errors
    ape: RunningSum  #: absolute percentage errors (fractions)
    y: list[float]  #: the labels' ``[n, mean, sum of squared deviations]`` (Welford; river's ``stats.Var``)
    mom: NotRequired[list[float]]  #: raw sums in :data:`MOMENTS`' order (states written before have none)


def new_state() -> RegressionState:
    return {"ae": new_sum(), "se": new_sum(), "ape": new_sum(), "y": [0, 0.0, 0.0], "mom": [0.0] * len(MOMENTS)}


#: Raw sums kept for the R2 guardrail's variance (:mod:`evaluators.policy.estimands`), in this order
#: (``se``: the squared error). States written before they were kept have no ``mom``.
MOMENTS = ("y", "y2", "y3", "y4", "se*y", "se*y2")


def add(state: RegressionState, label: float, prediction: float) -> None:
    """Add one labelled prediction."""
    error = label - prediction
    absolute = abs(error)
    squared = error * error
    percentage = absolute / max(abs(label), _EPS)
    add_to_sum(state["ae"], absolute)
    add_to_sum(state["se"], squared)
    add_to_sum(state["ape"], percentage)
    moments = state.get("mom")
    if moments is not None:
        label2 = label * label
        moments[0] += label
        moments[1] += label2
        moments[2] += label2 * label
        moments[3] += label2 * label2
        moments[4] += squared * label
        moments[5] += squared * label2
    # Welford's update of [n, mean, sum of squared deviations], as river's stats.Var does.
    y = state["y"]
    y[0] += 1
    delta = label - y[1]
    y[1] += delta / y[0]
    y[2] += delta * (label - y[1])


def _variance(y: list[float]) -> stats.Var:
    n, m, s = y
    return stats.Var._from_state(n, m, s / (n - 1) if n > 1 else 0.0)


def merge(a: RegressionState, b: RegressionState) -> RegressionState:
    for name in ("ae", "se", "ape"):
        merge_sum(a[name], b[name])
    if "mom" in a and "mom" in b:
        a["mom"] = [x + y for x, y in zip(a["mom"], b["mom"])]
    elif "mom" in a and b["ae"][0]:
        del a["mom"]  # b's samples lack them: the sums would no longer cover every sample
    if b["y"][0]:
        if a["y"][0] == 0:
            a["y"] = list(b["y"])
        else:
            merged = _variance(a["y"])
            merged += _variance(b["y"])
            a["y"] = [merged.mean.n, merged.mean.get(), merged._S]
    return a


def compute(state: RegressionState) -> dict[str, float]:
    if not state["ae"][0]:
        return {}
    values = {"mae": mean_of(state["ae"]), "rmse": math.sqrt(mean_of(state["se"])), "mape": mean_of(state["ape"])}
    if state["y"][0] > 1:
        r2 = metrics.R2()
        r2._y_var = _variance(state["y"])
        r2._residual_sum_of_squares = state["se"][1]
        values["r2"] = r2.get()
    return values

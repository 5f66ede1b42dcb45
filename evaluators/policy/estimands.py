"""What each guardrail metric estimates: a smooth function ``g`` of the means of per-sample
contributions ``u``, read from a version's running sums.

The sequential test of these metrics (:mod:`evaluators.policy.asymptotic`) needs, for the samples
between two looks, their count, ``sum(u)`` and ``sum(u u^T)``: the :class:`Moments`. Every metric the
evaluator computes, except the proportions and latency quantiles that
:mod:`evaluators.policy.guardrails` tests exactly and ``roc_auc`` (a rank statistic, see
:mod:`evaluators.policy.asymptotic`), is one of:

=============================================  ================================  ===================
metric                                         ``u`` of one labelled sample       ``g``
=============================================  ================================  ===================
``outcome.*``, ``mae``, ``mape``, ``log_loss``,  its value (an outcome: 0 when      ``u``
``brier``, ``mrr``, ``ndcg@k``,                   the label does not carry it; a
``precision@k``, ``recall@k``, ``agreement``,     share: 1 in, 0 out)
``agreement_mad``, ``rank_overlap@10``,
``prediction_mean``, ``prediction_share.*``,
``label_coverage``
``rmse``                                       its squared error                  ``sqrt(u)``
``precision`` / ``recall`` / ``f1`` (binary)     ``(tp, predicted positive)`` /     ``a / b``
                                               ``(tp, positive)`` /
                                               ``(2 tp, positive + predicted)``
the same, macro (multiclass)                   those pairs per class              mean of ``a_k / b_k``
``ece``                                        per confidence bin, ``in bin *     ``sum |u_k|``
                                               (correct - confidence)``
``r2``                                         ``(squared error, y, y^2)``        ``1 - u0 / (u2 - u1^2)``
=============================================  ================================  ===================

The sums come from the slim metric state (:func:`evaluators.metrics.version.guardrail_sums` and the
confusion matrix); each estimand reads its own part (:meth:`Estimand.raw`), which a test keeps to
difference later states against.

>>> e = estimand_for("f1", "binary")
>>> raw = e.raw({"cls": {"cm": {"1\\x1f1": 8, "1\\x1f0": 2, "0\\x1f1": 2, "0\\x1f0": 88}}, "sums": {}})
>>> m = e.moments(raw, None, e.layout(raw)); m.n, round(e.value(m.mean(), e.layout(raw)), 4)
(100.0, 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.metrics.classification import ECE_BINS
from evaluators.metrics.regression import MOMENTS as REGRESSION_MOMENTS
from evaluators.metrics.version import SlimState
from schemas.metric_names import lookup_metric

_POSITIVE_KEYS = ("1", "true")


@dataclass(frozen=True)
class Moments:
    """Count, ``sum(u)`` and ``sum(u u^T)`` of some samples' contributions."""

    n: float
    sums: np.ndarray  # shape (k,)
    products: np.ndarray  # shape (k, k)

    def mean(self) -> np.ndarray:
        return self.sums / self.n

    def covariance(self) -> np.ndarray:
        """Sample covariance (population form: divided by ``n``); sums past float range give
        infinities or NaN, which the tests read as "no verdict"."""
        mean = self.mean()
        with np.errstate(over="ignore", invalid="ignore"):
            return self.products / self.n - np.outer(mean, mean)


@dataclass(frozen=True)
class Estimand:
    """A metric as ``g(E[u])``. ``raw`` takes a slim state's part (JSON, ``None`` when absent);
    ``layout`` fixes the order of ``u``'s components for a raw part (the classes, for the confusion
    matrix metrics); ``moments`` gives the moments of the samples between two raw parts;
    ``value``/``gradient`` are ``g`` and its gradient at a vector of means (``None`` where ``g`` is
    not defined, as with no predicted positive yet). ``bounded``: the range of ``u`` when known
    (its worst-case variance regularizes variances estimated from few samples)."""

    metric: str
    raw: Callable[[SlimState], Any]
    layout: Callable[[Any], Any]
    moments: Callable[[Any, Any, Any], Moments]
    value: Callable[[np.ndarray, Any], float | None]
    gradient: Callable[[np.ndarray, Any], np.ndarray | None]
    bounded: tuple[float, float] | None = None
    #: Whether the metric needs an absolute bound (no baseline comparison makes sense).
    absolute_only: bool = False


# -- running sums [n, sum, sum of squares] --------------------------------------------------------
def _flat_difference(now: list | None, then: list | None) -> list:
    now = now or []
    then = then or []
    size = max(len(now), len(then))
    return [(now[i] if i < len(now) else 0) - (then[i] if i < len(then) else 0) for i in range(size)]


def _sum_moments(now: list | None, then: list | None, _layout: Any) -> Moments:
    part = _flat_difference(now, then) + [0.0, 0.0, 0.0]
    return Moments(float(part[0]), np.array([float(part[1])]), np.array([[float(part[2])]]))


def _identity(mean: np.ndarray, _layout: Any) -> float:
    return float(mean[0])


def _one(_mean: np.ndarray, _layout: Any) -> np.ndarray:
    return np.ones(1)


def _square_root(mean: np.ndarray, _layout: Any) -> float | None:
    return math.sqrt(mean[0]) if mean[0] >= 0 else None


def _square_root_gradient(mean: np.ndarray, _layout: Any) -> np.ndarray | None:
    return np.array([0.5 / math.sqrt(mean[0])]) if mean[0] > 0 else None


def _no_layout(_raw: Any) -> None:
    return None


def _sums_of(metric: str) -> Callable[[SlimState], Any]:
    def raw(state: SlimState) -> Any:
        return state.get("sums", {}).get(metric)
    return raw


def _mean_estimand(metric: str, bounded: tuple[float, float] | None, absolute_only: bool = False) -> Estimand:
    return Estimand(metric, _sums_of(metric), _no_layout, _sum_moments, _identity, _one, bounded, absolute_only)


# -- the confusion matrix: precision, recall, F1 --------------------------------------------------
def _confusion(state: SlimState) -> dict[str, int] | None:
    cls = state.get("cls")
    return dict(cls["cm"]) if cls else None


def _classes(raw: dict | None) -> tuple[str, ...]:
    return tuple(sorted({part for cell in (raw or {}) for part in cell.split("\x1f")}))


def _binary_layout(raw: dict | None) -> tuple[str, ...]:
    """The positive class, as the exported metrics choose it (``true`` when the labels are booleans)."""
    classes = _classes(raw)
    return ("true",) if "true" in classes else ("1",)


def _pair(metric: str, y: str, p: str, k: str) -> tuple[float, float]:
    """``(a, b)`` of one sample for class ``k``."""
    tp = float(y == k and p == k)
    if metric == "precision":
        return tp, float(p == k)
    if metric == "recall":
        return tp, float(y == k)
    return 2 * tp, float(y == k) + float(p == k)


def _confusion_moments(metric: str) -> Callable[[Any, Any, Any], Moments]:
    def moments(now: dict | None, then: dict | None, layout: tuple[str, ...]) -> Moments:
        size = 2 * len(layout)
        sums, products, n = np.zeros(size), np.zeros((size, size)), 0.0
        then = then or {}
        for cell, count in (now or {}).items():
            count -= then.get(cell, 0)
            if not count:
                continue
            y, p = cell.split("\x1f")
            u = np.array([x for k in layout for x in _pair(metric, y, p, k)])
            n += count
            sums += count * u
            products += count * np.outer(u, u)
        return Moments(n, sums, products)
    return moments


def _mean_of_ratios(mean: np.ndarray, _layout: Any) -> float | None:
    a, b = mean[0::2], mean[1::2]
    if not np.any(b > 0):
        return None
    return float(np.mean(np.divide(a, b, out=np.zeros_like(a), where=b > 0)))


def _mean_of_ratios_gradient(mean: np.ndarray, _layout: Any) -> np.ndarray | None:
    a, b = mean[0::2], mean[1::2]
    if not np.any(b > 0):
        return None
    gradient = np.zeros_like(mean)
    safe = np.where(b > 0, b, 1.0)
    gradient[0::2] = np.where(b > 0, 1.0 / safe, 0.0) / len(b)
    gradient[1::2] = np.where(b > 0, -a / (safe * safe), 0.0) / len(b)
    return gradient


def _confusion_estimand(metric: str, task: str) -> Estimand:
    layout = _binary_layout if task == "binary" else _classes
    return Estimand(metric, _confusion, layout, _confusion_moments(metric), _mean_of_ratios,
                    _mean_of_ratios_gradient)


# -- expected calibration error --------------------------------------------------------------------
def _ece_moments(now: list | None, then: list | None, _layout: Any) -> Moments:
    """Per bin: ``u_k = in bin k * (correct - confidence)``; a sample lies in one bin, so the
    cross products vanish. A bin holds ``[n, sum q, correct, sum q^2, sum q over correct]``."""
    part = _flat_difference(now, then) or [0.0] * (5 * ECE_BINS)
    bins = np.array(part, dtype=float).reshape(ECE_BINS, 5)
    n, confidence, correct, confidence2, correct_confidence = bins.T
    sums = correct - confidence
    squares = correct - 2 * correct_confidence + confidence2
    return Moments(float(n.sum()), sums, np.diag(squares))


def _ece(mean: np.ndarray, _layout: Any) -> float:
    return float(np.abs(mean).sum())


def _ece_gradient(mean: np.ndarray, _layout: Any) -> np.ndarray:
    return np.sign(mean)


# -- R2 --------------------------------------------------------------------------------------------
def _r2_moments(now: list | None, then: list | None, _layout: Any) -> Moments:
    """``u = (se, y, y^2)`` from ``[n, sum se, sum se^2, *REGRESSION_MOMENTS]``."""
    part = _flat_difference(now, then) or [0.0] * (3 + len(REGRESSION_MOMENTS))
    n, se, se2 = part[:3]
    m = dict(zip(REGRESSION_MOMENTS, part[3:]))
    sums = np.array([se, m["y"], m["y2"]], dtype=float)
    products = np.array([[se2, m["se*y"], m["se*y2"]],
                         [m["se*y"], m["y2"], m["y3"]],
                         [m["se*y2"], m["y3"], m["y4"]]], dtype=float)
    return Moments(float(n), sums, products)


def _r2(mean: np.ndarray, _layout: Any) -> float | None:
    variance = mean[2] - mean[1] ** 2
    return float(1 - mean[0] / variance) if variance > 0 else None


def _r2_gradient(mean: np.ndarray, _layout: Any) -> np.ndarray | None:
    variance = mean[2] - mean[1] ** 2
    if variance <= 0:
        return None
    return np.array([-1 / variance, -2 * mean[0] * mean[1] / variance ** 2, mean[0] / variance ** 2])


_UNIT = (0.0, 1.0)
_MEANS: dict[str, tuple[float, float] | None] = {
    "mae": None, "mape": None, "log_loss": None, "brier": _UNIT, "mrr": _UNIT, "agreement": _UNIT,
    "agreement_mad": None, "rank_overlap@10": _UNIT, "prediction_mean": None, "label_coverage": _UNIT}
#: Measured against the primary itself: the baseline (the primary) has none.
_ABSOLUTE_ONLY = ("agreement", "agreement_mad", "rank_overlap@10")


def estimand_for(metric: str, task: str) -> Estimand | None:
    """The estimand of ``metric`` for a rollout of ``task`` (None: tested otherwise: proportions,
    latency quantiles, ``roc_auc``, checks and drift)."""
    if metric in _MEANS:
        return _mean_estimand(metric, _MEANS[metric], absolute_only=metric in _ABSOLUTE_ONLY)
    if metric.startswith("prediction_share."):
        return _mean_estimand(metric, _UNIT)
    if metric.startswith("outcome."):
        return _mean_estimand(metric, None)
    if metric.partition("@")[0] in ("precision", "recall", "ndcg") and "@" in metric:
        return _mean_estimand(metric, _UNIT)
    if metric in ("precision", "recall", "f1"):
        return _confusion_estimand(metric, task)
    if metric == "rmse":
        return Estimand(metric, _sums_of(metric), _no_layout, _sum_moments, _square_root, _square_root_gradient)
    if metric == "ece":
        return Estimand(metric, _sums_of(metric), _no_layout, _ece_moments, _ece, _ece_gradient)
    if metric == "r2":
        return Estimand(metric, _sums_of(metric), _no_layout, _r2_moments, _r2, _r2_gradient)
    lookup_metric(metric)  # an unknown name is refused by name
    return None


__all__ = ["Estimand", "Moments", "estimand_for"]

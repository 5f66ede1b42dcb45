"""The metric names a guardrail may name, and what each one means for a rollout.

One catalog for the spec validator, the metric accumulators and the policy engine, so a name means
the same thing everywhere.

>>> lookup_metric("ndcg@10").name, lookup_metric("ndcg@10").higher_is_better
('ndcg@10', True)
>>> lookup_metric("acuracy")
Traceback (most recent call last):
...
ValueError: unknown metric 'acuracy' (did you mean 'accuracy'?)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import Literal

Task = Literal["binary", "multiclass", "regression", "ranking"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression", "ranking")
CLASSIFICATION: frozenset[Task] = frozenset({"binary", "multiclass"})

#: How the statistics of the policy engine treat a metric's samples.
MetricKind = Literal["proportion", "mean", "quantile", "score", "check"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    kind: MetricKind
    #: Tasks the metric is defined for; empty means every task.
    tasks: frozenset[Task] = frozenset()
    #: Whether it needs ground truth (False: available as soon as responses arrive).
    needs_labels: bool = True
    description: str = ""

    def defined_for(self, task: Task) -> bool:
        return not self.tasks or task in self.tasks


_FIXED: tuple[MetricInfo, ...] = (
    MetricInfo("accuracy", True, "proportion", CLASSIFICATION, description="share of correct predictions"),
    MetricInfo("precision", True, "score", CLASSIFICATION, description="binary, or macro for multiclass"),
    MetricInfo("recall", True, "score", CLASSIFICATION, description="binary, or macro for multiclass"),
    MetricInfo("f1", True, "score", CLASSIFICATION, description="binary, or macro for multiclass"),
    MetricInfo("log_loss", False, "mean", CLASSIFICATION, description="mean cross-entropy of the scores"),
    MetricInfo("roc_auc", True, "score", CLASSIFICATION, description="area under the ROC curve"),
    MetricInfo("brier", False, "mean", CLASSIFICATION, description="mean squared error of the probability"),
    MetricInfo("ece", False, "score", CLASSIFICATION, description="expected calibration error"),
    MetricInfo("mae", False, "mean", frozenset({"regression"}), description="mean absolute error"),
    MetricInfo("rmse", False, "score", frozenset({"regression"}), description="root mean squared error"),
    MetricInfo("mape", False, "mean", frozenset({"regression"}), description="mean absolute percentage error"),
    MetricInfo("r2", True, "score", frozenset({"regression"}), description="coefficient of determination"),
    MetricInfo("mrr", True, "mean", frozenset({"ranking"}), description="mean reciprocal rank"),
    MetricInfo("error_rate", False, "proportion", needs_labels=False,
               description="share of responses with an error"),
    MetricInfo("schema_compatible", True, "check", needs_labels=False,
               description="the candidate's output and inputs have the baseline's shape (no bound)"),
    MetricInfo("latency_p50_ms", False, "quantile", needs_labels=False, description="median latency"),
    MetricInfo("latency_p95_ms", False, "quantile", needs_labels=False, description="95th percentile latency"),
    MetricInfo("latency_p99_ms", False, "quantile", needs_labels=False, description="99th percentile latency"),
    MetricInfo("agreement", True, "proportion", needs_labels=False,
               description="share of requests where a version agrees with the primary"),
    MetricInfo("agreement_mad", False, "mean", needs_labels=False,
               description="mean absolute difference of a version's scores (or numeric predictions) from the "
                           "primary's"),
    MetricInfo("rank_overlap@10", True, "mean", needs_labels=False,
               description="share of the primary's top 10 items a version's ranking shares"),
    MetricInfo("prediction_mean", False, "mean", needs_labels=False,
               description="mean of numeric predictions (set higher_is_better when a rise is the good side)"),
    MetricInfo("label_coverage", True, "proportion", needs_labels=False,
               description="share of responses whose label joined"),
    MetricInfo("label_delay_p50_s", False, "quantile", description="median label delay"),
    MetricInfo("label_delay_p95_s", False, "quantile", description="95th percentile label delay"),
)
_AT_K: tuple[MetricInfo, ...] = (
    MetricInfo("precision@k", True, "mean", frozenset({"ranking"})),
    MetricInfo("recall@k", True, "mean", frozenset({"ranking"})),
    MetricInfo("ndcg@k", True, "mean", frozenset({"ranking"})),
)
#: Families named by a prefix: ``outcome.<kpi>`` (mean per labelled request) and ``drift.<name>``.
_FAMILIES: dict[str, MetricInfo] = {
    "outcome.": MetricInfo("outcome.*", True, "mean",
                           description="mean of a business outcome per labelled request"),
    "drift.": MetricInfo("drift.*", False, "score", needs_labels=False,
                         description="a drift score (see the drift docs)"),
    "prediction_share.": MetricInfo("prediction_share.*", False, "proportion", needs_labels=False,
                                    description="share of class predictions that are this class "
                                                "(set higher_is_better when a rise is the good side)"),
}

METRICS: dict[str, MetricInfo] = {m.name: m for m in _FIXED}
_AT_K_BY_BASE = {m.name.removesuffix("@k"): m for m in _AT_K}
_AT_K_PATTERN = re.compile(r"^(precision|recall|ndcg)@([1-9]\d{0,3})$")
_FAMILY_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def catalog() -> list[MetricInfo]:
    """Every entry a guardrail may name: the fixed metrics, the ``@k`` ones and the families (by
    their pattern: ``precision@k``, ``outcome.*``)."""
    return [*METRICS.values(), *_AT_K, *_FAMILIES.values()]


def known_metric_names() -> list[str]:
    return [*METRICS, *(m.name for m in _AT_K), *(f"{p}<name>" for p in _FAMILIES)]


def lookup_metric(name: str) -> MetricInfo:
    """The catalog entry for ``name``; ``ValueError`` with a suggestion when it is unknown."""
    if name in METRICS:
        return METRICS[name]
    match = _AT_K_PATTERN.match(name)
    if match:
        return replace(_AT_K_BY_BASE[match.group(1)], name=name)
    for prefix, family in _FAMILIES.items():
        if name.startswith(prefix) and len(name) > len(prefix) and _FAMILY_NAME.match(name[len(prefix):]):
            return replace(family, name=name)
    candidates = [*METRICS, "precision@10", "recall@10", "ndcg@10"]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known_metric_names())})"
    raise ValueError(f"unknown metric {name!r}{hint}")

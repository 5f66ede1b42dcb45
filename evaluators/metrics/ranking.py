"""Ranking state: precision@k, recall@k, NDCG@k (binary relevance) and MRR, as running sums.

The prediction is a ranked list of item ids, the label the list of relevant ids. A record whose
label names no relevant item counts as 0 in precision@k and is left out of recall@k, NDCG@k and MRR
(undefined for it).

>>> state = new_state()
>>> add(state, ["a", "c"], ["a", "b", "c"], ks=(1, 3))
>>> values = compute(state); values["precision@1"], values["recall@3"], values["mrr"]
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

from evaluators.metrics.sums import RunningSum, mean, mean_of, merge_sum, new_sum
from evaluators.metrics.sums import add as add_to_sum

DEFAULT_KS = (5, 10)
_DISCOUNT = [1.0 / math.log2(i + 2) for i in range(10_000)]


class AtK(TypedDict):
    """The running sums of one ``k`` (each record's value at that cut-off)."""

    p: RunningSum  #: precision@k
    r: RunningSum  #: recall@k (records with relevant items)
    ndcg: RunningSum  #: NDCG@k (records with relevant items)


class RankingState(TypedDict):
    """A ranking state."""

    at: dict[str, AtK]  #: ``str(k)`` -> its sums
    mrr: RunningSum  #: reciprocal rank of the first relevant item (records with relevant items)


def new_state() -> RankingState:
    return {"at": {}, "mrr": new_sum()}


def _new_at_k() -> AtK:
    return {"p": new_sum(), "r": new_sum(), "ndcg": new_sum()}


def by_metric(at_k: AtK) -> dict[str, RunningSum]:
    """One ``k``'s running sums by the metric's name (``precision``, ``recall``, ``ndcg``)."""
    return {"precision": at_k["p"], "recall": at_k["r"], "ndcg": at_k["ndcg"]}


def _hashable(item: Any) -> Any:
    return item if isinstance(item, (str, int, float, bool)) or item is None else repr(item)


def add(state: RankingState, relevant: Any, ranked: Any, ks: Sequence[int] = DEFAULT_KS) -> None:
    """Add one ranked prediction and its relevant items."""
    ranked = list(ranked) if isinstance(ranked, list) else []
    wanted = {_hashable(i) for i in relevant} if isinstance(relevant, list) else set()
    hits = [_hashable(item) in wanted for item in ranked]
    at = state["at"]
    for k in ks:
        sums = at.get(str(k))
        if sums is None:
            sums = at[str(k)] = _new_at_k()
        top = hits[:k]
        found = sum(top)
        add_to_sum(sums["p"], found / k)
        if wanted:
            add_to_sum(sums["r"], found / len(wanted))
            dcg = sum(_DISCOUNT[i] for i, hit in enumerate(top) if hit)
            ideal = sum(_DISCOUNT[i] for i in range(min(k, len(wanted))))
            add_to_sum(sums["ndcg"], dcg / ideal)
    if wanted:
        first = next((i for i, hit in enumerate(hits) if hit), None)
        add_to_sum(state["mrr"], 0.0 if first is None else 1.0 / (first + 1))


def merge(a: RankingState, b: RankingState) -> RankingState:
    for k, theirs in b["at"].items():
        mine = a["at"].setdefault(k, _new_at_k())
        merge_sum(mine["p"], theirs["p"])
        merge_sum(mine["r"], theirs["r"])
        merge_sum(mine["ndcg"], theirs["ndcg"])
    merge_sum(a["mrr"], b["mrr"])
    return a


def compute(state: RankingState) -> dict[str, float]:
    values: dict[str, float] = {}
    for k, sums in state["at"].items():
        for metric, running in by_metric(sums).items():
            value = mean(running)
            if value is not None:
                values[f"{metric}@{k}"] = value
    if state["mrr"][0]:
        values["mrr"] = mean_of(state["mrr"])
    return values

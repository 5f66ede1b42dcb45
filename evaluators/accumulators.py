"""The accumulator a worker gives the join: exact counts and windowed metrics side by side.

>>> from evaluators.facts import ResponseFact
>>> from evaluators.metrics import MetricsConfig
>>> make = evaluator_accumulator(MetricsConfig(), settle_ms=lambda model: 0)
>>> acc = make(None); acc.add(ResponseFact("m", "v1", "primary", 0, 3.0, None, 1)); acc.advance(0)
>>> sorted(acc.to_state())
['counts', 'metrics']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evaluators.counts import JoinCounts
from evaluators.facts import Fact
from evaluators.join.partition import Accumulator
from evaluators.metrics import MetricsConfig
from evaluators.store import KeyValueStore
from evaluators.windows import ClosedWindow, MetricsAccumulator


class EvaluatorAccumulator(Accumulator):
    def __init__(self, counts: JoinCounts, metrics: MetricsAccumulator) -> None:
        self.counts = counts
        self.metrics = metrics

    def add(self, fact: Fact) -> None:
        self.counts.add(fact)
        self.metrics.add(fact)

    def add_all(self, facts: list[Fact]) -> None:
        self.counts.add_all(facts)
        self.metrics.add_all(facts)

    def advance(self, watermark: int) -> None:
        self.metrics.advance(watermark)

    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts.to_state(), "metrics": self.metrics.to_state()}


def closed_windows(state: dict[str, Any] | None) -> list[ClosedWindow]:
    """The metric windows the last batch closed, to publish, from an evaluator accumulator's state
    (:meth:`evaluators.join.JoinPartition.accumulated`; their shape:
    :meth:`evaluators.windows.MetricsAccumulator.advance`)."""
    return state["metrics"]["closed"] if state else []


def evaluator_accumulator(config: MetricsConfig, settle_ms: Callable[[str], int]
                          ) -> Callable[[Any, KeyValueStore | None], EvaluatorAccumulator]:
    """A ``from_state`` function for :class:`evaluators.join.JoinPartition`."""

    def from_state(state: dict[str, Any] | None, records: KeyValueStore | None = None) -> EvaluatorAccumulator:
        state = state or {}
        return EvaluatorAccumulator(JoinCounts.from_state(state.get("counts")),
                                    MetricsAccumulator(config, settle_ms, state.get("metrics"), records))

    return from_state

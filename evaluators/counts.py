"""Exact counts of what the join saw, per (model, version, role) and per model; mergeable.

>>> from evaluators.facts import ResponseFact, Expired
>>> counts = JoinCounts()
>>> counts.add(ResponseFact("m", "v2", "canary", 0, 5.0, None, 1)); counts.add(Expired("m", "v2", "canary", 0))
>>> counts.version("m", "v2", "canary")["expired"], counts.version("m", "v2", "canary")["responses"]
(1, 1)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from evaluators.facts import (
    AgreementFact,
    ClockSkew,
    Duplicate,
    Expired,
    Fact,
    JoinedRecord,
    LabelFact,
    LateLabel,
    RequestFact,
    ResponseFact,
    UnmatchedLabel,
)

VERSION_COUNTS = ("responses", "errors", "joined", "expired", "agreement")
#: Events stamped far from the partition's time (``future_responses`` etc.: see
#: :class:`evaluators.facts.ClockSkew`), and the largest skew ahead seen (merged by max, not sum).
SKEW_COUNTS = tuple(f"{direction}_{kind}s" for direction in ("future", "past")
                    for kind in ("request", "response", "label"))
MAX_FUTURE_SKEW = "max_future_skew_ms"
MODEL_COUNTS = ("requests", "labels", "late_labels", "unmatched_labels", "duplicate_requests",
                "duplicate_responses", "duplicate_labels", *SKEW_COUNTS, MAX_FUTURE_SKEW)


def _zero(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


class JoinCounts:
    """An accumulator (see :class:`evaluators.join.Accumulator`) of counts; ``merge`` adds another."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, int]] = defaultdict(lambda: _zero(VERSION_COUNTS))
        self.models: dict[str, dict[str, int]] = defaultdict(lambda: _zero(MODEL_COUNTS))

    @staticmethod
    def key(model: str, version: str, role: str) -> str:
        return f"{model}\x1f{version}\x1f{role}"

    def version(self, model: str, version: str, role: str) -> dict[str, int]:
        return self.versions[self.key(model, version, role)]

    def add(self, fact: Fact) -> None:
        if type(fact) is ResponseFact:
            counts = self.versions[self.key(fact.model, fact.version, fact.role)]
            counts["responses"] += 1
            if fact.error is not None:
                counts["errors"] += 1
        elif type(fact) is JoinedRecord:
            self.versions[self.key(fact.model, fact.version, fact.role)]["joined"] += 1
        elif type(fact) is Expired:
            self.versions[self.key(fact.model, fact.version, fact.role)]["expired"] += 1
        elif type(fact) is LateLabel:
            self.models[fact.model]["late_labels"] += 1
        elif type(fact) is AgreementFact:
            self.versions[self.key(fact.model, fact.version, "shadow")]["agreement"] += 1
        elif type(fact) is RequestFact:
            self.models[fact.model]["requests"] += 1
        elif type(fact) is LabelFact:
            self.models[fact.model]["labels"] += 1
        elif type(fact) is UnmatchedLabel:
            self.models[fact.model]["unmatched_labels"] += 1
        elif type(fact) is Duplicate:
            self.models[fact.model][f"duplicate_{fact.kind}s"] += 1
        elif type(fact) is ClockSkew:
            counts = self.models[fact.model]
            counts[f"{fact.direction}_{fact.kind}s"] += 1
            if fact.direction == "future" and fact.skew_ms > counts[MAX_FUTURE_SKEW]:
                counts[MAX_FUTURE_SKEW] = fact.skew_ms

    def add_all(self, facts: list[Fact]) -> None:
        add = self.add
        for fact in facts:
            add(fact)

    def advance(self, watermark: int) -> None:
        """Counts do not depend on time."""

    def merge(self, other: JoinCounts) -> JoinCounts:
        for key, counts in other.versions.items():
            mine = self.versions[key]
            for name, n in counts.items():
                mine[name] += n
        for model, counts in other.models.items():
            mine = self.models[model]
            for name, n in counts.items():
                mine[name] = max(mine[name], n) if name == MAX_FUTURE_SKEW else mine[name] + n
        return self

    def to_state(self) -> dict[str, Any]:
        return {"versions": dict(self.versions), "models": dict(self.models)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, records: Any = None) -> JoinCounts:
        """``records``: unused (counts fit the partition state; see :class:`evaluators.join.Accumulator`)."""
        counts = cls()
        if state:
            for key, values in state["versions"].items():
                counts.versions[key].update(values)
            for model, values in state["models"].items():
                counts.models[model].update(values)
        return counts

    def by_version(self) -> dict[tuple[str, str, str], dict[str, int]]:
        out: dict[tuple[str, str, str], dict[str, int]] = {}
        for key, values in self.versions.items():
            model, version, role = key.split("\x1f")
            out[(model, version, role)] = dict(values)
        return out

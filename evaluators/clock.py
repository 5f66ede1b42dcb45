"""Alerts for clients whose clocks run ahead of the evaluator's.

The join bounds event time by processing time (``JoinConfig.max_future_skew_ms``): an event stamped
further ahead moves its partition's time no further than the bound and is counted per model and
topic (:class:`evaluators.facts.ClockSkew`, ``future_<kind>s`` in :class:`evaluators.counts.JoinCounts`).
The merging owner sums those counts over partitions and asks this monitor, once per look, which
models to alert on: an ``Alert`` of kind ``schema`` when a model's count of future-stamped events
has grown since the last look, at most one per model per ``cooldown_ms`` (of stream time), naming the
model, how many events and the largest skew. Its state is small and saved by the owner, so a new
owner does not alert again for what was already told.

>>> alerts = ClockSkewAlerts(tolerance_ms=300_000)
>>> counts = {"pay": {"future_requests": 1, "future_responses": 1, "future_labels": 1,
...                   "max_future_skew_ms": 7_200_000}}
>>> [alert] = alerts.observe(counts, now_ms=1_790_000_000_000)
>>> alert.kind, alert.model, alert.value, alert.message[:60]
('schema', 'pay', 7200.0, '3 events of model pay (1 request, 1 response, 1 label) were ')
>>> alerts.observe(counts, now_ms=1_790_000_060_000)  # nothing new
[]
"""

from __future__ import annotations

import uuid
from typing import Any, TypedDict

from schemas.monitoring import Alert

_ALERT_NAMESPACE = uuid.UUID("0b3c1d0e-58f4-4c51-9c5e-2a7f0e61c7a4")
KINDS = ("request", "response", "label")


class ModelSkewState(TypedDict):
    """What the monitor remembers of one model."""

    seen: int  # future-stamped events counted at the last look
    alerted_at: int  # stream time of the last alert (-1: never)


class ClockSkewAlerts:
    def __init__(self, tolerance_ms: int, cooldown_ms: int = 3_600_000,
                 state: dict[str, ModelSkewState] | None = None) -> None:
        self.tolerance_ms = tolerance_ms
        self.cooldown_ms = cooldown_ms
        self.models: dict[str, ModelSkewState] = dict(state or {})

    def observe(self, model_counts: dict[str, dict[str, int]], now_ms: int) -> list[Alert]:
        """``model_counts``: per model, the counts of :class:`evaluators.counts.JoinCounts` merged
        over every partition. Returns the alerts to publish."""
        alerts = []
        for model, counts in sorted(model_counts.items()):
            per_kind = {kind: counts.get(f"future_{kind}s", 0) for kind in KINDS}
            total = sum(per_kind.values())
            state = self.models.setdefault(model, {"seen": 0, "alerted_at": -1})
            grew = total > state["seen"]
            state["seen"] = max(state["seen"], total)
            if not grew or (state["alerted_at"] >= 0 and now_ms - state["alerted_at"] < self.cooldown_ms):
                continue
            state["alerted_at"] = now_ms
            alerts.append(self._alert(model, per_kind, total, counts.get("max_future_skew_ms", 0), now_ms))
        return alerts

    def _alert(self, model: str, per_kind: dict[str, int], total: int, skew_ms: int, now_ms: int) -> Alert:
        kinds = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in per_kind.items() if n)
        return Alert(
            alert_id=uuid.uuid5(_ALERT_NAMESPACE, f"{model}\x1f{now_ms}"), model=model, severity="warning",
            kind="schema", ts=now_ms, value=skew_ms / 1000, threshold=self.tolerance_ms / 1000,  # type: ignore[arg-type]  # validated from epoch ms
            message=(f"{total} events of model {model} ({kinds}) were stamped up to {skew_ms // 1000} s ahead "
                     f"of the evaluator's clock (tolerance {self.tolerance_ms // 1000} s): they did not move "
                     f"time past the tolerance. Check the clock of the clients that write them."))

    def to_state(self) -> dict[str, Any]:
        return dict(self.models)


__all__ = ["ClockSkewAlerts", "ModelSkewState"]

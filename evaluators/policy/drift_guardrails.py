"""Guardrails on drift: ``{"metric": "drift.amount", "max": 0.2}`` holds (or rolls back) a candidate
whose traffic drifted on a feature.

The statistics are the drift monitor's (:mod:`evaluators.drift.monitor`): its alert condition for
the candidate's feature fires only on a controlled false-alarm rate. The guardrail fails while that
condition fires *and* the size of the drift (the largest PSI for a numeric feature, Jensen-Shannon
distance for a categorical one, against the candidate's reference or the baseline's same window)
is over ``max``; passes once the monitor has judged the feature without it firing; and is
undecided (no data, which never passes) before the monitor has judged it. ``@prediction`` names
the prediction distribution: ``drift.@prediction``.

>>> from schemas.rollout import Guardrail
>>> g = Guardrail(metric="drift.amount", max=0.2)
>>> view = DriftView({"m\\x1fv2": {"amount.psi": 0.9, "skew.amount.psi": 1.1}}, {("m", "v2", "amount")})
>>> e = drift_evidence(g, "m", "v2", view); e.verdict, e.candidate.value
('fail', 1.1)
>>> drift_evidence(g, "m", "v2", DriftView()).verdict
'undecided'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluators.drift.monitor import split_score_name
from schemas.control import Bounds, GuardrailEvidence, Verdict
from schemas.rollout import Guardrail

PREFIX = "drift."
_SIZE_MEASURES = ("psi", "js")


@dataclass(frozen=True)
class DriftView:
    """What the merging owner's monitors know now: each version's last judged drift scores
    ("model\\x1fversion" keys, as :attr:`DriftMonitor.latest`), the (model, version, feature) drift
    conditions firing, and per (model, candidate) the shape monitor has judged, what differs in its
    output and inputs from the baseline's (:meth:`evaluators.integration_checks.ShapeMonitor.differences`)."""

    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    firing: set[tuple[str, str, str]] = field(default_factory=set)
    schema: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def is_drift(guardrail: Guardrail) -> bool:
    return guardrail.metric.startswith(PREFIX)


def drift_size(scores: dict[str, float], feature: str) -> float | None:
    """The largest drift magnitude of ``feature`` in a version's scores (None: not judged)."""
    judged = [(measure, value) for name, value in scores.items()
              for scored, measure, _ in (split_score_name(name),) if scored == feature]
    if not judged:
        return None
    return max((value for measure, value in judged if measure in _SIZE_MEASURES), default=0.0)


def drift_evidence(guardrail: Guardrail, model: str, candidate: str, view: DriftView) -> GuardrailEvidence:
    feature = guardrail.metric.removeprefix(PREFIX)
    size = drift_size(view.scores.get(f"{model}\x1f{candidate}", {}), feature)
    limit = guardrail.max if guardrail.max is not None else 0.0
    verdict: Verdict
    if size is None:
        verdict, bounds = "undecided", Bounds(samples=0)
    else:
        firing = (model, candidate, feature) in view.firing
        verdict = "fail" if firing and size > limit else "pass"
        bounds = Bounds(value=size, samples=1)
    return GuardrailEvidence(guardrail=guardrail.label, metric=guardrail.metric, verdict=verdict,
                             candidate=bounds, statistic=size, threshold=limit, critical=guardrail.critical)

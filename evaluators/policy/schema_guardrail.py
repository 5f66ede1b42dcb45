"""The ``schema_compatible`` guardrail: a candidate whose output or inputs differ from the
baseline's is rolled back for that, not for the metrics the difference spoils.

It fails while the candidate's output or inputs differ from the baseline's, passes once they have
been compared and nothing differs, and is undecided before (no data, which never passes). Two
comparisons, by :mod:`evaluators.integration_checks`:

- **live**, on the running totals the engine reads: the predictions' JSON types and classes, once
  both versions have ``MIN_RESPONSES`` answers (responses come before labels, so a candidate that
  answers class names where the baseline answers indices is rolled back for that before its
  accuracy can be judged);
- **per closed window**, the shape monitor's (through the view the engine gets): also the form of
  the scores and the features of the requests each version serves.

It takes no bound: ``{"metric": "schema_compatible", "critical": true}``.

>>> from schemas.rollout import Guardrail
>>> from evaluators.metrics.version import slim
>>> g = Guardrail(metric="schema_compatible", critical=True)
>>> base, cand = slim(None), slim(None)
>>> base.update(n=200, pc={"0": 120, "1": 80}); cand.update(n=200, pc={'"benign"': 150, '"malignant"': 50})
>>> evidence = schema_evidence(g, "m", "v2", DriftView(), base, cand)
>>> evidence.verdict, evidence.detail[:71]
('fail', "output schema differs from the baseline's: its predictions are string, ")
>>> schema_evidence(g, "m", "v2", DriftView(), base, base).verdict
'pass'
>>> schema_evidence(g, "m", "v2", DriftView(), slim(None), slim(None)).verdict
'undecided'
"""

from __future__ import annotations

from evaluators.integration_checks import compare_predictions, prediction_shape
from evaluators.metrics.version import SlimState
from evaluators.policy.drift_guardrails import DriftView
from schemas.control import Bounds, GuardrailEvidence, Verdict
from schemas.rollout import Guardrail

METRIC = "schema_compatible"
#: How a failure of this guardrail is explained (followed by the first difference): the evidence's
#: ``detail``, which the engine gives as the decision's reason.
REASON = "output schema differs from the baseline's"
#: Answers (not errors) each version needs before their predictions are compared live.
MIN_RESPONSES = 100


def is_schema(guardrail: Guardrail) -> bool:
    return guardrail.metric == METRIC


def differences(model: str, candidate: str, view: DriftView, baseline_total: SlimState,
                candidate_total: SlimState) -> list[str] | None:
    """What differs (None: nothing compared yet). ``*_total``: the versions' running totals, slim."""
    live: list[str] | None = None
    if min(total["n"] - total["err"] for total in (baseline_total, candidate_total)) >= MIN_RESPONSES:
        # "output schema of <model> <version>: <what differs>": the part after the first ": ".
        live = [message.split(": ", 1)[1] for _, message, _ in compare_predictions(
            f"{model} {candidate}", prediction_shape(candidate_total), prediction_shape(baseline_total))]
    judged = view.schema.get((model, candidate))
    if judged is None:
        return live
    found = list(live or [])
    for message in judged:  # the monitor's own (a prediction difference it saw too is told once)
        if message.split(": ", 1)[-1] not in found:
            found.append(message)
    return found


def schema_evidence(guardrail: Guardrail, model: str, candidate: str, view: DriftView, baseline_total: SlimState,
                    candidate_total: SlimState) -> GuardrailEvidence:
    found = differences(model, candidate, view, baseline_total, candidate_total)
    verdict: Verdict
    if found is None:
        verdict, bounds = "undecided", Bounds(samples=0)
    else:
        verdict, bounds = ("fail" if found else "pass"), Bounds(value=float(len(found)), samples=1)
    return GuardrailEvidence(guardrail=guardrail.label, metric=guardrail.metric, verdict=verdict,
                             candidate=bounds, statistic=bounds.value, threshold=0.0, critical=guardrail.critical,
                             detail=f"{REASON}: {found[0]}" if found else None)

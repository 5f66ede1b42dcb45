"""The rollout policy: the engine that walks a rollout's stages (:mod:`~evaluators.policy.engine`),
the guardrails' sequential tests (:mod:`~evaluators.policy.guardrails`, :mod:`~evaluators.policy.sequential`,
:mod:`~evaluators.policy.estimands`), the drift and output-schema guardrails, and the control records
the engine's decisions become."""

from evaluators.policy.drift_guardrails import DriftView
from evaluators.policy.engine import Output, RolloutEngine

__all__ = ["DriftView", "Output", "RolloutEngine"]

"""``RolloutSpec``: how a candidate version is rolled out, and the guardrails that judge it.

A spec is written by people as YAML (see :mod:`schemas.spec_yaml`) and travels as JSON on
``rollout.specs``; the same model validates both.

>>> spec = RolloutSpec.model_validate({
...     "model": "fraud", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
...     "steps": [1, 5, 25, 50, 100],
...     "bake": {"min_duration": "10m", "min_samples": 500},
...     "guardrails": [{"metric": "accuracy", "max_degradation": 0.01},
...                    {"metric": "latency_p99_ms", "max": 250, "critical": True}],
... })
>>> [s.percent for s in spec.steps], spec.bake.min_duration, spec.guardrails[1].comparison
([1.0, 5.0, 25.0, 50.0, 100.0], 600.0, 'absolute')
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from schemas.base import WireModel
from schemas.metric_names import Task, lookup_metric
from schemas.types import Duration, FiniteFloat, Name

Mode = Literal["shadow", "canary", "ab", "bluegreen"]
OnFailure = Literal["rollback", "hold"]
StatisticalTest = Literal["confidence_sequence", "msprt"]


class _Part(BaseModel):
    """Nested parts of a spec: strict about unknown keys, since people write them by hand."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Bake(_Part):
    """What a step must accumulate before the rollout may move on."""

    min_duration: Duration = Field(0.0, description="Minimum time at the step.")
    min_samples: int = Field(0, ge=0, description="Minimum labelled samples of the candidate at the step.")


class Step(_Part):
    """One traffic step: the candidate's share of served traffic, with an optional bake of its own.

    Written as a bare number (``5``) or as ``{percent: 5, bake: {...}}``; a step without its own bake
    is written back as the bare number, as in the contract's example.
    """

    percent: FiniteFloat = Field(gt=0, le=100)
    bake: Bake | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"percent": value}
        return value

    @model_serializer(mode="wrap")
    def _as_number_when_plain(self, handler: Any) -> Any:
        if self.bake is None:
            return self.percent
        return handler(self)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        as_object = handler(core_schema)
        return {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 100,
                           "description": "percent of served traffic"}, as_object]}


class Segment(_Part):
    """A request attribute the rollout is judged by, segment by segment (``region``: one segment per
    region). Written as the attribute's name, or as ``{attribute: region, max_values: 4}``.

    The first ``max_values`` values the rollout sees (in the order they appear in the evaluator's
    running totals) are judged one by one; later values are judged together as ``other``, as are
    requests the evaluator itself pooled (``other``: past its cap; ``none``: no such attribute).
    """

    attribute: str = Field(min_length=1, max_length=100, pattern=r"^[^=\x1f]+$",
                           description="A key of the requests' attributes.")
    max_values: int = Field(8, ge=1, le=50, description="Values judged one by one; the rest are judged together.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"attribute": value}
        return value

    @property
    def judged_segments(self) -> int:
        """The most segments judged for this attribute (its values and ``other``)."""
        return self.max_values + 1


class Guardrail(_Part):
    """A check on one metric of the candidate.

    Exactly one comparison (none for a check, ``schema_compatible``):
    - absolute: ``max`` and/or ``min`` bound the candidate's value (e.g. ``latency_p99_ms`` max 250);
    - against the baseline: ``max_degradation`` (in the metric's units, e.g. 0.01 = one accuracy
      point) or ``max_degradation_relative`` (a fraction of the baseline's value, e.g. 0.02 = 2%).
    "Degradation" follows the metric's direction (lower accuracy, higher latency).
    """

    metric: str = Field(min_length=1)
    max: FiniteFloat | None = None
    min: FiniteFloat | None = None
    max_degradation: FiniteFloat | None = Field(None, ge=0)
    max_degradation_relative: FiniteFloat | None = Field(None, ge=0)
    test: StatisticalTest = "confidence_sequence"
    alpha: float = Field(0.01, gt=0, lt=0.5, description="Error probability of the sequential test.")
    critical: bool = Field(False, description="A failure rolls back at once, whatever on_failure says.")
    higher_is_better: bool | None = Field(
        None, description="Direction of an outcome.* metric; other metrics know their own.")
    name: str | None = Field(None, description="How the guardrail is shown; defaults to the metric.")
    per_segment: bool = Field(
        False, description="Added in v1: judge the candidate in every segment of the spec's segments too, not "
                           "only over all traffic: it fails when it fails in any. Its alpha is split over all traffic "
                           "and every segment that may be judged, so the rollout's false rollback rate stays at most "
                           "alpha.")
    min_detectable_effect: FiniteFloat | None = Field(
        None, gt=0,
        description="The degradation beyond the bound this guardrail should catch fastest, as a power analysis "
                    "would plan it (in the bound's units: the metric's for max, min and max_degradation, a fraction "
                    "of the baseline's value for max_degradation_relative). It tunes the sequential test, which "
                    "stays valid whatever it is; without it the test is tuned for a few hundred to a few thousand "
                    "samples.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        lookup_metric(value)
        return value

    @model_validator(mode="after")
    def _one_comparison(self) -> Guardrail:
        absolute = self.max is not None or self.min is not None
        relative = self.max_degradation is not None or self.max_degradation_relative is not None
        if lookup_metric(self.metric).kind == "check":
            if absolute or relative or self.min_detectable_effect is not None:
                raise ValueError(f"{self.metric} is a check: it takes no max, min, max_degradation or "
                                 f"min_detectable_effect")
            return self
        if absolute == relative:
            raise ValueError("give either an absolute bound (max/min) or a comparison with the baseline "
                             "(max_degradation or max_degradation_relative), not both or neither")
        if self.max_degradation is not None and self.max_degradation_relative is not None:
            raise ValueError("give max_degradation or max_degradation_relative, not both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    @property
    def comparison(self) -> Literal["absolute", "baseline"]:
        return "absolute" if (self.max is not None or self.min is not None) else "baseline"

    @property
    def label(self) -> str:
        return self.name or self.metric

    @property
    def prefers_higher(self) -> bool:
        if self.higher_is_better is not None:
            return self.higher_is_better
        return lookup_metric(self.metric).higher_is_better


class RegistryRef(_Part):
    """The rollout's versions in a model registry (MLflow): read into its decisions; on promotion the
    candidate's registry version gets ``alias``, on rollback a tag with the decision."""

    name: str = Field(min_length=1, description="The registered model's name.")
    versions: dict[str, str] = Field(
        default_factory=dict, description="ShadowCanary version -> registry version number, e.g. {v2: '7'}.")
    alias: str = Field("champion", min_length=1, description="Set on the candidate's version when promoted.")


class RolloutSpec(WireModel):
    """A rollout of ``candidate`` against ``baseline`` for one model; keyed by ``model``."""

    model_config = ConfigDict(strict=False)

    model: Name
    baseline: Name
    candidate: Name
    mode: Mode
    task: Task
    steps: list[Step] = Field(default_factory=lambda: [Step(percent=100)], min_length=1, max_length=100)
    bake: Bake = Field(default_factory=Bake, description="Default bake of every step.")
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=100)
    label_timeout: Duration = Field(7 * 86400.0, gt=0, description="Labels later than this are counted "
                                                                   "late and not joined.")
    on_failure: OnFailure = "rollback"
    registry: RegistryRef | None = Field(
        None, description="Added in v1: the versions in a model registry (MLflow), for metadata and outcomes.")
    segments: list[Segment] = Field(
        default_factory=list, max_length=8,
        description="Added in v1: request attributes to judge by segment (the guardrails with per_segment); the "
                    "evaluator must keep them (shadowcanary evaluate --segments).")

    @model_validator(mode="after")
    def _consistent(self) -> RolloutSpec:
        if self.baseline == self.candidate:
            raise ValueError("candidate: must differ from baseline")
        percents = [s.percent for s in self.steps]
        if any(b <= a for a, b in zip(percents, percents[1:])):
            raise ValueError(f"steps: must increase strictly, got {percents}")
        for i, guardrail in enumerate(self.guardrails):
            info = lookup_metric(guardrail.metric)
            if not info.defined_for(self.task):
                raise ValueError(f"guardrails[{i}].metric: {guardrail.metric!r} is not defined for "
                                 f"task {self.task!r}")
        attributes = [s.attribute for s in self.segments]
        if len(set(attributes)) < len(attributes):
            raise ValueError(f"segments: each attribute once, got {attributes}")
        for i, guardrail in enumerate(self.guardrails):
            if not guardrail.per_segment:
                continue
            if not self.segments:
                raise ValueError(f"guardrails[{i}].per_segment: the spec names no segments")
            info = lookup_metric(guardrail.metric)
            if not info.needs_labels or guardrail.comparison != "baseline":
                raise ValueError(f"guardrails[{i}].per_segment: only a comparison with the baseline on a labelled "
                                 f"metric is judged per segment ({guardrail.metric!r} is not one)")
        labels = [g.label for g in self.guardrails]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(f"guardrails: names must be unique; repeated: {', '.join(duplicates)} "
                             "(set 'name' to tell them apart)")
        return self

    def segment_tests(self) -> int:
        """How many tests a ``per_segment`` guardrail makes: all traffic and every segment that may
        be judged (its alpha is split evenly over them)."""
        return 1 + sum(s.judged_segments for s in self.segments)

    def bake_at(self, step_index: int) -> Bake:
        """The bake of step ``step_index``: its own, or the spec's default."""
        return self.steps[step_index].bake or self.bake

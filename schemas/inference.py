"""The three co-partitioned inference messages: request, response (one per version), ground truth.

>>> r = InferenceResponse(request_id="r1", model="fraud", version="v2", role="canary",
...                       ts=1700000000000, prediction=1, score=0.93, latency_ms=12.5)
>>> r.ts.year, r.role
(2023, 'canary')
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, JsonValue, model_validator

from schemas.base import WireModel
from schemas.types import (
    MAX_SUBJECT_LENGTH,
    FeatureValue,
    FiniteFloat,
    Name,
    NonNegativeFloat,
    RequestId,
    Timestamp,
    epoch_ms,
)

Role = Literal["primary", "canary", "shadow"]


class InferenceEvent(WireModel):
    """What the three inference messages share beyond their fields: ``kind`` and ``ts_ms``, as the
    hot path's Structs (:mod:`schemas.fast_codec`) carry them, so the core reads either alike."""

    #: "request", "response" or "label".
    kind: ClassVar[str]

    @property
    def ts_ms(self) -> int:
        """``ts`` in epoch milliseconds."""
        return epoch_ms(self.ts)  # type: ignore[attr-defined]


class InferenceRequest(InferenceEvent):
    """A request as the serving layer saw it; keyed by ``request_id``."""

    kind: ClassVar[str] = "request"
    request_id: RequestId
    model: Name
    ts: Timestamp
    features: dict[str, FeatureValue] = Field(default_factory=dict)
    subject: str | None = Field(None, max_length=MAX_SUBJECT_LENGTH,
                                description="Stable key of the user or entity: sticky routing and cohorts.")
    attributes: dict[str, str] = Field(default_factory=dict,
                                       description="Region, segment, ... for cohort rules.")


class InferenceResponse(InferenceEvent):
    """One model version's answer to a request (served or shadowed)."""

    kind: ClassVar[str] = "response"
    request_id: RequestId
    model: Name
    version: Name
    role: Role
    ts: Timestamp
    prediction: JsonValue = Field(None, description="A class, a number, or a ranked list of item ids; "
                                                    "absent when error is set.")
    score: FiniteFloat | dict[str, FiniteFloat] | None = Field(
        None, description="A number, or class to probability.")
    latency_ms: NonNegativeFloat | None = None
    error: str | None = Field(None, description="The model failed on this request.")

    @model_validator(mode="after")
    def _prediction_or_error(self) -> InferenceResponse:
        if self.error is None and self.prediction is None:
            raise ValueError("prediction is required unless error is set")
        return self


class GroundTruth(InferenceEvent):
    """The label of a request and the business outcomes credited to the version that served it."""

    kind: ClassVar[str] = "label"
    request_id: RequestId
    model: Name
    ts: Timestamp
    label: JsonValue = Field(None, description="Same kind as prediction; for ranking, the relevant item ids.")
    outcomes: dict[str, FiniteFloat] = Field(default_factory=dict,
                                             description="KPI name to number, e.g. revenue.")

    @model_validator(mode="after")
    def _label_or_outcomes(self) -> GroundTruth:
        if self.label is None and not self.outcomes:
            raise ValueError("label or outcomes is required")
        return self


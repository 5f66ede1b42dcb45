"""What monitoring consumers and alert subscribers read: metric snapshots and alerts."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field, model_validator

from schemas.base import WireModel
from schemas.inference import Role
from schemas.types import FiniteFloat, Name, Timestamp, WireUUID

Severity = Literal["info", "warning", "critical"]
AlertKind = Literal["regression", "drift", "errors", "latency", "labels", "schema", "rollback"]


class Window(WireModel):
    start: Timestamp
    end: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError("window end is before its start")
        return self


class LatencyQuantiles(WireModel):
    p50: FiniteFloat | None = None
    p95: FiniteFloat | None = None
    p99: FiniteFloat | None = None


class MetricsSnapshot(WireModel):
    """One version's numbers over one closed window; keyed by ``model/version``."""

    model: Name
    version: Name
    role: Role
    window: Window
    requests: int = Field(0, ge=0)
    responses: int = Field(0, ge=0)
    errors: int = Field(0, ge=0)
    labelled: int = Field(0, ge=0)
    expired: int = Field(0, ge=0, description="Never labelled within label_timeout.")
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    latency_ms: LatencyQuantiles = Field(default_factory=LatencyQuantiles)
    drift: dict[str, FiniteFloat] = Field(default_factory=dict)
    segment: str | None = Field(
        None, description="Added in v1: the segment these numbers are for (attribute=value, e.g. region=eu; "
                          "over the version's labelled requests in it); none: all of the version's traffic.")

    @property
    def key(self) -> str:
        return f"{self.model}/{self.version}"


class Alert(WireModel):
    """Something a person should know; keyed by ``model``."""

    alert_id: WireUUID = Field(default_factory=uuid.uuid4)
    model: Name
    version: Name | None = None
    severity: Severity
    kind: AlertKind
    message: str = Field(min_length=1)
    value: FiniteFloat | None = None
    threshold: FiniteFloat | None = None
    ts: Timestamp
    feature: str | None = Field(
        None, description="Added in v1: for drift alerts, the feature (or '@prediction', '@errors') that drifted.")
    status: Literal["firing", "resolved"] = Field(
        "firing", description="Added in v1: 'resolved' when the condition has cleared.")
    source_topic: str | None = Field(
        None, description="Added in v1: for a refused record (kind 'schema'), the topic it was read from.")
    source_partition: int | None = Field(None, ge=0, description="Added in v1: its partition.")
    source_offset: int | None = Field(None, ge=0, description="Added in v1: its offset.")

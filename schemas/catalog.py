"""Message name -> model, and the model each contract topic carries.

>>> model_for_topic("inference.labels").__name__
'GroundTruth'
"""

from __future__ import annotations

from pydantic import BaseModel

from schemas.control import Decision, RoutingCommand
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.monitoring import Alert, MetricsSnapshot
from schemas.rollout import RolloutSpec
from schemas.topics import TOPICS_BY_NAME

MESSAGES: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (InferenceRequest, InferenceResponse, GroundTruth, RolloutSpec, RoutingCommand,
                  Decision, MetricsSnapshot, Alert)
}


def model_for_topic(default_topic_name: str) -> type[BaseModel] | None:
    """The model of a topic's values (``None`` for the dead-letter topic, which keeps raw bytes)."""
    return MESSAGES.get(TOPICS_BY_NAME[default_topic_name].value)

"""The v1 wire contract of ShadowCanary as pydantic models (``docs/contract.md`` is generated from them).

>>> from schemas import InferenceRequest, decode, encode
>>> req = decode(InferenceRequest, b'{"request_id": "r1", "model": "m", "ts": "2026-01-01T00:00:00Z"}')
>>> encode(req)
b'{"request_id":"r1","model":"m","ts":"2026-01-01T00:00:00Z","features":{},"subject":null,"attributes":{}}'
"""

from schemas.codec import MAX_RECORD_BYTES, DecodeError, decode, encode
from schemas.control import Bounds, Decision, GuardrailEvidence, RoutingCommand
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.monitoring import Alert, LatencyQuantiles, MetricsSnapshot, Window
from schemas.rollout import Bake, Guardrail, RolloutSpec, Step
from schemas.topics import TOPICS, Topics, TopicSpec

__all__ = [
    "Alert", "Bake", "Bounds", "Decision", "DecodeError", "GroundTruth", "Guardrail",
    "GuardrailEvidence", "InferenceRequest", "InferenceResponse", "LatencyQuantiles",
    "MAX_RECORD_BYTES", "MetricsSnapshot", "RolloutSpec", "RoutingCommand", "Step", "TOPICS",
    "TopicSpec", "Topics", "Window", "decode", "encode",
]

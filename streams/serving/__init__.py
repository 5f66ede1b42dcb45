"""What a serving team runs beside its models: the router SDK, the inference logger, the sidecar that
offers both over HTTP/JSON, and the read API for people and progressive-delivery controllers."""

from evaluators.routing import Assignment
from streams.serving.inference_logger import InferenceLogger
from streams.serving.router import Router

__all__ = ["Assignment", "InferenceLogger", "Router"]

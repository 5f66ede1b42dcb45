"""The sidecar: the router SDK and the inference logger over HTTP/JSON, for services not in Python.

``shadowcanary sidecar`` runs beside a serving process (loopback by default) and answers:

=========================  =====================================================================
``POST /v1/route``          ``{"model", "subject", "attributes"?}`` -> ``{"serve", "mirror", "role"}``
                            (404 for a model with no command yet and no ``--baseline``):
                            the SDK's :meth:`Router.route` (same buckets, cohorts and epochs: the
                            same :class:`evaluators.routing.RouteBook`, fed from ``rollout.control``
                            with signatures verified)
``POST /v1/log/request``    an ``InferenceRequest`` -> 202; published without waiting on Kafka
``POST /v1/log/response``   an ``InferenceResponse`` -> 202
``POST /v1/log/label``      a ``GroundTruth`` -> 202
``GET /healthz``            ``{"status": "ok", "routes_current": bool, "commands_applied": n}``
``GET /metrics``            Prometheus exposition (router and logger counters)
=========================  =====================================================================

Nothing waits on Kafka: routes are answered from memory (the last good routes stay when the broker
is away; before any history, the baselines), and the log endpoints hand events to the logger's
bounded queue. A body that is not JSON or not a valid event gets 400 with the reason naming the
field; an event the full queue cannot take gets 503 (dropped and counted, as the SDK does); an
unknown path 404, a wrong method 405, a body over 1 MiB 413.

The server is :class:`streams.serving.http_json.JsonServer` (the standard library's threading HTTP/1.1 server
with keep-alive): a route costs well under a millisecond on loopback (``make bench``, ``sidecar``
rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from streams.serving.http_json import Answer, JsonServer
from streams.serving.inference_logger import InferenceLogger
from streams.serving.router import Router

DEFAULT_PORT = 8787


class RouteRequest(BaseModel):
    """What ``POST /v1/route`` reads."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    subject: str
    attributes: dict[str, str] | None = None


class Sidecar:
    """An HTTP front for ``router`` and ``logger``; :meth:`start` serves in a thread."""

    def __init__(self, router: Router, logger: InferenceLogger, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT) -> None:
        self.router = router
        self.logger = logger
        self.http = JsonServer(self.get, self.post, host, port, get_paths=_GET_PATHS.__contains__,
                               post_paths=_POST_PATHS.__contains__, name="shadowcanary-sidecar")

    @property
    def port(self) -> int:
        return self.http.bound_port

    def start(self) -> None:
        self.http.start()

    def stop(self) -> None:
        self.http.stop()

    # -- answers ------------------------------------------------------------------------------------
    def route(self, body: Any) -> Answer:
        request = RouteRequest.model_validate(body)
        try:
            assignment = self.router.route(request.model, request.subject, request.attributes)
        except LookupError as exc:  # no command for the model yet, and no --baseline for it
            return 404, {"error": str(exc)}
        return 200, {"serve": assignment.serve, "mirror": list(assignment.mirror), "role": assignment.role}

    def _log(self, kind: type[BaseModel], send: Callable[[Any], bool], body: Any) -> Answer:
        event = kind.model_validate(body)
        if not send(event):
            return 503, {"error": "the logger's queue is full: the event was dropped (and counted)"}
        return 202, {"accepted": True}

    def get(self, path: str) -> Answer | None:
        if path == "/healthz":
            return 200, {"status": "ok", "routes_current": self.router.ready.is_set(),
                         "commands_applied": self.router.applied}
        if path == "/metrics":
            return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        return None

    def post(self, path: str, body: Any) -> Answer | None:
        if path == "/v1/route":
            return self.route(body)
        if path == "/v1/log/request":
            return self._log(InferenceRequest, self.logger.log_request, body)
        if path == "/v1/log/response":
            return self._log(InferenceResponse, self.logger.log_response, body)
        if path == "/v1/log/label":
            return self._log(GroundTruth, self.logger.log_label, body)
        return None


_POST_PATHS = frozenset({"/v1/route", "/v1/log/request", "/v1/log/response", "/v1/log/label"})
_GET_PATHS = frozenset({"/healthz", "/metrics"})


__all__ = ["DEFAULT_PORT", "RouteRequest", "Sidecar"]

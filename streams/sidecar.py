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

The server is the standard library's threading HTTP/1.1 server with keep-alive (one thread per
connection): a route costs well under a millisecond on loopback (``make bench``, ``sidecar`` rows).
"""

from __future__ import annotations

import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import orjson
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import describe_validation_error
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from streams.inference_logger import InferenceLogger
from streams.router import Router

log = logging.getLogger("shadowcanary.sidecar")

MAX_BODY = 1 << 20
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
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="shadowcanary-sidecar", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- answers: (status, JSON body) ---------------------------------------------------------------
    def route(self, body: Any) -> tuple[int, dict]:
        request = RouteRequest.model_validate(body)
        try:
            assignment = self.router.route(request.model, request.subject, request.attributes)
        except LookupError as exc:  # no command for the model yet, and no --baseline for it
            return 404, {"error": str(exc)}
        return 200, {"serve": assignment.serve, "mirror": list(assignment.mirror), "role": assignment.role}

    def _log(self, kind: type[BaseModel], send: Callable[[Any], bool], body: Any) -> tuple[int, dict]:
        event = kind.model_validate(body)
        if not send(event):
            return 503, {"error": "the logger's queue is full: the event was dropped (and counted)"}
        return 202, {"accepted": True}

    def healthz(self) -> tuple[int, dict]:
        return 200, {"status": "ok", "routes_current": self.router.ready.is_set(),
                     "commands_applied": self.router.applied}

    def post(self, path: str, body: Any) -> tuple[int, dict]:
        if path == "/v1/route":
            return self.route(body)
        if path == "/v1/log/request":
            return self._log(InferenceRequest, self.logger.log_request, body)
        if path == "/v1/log/response":
            return self._log(InferenceResponse, self.logger.log_response, body)
        if path == "/v1/log/label":
            return self._log(GroundTruth, self.logger.log_label, body)
        return 404, {"error": f"no such endpoint: POST {path}"}


_POST_PATHS = ("/v1/route", "/v1/log/request", "/v1/log/response", "/v1/log/label")
_GET_PATHS = ("/healthz", "/metrics")


def _handler_for(sidecar: Sidecar) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "shadowcanary-sidecar"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            log.debug("%s %s", self.address_string(), format % args)

        def setup(self) -> None:
            super().setup()
            # Answers are small and the connection is kept alive: without this, Nagle's algorithm
            # and the client's delayed ACK hold a second small write for ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            """The whole answer in one write (status line, headers, body)."""
            close = "Connection: close\r\n" if self.close_connection else ""
            head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n{close}\r\n")
            self.wfile.write(head.encode() + body)

        def _json(self, status: int, body: dict) -> None:
            self._send(status, orjson.dumps(body))

        def do_GET(self) -> None:  # noqa: N802 (the base class's name)
            if self.path == "/healthz":
                self._json(*sidecar.healthz())
            elif self.path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path in _POST_PATHS:
                self._json(405, {"error": f"{self.path} takes POST"})
            else:
                self._json(404, {"error": f"no such endpoint: GET {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path in _GET_PATHS:
                self._json(405, {"error": f"{self.path} takes GET"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._json(400, {"error": "Content-Length is not a number"})
                return
            if length > MAX_BODY:
                self.close_connection = True  # the body is not read
                self._json(413, {"error": f"body over {MAX_BODY} bytes"})
                return
            raw = self.rfile.read(length)
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                self._json(400, {"error": f"not JSON: {exc}"})
                return
            try:
                self._json(*sidecar.post(self.path, body))
            except ValidationError as exc:
                self._json(400, {"error": describe_validation_error(exc)})

    return Handler


__all__ = ["DEFAULT_PORT", "RouteRequest", "Sidecar"]

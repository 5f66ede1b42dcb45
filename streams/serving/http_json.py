"""A small HTTP/1.1 JSON server for ShadowCanary's HTTP faces (the sidecar, the read API): routes by
method and path to functions that answer ``(status, body)``; keep-alive, one write per answer.

The standard library's threading server (one thread per connection) is enough for these: a
sidecar serves one service on loopback, the API answers pipelines and progressive-delivery
controllers. A body that is not JSON gets 400, an unknown path 404, a known path with the wrong
method 405, a body over :data:`MAX_BODY` 413, and a handler's pydantic ``ValidationError`` 400 with
the reason naming the field.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import ValidationError

from schemas.errors import describe_validation_error

log = logging.getLogger("shadowcanary.http")

MAX_BODY = 1 << 20

#: An answer: status and a JSON-able body, or status, bytes and their content type.
Answer = tuple[int, Any] | tuple[int, bytes, str]
GetHandler = Callable[[str], Answer | None]  # path -> answer, None: no such path
PostHandler = Callable[[str, Any], Answer | None]  # path, decoded body -> answer


@dataclass
class JsonServer:
    """Serves ``get`` and ``post`` (each returns None for a path it does not know) in a thread;
    ``get_paths``/``post_paths``: the paths each method knows, for 405 answers."""

    get: GetHandler
    post: PostHandler
    host: str = "127.0.0.1"
    port: int = 0
    get_paths: Callable[[str], bool] = lambda path: False
    post_paths: Callable[[str], bool] = lambda path: False
    name: str = "shadowcanary"
    server: ThreadingHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self.server.daemon_threads = True

    @property
    def bound_port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, name=f"{self.name}-http", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(app: JsonServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = app.name

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            log.debug("%s %s", self.address_string(), format % args)

        def setup(self) -> None:
            super().setup()
            # Answers are small and the connection is kept alive: without this, Nagle's algorithm
            # and the client's delayed ACK hold a second small write for ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, answer: Answer) -> None:
            """The whole answer in one write (status line, headers, body)."""
            if len(answer) == 3:
                status, body, content_type = answer  # type: ignore[misc]
            else:
                status, content = answer  # type: ignore[misc]
                body, content_type = orjson.dumps(content), "application/json"
            close = "Connection: close\r\n" if self.close_connection else ""
            head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n{close}\r\n")
            self.wfile.write(head.encode() + body)

        def do_GET(self) -> None:  # noqa: N802 (the base class's name)
            path = urlsplit(self.path).path
            answer = app.get(path)
            if answer is None:
                known = app.post_paths(path)
                answer = (405, {"error": f"{path} takes POST"}) if known else \
                    (404, {"error": f"no such endpoint: GET {path}"})
            self._send(answer)

        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            if app.get_paths(path) and not app.post_paths(path):
                self._send((405, {"error": f"{path} takes GET"}))
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send((400, {"error": "Content-Length is not a number"}))
                return
            if length > MAX_BODY:
                self.close_connection = True  # the body is not read
                self._send((413, {"error": f"body over {MAX_BODY} bytes"}))
                return
            raw = self.rfile.read(length)
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError as exc:
                self._send((400, {"error": f"not JSON: {exc}"}))
                return
            try:
                answer = app.post(path, body)
            except ValidationError as exc:
                answer = (400, {"error": describe_validation_error(exc)})
            self._send(answer if answer is not None else (404, {"error": f"no such endpoint: POST {path}"}))

    return Handler


__all__ = ["Answer", "JsonServer", "MAX_BODY"]

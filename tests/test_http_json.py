"""The JSON HTTP server of the sidecar and the API (streams/serving/http_json.py), with a real HTTP client."""

from __future__ import annotations

import http.client
import json

import pytest
from pydantic import BaseModel

from streams.serving.http_json import MAX_BODY, JsonServer


class Echo(BaseModel):
    name: str


@pytest.fixture
def server():
    def get(path: str):
        return (200, {"path": path}) if path == "/thing" else None

    def post(path: str, body):
        return (201, {"hello": Echo.model_validate(body).name}) if path == "/echo" else None

    app = JsonServer(get, post, get_paths=lambda p: p == "/thing", post_paths=lambda p: p == "/echo")
    app.start()
    yield app.bound_port
    app.stop()


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


def test_answers_and_refusals(server):
    assert request(server, "GET", "/thing?x=1") == (200, {"path": "/thing"})
    assert request(server, "POST", "/echo", b'{"name": "a"}') == (201, {"hello": "a"})
    assert request(server, "POST", "/echo", b'{"nom": "a"}')[0] == 400
    assert "name" in request(server, "POST", "/echo", b'{"nom": "a"}')[1]["error"]
    assert request(server, "POST", "/echo", b"{")[1]["error"].startswith("not JSON")
    assert request(server, "GET", "/echo")[0] == 405
    assert request(server, "POST", "/thing", b"{}")[0] == 405
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "POST", "/nowhere", b"{}")[0] == 404


def test_a_body_over_the_limit_is_refused_without_reading_it(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    connection.putrequest("POST", "/echo")
    connection.putheader("Content-Length", str(MAX_BODY + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "over" in json.loads(response.read())["error"]
    assert response.getheader("Connection") == "close"
    connection.close()
    assert request(server, "POST", "/echo", b"{}", {"Content-Length": "x"})[0] == 400


def test_one_connection_serves_many_requests(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    for i in range(50):
        connection.request("POST", "/echo", body=json.dumps({"name": str(i)}).encode())
        response = connection.getresponse()
        assert json.loads(response.read()) == {"hello": str(i)}
    connection.close()

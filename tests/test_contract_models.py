"""The v1 contract as models: committed samples stay valid (or invalid), constraints hold."""

from __future__ import annotations

import json
import math
from datetime import UTC
from pathlib import Path

import orjson
import pytest

from schemas import (
    DecodeError,
    GroundTruth,
    InferenceRequest,
    InferenceResponse,
    RolloutSpec,
    RoutingCommand,
    decode,
    encode,
)
from schemas.catalog import MESSAGES

DATA = Path(__file__).parent / "data"


def _samples(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


VALID = _samples("contract_v1_valid.jsonl")
INVALID = _samples("contract_v1_invalid.jsonl")


def test_every_message_has_valid_and_invalid_samples():
    assert {s["message"] for s in VALID} == set(MESSAGES)
    assert {s["message"] for s in INVALID} == set(MESSAGES)


@pytest.mark.parametrize("sample", VALID, ids=lambda s: s["message"])
def test_once_valid_v1_events_stay_valid_and_round_trip(sample):
    model = MESSAGES[sample["message"]]
    message = decode(model, orjson.dumps(sample["event"]))
    again = decode(model, encode(message))
    assert again == message
    # Unknown fields are kept aside and written back, never errors.
    known = set(model.model_fields)
    for extra in set(sample["event"]) - known:
        assert extra in (message.model_extra or {})
        assert orjson.loads(encode(message))[extra] == sample["event"][extra]


@pytest.mark.parametrize("sample", INVALID, ids=lambda s: f"{s['message']}.{s['field']}")
def test_invalid_v1_events_are_refused_naming_the_field(sample):
    with pytest.raises(DecodeError) as info:
        decode(MESSAGES[sample["message"]], orjson.dumps(sample["event"]))
    assert info.value.reason == "invalid"
    assert sample["field"] in info.value.detail


def test_timestamps_rfc3339_and_epoch_ms_agree_and_serialize_utc():
    a = InferenceRequest.model_validate({"request_id": "r", "model": "m", "ts": "2026-03-01T13:00:00+01:00"})
    b = InferenceRequest.model_validate({"request_id": "r", "model": "m", "ts": 1772366400000})
    assert a.ts == b.ts and a.ts.tzinfo == UTC
    assert orjson.loads(encode(a))["ts"] == "2026-03-01T12:00:00Z"


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty"),
    (None, "empty"),
    (b"\xff\xfe\x00garbage", "not_json"),
    (b'{"request_id": "r", "model": "m", "ts": 1, "features": {"x": NaN}}', "not_json"),
    (b'{"request_id": "r", "model": "m", "ts": 1, "features": {"x": 1e999}}', "not_json"),
    (b'{"request_id": "r", "model": "m", "ts": 1, "features": {"x": Infinity}}', "not_json"),
    (b'[1, 2]', "not_object"),
    (b'"just a string"', "not_object"),
    (b'{"request_id": "r", "model": "m", "ts": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}', "oversize"),
])
def test_malformed_bytes_have_a_reason(raw, reason):
    with pytest.raises(DecodeError) as info:
        decode(InferenceRequest, raw)
    assert info.value.reason == reason


def test_no_nan_reaches_a_model_even_in_free_form_fields():
    with pytest.raises(DecodeError):
        decode(InferenceResponse, b'{"request_id":"r","model":"m","version":"v","role":"primary",'
                                  b'"ts":1,"prediction":NaN}')
    with pytest.raises(DecodeError):
        decode(GroundTruth, b'{"request_id":"r","model":"m","ts":1,"label":-Infinity}')


def test_strict_types_do_not_coerce():
    with pytest.raises(DecodeError, match="features"):
        decode(InferenceRequest, b'{"request_id":"r","model":"m","ts":1,"features":{"a":[1]}}')
    request = decode(InferenceRequest, b'{"request_id":"r","model":"m","ts":1,"features":{"a":true,"b":1}}')
    assert request.features == {"a": True, "b": 1}
    assert type(request.features["a"]) is bool and type(request.features["b"]) is int


def test_routes_must_sum_to_100_within_tolerance():
    base = dict(model="m", epoch=1, issued_at=1, issuer="evaluator", action="set_routes", reason="x",
                rollout_id="r")
    RoutingCommand(**base, routes={"a": 33.3333333, "b": 66.6666667})
    with pytest.raises(ValueError, match="sum to 100"):
        RoutingCommand(**base, routes={"a": 50, "b": 49.99})
    with pytest.raises(ValueError, match="between 0 and 100"):
        RoutingCommand(**base, routes={"a": 150, "b": -50})


def test_canonical_json_excludes_signature_and_sorts_keys():
    command = RoutingCommand(model="m", epoch=1, issued_at=1, issuer="cli:bob", action="pause",
                             routes={"b": 10, "a": 90}, reason="x", rollout_id="r", signature="sig")
    body = orjson.loads(command.canonical_json())
    assert "signature" not in body
    assert list(body) == sorted(body)
    assert command.canonical_json() == command.model_copy(update={"signature": "other"}).canonical_json()


def test_spec_steps_written_back_as_numbers_unless_they_have_a_bake():
    spec = RolloutSpec.model_validate({
        "model": "m", "baseline": "a", "candidate": "b", "mode": "canary", "task": "binary",
        "steps": [1, {"percent": 50, "bake": {"min_samples": 10}}, 100]})
    steps = orjson.loads(encode(spec))["steps"]
    assert steps[0] == 1.0 and steps[2] == 100.0
    assert steps[1]["percent"] == 50.0 and steps[1]["bake"]["min_samples"] == 10
    assert spec.bake_at(1).min_samples == 10 and spec.bake_at(0) == spec.bake
    assert decode(RolloutSpec, encode(spec)) == spec


def test_latency_must_be_finite_and_non_negative():
    for bad in (-0.1, math.inf):
        with pytest.raises(ValueError):
            InferenceResponse(request_id="r", model="m", version="v", role="primary", ts=1, prediction=1,
                              latency_ms=bad)

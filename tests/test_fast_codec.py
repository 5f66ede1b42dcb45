"""The hot path's decoder (:mod:`schemas.fast_codec`) against the models, the contract's source of
truth: the same constraints per field, and on generated valid and invalid records and every
committed sample, the same accept/reject and the same decoded values.

The property that matters is one-sided: whatever the msgspec Structs accept, the models accept
with the same values. (What the Structs refuse goes to the models, which decide.)"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import GroundTruth, InferenceRequest, InferenceResponse
from schemas.codec import DecodeError, decode
from schemas.fast_codec import _DECODERS, FAST_STRUCTS, decode_fast
from schemas.types import _parse_timestamp, _to_utc, epoch_ms, timestamp_ms
from tests.strategies import EVENTS, FINITE, SAFE_INT, record

DATA = Path(__file__).parent / "data"
MODELS = {"inference.requests": InferenceRequest, "inference.responses": InferenceResponse,
          "inference.labels": GroundTruth}
BY_NAME = {model.__name__: model for model in MODELS.values()}


def same(a: Any, b: Any) -> bool:
    """Equal, with the same JSON types all the way down (1 and 1.0 and True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def struct_fields(event: msgspec.Struct) -> dict[str, Any]:
    return {field: getattr(event, field) for field in event.__struct_fields__}


def model_fields(message: BaseModel) -> dict[str, Any]:
    known = {name: getattr(message, name) for name in type(message).model_fields}
    known["ts_ms"] = message.ts_ms
    del known["ts"]
    return known


def outcome(call) -> tuple[str, Any]:
    try:
        return "ok", call()
    except DecodeError as exc:
        return "refused", (exc.reason, exc.detail)


def check_agreement(model: type[BaseModel], data: bytes | None) -> None:
    by_models = outcome(lambda: decode(model, data))
    by_fast = outcome(lambda: decode_fast(model, data))
    assert by_fast[0] == by_models[0], (data, by_models, by_fast)
    if by_models[0] == "refused":
        assert by_fast[1] == by_models[1]  # the models' reason and detail
        return
    expected = model_fields(by_models[1])
    got = by_fast[1]
    fields = struct_fields(got) if isinstance(got, msgspec.Struct) else model_fields(got)
    assert got.kind == by_models[1].kind
    assert fields.keys() == expected.keys()
    for name in expected:
        assert same(fields[name], expected[name]), (data, name, fields[name], expected[name])


def fast_accepts_only_what_models_accept(model: type[BaseModel], data: bytes) -> None:
    """The one-sided property: what the Structs alone accept, the models accept, with the same values."""
    try:
        event = _DECODERS[model].decode(data)
    except (msgspec.DecodeError, ValueError):
        return
    message = decode(model, data)  # raises (fails the test) if the models refuse it
    expected = model_fields(message)
    for name, value in struct_fields(event).items():
        assert same(value, expected[name]), (data, name, value, expected[name])


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(record("r-1"))
def test_generated_records_decode_alike(generated):
    topic, data, kind = generated
    check_agreement(MODELS[topic], data)
    if kind == "valid":  # taken by the fast path itself, not handed to the models
        assert isinstance(decode_fast(MODELS[topic], data), msgspec.Struct), data
    if data:
        fast_accepts_only_what_models_accept(MODELS[topic], data)


#: Values at and around the edges the two parsers could treat differently.
EDGY = st.one_of(
    SAFE_INT,
    FINITE,
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.sampled_from(
        [
            0,
            -0.0,
            1.0,
            2**63,
            -(2**63) - 1,
            2**64,
            1e308,
            5e-324,
            "",
            "x" * 128,
            "x" * 129,
            "é" * 128,
            "é" * 129,
            "😀" * 128,
            "😀" * 129,
            "x" * 256,
            "x" * 257,
            "2026-03-01T12:00:00Z",
            "2026-03-01t12:00:00z",
            "2026-03-01 12:00:00+01:00",
            "2026-03-01T12:00:00.1234567891Z",
            "2026-03-01T12:00:00.1234567Z",
            "2026-02-30T12:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:60Z",
            "2026-03-01T12:00:00+24:00",
            "+2026-03-01T12:00:00Z",
            "2026-03-01T12:00Z",
            1772366400000.5,
            1772366400000.0,
            "2026-03-01T12:00:00.Z",
            "2026-03-01T12:00:00.٣Z",
            "2026-03-01T12:00:00.999999999-00:00",
            "2026-03-01T12:00:00.9999999999Z",
            "2026-03-01T12:00:00.12+01:00",
            "2026-03-01T12:00:00 Z",
            "2026-03-01T12:00:00.5z",
            "2026-03-01T12:00:00+0100",
            "2026-03-01T12:00:00.123456",
            "2026-13-01T12:00:00Z",
            "٢٠٢٦-03-01T12:00:00Z",
            "1969-12-31T23:59:59.999Z",
            253402300799999,
            253402300800000,
            -1,
            "primary",
            "canary",
            "shadow",
            "Primary",
        ]
    ),
    st.lists(SAFE_INT, max_size=2),
    st.dictionaries(
        st.text(max_size=3), st.one_of(SAFE_INT, FINITE, st.text(max_size=3), st.none(), st.booleans()), max_size=3
    ),
)


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A valid event with fields replaced by edge values, removed, or added."""
    topic = draw(st.sampled_from(sorted(EVENTS)))
    event = dict(draw(EVENTS[topic]("r-1")))
    fields = sorted(set(event) | {"subject", "attributes", "features", "score", "latency_ms", "error", "label",
                                   "outcomes", "prediction", "extra"})
    for field in draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
        if draw(st.booleans()):
            event[field] = draw(EDGY)
        else:
            event.pop(field, None)
    return topic, json.dumps(event).encode()  # the stdlib writes integers past 64 bits too


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_edge_values_decode_alike(generated):
    topic, data = generated
    check_agreement(MODELS[topic], data)
    fast_accepts_only_what_models_accept(MODELS[topic], data)


@pytest.mark.parametrize("data", [
    b'{"request_id": "r", "model": "m", "ts": 1, "request_id": "s"}',  # a duplicate key: the last wins
    b'{"request_id": "r", "model": "m", "ts": 1, "features": {"a": 1, "a": "x"}}',
    b'{"request_id": "\\ud83d\\ude00", "model": "m", "ts": 1}',  # an escaped surrogate pair
    b'{"request_id": "\\ud800", "model": "m", "ts": 1}',  # a lone surrogate
    b'{"request_id": "r", "model": "m", "ts": 1e3}',
    b'{"request_id": "r", "model": "m", "ts": 123456789012345678901234567890}',
    b'{"request_id": "r", "model": "m", "ts": 1} trailing',
    b' {"request_id": "r", "model": "m", "ts": 1} ',
    b'\xef\xbb\xbf{"request_id": "r", "model": "m", "ts": 1}',  # a byte-order mark
    b'{"request_id": "r\xff", "model": "m", "ts": 1}',  # not UTF-8
    b'{"request_id": "r", "model": "m", "ts": 1, "subject": null, "attributes": {"a": 1}}',
    b'[]', b'"x"', b'null', b'1',
])
def test_awkward_documents_decode_alike(data):
    check_agreement(InferenceRequest, data)
    fast_accepts_only_what_models_accept(InferenceRequest, data)


@pytest.mark.parametrize("path", ["contract_v1_valid.jsonl", "contract_v1_invalid.jsonl"])
def test_every_committed_sample_decodes_alike(path):
    samples = [json.loads(line) for line in (DATA / path).read_text().splitlines()]
    samples = [sample for sample in samples if sample["message"] in BY_NAME]  # the inference messages
    assert len(samples) >= 10
    for sample in samples:
        model = BY_NAME[sample["message"]]
        data = orjson.dumps(sample["event"])
        check_agreement(model, data)
        fast_accepts_only_what_models_accept(model, data)
        if path == "contract_v1_valid.jsonl":
            assert isinstance(decode_fast(model, data), msgspec.Struct), sample


def _constraints(schema: dict) -> dict[str, Any]:
    """Per property: the JSON Schema keywords that constrain a value, gathered from any anyOf."""
    out: dict[str, Any] = {}
    for keyword in ("minLength", "maxLength", "minimum", "enum", "type"):
        values = [schema[keyword]] if keyword in schema else []
        values += [branch[keyword] for branch in schema.get("anyOf", []) if keyword in branch]
        if values:
            out[keyword] = sorted(map(str, values)) if keyword in ("enum", "type") else values
    if "enum" in out:
        out["enum"] = sorted(
            str(v)
            for branch in (schema.get("enum"), *[b.get("enum") for b in schema.get("anyOf", [])])
            if branch
            for v in branch
        )
    out.pop("type", None)  # msgspec and pydantic name number types differently; values are tested above
    return out


@pytest.mark.parametrize("model", list(FAST_STRUCTS), ids=lambda m: m.__name__)
def test_the_structs_declare_the_models_fields_and_constraints(model):
    struct = FAST_STRUCTS[model]
    (struct_schema,) = msgspec.json.schema_components([struct])[1].values()
    model_schema = model.model_json_schema()
    assert set(struct_schema["properties"]) == set(model_schema["properties"])
    assert set(struct_schema["required"]) == set(model_schema["required"])
    for name, prop in model_schema["properties"].items():
        if name == "ts":
            continue  # one function parses both: schemas.types.timestamp_ms
        assert _constraints(struct_schema["properties"][name]) == _constraints(prop), name


TIMESTAMP_TEXTS = st.builds(
    lambda second, separator, fraction, zone: second.replace("T", separator) + fraction + zone,
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S")),
    st.sampled_from(["T", "T", "t", " ", "x"]),
    st.one_of(st.just(""), st.just("."), st.text("0123456789", min_size=1, max_size=11).map(lambda d: "." + d),
              st.sampled_from([".１２３", ".12a", ",5"])),
    st.sampled_from(["Z", "Z", "Z", "z", "+01:00", "-05:30", "+00:00", "", "+1:00"]),
)


@settings(max_examples=600, deadline=None)
@given(TIMESTAMP_TEXTS)
def test_timestamp_fast_paths_parse_as_the_models_do(text):
    """``timestamp_ms`` against the models' own parse: the first time, and once its whole second is
    cached (what the fast paths look up)."""
    def outcome(parse, value):
        try:
            return parse(value)
        except ValueError:
            return "refused"

    expected = outcome(lambda value: epoch_ms(_to_utc(_parse_timestamp(value))), text)
    assert outcome(timestamp_ms, text) == expected
    for zone in ("Z", "+01:00"):
        outcome(timestamp_ms, text[:19] + zone)  # its second, now cached
    assert outcome(timestamp_ms, text) == expected


@pytest.mark.parametrize(("model", "data"), [
    (GroundTruth, b'{"request_id": "r-1", "model": "0", "ts": 0, "label": -9223372036854775809}'),
    (GroundTruth, b'{"request_id": "r-1", "model": "0", "ts": 0, "label": {"x": [18446744073709551616]}}'),
    (InferenceResponse, b'{"request_id": "r", "model": "m", "version": "v", "role": "primary", "ts": 0, '
                        b'"prediction": [1, 18446744073709551616]}'),
    (InferenceRequest, b'{"request_id": "r", "model": "m", "ts": 0, "features": {"a": -9223372036854775809}}'),
    (InferenceRequest, b'{"request_id": "r", "model": "m", "ts": 0, "features": {"a": 18446744073709551615}}'),
    (InferenceRequest, b'{"request_id": "r", "model": "m", "ts": 0, "features": {"a": -9223372036854775808}}'),
])
def test_integers_beyond_64_bits_decode_as_the_models_read_them(model, data):
    """orjson reads an integer outside -2**63..2**64-1 as a float; msgspec would keep it whole (found
    by Hypothesis: a label of -2**63 - 1)."""
    check_agreement(model, data)

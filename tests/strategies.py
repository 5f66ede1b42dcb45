"""Hypothesis strategies for contract records: valid events, and malformed ones of known kinds.

A generated record is ``(contract topic, bytes or None, kind)``; ``kind`` is ``"valid"`` or the way it
was broken, decided by construction (not by the code under test).
"""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

ROLES = ["primary", "canary", "shadow"]
SAFE_INT = st.integers(min_value=-(2**53), max_value=2**53)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
NAMES = st.text(min_size=1, max_size=20)
EPOCH_MS = st.integers(min_value=0, max_value=4_102_444_800_000)


@st.composite
def rfc3339(draw) -> str:
    year = draw(st.integers(1970, 2099))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    hh, mm, ss = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    frac = draw(st.sampled_from(["", ".5", ".123", ".123456"]))
    zone = draw(st.sampled_from(["Z", "+00:00", "+05:30", "-08:00"]))
    return f"{year:04d}-{month:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}{frac}{zone}"


TIMESTAMPS = st.one_of(rfc3339(), EPOCH_MS)
FEATURE_VALUES = st.one_of(FINITE, SAFE_INT, st.text(max_size=12), st.booleans(), st.none())


def requests(request_id: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"request_id": st.just(request_id), "model": NAMES, "ts": TIMESTAMPS},
        optional={"features": st.dictionaries(st.text(max_size=10), FEATURE_VALUES, max_size=6),
                  "subject": st.text(max_size=20),
                  "attributes": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)})


def responses(request_id: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"request_id": st.just(request_id), "model": NAMES, "version": NAMES,
         "role": st.sampled_from(ROLES), "ts": TIMESTAMPS,
         "prediction": st.one_of(SAFE_INT, st.text(max_size=10), st.lists(st.text(max_size=6), max_size=5))},
        optional={"score": st.one_of(FINITE, st.dictionaries(st.text(max_size=5), FINITE, max_size=3)),
                  "latency_ms": st.floats(min_value=0, max_value=1e6, allow_nan=False)})


def labels(request_id: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"request_id": st.just(request_id), "model": NAMES, "ts": TIMESTAMPS,
         "label": st.one_of(SAFE_INT, st.text(max_size=10), st.lists(st.text(max_size=6), max_size=5))},
        optional={"outcomes": st.dictionaries(st.text(max_size=8), FINITE, max_size=3)})


EVENTS = {"inference.requests": requests, "inference.responses": responses, "inference.labels": labels}
REQUIRED = {"inference.requests": ["request_id", "model", "ts"],
            "inference.responses": ["request_id", "model", "version", "role", "ts"],
            "inference.labels": ["request_id", "model", "ts"]}
WRONG_TYPES = st.one_of(st.lists(SAFE_INT, max_size=2), st.dictionaries(st.text(max_size=3), SAFE_INT, max_size=2),
                        st.booleans())
BAD_TIMESTAMPS = st.one_of(
    st.just("2026-03-01T12:00:00"), st.just("2026-03-01"), st.just("yesterday"), st.just("1772366400000"),
    st.integers(min_value=-(2**62), max_value=-1), st.booleans(), st.just([2026, 3, 1]),
    st.integers(min_value=253402300800000, max_value=2**62))


@st.composite
def record(draw, request_id: str) -> tuple[str, bytes | None, str]:
    topic = draw(st.sampled_from(sorted(EVENTS)))
    event = draw(EVENTS[topic](request_id))
    kind = draw(st.sampled_from(["valid"] * 4 + ["broken_json", "wrong_type", "missing_field", "nan",
                                                 "unknown_role", "bad_timestamp", "garbage", "empty"]))
    if kind == "valid":
        return topic, orjson.dumps(event), kind
    if kind == "broken_json":
        raw = orjson.dumps(event)
        return topic, raw[:draw(st.integers(1, len(raw) - 1))], kind
    if kind == "wrong_type":
        field = draw(st.sampled_from(REQUIRED[topic]))
        return topic, orjson.dumps({**event, field: draw(WRONG_TYPES)}), kind
    if kind == "missing_field":
        field = draw(st.sampled_from(REQUIRED[topic]))
        return topic, orjson.dumps({k: v for k, v in event.items() if k != field}), kind
    if kind == "nan":
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
        raw = orjson.dumps({**event, "ts": "__X__"})
        return topic, raw.replace(b'"__X__"', literal), kind
    if kind == "unknown_role":
        role = draw(st.text(max_size=10).filter(lambda r: r not in ROLES))
        event = draw(responses(request_id))
        return "inference.responses", orjson.dumps({**event, "role": role}), kind
    if kind == "bad_timestamp":
        return topic, orjson.dumps({**event, "ts": draw(BAD_TIMESTAMPS)}), kind
    if kind == "garbage":
        return topic, draw(st.binary(min_size=1, max_size=200).filter(lambda b: not b.strip().startswith(b"{"))), kind
    return topic, draw(st.sampled_from([b"", None])), kind


def oversize(topic: str, request_id: str, size: int) -> bytes:
    """A valid event padded past the size limit."""
    return orjson.dumps({"request_id": request_id, "model": "m", "ts": 1, "pad": "x" * size})

"""Decode+validate throughput of each input message on one core: the models
(:func:`schemas.codec.decode`, pydantic) and the hot path (:func:`schemas.fast_codec.decode_fast`,
msgspec Structs with the models' accept/reject). Event times advance a millisecond a record, as in
a stream of 1,000 events/s (distinct request ids and timestamps: nothing repeats exactly)."""

from __future__ import annotations

import time

import orjson

from bench.report import Result
from schemas import GroundTruth, InferenceRequest, InferenceResponse, decode
from schemas.fast_codec import decode_fast

T0 = 1772366400000
SAMPLES = {
    InferenceRequest: {"request_id": "req-0000000001", "model": "fraud", "ts": "2026-03-01T12:00:00.123Z",
                       "features": {"amount": 125.5, "country": "NL", "age": 41, "new_customer": False,
                                    "device": "ios", "hour": 13},
                       "subject": "user-123456", "attributes": {"region": "eu", "segment": "b2c"}},
    InferenceResponse: {"request_id": "req-0000000001", "model": "fraud", "version": "v2", "role": "canary",
                        "ts": "2026-03-01T12:00:00.173Z", "prediction": 1, "score": 0.8731,
                        "latency_ms": 12.4, "error": None},
    GroundTruth: {"request_id": "req-0000000001", "model": "fraud", "ts": 1772366400000, "label": 1,
                  "outcomes": {"revenue": 12.5}},
}
TARGETS = {"models": {InferenceResponse: 150_000}, "fast": dict.fromkeys(SAMPLES, 600_000)}
DECODERS = {"models": decode, "fast": decode_fast}


def _rate(decoder, model, payloads: list[bytes], repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for payload in payloads:
            decoder(model, payload)
        best = max(best, len(payloads) / (time.perf_counter() - start))
    return best


def _timestamp(sample: dict, i: int) -> str | int:
    ms = T0 + i
    if isinstance(sample["ts"], int):
        return ms
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def run(n: int = 100_000) -> list[Result]:
    results = []
    for model, sample in SAMPLES.items():
        payloads = [orjson.dumps({**sample, "request_id": f"req-{i:010d}", "ts": _timestamp(sample, i)})
                    for i in range(n)]
        for name, decoder in DECODERS.items():
            rate = _rate(decoder, model, payloads)
            target = TARGETS[name].get(model)
            label = "models (pydantic)" if name == "models" else "hot path (msgspec)"
            results.append(Result("codec", f"decode+validate {model.__name__}, {label}", rate, "events/s (1 core)",
                                  f">= {target:,}/s" if target else "", rate >= target if target else None))
    return results

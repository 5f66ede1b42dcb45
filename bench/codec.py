"""Decode+validate throughput of each input message on one core (schemas.codec.decode)."""

from __future__ import annotations

import time

import orjson

from bench.report import Result
from schemas import GroundTruth, InferenceRequest, InferenceResponse, decode

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
TARGETS = {InferenceResponse: 150_000}


def _rate(model, payloads: list[bytes], repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for payload in payloads:
            decode(model, payload)
        best = max(best, len(payloads) / (time.perf_counter() - start))
    return best


def run(n: int = 100_000) -> list[Result]:
    results = []
    for model, sample in SAMPLES.items():
        # Distinct request ids, so nothing is cached between records.
        payloads = [orjson.dumps({**sample, "request_id": f"req-{i:010d}"}) for i in range(n)]
        rate = _rate(model, payloads)
        target = TARGETS.get(model)
        results.append(Result("codec", f"decode+validate {model.__name__}", rate, "events/s (1 core)",
                              f">= {target:,}/s" if target else "", rate >= target if target else None))
    return results

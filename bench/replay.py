"""Replay throughput on one core: recorded events (JSON Lines) through the whole evaluator (join,
metrics, drift, policy) on a simulated clock, against reading and validating the same files alone.

100,000 requests of one model with two numeric features, two versions (primary 90%, canary 10%),
every request labelled 50 ms later (300,000 events), one-minute windows, a canary rollout judged.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import orjson

from bench.report import Result
from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from evaluators.replay import Replay
from schemas.rollout import RolloutSpec
from streams.ingest.event_files import EventFiles
from streams.worker.gc_pace import pace_cycle_collector

T0 = 1_790_000_000_000
SPEC = RolloutSpec.model_validate({
    "model": "m", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary", "steps": [10, 50, 100],
    "bake": {"min_duration": "10m", "min_samples": 1000},
    "guardrails": [{"metric": "accuracy", "max_degradation": 0.02}, {"metric": "error_rate", "max": 0.05}]})


def _files(folder: Path, n: int) -> list[Path]:
    rng = random.Random(4)
    out = {name: open(folder / f"inference.{name}.jsonl", "wb") for name in ("requests", "responses", "labels")}
    for i in range(n):
        ts = T0 + i * 20
        version = "v2" if rng.random() < 0.1 else "v1"
        label = rng.randint(0, 1)
        out["requests"].write(orjson.dumps({"request_id": f"r{i}", "model": "m", "ts": ts, "features": {
            "amount": round(rng.lognormvariate(4, 0.5), 2), "age": rng.randint(18, 90)}}) + b"\n")
        out["responses"].write(orjson.dumps({
            "request_id": f"r{i}", "model": "m", "version": version, "role": "primary" if version == "v1" else "canary",
            "ts": ts + 5, "prediction": label if rng.random() < 0.9 else 1 - label, "score": rng.random(),
            "latency_ms": rng.uniform(5, 30)}) + b"\n")
        out["labels"].write(orjson.dumps({"request_id": f"r{i}", "model": "m", "ts": ts + 50, "label": label}) + b"\n")
    for f in out.values():
        f.close()
    return [folder / f"inference.{name}.jsonl" for name in ("requests", "responses", "labels")]


def run(n_requests: int = 100_000) -> list[Result]:
    pace_cycle_collector()  # as ``shadowcanary replay`` does
    with tempfile.TemporaryDirectory() as folder:
        paths = _files(Path(folder), n_requests)
        started = time.perf_counter()
        events = sum(1 for _ in EventFiles(paths))
        read_rate = events / (time.perf_counter() - started)
        replay = Replay(JoinConfig(label_timeout_ms=3_600_000, expiry_grace_ms=60_000),
                        MetricsConfig(tasks={"m": "binary"}), specs=[SPEC])
        started = time.perf_counter()
        replay.run(EventFiles(paths))
        rate = events / (time.perf_counter() - started)
    return [
        Result("replay", "replay throughput, whole evaluator, 1 core", rate, "events/s", target=">= 200,000/s",
               met=rate >= 200_000, note=f"{events:,} events, {len(replay.snapshots)} snapshots, "
                                         f"{len(replay.decisions)} decisions"),
        Result("replay", "reading and validating the same files alone", read_rate, "events/s",
               note=f"replay / reading = {rate / read_rate:.2f}"),
    ]

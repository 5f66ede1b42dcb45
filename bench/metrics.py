"""Joined records per second through the metric accumulators, per task kind, on one core.

Each record goes through what the stream does with it: the windowed accumulator (running total and
its window) of :mod:`evaluators.windows`, with realistic predictions, scores and latencies, a batch
at a time (``BATCH`` records: a partition's share of a worker's batch of 10,000 over 4 partitions).
"""

from __future__ import annotations

import random
import time

from bench.report import Result
from evaluators.facts import JoinedRecord
from evaluators.metrics import MetricsConfig
from evaluators.windows import MetricsAccumulator

TARGETS = {"binary": 200_000}
BATCH = 2_500


def _records(task: str, n: int) -> list[JoinedRecord]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        if task == "binary":
            label = rng.randint(0, 1)
            score = min(max(rng.gauss(0.3 + 0.4 * label, 0.2), 0.0), 1.0)
            prediction: object = int(score >= 0.5)
        elif task == "multiclass":
            label = rng.randint(0, 4)
            weights = [rng.random() + (2.0 if c == label else 0.0) for c in range(5)]
            total = sum(weights)
            score = {str(c): w / total for c, w in enumerate(weights)}
            prediction = max(range(5), key=lambda c: weights[c])
        elif task == "regression":
            label = rng.gauss(100, 20)
            prediction, score = label + rng.gauss(0, 5), None
        else:
            items = [f"i{j}" for j in range(20)]
            rng.shuffle(items)
            label, prediction, score = items[:2], items[:], None
            rng.shuffle(prediction)
        out.append(JoinedRecord("m", "v2", "canary", f"r{i}", 1_000_000 + i * 5, 1_000_000 + i * 5 + 900,
                                prediction, score, label, {}, rng.lognormvariate(3, 0.5), None, None))
    return out


def run(n: int = 200_000) -> list[Result]:
    results = []
    for task in ("binary", "multiclass", "regression", "ranking"):
        records = _records(task, n)
        best = 0.0
        for _ in range(3):
            acc = MetricsAccumulator(MetricsConfig(tasks={"m": task}), settle_ms=lambda model: 10**9)
            start = time.perf_counter()
            for first in range(0, n, BATCH):
                acc.add_all(records[first:first + BATCH])
                acc.advance(records[first].ts_ms)
            best = max(best, n / (time.perf_counter() - start))
        target = TARGETS.get(task)
        results.append(Result("metrics", f"joined records through the accumulators ({task})", best,
                              "records/s (1 core)", f">= {target:,}/s" if target else "",
                              best >= target if target else None))
    return results

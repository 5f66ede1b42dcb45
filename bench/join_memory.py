"""Resident memory of the join while 10,000,000 requests await their labels.

The join core with the worker's accumulator (counts and windowed metrics) over RocksDB through
rocksdict (the store the worker's partitions use), fed a request and a response per request (the
hot path's Structs) and no labels, with a 7-day label timeout: every request stays pending. The
resident set size is read at checkpoints; flat means the pending state is on disk, not in memory.
It runs in a process of its own so nothing else is in its memory. ``BENCH_PENDING`` sets the number
of requests (the checkpoints up to it are read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from bench.report import Result

PENDING = int(os.environ.get("BENCH_PENDING", "10000000"))
CHECKPOINTS = (250_000, 1_000_000, 2_500_000, 5_000_000, 7_500_000, 10_000_000)
#: Growth is reported from this checkpoint on (the first ones include the interpreter's warm-up).
GROWTH_FROM = 1_000_000
BATCH = 10_000


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(pending: int, folder: str) -> dict[str, float]:
    from evaluators.accumulators import evaluator_accumulator
    from evaluators.join import Incoming, JoinConfig, JoinPartition
    from evaluators.metrics import MetricsConfig
    from evaluators.store import RocksStore
    from schemas.fast_codec import RequestEvent, ResponseEvent
    from streams.worker.gc_pace import pace_cycle_collector

    pace_cycle_collector()  # as the worker's process does
    config = JoinConfig()
    join = JoinPartition(RocksStore(folder), config, "bench",
                         evaluator_accumulator(MetricsConfig(tasks={"m": "binary"}), config.settle_ms))
    t0 = 1_793_491_200_000  # 2026-11-01
    readings: dict[str, float] = {"start": _rss_mib()}
    started = time.perf_counter()
    done = 0
    checkpoints = [c for c in CHECKPOINTS if c <= pending]
    while done < pending:
        batch = []
        for i in range(done, min(done + BATCH // 2, pending)):
            rid = f"req-{i:09d}"
            ts = t0 + i * 10
            batch.append(Incoming(RequestEvent(request_id=rid, model="m", ts_ms=ts,
                                               features={"amount": float(i % 500)}), "q0", i))
            batch.append(Incoming(ResponseEvent(request_id=rid, model="m", version="v1", role="primary", ts_ms=ts,
                                                prediction=i % 2, score=0.3, latency_ms=12.0), "s0", i))
        join.process(batch, sources=["q0", "s0"])
        done += len(batch) // 2
        if checkpoints and done >= checkpoints[0]:
            readings[str(checkpoints.pop(0))] = _rss_mib()
    readings["seconds"] = time.perf_counter() - started
    return readings


def run(pending: int = PENDING) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="shadowcanary-join-memory-") as folder:
        out = subprocess.run([sys.executable, "-m", "bench.join_memory", str(pending), folder],
                             capture_output=True, text=True, check=True)
    readings = json.loads(out.stdout.strip().splitlines()[-1])
    results = []
    for checkpoint in (c for c in CHECKPOINTS if c <= pending):
        value = readings[str(checkpoint)]
        target = "< 1024 MiB" if checkpoint == pending else ""
        results.append(Result("join_memory", f"resident memory, {checkpoint:,} requests pending", value, "MiB",
                              target, value < 1024 if checkpoint == pending else None))
    start = GROWTH_FROM if GROWTH_FROM < pending else CHECKPOINTS[0]
    first, last = readings[str(start)], readings[str(max(c for c in CHECKPOINTS if c <= pending))]
    results.append(Result("join_memory", f"growth from {start:,} to {pending:,} pending", last - first,
                          "MiB", "flat", None))
    results.append(Result("join_memory", "events per second while filling (join core + RocksDB)",
                          2 * pending / readings["seconds"], "events/s (1 core)", "", None))
    return results


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), sys.argv[2])))

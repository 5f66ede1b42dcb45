"""The merging owner's cost with many partitions: the heartbeats of 1,000 input partitions, each at
the worker's bound (one per partition per 0.5 s), fed to the owner as :class:`streams.worker.merger.MergerService`
does (consume batches of 500: decode each, keep it, then look for windows ready to publish).

The heartbeats are real: each is the partial state of a partition that joined traffic of one model
with two versions, as the worker sends it. Reported: the owner's CPU time per second of heartbeats
(the share of one core it needs to keep up).
"""

from __future__ import annotations

import time

import orjson

from bench.report import Result
from evaluators.accumulators import evaluator_accumulator
from evaluators.join import Incoming, JoinConfig, JoinPartition
from evaluators.merging import PartialsMerger, heartbeat_partial
from evaluators.metrics import MetricsConfig
from schemas import GroundTruth, InferenceRequest, InferenceResponse
from streams.worker.store import PartitionStore

PARTITIONS = 1000
HEARTBEAT_INTERVAL_S = 0.5
CONSUME_BATCH = 500


def sample_heartbeat(partition: int, config: JoinConfig, metrics: MetricsConfig) -> bytes:
    join = JoinPartition(PartitionStore.in_memory(), config, "bench", evaluator_accumulator(metrics, config.settle_ms),
                         key_space=str(partition))
    t0 = 1_780_000_000_000
    incoming = []
    for i in range(200):
        rid, ts = f"p{partition}-{i}", t0 + i * 100
        incoming.append(Incoming(InferenceRequest(request_id=rid, model="m", ts=ts, features={"amount": float(i)}),
                                 "q", i))
        for j, (version, role) in enumerate((("v1", "primary"), ("v2", "canary"))):
            incoming.append(Incoming(InferenceResponse(request_id=rid, model="m", version=version, role=role,
                                                       ts=ts + 5, prediction=i % 2, score=0.6, latency_ms=4.0),
                                     "s", 2 * i + j))
        incoming.append(Incoming(GroundTruth(request_id=rid, model="m", ts=ts + 50, label=1), "l", i))
    join.process(incoming, sources=["q", "s", "l"])
    return orjson.dumps(heartbeat_partial(partition, join.last_state, "bench"))


def run(seconds_of_heartbeats: float = 10.0) -> list[Result]:
    config, metrics = JoinConfig(label_timeout_ms=60_000), MetricsConfig()
    template = orjson.loads(sample_heartbeat(0, config, metrics))
    payloads = [orjson.dumps({**template, "partition": p}) for p in range(PARTITIONS)]
    merger = PartialsMerger(metrics, config.settle_ms, PARTITIONS)
    rounds = int(seconds_of_heartbeats / HEARTBEAT_INTERVAL_S)
    messages = [payloads[p] for _ in range(rounds) for p in range(PARTITIONS)]
    cpu = time.process_time()
    for start in range(0, len(messages), CONSUME_BATCH):
        for value in messages[start:start + CONSUME_BATCH]:
            partial = orjson.loads(value)
            merger.heartbeat(partial["partition"], partial)
        merger.ready()
    cpu = time.process_time() - cpu
    share = 100 * cpu / seconds_of_heartbeats
    return [
        Result("merger", f"heartbeat size ({PARTITIONS} partitions, 2 versions each)", len(payloads[0]), "bytes"),
        Result("merger", "owner CPU per second of heartbeats, 1,000 partitions at 2/s each", share, "% of a core",
               "< 50", share < 50, note=f"{len(messages) / cpu:,.0f} heartbeats/s on one core"),
    ]

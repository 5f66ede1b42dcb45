"""Decision latency through the real broker: from producing the label that settles a rollback to
the rollback command's arrival on ``rollout.control``, while background traffic flows.

One evaluator worker. Twelve rollouts (models ``lat0`` to ``lat11``) each serve a baseline (95%
accurate) and a candidate (50% accurate) at 25 requests/s; the rollback decision's evidence says
how many candidate labels it counted (``n``), and the latency is the command's arrival time minus
the time by which ``n`` candidate labels were in Kafka (their delivery reports: the decision could
not have counted them sooner). Beside it, the same from the time the n-th label was handed to the
bench's producer: on two cores at 10,000 events/s that producer's own queue holds up to 1.5 s of
records (measured: 14,000 queued), which is the load generator's delay, not the evaluator's.
Background traffic (another model, every request labelled) brings the total to the target rate in
events per second. Run at rates the worker can sustain and at 10,000/s (the issue's rate), which it
cannot (see the join benchmark): there the latency is the backlog's.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer

from bench.broker import broker
from bench.report import Result
from schemas.codec import decode
from schemas.control import Decision, RoutingCommand
from schemas.rollout import RolloutSpec
from schemas.topics import Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from streams.worker.process import start_evaluator, stop_workers

ROLLOUTS = 12
ROLLOUT_RPS = 25
T0 = 1_790_000_000_000


def _spec(model: str) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "model": model, "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
        "steps": [50, 100], "bake": {"min_duration": "0s", "min_samples": 1_000_000},
        "guardrails": [{"metric": "accuracy", "max_degradation": 0.02, "critical": True}]})


class Traffic(threading.Thread):
    """Produces the rollouts' and the background's events in event-time order, paced in 10 ms ticks."""

    def __init__(self, settings: KafkaSettings, topics: Topics, rate: float) -> None:
        super().__init__(daemon=True)
        self.producer = Producer(settings.confluent_config(**{"linger.ms": 2, "queue.buffering.max.messages": 500_000}))
        self.topics = topics
        self.background_rps = max(0.0, rate / 3 - ROLLOUTS * ROLLOUT_RPS)  # 3 events a request
        self.stop = threading.Event()
        self.candidate_labels: dict[str, list[float]] = {f"lat{k}": [] for k in range(ROLLOUTS)}
        #: When each candidate label's delivery report came (Kafka has it), in the order they came.
        self.candidate_acks: dict[str, list[float]] = {f"lat{k}": [] for k in range(ROLLOUTS)}
        self.rng = random.Random(3)

    def _row(self, model: str, i: int, version: str, accuracy: float, ts: int) -> None:
        rid = f"{model}-{i}"
        label = self.rng.randint(0, 1)
        prediction = label if self.rng.random() < accuracy else 1 - label
        role = "primary" if version == "v1" else "canary"
        produce = self.producer.produce
        produce(self.topics.requests, key=rid, value=orjson.dumps({"request_id": rid, "model": model, "ts": ts}))
        produce(self.topics.responses, key=rid, value=orjson.dumps({
            "request_id": rid, "model": model, "version": version, "role": role, "ts": ts, "prediction": prediction,
            "latency_ms": 5.0}))
        label_value = orjson.dumps({"request_id": rid, "model": model, "ts": ts, "label": label})
        if version == "v2":
            acks = self.candidate_acks[model]
            produce(self.topics.labels, key=rid, value=label_value,
                    on_delivery=lambda error, _message: error is None and acks.append(time.time()))
            self.candidate_labels[model].append(time.time())
        else:
            produce(self.topics.labels, key=rid, value=label_value)

    def run(self) -> None:
        start = time.time()
        sent_bg = sent_roll = 0
        while not self.stop.is_set():
            elapsed = time.time() - start
            ts = T0 + int(elapsed * 1000)
            while sent_roll < elapsed * ROLLOUT_RPS:
                for k in range(ROLLOUTS):
                    version = "v2" if sent_roll % 2 else "v1"
                    self._row(f"lat{k}", sent_roll, version, 0.5 if version == "v2" else 0.95, ts)
                sent_roll += 1
            while sent_bg < elapsed * self.background_rps:
                self._row("load", sent_bg, "v1", 0.9, ts)
                sent_bg += 1
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(30)


def measure(rate: float, seconds: float = 60.0) -> tuple[list[float], list[float], int]:
    """Latencies from the labels' arrival in Kafka and from their production, and the rollouts not
    decided within ``seconds``."""
    with broker() as bootstrap, tempfile.TemporaryDirectory() as state:
        settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"dl{uuid.uuid4().hex[:6]}.")
        create_topics(settings, TopicLayout(inference_partitions=6, evaluator_partitions=1))
        topics = Topics(settings.topic_prefix)
        worker = start_evaluator(settings, f"dl-{uuid.uuid4().hex[:6]}", os.path.join(state, "w"), "--window", "1s",
                                 "--label-timeout", "30s", "--expiry-grace", "2s", "--metrics-port", "0",
                                 *[a for k in range(ROLLOUTS) for a in ("--task", f"lat{k}=binary")])
        consumer = Consumer(settings.confluent_config(**{
            "group.id": f"dl-{uuid.uuid4()}", "auto.offset.reset": "earliest", "isolation.level": "read_committed"}))
        consumer.subscribe([topics.control, topics.decisions])
        traffic = Traffic(settings, topics, rate)
        try:
            producer = ContractProducer(settings)
            for k in range(ROLLOUTS):
                producer.send(topics.specs, f"lat{k}", _spec(f"lat{k}"))
            producer.flush()
            time.sleep(10)  # the worker joins its groups and starts the rollouts
            traffic.start()
            settled: dict[str, int] = {}
            arrived: dict[str, float] = {}
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and len(arrived) < ROLLOUTS:
                for message in consumer.consume(100, 0.1):
                    if message.error() is not None:
                        continue
                    now = time.time()
                    if message.topic() == topics.decisions:
                        decision = decode(Decision, message.value())
                        if decision.action == "rollback":
                            settled[decision.model] = next(e.candidate.samples for e in decision.evidence)
                    else:
                        command = decode(RoutingCommand, message.value())
                        if command.action == "rollback":
                            arrived.setdefault(command.model, now)
        finally:
            traffic.stop.set()
            traffic.join(30)
            consumer.close()
            stop_workers(worker)
        from_kafka, from_producer = [], []
        for model, n in settled.items():
            produced, acked = traffic.candidate_labels[model], sorted(traffic.candidate_acks[model])
            if model in arrived and 0 < n <= min(len(produced), len(acked)):
                from_kafka.append(arrived[model] - acked[n - 1])
                from_producer.append(arrived[model] - produced[n - 1])
        return from_kafka, from_producer, ROLLOUTS - len(from_kafka)


def run() -> list[Result]:
    results = []
    for rate in (1_000, 3_000, 10_000):
        latencies, from_producer, missing = measure(rate)
        note = f"{len(latencies)} rollbacks" + (f", {missing} not decided within 60 s" if missing else "")
        if latencies:
            ordered = sorted(latencies)
            results.append(Result("decision_latency", f"label in Kafka to rollback command at {rate:,} events/s, p50",
                                  statistics.median(ordered), "s", note=note))
            top = ordered[-1]  # with a dozen rollbacks the p99 is the largest
            results.append(Result("decision_latency",
                                  f"label in Kafka to rollback command at {rate:,} events/s, p99 (max)",
                                  top, "s", "< 1 s" if rate == 10_000 else "", top < 1.0 if rate == 10_000 else None,
                                  note=note))
            results.append(Result("decision_latency",
                                  f"label handed to the bench's producer to rollback command at {rate:,} events/s, p50",
                                  statistics.median(from_producer), "s",
                                  note=f"max {max(from_producer):.2f} s; includes the load generator's own queue"))
        else:
            results.append(Result("decision_latency", f"label to rollback command at {rate:,} events/s", float("nan"),
                                  "s", note=note))
    return results

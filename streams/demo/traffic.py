"""The demo's traffic: users send requests to the serving fleet, which routes them with the router
SDK, logs them with the inference logger, and a ground-truth service reports each outcome later.

Each version has its own latency (a log-normal around a few milliseconds) and a small error rate.
Labels arrive ``label_delay`` seconds after the response (uniform in a range), as a pathology
report would, days later, in real life.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.topics import Topics
from streams.demo.fleet import Fleet
from streams.kafka.producer import ContractProducer
from streams.serving.inference_logger import InferenceLogger
from streams.serving.router import Router

#: Each patient's clinic, a request attribute the demo's evaluator slices metrics by (segments).
CLINICS = ("north", "south", "east", "west")


@dataclass
class TrafficStats:
    """What the simulated fleet served, per version (the demo's live view reads it)."""

    served: Counter = field(default_factory=Counter)
    mirrored: Counter = field(default_factory=Counter)
    correct: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    requests: int = 0
    labels: int = 0


class TrafficSimulator:
    """Sends ``rate`` requests a second for ``model`` until stopped."""

    def __init__(self, fleet: Fleet, router: Router, logger: InferenceLogger, labels: ContractProducer,
                 topics: Topics, model: str, rate: float = 300.0, users: int = 20_000,
                 label_delay: tuple[float, float] = (1.0, 4.0), error_rate: float = 0.002, seed: int = 7) -> None:
        self.fleet, self.router, self.logger, self.labels = fleet, router, logger, labels
        self.topics, self.model, self.rate, self.users = topics, model, rate, users
        self.label_delay, self.error_rate = label_delay, error_rate
        self.rng = np.random.default_rng(seed)
        self.stats = TrafficStats()
        self._pending: list[tuple[float, str, int]] = []  # (due, request_id, label)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._send_labels(float("inf"))
        self.labels.flush(30)

    def _run(self) -> None:
        tick, sent, started = 0.02, 0, time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            for _ in range(due - sent):
                self._one(sent)
                sent += 1
            self._send_labels(time.monotonic())
            self._stop.wait(tick)

    def _one(self, n: int) -> None:
        rng, fleet = self.rng, self.fleet
        row = int(rng.integers(len(fleet.labels)))
        patient = int(rng.integers(self.users))
        subject = f"patient-{patient}"
        rid = f"req-{n}-{int(rng.integers(1 << 30))}"
        now = int(time.time() * 1000)
        assignment = self.router.route(self.model, subject)
        self.logger.log_request(InferenceRequest(request_id=rid, model=self.model, ts=now,
                                                 features=fleet.row_features(row), subject=subject,
                                                 attributes={"clinic": CLINICS[patient % len(CLINICS)]}))
        for version, role in [(assignment.serve, assignment.role), *[(v, "shadow") for v in assignment.mirror]]:
            latency = float(rng.lognormal(np.log(6.0), 0.35))
            failed = rng.random() < self.error_rate
            prediction = int(fleet.predictions[version][row])
            self.logger.log_response(InferenceResponse(
                request_id=rid, model=self.model, version=version, role=role, ts=now + int(latency),
                latency_ms=latency, prediction=None if failed else prediction,
                score=None if failed else float(fleet.scores[version][row]),
                error="model server timeout" if failed else None))
            if role == "shadow":
                self.stats.mirrored[version] += 1
            else:
                self.stats.served[version] += 1
                self.stats.errors[version] += failed
                self.stats.correct[version] += (not failed) and prediction == int(fleet.labels[row])
        self.stats.requests += 1
        delay = float(rng.uniform(*self.label_delay))
        heapq.heappush(self._pending, (time.monotonic() + delay, rid, int(fleet.labels[row])))

    def _send_labels(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            _, rid, label = heapq.heappop(self._pending)
            self.labels.send(self.topics.labels, rid, GroundTruth(
                request_id=rid, model=self.model, ts=int(time.time() * 1000), label=label))
            self.stats.labels += 1

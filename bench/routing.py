"""The serving side's cost: routing decisions per second, and what the inference logger adds to a request.

(a) ``RouteBook.route`` for 1,000,000 distinct subjects on one core, the canary at 10% (target at
    least 1,000,000 decisions a second);
(b) the time a request spends in ``log_request`` + ``log_response`` (encoding and the hand-off to
    librdkafka's queue; with plain dicts, pydantic validation too), measured per request over 50,000
    requests to a real broker while the producer delivers in the background; p50 and p99 (target p99
    under 50 microseconds).
"""

from __future__ import annotations

import time
import uuid

from bench.broker import broker
from bench.report import Result
from evaluators.routing import RouteBook
from schemas.control import RoutingCommand
from schemas.inference import InferenceRequest, InferenceResponse
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.settings import KafkaSettings
from streams.serving.inference_logger import InferenceLogger

SUBJECTS = [f"user-{i}" for i in range(1_000_000)]


def routing_rate() -> float:
    book = RouteBook(baselines={"fraud": "v1"})
    book.apply(RoutingCommand(model="fraud", epoch=1, issued_at=0, issuer="evaluator", action="set_routes",
                              routes={"v1": 90, "v2": 10}, reason="bench", rollout_id="r1", baseline="v1"))
    route = book.route
    best = 0.0
    for _ in range(3):  # best of three: the machine is shared
        started = time.perf_counter()
        for subject in SUBJECTS:
            route("fraud", subject)
        best = max(best, len(SUBJECTS) / (time.perf_counter() - started))
    return best


def logger_overhead(bootstrap: str, as_dicts: bool, n: int = 50_000) -> tuple[float, float]:
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    create_topics(settings, TopicLayout(inference_partitions=4, evaluator_partitions=1))
    logger = InferenceLogger(settings)
    features = {"amount": 42.5, "country": "NL", "age": 37.0, "first_purchase": True}
    costs = []
    clock = time.perf_counter_ns
    for i in range(n):
        rid = f"r{i}"
        request = InferenceRequest(request_id=rid, model="fraud", ts=1_790_000_000_000 + i, features=features,
                                   subject=f"user-{i}")
        response = InferenceResponse(request_id=rid, model="fraud", version="v2", role="canary",
                                     ts=1_790_000_000_004 + i, prediction=1, score=0.83, latency_ms=4.2)
        if as_dicts:  # the logger validates: plain dicts, as a service in a hurry passes them
            request, response = request.model_dump(), response.model_dump()
        started = clock()
        logger.log_request(request)
        logger.log_response(response)
        costs.append(clock() - started)
        if i % 1000 == 999:
            time.sleep(0.01)  # a serving process does other work between requests
    logger.close()
    costs.sort()
    return costs[len(costs) // 2] / 1000, costs[int(len(costs) * 0.99)] / 1000


def run() -> list[Result]:
    rate = routing_rate()
    with broker() as bootstrap:
        p50, p99 = logger_overhead(bootstrap, as_dicts=False)
        d50, d99 = logger_overhead(bootstrap, as_dicts=True)
    return [
        Result("routing", "routing decisions per second (one core, 1M subjects)", rate, "decisions/s",
               ">= 1,000,000", rate >= 1_000_000),
        Result("routing", "inference logger overhead per request, p50", p50, "us"),
        Result("routing", "inference logger overhead per request, p99", p99, "us", "< 50", p99 < 50,
               "log_request + log_response of model instances, to a real broker"),
        Result("routing", "inference logger overhead per request from dicts (validated inside), p50", d50, "us"),
        Result("routing", "inference logger overhead per request from dicts (validated inside), p99", d99, "us",
               "< 50", d99 < 50),
    ]

"""The sidecar's route latency and throughput on loopback, against a real broker.

The sidecar runs as its own process, as deployed (``shadowcanary sidecar``), following a
``rollout.control`` that holds a canary command; the client is Python's ``http.client`` in this
process, one keep-alive connection per client thread. Latency: 20,000 sequential ``POST /v1/route``
on one connection (target p99 under 1 ms). Throughput: four connections at once. Each route answers
from memory (sticky buckets, cohorts), so this measures the HTTP path itself.
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import sys
import threading
import time
import uuid

import orjson

from bench.broker import broker
from bench.report import Result
from schemas.control import RoutingCommand
from schemas.topics import Topics
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings

SEQUENTIAL = 20_000
PARALLEL_CLIENTS, PER_CLIENT = 4, 5_000


def _route(connection: http.client.HTTPConnection, subject: str) -> bytes:
    connection.request("POST", "/v1/route", body=orjson.dumps({"model": "fraud", "subject": subject}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body!r}")
    return body


def _wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            health = orjson.loads(connection.getresponse().read())
            connection.close()
            if health["routes_current"] and health["commands_applied"]:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the sidecar did not become ready")


def run() -> list[Result]:
    with broker() as bootstrap:
        settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bs{uuid.uuid4().hex[:6]}.")
        create_topics(settings, TopicLayout(inference_partitions=1))
        producer = ContractProducer(settings)
        producer.send(Topics(settings.topic_prefix).control, "fraud", RoutingCommand(
            model="fraud", epoch=1, issued_at=1_790_000_000_000, issuer="evaluator", action="set_routes",
            routes={"v1": 90.0, "v2": 10.0}, reason="canary", rollout_id="bench", baseline="v1"))
        producer.flush()
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "--bootstrap", bootstrap, "--topic-prefix",
                                    settings.topic_prefix, "sidecar", "--baseline", "fraud=v1", "--port", str(port)],
                                   stderr=subprocess.DEVNULL)
        try:
            _wait_ready(port)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for i in range(1_000):  # warm up
                _route(connection, f"warm-{i}")
            latencies = []
            for i in range(SEQUENTIAL):
                started = time.perf_counter()
                _route(connection, f"user-{i}")
                latencies.append(time.perf_counter() - started)
            connection.close()

            def client(index: int) -> None:
                own = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                for i in range(PER_CLIENT):
                    _route(own, f"user-{index}-{i}")
                own.close()

            threads = [threading.Thread(target=client, args=(i,)) for i in range(PARALLEL_CLIENTS)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            throughput = PARALLEL_CLIENTS * PER_CLIENT / (time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(30)
    quantiles = statistics.quantiles(latencies, n=100)
    p50, p99 = quantiles[49] * 1000, quantiles[98] * 1000
    sequential_rate = SEQUENTIAL / sum(latencies)
    return [
        Result("sidecar", "route latency p50 on loopback (one keep-alive connection)", p50, "ms"),
        Result("sidecar", "route latency p99 on loopback (one keep-alive connection)", p99, "ms", "< 1 ms",
               bool(p99 < 1.0)),
        Result("sidecar", "routes per second, one connection (sequential)", sequential_rate, "requests/s"),
        Result("sidecar", f"routes per second, {PARALLEL_CLIENTS} connections at once", throughput, "requests/s",
               note="the client's threads share this process's GIL; the sidecar runs in its own"),
    ]

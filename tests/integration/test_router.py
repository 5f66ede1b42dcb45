"""The router SDK and the inference logger against a real broker."""

from __future__ import annotations

import time

import pytest

from schemas import Topics, decode
from schemas.control import RoutingCommand
from schemas.inference import InferenceRequest, InferenceResponse
from schemas.signing import HmacKey, sign_command
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import LocalBroker, free_port
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from streams.serving.inference_logger import InferenceLogger
from streams.serving.router import Router
from tests.kafka_helpers import read_topic, wait_for

pytestmark = pytest.mark.kafka
KEY = HmacKey(b"router-test-secret-32-bytes-long")
SUBJECTS = [f"user-{i}" for i in range(2000)]


def command(epoch: int, canary: float, **extra) -> RoutingCommand:
    values = dict(model="fraud", epoch=epoch, issued_at=1_790_000_000_000, issuer="evaluator", action="set_routes",
                  routes={"v1": 100 - canary, "v2": canary}, reason=f"canary {canary}%", rollout_id="r1",
                  baseline="v1")
    return RoutingCommand(**(values | extra))


def canary_share(router: Router) -> float:
    return sum(router.route("fraud", s).serve == "v2" for s in SUBJECTS) / len(SUBJECTS)


def test_router_follows_signed_commands_and_refuses_the_rest(kafka_settings, contract_topics):
    producer = ContractProducer(kafka_settings)
    first = sign_command(command(1, 10), KEY)
    producer.send(contract_topics.control, "fraud", first)
    producer.flush()
    router = Router(kafka_settings, baselines={"fraud": "v1"}, verifier=KEY)
    router.start()
    try:
        assert router.wait_ready(30)
        assert router.serving("fraud") == {"v1": 90, "v2": 10}
        forged = sign_command(command(2, 100), HmacKey(b"an attacker's guess of the secret"))
        for bad in (command(2, 100), forged, first, sign_command(command(0, 100), KEY)):
            producer.send(contract_topics.control, "fraud", bad)
        producer.send(contract_topics.control, "fraud", b"{not json")
        producer.send(contract_topics.control, "fraud", sign_command(command(3, 50), KEY))
        producer.flush()
        assert wait_for(lambda: router.serving("fraud") == {"v1": 50, "v2": 50}, 30)
        assert wait_for(lambda: len(router.refused) == 5, 10)
        reasons = [reason.split(":")[0] for _, _, reason in router.refused]
        assert reasons == ["unsigned", "bad signature", "replayed", "stale", "invalid"]
        assert abs(canary_share(router) - 0.5) < 0.05
    finally:
        router.stop()


def test_router_keeps_the_last_good_routes_when_the_broker_goes_away(tmp_path):
    port = free_port()
    broker = LocalBroker(tmp_path / "kafka", port=port, controller_port=free_port())
    broker.up()
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", topic_prefix="gone.")
    create_topics(settings, TopicLayout(inference_partitions=1, evaluator_partitions=1))
    topics = Topics(settings.topic_prefix)
    router = Router(settings, baselines={"fraud": "v1"})
    router.start()
    try:
        assert router.wait_ready(30) and canary_share(router) == 0.0  # no history: the baseline
        producer = ContractProducer(settings)
        producer.send(topics.control, "fraud", command(1, 25))
        producer.flush()
        assert wait_for(lambda: router.serving("fraud") == {"v1": 75, "v2": 25}, 30)
        before = {s: router.route("fraud", s).serve for s in SUBJECTS}
        broker.down()
        time.sleep(3)  # the router's consumer is now failing to reach the broker
        started = time.perf_counter()
        after = {s: router.route("fraud", s).serve for s in SUBJECTS}
        assert after == before and time.perf_counter() - started < 1.0  # no lookup waits on Kafka
        # A router started while the broker is down serves the baselines and does not fail.
        orphan = Router(settings, baselines={"fraud": "v1"})
        orphan.start()
        time.sleep(2)
        assert not orphan.ready.is_set() and orphan.route("fraud", "user-1").serve == "v1"
        # The broker comes back: both catch up on what is published then.
        broker.up()
        producer = ContractProducer(settings)
        producer.send(topics.control, "fraud", command(2, 60))
        producer.flush(60)
        assert wait_for(lambda: router.serving("fraud") == {"v1": 40, "v2": 60}, 60)
        assert wait_for(lambda: orphan.serving("fraud") == {"v1": 40, "v2": 60}, 60)
        orphan.stop()
    finally:
        router.stop()
        broker.down(purge=True)


def test_inference_logger_delivers_every_event_and_counts_what_it_drops(kafka_settings, contract_topics):
    logger = InferenceLogger(kafka_settings)
    for i in range(500):
        rid = f"r{i}"
        assert logger.log_request({"request_id": rid, "model": "fraud", "ts": 1_790_000_000_000 + i,
                                   "features": {"amount": float(i)}, "subject": f"user-{i}"})
        assert logger.log_response(InferenceResponse(request_id=rid, model="fraud", version="v1", role="primary",
                                                     ts=1_790_000_000_005 + i, prediction=i % 2, latency_ms=3.0))
    assert not logger.log_request({"request_id": "", "model": "fraud", "ts": 0})  # invalid: dropped, counted
    assert logger.close() == 0
    assert logger.outcome("delivered") == 1000 and logger.outcome("dropped_invalid") == 1
    requests = read_topic(kafka_settings, contract_topics.requests, expected=500, linger=1)
    assert sorted(decode(InferenceRequest, m.value()).request_id for m in requests) == sorted(
        f"r{i}" for i in range(500)
    )
    # Kafka's murmur2 partitioning on request_id: a request and its response share a partition.
    responses = read_topic(kafka_settings, contract_topics.responses, expected=500, linger=1)
    partition_of = {m.key(): m.partition() for m in requests}
    assert all(partition_of[m.key()] == m.partition() for m in responses)
    assert len({m.partition() for m in requests}) == 4


def test_inference_logger_drops_and_counts_instead_of_blocking_when_its_queue_is_full(kafka_settings,
                                                                                     contract_topics):
    unreachable = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix=kafka_settings.topic_prefix)
    logger = InferenceLogger(unreachable, max_queued=100)
    started = time.perf_counter()
    results = [logger.log_request({"request_id": f"r{i}", "model": "fraud", "ts": 0}) for i in range(300)]
    elapsed = time.perf_counter() - started
    assert results.count(True) == 100 and results.count(False) == 200
    assert logger.outcome("dropped_queue_full") == 200 and elapsed < 1.0
    assert logger.close(timeout=1) == 100  # never delivered: counted as failed, not lost silently
    assert logger.outcome("failed") == 100

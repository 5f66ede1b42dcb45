"""The worker's engine (confluent-kafka in batches, one transaction per batch) through a real broker:
exact counts while workers come, go and are killed, partition p of the three input topics always on
one worker, and a broker outage that the worker rides out, a rollout going on through it, with a few
lines in its log."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from schemas import GroundTruth, InferenceRequest, InferenceResponse
from schemas.internal_topics import partials_topic_name
from streams.errors import KafkaUnavailableError
from streams.kafka.admin import admin_client, ensure_internal_topic
from streams.kafka.local_broker import LocalBroker, free_port
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from streams.worker.evaluator import build_evaluator
from streams.worker.loop import ASSIGNMENT_PREFIX, LoopOptions
from streams.worker.membership import MembershipWatch
from streams.worker.merger import MergerService
from streams.worker.process import log_digest
from tests.integration.test_join_worker import T0, _prepare, produce, wait_for
from tests.integration.test_policy_worker import publish_three_step_rollout, wait_for_commands
from tests.integration.test_policy_worker import spec as accuracy_spec
from tests.kafka_helpers import read_topic, rebalance_lines, send_ticks, start_evaluator, stop_workers
from tests.kafka_helpers import wait_for as wait_until

pytestmark = pytest.mark.kafka

INPUTS = ("inference.requests", "inference.responses", "inference.labels")


def start_worker(settings: KafkaSettings, app_id: str, state_dir: str):
    return start_evaluator(settings, app_id, state_dir, "--label-timeout", "60s", "--expiry-grace", "30s",
                           "--batch-size", "300", "--metrics-port", "0", "--loglevel", "info")


def assignments(log: Path) -> list[dict[str, list[int]]]:
    """Every assignment a worker logged: contract topic -> partitions."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if ASSIGNMENT_PREFIX not in line:
            continue
        described = line.split(ASSIGNMENT_PREFIX, 1)[1]
        out.append({topic: [int(p) for p in parts.split(",") if p.strip()]
                    for topic, parts in re.findall(r"(\S+)=\[([^\]]*)\]", described)})
    return out


def test_three_workers_one_killed_one_added_stay_exact_and_co_partitioned(kafka_settings, tmp_path):
    topics, scenario = _prepare(kafka_settings, 4000, seed=21)
    app_id = f"trio-{uuid.uuid4().hex[:8]}"
    dirs = [str(tmp_path / f"w{i}") for i in range(4)]
    workers = [start_worker(kafka_settings, app_id, d) for d in dirs[:3]]
    time.sleep(8)
    producer = threading.Thread(target=produce, args=(kafka_settings, scenario.events, 700.0))
    producer.start()
    try:
        time.sleep(7)
        workers[1].send_signal(signal.SIGKILL)  # its partitions move once its session times out
        workers[1].wait(30)
        time.sleep(6)
        workers.append(start_worker(kafka_settings, app_id, dirs[3]))
        producer.join()
        send_ticks(kafka_settings, topics, 4, T0 + 10 * 86_400_000)
        seen = wait_for(kafka_settings, topics, scenario.expected)
        alive = [w.poll() is None for w in workers]
        # Read before any worker stops: each one leaving rebalances the others again (CI saw the last
        # one take all four partitions while the test stopped them one by one).
        steady = [assignments(Path(d + ".log")) for d in dirs]
    finally:
        stop_workers(*workers)
    assert alive == [True, False, True, True]
    assert seen == scenario.expected
    every = [a for d in dirs for a in assignments(Path(d + ".log"))]
    assert len(every) >= 6, every  # three joins, a death and an addition: several rebalances each seen
    for assignment in every:
        assert set(assignment) <= set(INPUTS)
        # Partition p of the three input topics, always together on one worker.
        assert all(assignment.get(topic, []) == assignment.get(INPUTS[0], []) for topic in INPUTS), assignment
    final = [steady[i][-1] for i in range(len(dirs)) if i != 1]
    owned = sorted(p for a in final for p in a.get(INPUTS[0], []))
    # After the last rebalance each partition has exactly one owner.
    assert owned == [0, 1, 2, 3], rebalance_lines(dirs)


#: After the scenario's last event (3,000 requests 100 ms apart) and its labels' disorder.
ROLLOUT_T0 = T0 + 3000 * 100 + 5_000


def rollout_traffic(producer: ContractProducer, topics, n: int, start: int, rng: random.Random) -> None:
    """Labelled traffic of model ``roll`` (v2 the canary on every other request, both 95% right), just
    after the scenario's event times (it is sent once the scenario's traffic is out)."""
    for i in range(start, start + n):
        rid, ts = f"roll-{i}", ROLLOUT_T0 + i * 20
        version = "v2" if i % 2 else "v1"
        label = rng.randint(0, 1)
        prediction = label if rng.random() < 0.95 else 1 - label
        producer.send(topics.requests, rid, InferenceRequest(request_id=rid, model="roll", ts=ts))
        producer.send(topics.responses, rid, InferenceResponse(
            request_id=rid, model="roll", version=version, role="primary" if version == "v1" else "canary",
            ts=ts + 5, prediction=prediction, latency_ms=8.0))
        producer.send(topics.labels, rid, GroundTruth(request_id=rid, model="roll", ts=ts + 50, label=label))
    producer.flush(60)


def test_a_broker_outage_of_ten_seconds_keeps_counts_exact_a_rollout_going_and_the_log_short(tmp_path):
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    broker.up()
    try:
        settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{broker.port}", topic_prefix="outage.")
        topics, scenario = _prepare(settings, 3000, seed=22)
        state_dir = str(tmp_path / "worker")
        worker = start_evaluator(settings, f"outage-{uuid.uuid4().hex[:8]}", state_dir, "--label-timeout", "60s",
                                 "--expiry-grace", "30s", "--batch-size", "300", "--metrics-port", "0",
                                 "--loglevel", "info", "--task", "roll=binary")
        rollout = ContractProducer(settings)
        publish_three_step_rollout(rollout, topics, "roll")
        rng, sent = random.Random(3), [0]
        chunk = 2 * accuracy_spec("roll").bake_at(0).min_samples
        producer = threading.Thread(target=produce, args=(settings, scenario.events, 500.0))
        producer.start()
        try:
            # The rollout starts on its spec (its first step is a command), so it runs through the
            # outage; its evidence comes after.
            time.sleep(10)
            broker.down()
            time.sleep(10)
            broker.up()
            producer.join()
            paced = {"for": 0, "at": time.monotonic()}

            def more() -> None:
                steps = len([c for c in read_topic(settings, topics.control, linger=0.5) if c.value()])
                if steps > paced["for"] or time.monotonic() - paced["at"] > 30:
                    rollout_traffic(rollout, topics, chunk, sent[0], rng)
                    sent[0] += chunk
                    paced.update({"for": steps, "at": time.monotonic()})

            # Both waits end well inside the test's timeout, so a failure shows the worker's log.
            commands = wait_for_commands(settings, topics, lambda cs: any(c.action == "promote" for c in cs),
                                         timeout=200, between=more)
            send_ticks(settings, topics, 4, T0 + 10 * 86_400_000)
            seen = wait_for(settings, topics, scenario.expected, timeout=150)
            alive = worker.poll() is None
        finally:
            stop_workers(worker)
    finally:
        broker.down(purge=True)
    digest = "\n".join(log_digest(Path(state_dir + ".log")))
    assert alive, digest
    assert seen == scenario.expected, digest
    assert [c.action for c in commands][-1:] == ["promote"], (commands, digest)
    assert [c.epoch for c in commands] == list(range(len(commands)))  # none repeated, none skipped
    log = Path(state_dir + ".log").read_text(errors="replace").splitlines()
    about_kafka = [line for line in log if "Kafka" in line]
    assert any("Kafka unreachable" in line for line in log), log[-20:]
    assert any("Kafka reachable again after" in line for line in log), log[-20:]
    assert len([line for line in log if "[WARNING]" in line or "[ERROR]" in line]) <= 8, log[-40:]
    assert len(about_kafka) <= 6, about_kafka


class LosesCommitOutcome:
    """A transactional producer that loses the outcome of its ``nth`` commit, as a producer stuck after
    a broker outage does (KAFKA-19925, librdkafka #5456/#5511). ``mode``:

    - ``committed``: the commit reaches the broker, then a timeout is reported, and every
      transactional call after it times out too;
    - ``not-committed``: the same, but the commit never reaches the broker;
    - ``hangs``: the ``nth`` ``send_offsets_to_transaction`` never returns (until ``release``)."""

    def __init__(self, producer, nth: int, mode: str) -> None:
        self.producer, self.nth, self.mode = producer, nth, mode
        self.calls = {"commit_transaction": 0, "send_offsets_to_transaction": 0}
        self.stuck = False
        self.release = threading.Event()

    def __getattr__(self, name: str):
        call = getattr(self.producer, name)
        if name not in ("begin_transaction", "send_offsets_to_transaction", "abort_transaction", "commit_transaction"):
            return call

        def faulty(*args):
            if name in self.calls:
                self.calls[name] += 1
                if self.calls[name] == self.nth and (self.mode == "hangs") == (name == "send_offsets_to_transaction"):
                    self.stuck = True
                    if self.mode == "hangs":
                        self.release.wait(300)
                    elif self.mode == "committed":
                        call(*args)
            if self.stuck:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected: the call timed out", retriable=True))
            return call(*args)
        return faulty


@pytest.mark.parametrize("mode", ["committed", "not-committed", "hangs"])
def test_a_commit_whose_outcome_is_lost_restarts_the_producer_and_counts_stay_exact(kafka_settings, tmp_path, mode):
    """The worker cannot tell whether a batch committed (or a call never returns): it restarts its
    producer (which settles the transaction), restores its partitions from the changelog and
    rewinds, and the counts are exact whichever way the broker settled it."""
    topics, scenario = _prepare(kafka_settings, 1500, seed=23 + len(mode))
    options = LoopOptions(app_id=f"lost-{uuid.uuid4().hex[:8]}", batch_size=300, retry_patience_s=2.0,
                          commit_timeout_s=2.0, call_grace_s=1.0)
    evaluator = build_evaluator(kafka_settings, options, JoinConfig(label_timeout_ms=60_000, expiry_grace_ms=30_000),
                                tmp_path / "worker")
    loop = evaluator.loop
    loop.producer = faulty = LosesCommitOutcome(loop.producer, nth=12, mode=mode)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        produce(kafka_settings, scenario.events)
        send_ticks(kafka_settings, topics, 4, T0 + 10 * 86_400_000)
        seen = wait_for(kafka_settings, topics, scenario.expected, timeout=180)
    finally:
        stop.set()
        faulty.release.set()
        thread.join(60)
    assert faulty.stuck, "the injected failure never happened"
    assert loop.producer is not faulty and loop.producer_restarts == 1
    assert not thread.is_alive()
    assert seen == scenario.expected


def test_a_consumer_left_out_of_its_group_is_replaced_and_counts_stay_exact(kafka_settings, tmp_path):
    """After a broker restart a librdkafka consumer can lose its partitions and never join again
    (streams.worker.membership): here its subscription is dropped behind the loop's back. The loop
    notices the broker no longer lists it, a new consumer joins, and the counts are exact."""
    topics, scenario = _prepare(kafka_settings, 1500, seed=27)
    app_id = f"left-{uuid.uuid4().hex[:8]}"
    evaluator = build_evaluator(kafka_settings, LoopOptions(app_id=app_id, batch_size=300),
                                JoinConfig(label_timeout_ms=60_000, expiry_grace_ms=30_000), tmp_path / "worker")
    loop = evaluator.loop
    loop.membership = MembershipWatch(kafka_settings, app_id, patience_s=3.0, every_s=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    half = len(scenario.events) // 2
    try:
        produce(kafka_settings, scenario.events[:half])
        assert wait_until(lambda: loop.records_done >= half, timeout=120)
        wedged = loop.consumer
        wedged.unsubscribe()
        assert wait_until(lambda: loop.consumer is not wedged and loop.owned, timeout=60)
        produce(kafka_settings, scenario.events[half:])
        send_ticks(kafka_settings, topics, 4, T0 + 10 * 86_400_000)
        seen = wait_for(kafka_settings, topics, scenario.expected, timeout=180)
    finally:
        stop.set()
        thread.join(60)
    assert loop.consumer_replacements == 1 and not thread.is_alive()
    assert seen == scenario.expected


def test_the_merger_joins_again_after_failing_to_take_the_owner_role(kafka_settings):
    """The broker away just as the owner role arrives (reading what was published fails): the merger
    leaves the group and joins again, instead of ending its thread and holding the role dead."""
    topics, _ = _prepare(kafka_settings, 1, seed=25)
    admin = admin_client(kafka_settings)
    ensure_internal_topic(admin, partials_topic_name(topics), partitions=1, compacted=True)
    merger = MergerService(kafka_settings, topics, partials_topic_name(topics), f"m-{uuid.uuid4().hex[:8]}",
                           MetricsConfig(), lambda model: 0, 4)
    real, failures = merger._published_recently, []

    def fails_once() -> set[str]:
        if not failures:
            failures.append(time.monotonic())
            raise KafkaUnavailableError("cannot read evaluator.metrics: Local: Broker transport failure")
        return real()

    merger._published_recently = fails_once
    merger.start()
    try:
        assert wait_until(lambda: failures and merger.owner, timeout=60)
        assert merger._thread.is_alive()
    finally:
        merger.stop()


def test_a_partition_held_back_by_an_open_transaction_waits_paused_while_the_group_goes_on(kafka_settings, tmp_path):
    """A killed worker's transaction stays open on its changelog partition until the broker aborts it.
    The partition's next owner restores it only once that transaction ends (streams.worker.restore),
    and meanwhile serves its other partitions and rebalances with a worker that joins: the wait is
    in the loop, not in the rebalance callback. Counts are exact once it ends."""
    topics, scenario = _prepare(kafka_settings, 1500, seed=29)
    app_id = f"held-{uuid.uuid4().hex[:8]}"
    config = JoinConfig(label_timeout_ms=60_000, expiry_grace_ms=30_000)
    first = build_evaluator(kafka_settings, LoopOptions(app_id=app_id, batch_size=300), config, tmp_path / "w0")
    changelog = first.loop.stage.changelog
    killed = Producer(kafka_settings.confluent_config(**{
        "transactional.id": f"killed-{uuid.uuid4().hex[:6]}", "transaction.timeout.ms": 120_000}))
    killed.init_transactions(30)
    killed.begin_transaction()
    killed.produce(changelog, key=b"\x00test.open", value=None, partition=0)
    killed.flush(30)
    stop = threading.Event()
    threads = [threading.Thread(target=first.loop.run, args=(stop,), daemon=True)]
    threads[0].start()
    second = None
    try:
        produce(kafka_settings, scenario.events)
        assert wait_until(lambda: first.loop.stage.restoring() == {0} and first.loop.stage.events_processed > 0,
                          timeout=60)
        assert 0 not in first.loop.stage.work and first.loop.owned == {0, 1, 2, 3}
        second = build_evaluator(kafka_settings, LoopOptions(app_id=app_id, batch_size=300), config, tmp_path / "w1")
        threads.append(threading.Thread(target=second.loop.run, args=(stop,), daemon=True))
        threads[1].start()
        # The rebalance completes while the transaction is still open.
        assert wait_until(lambda: second.loop.owned and first.loop.owned | second.loop.owned == {0, 1, 2, 3}
                          and not first.loop.owned & second.loop.owned, timeout=60)
        waiting = first.loop if 0 in first.loop.owned else second.loop
        # Its other partitions' restores end (at their ends); partition 0's waits.
        assert wait_until(lambda: waiting.stage.restoring() == {0}, timeout=30), waiting.stage.restoring()
        killed.abort_transaction(30)
        assert wait_until(lambda: not waiting.stage.restoring(), timeout=60)
        send_ticks(kafka_settings, topics, 4, T0 + 10 * 86_400_000)
        seen = wait_for(kafka_settings, topics, scenario.expected, timeout=180)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert seen == scenario.expected

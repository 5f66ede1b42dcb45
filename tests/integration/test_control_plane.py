"""A typo on the control plane never moves traffic: 10,000 generated bad records on rollout.specs and
rollout.control, through the real broker, while a rollout runs. The rollout ends exactly as it does
without them (the same commands and epochs); each bad record is counted, alerted and dead-lettered
once; the worker never restarts its policy engine."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from evaluators.policy.control_records import read_command_record
from evaluators.policy.engine import RolloutEngine
from schemas import Topics, decode
from schemas.control import RoutingCommand
from schemas.internal_topics import ENGINE_KEY, rollouts_topic_name
from schemas.monitoring import Alert
from schemas.spec_yaml import load_spec_file
from streams.cli.main import cli
from streams.kafka.admin import TopicLayout, admin_client, create_topics, ensure_internal_topic
from streams.kafka.local_broker import free_port
from streams.kafka.producer import ContractProducer, make_producer
from streams.worker.process import log_digest
from tests.integration.test_policy_worker import publish_three_step_rollout, traffic
from tests.integration.test_policy_worker import spec as accuracy_spec
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers

pytestmark = pytest.mark.kafka

BAD_RECORDS = 10_000


def bad_records(topics: Topics, n: int, rng: random.Random) -> list[tuple[str, bytes | None, bytes | None]]:
    """``(topic, key, value)``: every kind of record the policy owner must refuse, on both topics."""
    good = accuracy_spec("roll").model_dump(mode="json")
    # (No keyless records on rollout.specs: the topic is compacted, so the broker refuses them.)
    kinds_specs = [
        lambda: (b"\xffroll\xfe", orjson.dumps(good)),                              # key not UTF-8
        lambda: (b"roll", b""),                                                     # empty
        lambda: (b"roll", b"steps: [10, " + str(rng.randint(101, 999)).encode() + b"]"),  # not JSON (YAML)
        lambda: (b"roll", orjson.dumps([good])),                                    # JSON of the wrong shape
        lambda: (b"roll", orjson.dumps({**good, "steps": [10, rng.randint(101, 999)]})),  # invalid field
        lambda: (b"roll", orjson.dumps({**good, "mode": rng.choice(["yolo", "", "Canary"])})),
        lambda: (b"roll", orjson.dumps({**good, "model": "pricing"})),              # a spec for another model
        lambda: (b"roll", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60)))),  # garbage
    ]
    kinds_control = [
        lambda: (b"roll", b""),
        lambda: (b"roll", b"{rollback"),
        lambda: (b"roll", b'"set_routes"'),
        lambda: (b"roll", orjson.dumps({"model": "roll", "epoch": -rng.randint(1, 9), "action": "promote"})),
        lambda: (None, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60)))),
    ]
    out = []
    for i in range(n):
        if i % 500 == 0:  # a few oversize ones of each topic (64 KiB is the limit)
            out.append((topics.specs if i % 1000 == 0 else topics.control, b"roll", b"{" + b" " * 70_000 + b"}"))
        elif rng.random() < 0.7:
            out.append((topics.specs, *rng.choice(kinds_specs)()))
        else:
            out.append((topics.control, *rng.choice(kinds_control)()))
    return out


def metric_total(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_ten_thousand_bad_control_records_change_nothing_and_each_is_told(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    port = free_port()
    state_dir = str(tmp_path / "worker")
    worker = start_evaluator(kafka_settings, f"plane-{uuid.uuid4().hex[:8]}", state_dir, "--label-timeout", "60s",
                             "--expiry-grace", "5s", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                             "--task", "roll=binary", "--loglevel", "info")
    producer = ContractProducer(kafka_settings)
    publish_three_step_rollout(producer, topics, "roll")
    bad = bad_records(topics, BAD_RECORDS, random.Random(24))

    failed: list[str] = []

    def send_bad() -> None:
        raw = make_producer(kafka_settings, **{"message.max.bytes": 1_000_000})
        for i, (topic, key, value) in enumerate(bad):
            while True:
                try:
                    raw.produce(topic, key=key, value=value,
                                on_delivery=lambda error, _: error is not None and failed.append(error.str()))
                    break
                except BufferError:
                    raw.poll(0.05)
            if i % 100 == 0:
                raw.poll(0)
                time.sleep(0.1)  # spread over the rollout: about 10 s
        raw.flush(60)

    sender = threading.Thread(target=send_bad)
    rng, sent = random.Random(3), [0]
    chunk = 2 * accuracy_spec("roll").bake_at(0).min_samples
    paced = {"for": 0, "at": time.monotonic()}

    def commands() -> list[RoutingCommand]:  # the readable ones: the bad records are on the topic too
        read = [read_command_record(m.value()) for m in read_topic(kafka_settings, topics.control, linger=0.5)]
        return [c for c in read if isinstance(c, RoutingCommand)]

    def more() -> None:  # one stage's worth of traffic per command (the rollout moves stage by stage)
        steps = len(commands())
        if steps > paced["for"] or time.monotonic() - paced["at"] > 30:
            traffic(producer, topics, "roll", {"v1": 0.95, "v2": 0.95}, chunk, rng, start=sent[0])
            sent[0] += chunk
            paced.update({"for": steps, "at": time.monotonic()})

    try:
        time.sleep(8)  # the worker joins its groups; the engine starts the rollout on its spec
        sender.start()
        deadline, issued = time.monotonic() + 240, []
        while time.monotonic() < deadline and not any(c.action == "promote" for c in issued):
            more()
            issued = commands()
        sender.join()
        alerts = [decode(Alert, m.value()) for m in read_topic(kafka_settings, topics.alerts, BAD_RECORDS, timeout=120)]
        refused_alerts = [a for a in alerts if a.kind == "schema" and a.source_topic is not None]
        letters = [m for m in read_topic(kafka_settings, topics.dlq, BAD_RECORDS, timeout=60)
                   if dict(m.headers() or [])["source.topic"].decode() in (topics.specs, topics.control)]
        counted = metric_total(port, "shadowcanary_control_records_refused_total")
        alive = worker.poll() is None
    finally:
        stop_workers(worker)
    log = Path(state_dir + ".log").read_text(errors="replace")
    digest = "\n".join(log_digest(Path(state_dir + ".log")))
    assert not failed, failed[:3]  # every bad record reached its topic
    assert alive, digest
    assert "policy engine stopped" not in log, digest
    # Exactly the rollout it is without them: three stages and a promotion, epochs 0..3.
    assert [(c.action, c.routes, c.epoch) for c in issued] == [
        ("set_routes", {"v1": 90.0, "v2": 10.0}, 0), ("set_routes", {"v1": 50.0, "v2": 50.0}, 1),
        ("set_routes", {"v2": 100.0}, 2), ("promote", {"v2": 100.0}, 3)], digest
    # Each bad record told once: an alert naming it, a dead letter with its bytes, a count.
    assert len(refused_alerts) == BAD_RECORDS
    assert len({(a.source_topic, a.source_partition, a.source_offset) for a in refused_alerts}) == BAD_RECORDS
    assert Counter(a.source_topic for a in refused_alerts) == Counter(topic for topic, _, _ in bad)
    assert len(letters) == BAD_RECORDS
    assert sorted(m.value() or b"" for m in letters) == sorted(value or b"" for _, _, value in bad)
    reasons = Counter(dict(m.headers())["reason"].decode() for m in letters)
    # (no_key has its unit test: a compacted rollout.specs cannot hold a keyless record.)
    assert set(reasons) == {"key_not_utf8", "empty", "oversize", "not_json", "not_object", "invalid",
                            "model_mismatch"}, reasons
    assert counted == BAD_RECORDS


def test_rollout_start_dry_run_says_what_the_evaluator_would_do_and_publishes_nothing(kafka_settings, tmp_path):
    create_topics(kafka_settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
    topics = Topics(kafka_settings.topic_prefix)
    path = Path("deploy/examples/canary.yaml")
    base = ["--bootstrap", kafka_settings.bootstrap_servers, "--topic-prefix", kafka_settings.topic_prefix,
            "rollout", "start", "--dry-run", "-f"]

    def dry_run(spec_path: Path) -> str:
        result = CliRunner().invoke(cli, base + [str(spec_path)])
        assert result.exit_code == 0, result.output
        return result.output

    assert dry_run(path).startswith("new rollout of fraud (canary): v1 95%, v2 5%;")
    # The owner's saved state with that spec running, as the policy engine writes it.
    engine = RolloutEngine()
    engine.start(load_spec_file(path), now_ms=0, totals={}, rollout_id="fraud@0:0")
    admin = admin_client(kafka_settings)
    ensure_internal_topic(admin, rollouts_topic_name(topics), partitions=1, compacted=True)
    saver = ContractProducer(kafka_settings)
    saver.send(rollouts_topic_name(topics), ENGINE_KEY, orjson.dumps(engine.to_state()))
    saver.flush()
    assert dry_run(path).startswith(
        "no change: this spec is already running as rollout fraud@0:0 (running, stage 1 of 4)"
    )
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace("candidate: v2", "candidate: v3"))
    assert dry_run(other).startswith("replacement: rollout fraud@0:0 (running, stage 1 of 4) would be rolled back "
                                     "to v1 and a new rollout started (canary): v1 95%, v3 5%;")
    assert read_topic(kafka_settings, topics.specs, linger=2) == []  # nothing was published

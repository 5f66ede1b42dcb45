"""``shadowcanary demo`` end to end: the bad candidate rolled back, the good one promoted, the report."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from schemas import decode
from schemas.control import Decision, RoutingCommand
from schemas.topics import Topics
from streams.kafka.settings import KafkaSettings
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.kafka


def test_demo_rolls_back_the_bad_candidate_promotes_the_good_one_and_writes_the_report(kafka_settings, tmp_path):
    report = tmp_path / "report.html"
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_settings.bootstrap_servers,
           "SHADOWCANARY_TOPIC_PREFIX": kafka_settings.topic_prefix, "COLUMNS": "120",
           "SHADOWCANARY_HOME": str(tmp_path / "home")}  # the run's state, key and log: not in the repository
    done = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--report", str(report)], env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    prefix = re.search(r"topics under prefix (\S+);", done.stdout).group(1)
    assert prefix.startswith(kafka_settings.topic_prefix + "demo-")
    topics = Topics(prefix)
    settings = KafkaSettings(bootstrap_servers=kafka_settings.bootstrap_servers, topic_prefix=prefix)
    decisions = [decode(Decision, m.value()) for m in read_topic(settings, topics.decisions, linger=2)]
    commands = [decode(RoutingCommand, m.value()) for m in read_topic(settings, topics.control, linger=1)]
    assert [d.action for d in decisions][0] == "rollback"
    assert [d.action for d in decisions][1:] == ["promote", "promote", "promote", "complete"]
    assert [c.action for c in commands] == ["set_routes", "rollback", "set_routes", "set_routes", "set_routes",
                                            "set_routes", "promote"]
    assert commands[1].routes == {"v1": 100.0} and commands[-1].routes == {"v3": 100.0}
    assert [c.epoch for c in commands] == list(range(len(commands)))
    assert all(c.signature and c.signature.startswith("ed25519:") for c in commands)
    text = report.read_text()
    assert text.count("<svg") >= 2 and "rollback" in text and "complete" in text
    assert f"report: {report}" in done.stdout.replace("\n", "")

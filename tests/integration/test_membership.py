"""MembershipWatch on a real broker: a member without partitions is left alone, a consumer out of
its group is noticed after the patience, and an unreachable broker teaches nothing."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.local_broker import free_port
from streams.kafka.settings import KafkaSettings
from streams.worker.membership import MembershipWatch
from tests.kafka_helpers import wait_for

pytestmark = pytest.mark.kafka


def _consumer(settings: KafkaSettings, group: str) -> Consumer:
    return Consumer(settings.confluent_config(**{"group.id": group, "session.timeout.ms": 6000,
                                                 "heartbeat.interval.ms": 500}))


def _watch_for(watch: MembershipWatch, consumer: Consumer, seconds: float) -> list[bool]:
    said, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        consumer.consume(10, 0.1)
        said.append(watch.out_for_good(consumer, bool(consumer.assignment())))
    return said


def test_a_member_the_group_gives_no_partition_is_left_alone_and_one_out_of_it_is_noticed(kafka_settings):
    topic, group = f"{kafka_settings.topic_prefix}members", f"members-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(kafka_settings.confluent_config())
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    first, second = _consumer(kafka_settings, group), _consumer(kafka_settings, group)
    try:
        for consumer in (first, second):
            consumer.subscribe([topic])
        assert wait_for(lambda: [c.consume(10, 0.1) for c in (first, second)] and
                        sum(len(c.assignment()) for c in (first, second)) == 1 and
                        all(c.memberid() for c in (first, second)), timeout=60)
        idle = first if not first.assignment() else second
        watch = MembershipWatch(kafka_settings, group, patience_s=2.0, every_s=0.3)
        assert not any(_watch_for(watch, idle, 4.0)) and watch.out_since is None

        idle.unsubscribe()  # out of the group, and not joining again: what a wedged consumer looks like
        said = _watch_for(watch, idle, 5.0)
        assert said[-1] and not said[0], said
        watch.replaced()
        assert watch.out_since is None and not watch.out_for_good(idle, False)  # counts again from now
    finally:
        for consumer in (first, second):
            consumer.close()


def test_an_unreachable_broker_says_nothing_about_membership():
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix="x.")
    consumer = _consumer(settings, "nobody")
    watch = MembershipWatch(settings, "nobody", patience_s=0.0, every_s=0.0)
    try:
        assert not watch.out_for_good(consumer, False) and watch.out_since is None
    finally:
        consumer.close()

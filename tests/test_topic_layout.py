"""The contract's topic table and the layout check (pure), then creation on a real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import NewTopic

from schemas.topics import TOPICS, Topics
from streams.errors import TopicLayoutError
from streams.kafka.admin import TopicState, admin_client, create_topics, layout_problems, verify_topics, wait_for_topics


def test_contract_topics_are_all_there_with_prefix():
    assert Topics("p.").all() == [f"p.{t.name}" for t in TOPICS]
    assert {t.name for t in TOPICS} == {
        "inference.requests", "inference.responses", "inference.labels", "rollout.specs",
        "rollout.control", "rollout.decisions", "evaluator.metrics", "evaluator.alerts", "evaluator.dlq"}
    assert [t.name for t in TOPICS if t.cleanup_policy == "compact"] == ["rollout.specs"]


def test_layout_problems_name_the_mismatch():
    states = {
        "inference.requests": TopicState("inference.requests", 6, "delete"),
        "inference.responses": TopicState("inference.responses", 6, "delete"),
        "inference.labels": TopicState("inference.labels", 3, "delete"),
        "rollout.specs": TopicState("rollout.specs", 1, "delete"),
    }
    problems = layout_problems("", states)
    assert len(problems) == 2
    assert "inference.labels has 3" in problems[0] and "not co-partitioned" in problems[0]
    assert "rollout.specs must be compacted" in problems[1]
    assert layout_problems("", {k: v for k, v in states.items() if k != "inference.labels"
                                and k != "rollout.specs"}) == []


@pytest.mark.kafka
def test_create_is_idempotent_and_follows_the_contract(kafka_settings):
    created, existing = create_topics(kafka_settings)
    assert len(created) == len(TOPICS) and existing == []
    created, existing = create_topics(kafka_settings)
    assert created == [] and len(existing) == len(TOPICS)
    states = verify_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    assert states[topics.specs].cleanup_policy == "compact"
    assert {states[n].partitions for n in (topics.requests, topics.responses, topics.labels)} == {6}


@pytest.mark.kafka
def test_refuses_to_run_on_mismatched_inference_topics(kafka_settings):
    topics = Topics(kafka_settings.topic_prefix)
    admin = admin_client(kafka_settings)
    for future in admin.create_topics([NewTopic(topics.requests, 4, 1),
                                       NewTopic(topics.labels, 2, 1)]).values():
        future.result(30)
    wait_for_topics(admin, [topics.requests, topics.labels])
    with pytest.raises(TopicLayoutError, match="not co-partitioned") as info:
        create_topics(kafka_settings)
    assert f"{topics.labels} has 2" in str(info.value)
    # Nothing else was created on the refused run.
    assert topics.responses not in admin.list_topics(timeout=10).topics


@pytest.mark.kafka
def test_missing_inference_topic_takes_the_existing_partition_count(kafka_settings):
    topics = Topics(kafka_settings.topic_prefix)
    admin = admin_client(kafka_settings)
    for future in admin.create_topics([NewTopic(topics.requests, 5, 1)]).values():
        future.result(30)
    wait_for_topics(admin, [topics.requests])
    create_topics(kafka_settings)
    states = verify_topics(kafka_settings)
    assert {states[n].partitions for n in (topics.requests, topics.responses, topics.labels)} == {5}

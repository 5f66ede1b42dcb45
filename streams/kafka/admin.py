"""Creating and checking the contract's topics on a real cluster (confluent-kafka AdminClient).

Creation is idempotent: existing topics are kept and checked, missing ones created. The check refuses
a layout that would silently break the join: the three ``inference.*`` topics must have the same
partition count, and ``rollout.specs`` must be compacted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from schemas.topics import TOPICS, TopicSpec
from streams.errors import ConfigError, KafkaUnavailableError, TopicLayoutError
from streams.kafka.settings import ClientErrors, KafkaSettings


@dataclass(frozen=True)
class TopicLayout:
    """Partition counts per partition group."""

    inference_partitions: int = 6
    evaluator_partitions: int = 3
    control_partitions: int = 1
    replication_factor: int = 1

    def partitions(self, spec: TopicSpec) -> int:
        return {"inference": self.inference_partitions, "evaluator": self.evaluator_partitions,
                "control": self.control_partitions}[spec.group]


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    cleanup_policy: str | None


def admin_client(settings: KafkaSettings) -> AdminClient:
    """An AdminClient whose ``errors`` keep what librdkafka reported of a refusal (credentials, TLS)."""
    errors = ClientErrors()
    admin = AdminClient(settings.confluent_config(**{"socket.connection.setup.timeout.ms": 5000,
                                                     "error_cb": errors}))
    admin.errors = errors
    return admin


def describe_topics(admin: AdminClient, names: list[str], timeout: float = 10.0,
                    bootstrap: str = "Kafka") -> dict[str, TopicState]:
    """Partition count and cleanup policy of those of ``names`` that exist."""
    errors: ClientErrors | None = getattr(admin, "errors", None)
    deadline = time.monotonic() + timeout
    while True:  # in short steps, so a refusal (a wrong password) ends the wait at once
        try:
            metadata = admin.list_topics(timeout=min(1.0, max(deadline - time.monotonic(), 0.1)))
            break
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb: what librdkafka said of the connection
            if errors is not None and errors.refusal is not None:
                raise ConfigError(f"Kafka at {bootstrap} refused the connection: {errors.refusal}") from None
            if time.monotonic() >= deadline:
                raise KafkaUnavailableError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s "
                                            f"({exc.args[0].str()})") from None
    present = [n for n in names if n in metadata.topics and metadata.topics[n].error is None]
    policies: dict[str, str | None] = {n: None for n in present}
    if present:
        futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in present])
        for resource, future in futures.items():
            entries = future.result(timeout=timeout)
            policy = entries.get("cleanup.policy")
            policies[resource.name] = policy.value if policy is not None else None
    return {n: TopicState(n, len(metadata.topics[n].partitions), policies[n]) for n in present}


def layout_problems(prefix: str, states: dict[str, TopicState]) -> list[str]:
    """What is wrong with the existing topics, as sentences (empty when the layout is sound)."""
    problems: list[str] = []
    inference = [(s.full_name(prefix), states.get(s.full_name(prefix))) for s in TOPICS if s.co_partitioned]
    counts = {name: state.partitions for name, state in inference if state is not None}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in counts.items())
        problems.append(f"the inference topics are not co-partitioned ({listed}): the join needs the "
                        "same partition count on all three; recreate them or add partitions to match")
    for spec in TOPICS:
        state = states.get(spec.full_name(prefix))
        if state is None or state.cleanup_policy is None:
            continue
        policies = set(state.cleanup_policy.split(","))
        if spec.cleanup_policy == "compact" and "compact" not in policies:
            problems.append(f"{state.name} must be compacted (cleanup.policy={state.cleanup_policy})")
    return problems


def verify_topics(settings: KafkaSettings, admin: AdminClient | None = None) -> dict[str, TopicState]:
    """Raise :class:`TopicLayoutError` if existing topics break the contract; return their states."""
    admin = admin or admin_client(settings)
    names = [s.full_name(settings.topic_prefix) for s in TOPICS]
    states = describe_topics(admin, names, bootstrap=settings.bootstrap_servers)
    problems = layout_problems(settings.topic_prefix, states)
    if problems:
        raise TopicLayoutError("; ".join(problems))
    return states


def create_topics(settings: KafkaSettings, layout: TopicLayout = TopicLayout(),
                  timeout: float = 30.0) -> tuple[list[str], list[str]]:
    """Create the missing contract topics; return ``(created, existing)`` names.

    Refuses (``TopicLayoutError``) before creating anything when existing topics break the layout.
    A missing inference topic takes the partition count of the existing ones, so the three stay
    co-partitioned whatever ``layout`` says.
    """
    admin = admin_client(settings)
    states = verify_topics(settings, admin)
    existing_inference = {s.partitions for n, s in states.items()
                          if any(t.co_partitioned and t.full_name(settings.topic_prefix) == n for t in TOPICS)}
    inference_partitions = existing_inference.pop() if existing_inference else layout.inference_partitions
    new_topics = []
    for spec in TOPICS:
        name = spec.full_name(settings.topic_prefix)
        if name in states:
            continue
        partitions = inference_partitions if spec.co_partitioned else layout.partitions(spec)
        new_topics.append(NewTopic(name, num_partitions=partitions,
                                   replication_factor=layout.replication_factor,
                                   config=spec.topic_configs()))
    created: list[str] = []
    if new_topics:
        for name, future in admin.create_topics(new_topics, operation_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                error = exc.args[0]
                if error.name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won the race
                    raise TopicLayoutError(f"could not create {name}: {error.str()}") from None
        wait_for_topics(admin, [t.topic for t in new_topics], timeout)
    verify_topics(settings, admin)
    return created, sorted(states)


def wait_for_topics(admin: AdminClient, names: list[str], timeout: float = 30.0) -> None:
    """Block until the broker's metadata lists every one of ``names``.

    A create request returns once the controller has committed the topic; the broker serving
    metadata may learn of it a moment later. Checking the layout in that moment would see a partial
    picture, so creation (ours or a concurrent creator's) is only trusted once it is visible.
    """
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        missing = [n for n in names if n not in topics or topics[n].error is not None]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopicLayoutError(f"topics not visible {timeout:.0f}s after creation: {', '.join(missing)}")
        time.sleep(0.05)


def ensure_internal_topic(admin: AdminClient, name: str, partitions: int, compacted: bool,
                          timeout: float = 30.0) -> None:
    """Create one of the evaluator's internal topics (not part of the contract) if it is missing."""
    if name in admin.list_topics(timeout=timeout).topics:
        return
    config = {"cleanup.policy": "compact" if compacted else "delete"}
    future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                           config=config)])[name]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise TopicLayoutError(f"could not create {name}: {exc.args[0].str()}") from None
    wait_for_topics(admin, [name], timeout)

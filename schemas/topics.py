"""The topics of the v1 contract: names, keys, values, who writes and reads them, and their layout.

This table is the single source for topic creation (``shadowcanary topics create``), the AsyncAPI
document and every producer and consumer. Names take one configurable prefix.

>>> Topics(prefix="acme.").requests
'acme.inference.requests'
>>> [t.name for t in TOPICS if t.co_partitioned]
['inference.requests', 'inference.responses', 'inference.labels']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CleanupPolicy = Literal["delete", "compact"]

#: Partition group of a topic: "inference" topics share the request-id partitioning (co-partitioned);
#: "control" topics are keyed by model and read whole by routers and the policy engine.
PartitionGroup = Literal["inference", "evaluator", "control"]


@dataclass(frozen=True)
class TopicSpec:
    """One row of the contract's topic table."""

    name: str
    key: str
    value: str
    written_by: str
    read_by: str
    description: str
    group: PartitionGroup
    cleanup_policy: CleanupPolicy = "delete"
    #: Topic-level configs beyond the cleanup policy.
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def co_partitioned(self) -> bool:
        return self.group == "inference"

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    def topic_configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, **self.configs}


#: Audit and control history is small and must not age out: routers replay rollout.control on start.
_KEEP_FOREVER = {"retention.ms": "-1"}

#: A dead letter keeps the original bytes, however large the input topic let them be.
DEAD_LETTER_MAX_BYTES = 16 * 1024 * 1024

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "inference.requests", "request_id", "InferenceRequest",
        "the serving layer (router)", "evaluator",
        "Every inference request with its features, subject and attributes.", "inference",
    ),
    TopicSpec(
        "inference.responses", "request_id", "InferenceResponse",
        "model servers / router", "evaluator",
        "One response per model version that served or shadowed the request.", "inference",
    ),
    TopicSpec(
        "inference.labels", "request_id", "GroundTruth",
        "label pipelines", "evaluator",
        "Ground truth and business outcomes, minutes to days after the request.", "inference",
    ),
    TopicSpec(
        "rollout.specs", "model", "RolloutSpec",
        "people, CI/CD, the CLI", "evaluator",
        "The rollout of each model; compacted; a tombstone ends the rollout.", "control",
        cleanup_policy="compact",
    ),
    TopicSpec(
        "rollout.control", "model", "RoutingCommand",
        "evaluator, the CLI (manual override)", "routers",
        "Routing commands that routers obey, epoch strictly increasing per model.", "control",
        configs=_KEEP_FOREVER,
    ),
    TopicSpec(
        "rollout.decisions", "model", "Decision",
        "evaluator", "people, dashboards",
        "Every promote/hold/rollback/complete with its evidence: the audit trail.", "control",
        configs=_KEEP_FOREVER,
    ),
    TopicSpec(
        "evaluator.metrics", "model/version", "MetricsSnapshot",
        "evaluator", "monitoring consumers",
        "One snapshot per version per closed window.", "evaluator",
    ),
    TopicSpec(
        "evaluator.alerts", "model", "Alert",
        "evaluator", "alert subscribers",
        "Alerts raised by the evaluator, deduplicated, with resolved notices.", "evaluator",
    ),
    TopicSpec(
        "evaluator.dlq", "the original key", "the original bytes",
        "evaluator", "operators",
        "Records that could not be decoded or validated, unchanged, with headers error, "
        "source.topic, source.partition, source.offset.", "evaluator",
        configs={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)},
    ),
)

TOPICS_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


@dataclass(frozen=True)
class Topics:
    """Full topic names under one prefix, as attributes."""

    prefix: str = ""

    def name(self, default_name: str) -> str:
        return TOPICS_BY_NAME[default_name].full_name(self.prefix)

    @property
    def requests(self) -> str:
        return self.name("inference.requests")

    @property
    def responses(self) -> str:
        return self.name("inference.responses")

    @property
    def labels(self) -> str:
        return self.name("inference.labels")

    @property
    def specs(self) -> str:
        return self.name("rollout.specs")

    @property
    def control(self) -> str:
        return self.name("rollout.control")

    @property
    def decisions(self) -> str:
        return self.name("rollout.decisions")

    @property
    def metrics(self) -> str:
        return self.name("evaluator.metrics")

    @property
    def alerts(self) -> str:
        return self.name("evaluator.alerts")

    @property
    def dlq(self) -> str:
        return self.name("evaluator.dlq")

    def all(self) -> list[str]:
        return [t.full_name(self.prefix) for t in TOPICS]

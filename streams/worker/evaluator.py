"""Assemble and run an evaluator worker: the batch loop, the join, and its state folder.

The local state (one RocksDB database per input partition, under ``<state-dir>/tables``) is written
only after each batch's transaction commits, with the changelog offset it reflects (its checkpoint):
see :mod:`streams.worker`. A worker that died (SIGKILL, power loss) may still have left a database
half written, so a worker marks its state folder while it runs, and one that finds the mark of a
dead predecessor does not trust the checkpoints: it drops the local tables and rebuilds them from the
changelog, as Kafka Streams does under exactly-once after an unclean shutdown. A clean stop removes
the mark and keeps the local state, which the next start brings up to date by reading only the
changelog after its checkpoint.

The worker's id (in ``<state-dir>/worker.id``) stays with the folder: its transactional id
``<app-id>.join.<worker id>`` is the same after a restart, which fences the previous process's open
transaction at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from evaluators.drift.config import DriftConfig
from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from schemas.internal_topics import changelog_topic_name, partials_topic_name, rollouts_topic_name
from schemas.signing import Signer
from schemas.topics import TOPICS, Topics
from streams.errors import TopicLayoutError
from streams.kafka.admin import admin_client, ensure_internal_topic, verify_topics
from streams.kafka.settings import KafkaSettings
from streams.worker.exporter import EvaluatorCollector, PolicyCollector, serve
from streams.worker.gc_pace import pace_cycle_collector
from streams.worker.join_stage import JoinStage
from streams.worker.loop import BatchLoop, LoopOptions
from streams.worker.merger import MergerService
from streams.worker.policy import PolicyService
from streams.worker.progress import ProgressLog, thread_state

log = logging.getLogger("shadowcanary.evaluator")

RUNNING_MARK = "worker.running"
WORKER_ID = "worker.id"
#: The local tables' folder inside the state folder.
TABLES = "tables"


@dataclass
class Evaluator:
    loop: BatchLoop
    join: JoinStage
    merger: MergerService
    collector: EvaluatorCollector
    policy: PolicyService
    progress: ProgressLog
    state_dir: Path
    notes: list[str] = field(default_factory=list)

    def serve_metrics(self, port: int, host: str = "0.0.0.0") -> None:
        serve([self.collector, PolicyCollector(lambda: self.policy.engine)], port, host)

    def run(self, stop: threading.Event) -> None:
        """The services in their threads, the loop in this one until ``stop``; then a clean stop."""
        thread = threading.current_thread()
        self.progress.where = lambda: thread_state(thread)
        self.merger.start()
        self.policy.start()
        self.progress.start()
        try:
            self.loop.run(stop)
        finally:
            self.progress.stop()
            self.policy.stop()
            if self.policy.registry is not None:
                self.policy.registry.close()  # a write not yet taken stays in the engine's saved state
            self.merger.stop()
        mark_clean_stop(self.state_dir)  # only a normal return: anything else keeps the mark


def inference_partitions(settings: KafkaSettings) -> int:
    states = verify_topics(settings)
    names = [t.full_name(settings.topic_prefix) for t in TOPICS if t.co_partitioned]
    missing = [n for n in names if n not in states]
    if missing:
        raise TopicLayoutError(f"missing input topics {', '.join(missing)}: run `shadowcanary topics create`")
    return states[names[0]].partitions


def prepare_state_dir(state_dir: Path, table_dir: Path) -> list[str]:
    """Create the folder; after an unclean stop, drop the local tables in ``table_dir``: they are
    rebuilt from their changelogs."""
    notes = []
    state_dir.mkdir(parents=True, exist_ok=True)
    mark = state_dir / RUNNING_MARK
    if mark.exists():
        if table_dir.exists():
            shutil.rmtree(table_dir)
        notes.append("the previous worker stopped uncleanly: rebuilding state from the changelog")
    mark.write_text(str(os.getpid()))
    return notes


def mark_clean_stop(state_dir: Path) -> None:
    (state_dir / RUNNING_MARK).unlink(missing_ok=True)


def worker_id(state_dir: Path) -> str:
    """This state folder's worker id (made on first use)."""
    path = state_dir / WORKER_ID
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:12])
    return path.read_text().strip()


def build_evaluator(settings: KafkaSettings, options: LoopOptions, join_config: JoinConfig,
                    state_dir: Path, metrics_config: MetricsConfig | None = None,
                    signer: Signer | None = None, in_memory: bool = False,
                    heartbeat_interval_s: float = 0.5, registry_uri: str | None = None,
                    time_state: bool = False, drift_config: DriftConfig | None = None) -> Evaluator:
    metrics_config = metrics_config or MetricsConfig()
    pace_cycle_collector()
    partitions = inference_partitions(settings)
    topics = Topics(settings.topic_prefix)
    admin = admin_client(settings)
    # One partition: one owner (the merger) reads every partition's partials in order.
    ensure_internal_topic(admin, partials_topic_name(topics), partitions=1, compacted=True)
    ensure_internal_topic(admin, changelog_topic_name(topics, options.app_id), partitions=partitions, compacted=True)
    ensure_internal_topic(admin, rollouts_topic_name(topics), partitions=1, compacted=True)
    tables = state_dir / TABLES
    notes = prepare_state_dir(state_dir, tables)
    options.worker_id = worker_id(state_dir)
    run_id = uuid.uuid4().hex[:12]
    join = JoinStage(settings, topics, options.app_id, join_config, metrics_config,
                     None if in_memory else tables, run_id, heartbeat_interval_s, time_state)
    loop = BatchLoop(settings, topics, join, options)
    join.commit_tombstone = loop.commit_tombstone
    merger = MergerService(settings, topics, partials_topic_name(topics), options.app_id, metrics_config,
                           join_config.settle_ms, partitions, join_config.max_future_skew_ms, drift_config)
    collector = EvaluatorCollector(merger.totals, join.lag, lambda: merger.owner, metrics_config, merger.drift,
                                   merger.model_counts, merger.segment_totals)
    registry = None
    if registry_uri:
        from streams.worker.registry import ModelRegistry
        registry = ModelRegistry(registry_uri)
    policy = PolicyService(settings, topics, options.app_id, merger, signer, registry)
    progress = ProgressLog(lambda: join.events_processed, join.lag, lambda: merger.owner, lambda: policy.engine,
                           services=(merger, policy), loop_went_round=lambda: loop.turn_began,
                           restoring=join.restoring)
    return Evaluator(loop, join, merger, collector, policy, progress, state_dir, notes)

"""Assemble and run an evaluator worker: the faust app, the join, and its state folder.

RocksDB state written by a worker that died (SIGKILL, power loss) may hold writes its changelog
lost; mixing the two would break the join's exactly-once counting (see :mod:`evaluators.join`). So
a worker marks its state folder while it runs, and one that finds the mark of a dead predecessor
rebuilds its tables from the changelog, as Kafka Streams does under exactly-once after an unclean
shutdown. A clean stop removes the mark and keeps the local state.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import faust

from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from schemas.topics import TOPICS, Topics
from streams.admin import admin_client, ensure_internal_topic, verify_topics
from streams.app import AppOptions, create_app
from streams.config import KafkaSettings
from streams.errors import TopicLayoutError
from streams.exporter import EvaluatorCollector, PolicyCollector, serve
from streams.join_worker import JoinWorker, partials_topic_name
from streams.merger import MergerService
from schemas.signing import Signer
from streams.policy import PolicyService, rollouts_topic_name
from streams.progress import ProgressLog, event_loop_state

log = logging.getLogger("shadowcanary.evaluator")

RUNNING_MARK = "worker.running"


@dataclass
class Evaluator:
    app: faust.App
    join: JoinWorker
    merger: MergerService
    collector: EvaluatorCollector
    policy: PolicyService
    progress: ProgressLog
    state_dir: Path
    notes: list[str] = field(default_factory=list)

    def serve_metrics(self, port: int, host: str = "0.0.0.0") -> None:
        serve([self.collector, PolicyCollector(lambda: self.policy.engine)], port, host)


def inference_partitions(settings: KafkaSettings) -> int:
    states = verify_topics(settings)
    names = [t.full_name(settings.topic_prefix) for t in TOPICS if t.co_partitioned]
    missing = [n for n in names if n not in states]
    if missing:
        raise TopicLayoutError(f"missing input topics {', '.join(missing)}: run `shadowcanary topics create`")
    return states[names[0]].partitions


def prepare_state_dir(state_dir: Path, table_dir: Path) -> list[str]:
    """Create the folder; after an unclean stop, drop the local table state in ``table_dir`` (the
    app's ``conf.tabledir``, inside ``state_dir``): the tables are rebuilt from their changelogs."""
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


def build_evaluator(settings: KafkaSettings, options: AppOptions, join_config: JoinConfig,
                    state_dir: Path, metrics_config: MetricsConfig = MetricsConfig(),
                    signer: Signer | None = None) -> Evaluator:
    partitions = inference_partitions(settings)
    topics = Topics(settings.topic_prefix)
    # One partition: one owner (the merger) reads every partition's partials in order.
    ensure_internal_topic(admin_client(settings), partials_topic_name(topics), partitions=1, compacted=True)
    options.data_dir = str(state_dir)
    app = create_app(settings, options)
    notes = prepare_state_dir(state_dir, Path(app.conf.tabledir))
    app.conf.topic_partitions = partitions
    join = JoinWorker(app, topics, join_config, partitions, options, metrics=metrics_config)
    merger = MergerService(settings, topics, partials_topic_name(topics), options.app_id, metrics_config,
                           join_config.settle_ms, partitions)
    collector = EvaluatorCollector(merger.totals, join.lag, lambda: merger.owner, metrics_config, merger.drift)
    ensure_internal_topic(admin_client(settings), rollouts_topic_name(topics), partitions=1, compacted=True)
    policy = PolicyService(settings, topics, options.app_id, merger, signer)
    loop, loop_thread = app.loop, threading.current_thread()  # the loop the worker will run, here
    progress = ProgressLog(lambda: join.events_processed, join.lag, lambda: merger.owner, lambda: policy.engine,
                           services=(merger, policy), unstarted=join.unstarted,
                           where=lambda: event_loop_state(loop, loop_thread))
    return Evaluator(app, join, merger, collector, policy, progress, state_dir, notes)

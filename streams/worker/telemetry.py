"""Prometheus metrics of the worker (prometheus-client), named by Prometheus conventions:
``shadowcanary_`` prefix, base units, ``_total`` counters, never a request id as a label."""

from __future__ import annotations

from prometheus_client import Counter

from evaluators.stage_clock import WORKER_STAGES

DEAD_LETTERS = Counter(
    "shadowcanary_dead_letters",
    "Records sent to the dead-letter topic because they could not be decoded or validated.",
    ["topic", "reason"],
)

RECORDS_INGESTED = Counter(
    "shadowcanary_records_ingested",
    "Records decoded and validated from an input topic.",
    ["topic"],
)

WINDOWS_PUBLISHED = Counter(
    "shadowcanary_windows_published",
    "Closed metric windows published on evaluator.metrics by this worker (as the merging owner).",
)

DRIFT_ALERTS = Counter(
    "shadowcanary_drift_alerts",
    "Drift alerts published on evaluator.alerts by this worker (as the merging owner), by status.",
    ["status"],
)

DECISIONS = Counter(
    "shadowcanary_rollout_decisions",
    "Rollout decisions published on rollout.decisions by this worker (as the policy owner), by action.",
    ["model", "action"],
)

COMMANDS_REFUSED = Counter(
    "shadowcanary_commands_refused",
    "Commands read back from rollout.control that the policy owner ignored: a signing key is set and "
    "their signature is missing or bad.",
)

CONTROL_RECORDS_REFUSED = Counter(
    "shadowcanary_control_records_refused",
    "Records on rollout.specs and rollout.control the policy owner refused (they changed nothing), "
    "by topic and reason; each is also an alert on evaluator.alerts and a dead letter on evaluator.dlq.",
    ["topic", "reason"],
)

STAGE_SECONDS = Counter(
    "shadowcanary_worker_stage_seconds",
    "Seconds the worker's loop spent in each stage of its batches (" + ", ".join(WORKER_STAGES) + "), each "
    "second charged once: divided by shadowcanary_records_ingested_total, where the time per event goes.",
    ["stage"],
)

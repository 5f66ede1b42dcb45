"""``shadowcanary evaluate``: run one evaluator worker (run several to share the partitions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from evaluators.drift.config import DriftConfig
from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from streams.cli.context import Context, configure_logging, duration, pass_context, stop_on_signals
from streams.kafka.local_broker import local_root
from streams.worker import DEFAULT_BATCH_SIZE

_DRIFT = DriftConfig()  # the defaults of the --drift-* options


def _window(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """A metric window size: a duration of at least one second."""
    seconds = duration(ctx, param, value)
    if seconds < 1:
        raise click.BadParameter("must be at least 1s")
    return seconds


def _tasks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    from schemas.metric_names import TASKS

    out = {}
    for value in values:
        model, sep, task = value.partition("=")
        if not sep or not model:
            raise click.BadParameter(f"expected MODEL=TASK, got {value!r}")
        if task not in TASKS:
            raise click.BadParameter(f"unknown task {task!r} for model {model!r} (one of {', '.join(TASKS)})")
        out[model] = task
    return out


def _label_maps(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``MODEL=string``, ``MODEL=number`` or ``MODEL={"fraud": 1, "legit": 0}`` (a JSON object)."""
    from evaluators.metrics.version import parse_label_map

    out: dict[str, Any] = {}
    for value in values:
        model, sep, mapping = value.partition("=")
        if not sep or not model:
            raise click.BadParameter(f"expected MODEL=MAP, got {value!r}")
        try:
            out[model] = parse_label_map(mapping)
        except ValueError as exc:
            raise click.BadParameter(f"the map of model {model!r} is {exc}") from None
    return out


def _segments(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """``MODEL=ATTRIBUTE[:CAP][,ATTRIBUTE[:CAP]...]``, repeatable."""
    from evaluators.segments import parse_segments

    out: dict[str, dict[str, int]] = {}
    for value in values:
        try:
            model, caps = parse_segments(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        out[model] = caps
    return out


SEGMENTS_HELP = ("Slice a model's metrics by request attributes, for rollout specs' per_segment guardrails and the "
                 "segment metrics: MODEL=ATTRIBUTE[:CAP][,...] (MODEL * for every model not named; CAP: the most "
                 "distinct values each partition keeps apart, default 20, the rest counted as 'other'); repeatable.")

LABEL_MAP_HELP = ("Map a model's labels before they are compared with its predictions: MODEL=string, "
                  "MODEL=number, or MODEL={\"fraud\": 1, \"legit\": 0}; repeatable.")


@click.command()
@click.option("--app-id", default="shadowcanary-evaluator", show_default=True,
              help="Consumer group and table namespace; workers with the same id share the work.")
@click.option("--store", type=click.Choice(["rocksdb", "memory"]), default="rocksdb", show_default=True,
              help="Local table store (state is always backed by changelog topics).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for local state (default .shadowcanary/evaluator/<app-id>).")
@click.option("--label-timeout", default="7d", show_default=True, callback=duration,
              help="Labels later than this after the response are late; unlabelled responses expire.")
@click.option("--expiry-grace", default="10m", show_default=True, callback=duration,
              help="Extra event time before a response expires (tolerated disorder between topics).")
@click.option("--idle-after", default="5s", show_default=True, callback=duration,
              help="Silence after which an input partition read to its end stops holding time back.")
@click.option("--max-clock-skew", default="5m", show_default=True, callback=duration,
              help="How far ahead of this worker's clock an event may move its partition's time; events "
                   "stamped later are counted (shadowcanary_future_events_total) and alerted on.")
@click.option("--window", default="60s", show_default=True, callback=_window,
              help="Size of the event-time tumbling windows published on evaluator.metrics.")
@click.option("--task", "tasks", multiple=True, callback=_tasks, metavar="MODEL=TASK",
              help="A model's task (binary, multiclass, regression, ranking); repeatable. Without it, "
                   "the task is inferred from each prediction's JSON type.")
@click.option("--label-map", "label_maps", multiple=True, callback=_label_maps, metavar="MODEL=MAP",
              help=LABEL_MAP_HELP)
@click.option("--segments", multiple=True, callback=_segments, metavar="MODEL=ATTRIBUTE[:CAP],...",
              help=SEGMENTS_HELP)
@click.option("--ranking-k", "ks", multiple=True, type=click.IntRange(1, 1000), default=(5, 10),
              show_default=True, help="k of precision@k, recall@k and NDCG@k; repeatable.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9464, show_default=True,
              help="Port of the Prometheus endpoint (0: none).")
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="Address it listens on.")
@click.option("--drift-alpha", type=click.FloatRange(0, 0.5, min_open=True), default=_DRIFT.alpha, show_default=True,
              help="Largest chance that a closed window falsely flags one feature of a version as drifted.")
@click.option("--drift-confirm-windows", type=click.IntRange(1, 100), default=_DRIFT.confirm_windows, show_default=True,
              help="Flagged windows in a row before a drift alert fires.")
@click.option("--drift-reference-windows", type=click.IntRange(1, 10_000), default=_DRIFT.reference_windows,
              show_default=True,
              help="A version's first windows with data that make its pinned drift reference.")
@click.option("--drift-min-samples", type=click.IntRange(1), default=_DRIFT.min_samples, show_default=True,
              help="Values a window needs (each side) before drift is judged on it.")
@click.option("--drift-cooldown", default=f"{_DRIFT.cooldown_ms // 1000}s", show_default=True, callback=duration,
              help="No second drift alert for one feature of a version within this long.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Most records in one batch (one transaction). Under load batches fill, and each commit's "
                   "round trips are shared by more records; a quiet stream makes small batches.")
@click.option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", metavar="URI",
              help="An MLflow tracking server: rollouts whose spec names a registered model get its versions' "
                   "metadata in their decisions, and their outcome written back (alias, tags). Env "
                   "MLFLOW_TRACKING_URI; needs the mlflow package.")
@click.option("--time-state", is_flag=True,
              help="Also time every state read and write (about 1 µs an event): "
                   "shadowcanary_worker_stage_seconds_total then has 'state read' and 'state write' apart "
                   "from 'join' and 'metrics'.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
@pass_context
def evaluate(ctx: Context, app_id: str, store: str, state_dir: Path | None, label_timeout: float,
             expiry_grace: float, idle_after: float, max_clock_skew: float, window: float, tasks: dict[str, str],
             label_maps: dict[str, Any], segments: dict[str, dict[str, int]], ks: tuple[int, ...],
             metrics_port: int, metrics_host: str, drift_alpha: float, drift_confirm_windows: int,
             drift_reference_windows: int, drift_min_samples: int, drift_cooldown: float, batch_size: int,
             mlflow_uri: str | None, time_state: bool, loglevel: str) -> None:
    """Run an evaluator worker until Ctrl-C (or SIGTERM) stops it cleanly."""
    from streams.worker.evaluator import build_evaluator
    from streams.worker.loop import LoopOptions

    if store == "rocksdb":
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            raise click.UsageError("--store rocksdb needs the rocksdict package (pip install rocksdict); "
                                   "or use --store memory") from None
    configure_logging(loglevel)
    state_dir = state_dir or local_root() / "evaluator" / app_id
    options = LoopOptions(app_id=app_id, batch_size=batch_size)
    config = JoinConfig(label_timeout_ms=int(label_timeout * 1000), expiry_grace_ms=int(expiry_grace * 1000),
                        idle_after_ms=int(idle_after * 1000), max_future_skew_ms=int(max_clock_skew * 1000))
    drift = DriftConfig(alpha=drift_alpha, confirm_windows=drift_confirm_windows,
                        reference_windows=drift_reference_windows, min_samples=drift_min_samples,
                        cooldown_ms=int(drift_cooldown * 1000))
    metrics = MetricsConfig(tasks=tasks, ks=tuple(sorted(set(ks))), window_ms=int(window * 1000),
                            label_maps=label_maps, segments=segments)
    if mlflow_uri:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise click.UsageError("--mlflow-uri needs the mlflow package (pip install mlflow-skinny)") from None
    evaluator = build_evaluator(ctx.settings, options, config, state_dir, metrics, ctx.signer,
                                in_memory=store == "memory", registry_uri=mlflow_uri, time_state=time_state,
                                drift_config=drift)
    if metrics_port:
        evaluator.serve_metrics(metrics_port, metrics_host)
        click.echo(f"Prometheus metrics on http://{metrics_host}:{metrics_port}/metrics", err=True)
    for note in evaluator.notes:
        click.echo(note, err=True)
    click.echo(f"evaluator {app_id} (run {evaluator.join.run_id}) on {ctx.settings.bootstrap_servers}, "
               f"state in {state_dir}", err=True)
    evaluator.run(stop_on_signals())  # a refusal (ClusterMisconfigured) names the settings; cli.main prints it

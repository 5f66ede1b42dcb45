"""``shadowcanary record`` and ``shadowcanary replay``: traffic to files, and the evaluator over them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from schemas.types import epoch_ms
from streams.cli.context import Context, duration, pass_context
from streams.cli.evaluate import LABEL_MAP_HELP, SEGMENTS_HELP, _label_maps, _segments, _tasks, _window
from streams.kafka.local_broker import local_root

INPUTS = ("requests", "responses", "labels")


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time such as 2026-11-20T08:00:00Z, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return epoch_ms(moment)


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for inference.requests.jsonl, inference.responses.jsonl, inference.labels.jsonl.")
@click.option("--since", callback=_time, default=None, help="Only records from this time on (record timestamp).")
@click.option("--until", callback=_time, default=None, help="Only events before this time (event time).")
@pass_context
def record(ctx: Context, out_dir: Path, since: int | None, until: int | None) -> None:
    """Copy the three inference topics to JSON Lines files, in event-time order."""
    from rich.console import Console

    from schemas.topics import Topics
    from streams.ingest.event_files import write_events
    from streams.kafka.reading import read_to_end

    console = Console(stderr=True)
    topics = Topics(ctx.settings.topic_prefix)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in INPUTS:
        topic = getattr(topics, name)
        with console.status(f"reading {topic} ..."):
            messages, _ = read_to_end(ctx.settings, topic, since_ms=since, timeout=600)
        path = out_dir / f"inference.{name}.jsonl"
        written = write_events(path, [m.value() for m in messages if m.value()], until_ms=until)
        console.print(f"{topic}: {written:,} events -> {path}")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--spec", "spec_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A rollout spec (YAML) to judge, starting at the first event; repeatable.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the outputs go (default .shadowcanary/replay/<time>).")
@click.option("--window", default="60s", show_default=True, callback=_window, help="Metric window size.")
@click.option("--label-timeout", default="7d", show_default=True, callback=duration)
@click.option("--expiry-grace", default="10m", show_default=True, callback=duration)
@click.option("--max-clock-skew", default="5m", show_default=True, callback=duration,
              help="How far ahead of the simulated clock (each batch's median event time) an event may "
                   "move time; as the worker's --max-clock-skew.")
@click.option("--task", "tasks", multiple=True, callback=_tasks, metavar="MODEL=TASK")
@click.option("--label-map", "label_maps", multiple=True, callback=_label_maps, metavar="MODEL=MAP",
              help=LABEL_MAP_HELP)
@click.option("--segments", multiple=True, callback=_segments, metavar="MODEL=ATTRIBUTE[:CAP],...",
              help=SEGMENTS_HELP + " The specs' segments are kept without it.")
@click.option("--sweep", "sweep", multiple=True, metavar="NAME=V1,V2",
              help="Replay once per combination (alpha, bake.min_samples, guardrails.0.max_degradation, ...) "
                   "and print when each would have rolled back or promoted.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write the HTML report.")
@pass_context
def replay(ctx: Context, files: tuple[Path, ...], spec_files: tuple[Path, ...], out_dir: Path | None,
           window: float, label_timeout: float, expiry_grace: float, max_clock_skew: float, tasks: dict[str, str],
           label_maps: dict, segments: dict[str, dict[str, int]], sweep: tuple[str, ...], report: bool) -> None:
    """Run the evaluator (join, metrics, drift, policy) over recorded events, without a broker."""
    from pydantic import ValidationError
    from rich.console import Console

    from evaluators.join import JoinConfig
    from evaluators.metrics import MetricsConfig
    from evaluators.sweep import apply_setting, parse_sweep
    from schemas.spec_yaml import load_spec_file

    console = Console(stderr=True)
    specs = [load_spec_file(path) for path in spec_files]
    join_config = JoinConfig(label_timeout_ms=int(label_timeout * 1000), expiry_grace_ms=int(expiry_grace * 1000),
                             max_future_skew_ms=int(max_clock_skew * 1000))
    metrics = MetricsConfig(tasks=tasks, window_ms=int(window * 1000), label_maps=label_maps, segments=segments)
    if sweep:
        if not specs:
            raise click.UsageError("--sweep needs at least one --spec")
        try:
            grid = parse_sweep(list(sweep))
            settings = [(s, [apply_setting(spec, s) for spec in specs]) for s in grid]
        except (ValueError, KeyError, IndexError, ValidationError) as exc:
            raise click.BadParameter(str(exc), param_hint="'--sweep'") from None
        _sweep(console, files, settings, join_config, metrics)
        return
    out_dir = out_dir or local_root() / "replay" / datetime.now().strftime("%Y%m%d-%H%M%S")
    result, reader, seconds = _run(console, files, specs, join_config, metrics, ctx.signer)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, messages in (("snapshots", result.snapshots), ("decisions", result.decisions),
                           ("commands", result.commands), ("alerts", result.alerts)):
        with open(out_dir / f"{name}.jsonl", "wb") as out:
            for message in messages:
                out.write(message.model_dump_json(exclude_none=True).encode() + b"\n")
    for problem in reader.problems[:20]:  # one line each (file:line), unwrapped, for editors and grep
        click.echo(f"skipped {problem}", err=True)
    if len(reader.problems) > 20:
        click.echo(f"... and {len(reader.problems) - 20:,} more", err=True)
    if report and result.commands:
        from streams.report.html import write_report
        write_report(out_dir / "report.html", "ShadowCanary replay", result.commands, result.decisions,
                     result.snapshots, result.alerts, result.shapes)
    console.print(f"{reader.events:,} events in {seconds:.1f}s ({reader.events / max(seconds, 1e-9):,.0f}/s), "
                  f"{len(reader.problems):,} skipped; {len(result.snapshots):,} snapshots, "
                  f"{len(result.decisions):,} decisions, {len(result.commands):,} commands, "
                  f"{len(result.alerts):,} alerts -> {out_dir}")
    for decision in result.decisions:
        click.echo(f"{decision.ts:%Y-%m-%d %H:%M:%S} {decision.model} step {decision.step}: "
                   f"{decision.action}: {decision.reason}")


def _run(console, files, specs, join_config, metrics, signer=None, quiet: bool = False):
    from rich.progress import Progress

    from evaluators.replay import Replay
    from streams.ingest.event_files import EventFiles
    from streams.worker.gc_pace import pace_cycle_collector

    pace_cycle_collector()

    reader = EventFiles(list(files))
    with Progress(console=console, transient=True, disable=quiet) as progress:
        task = progress.add_task("replaying", total=None)
        result = Replay(join_config, metrics, specs=specs, signer=signer,
                        progress=lambda n: progress.advance(task, n))
        started = time.perf_counter()
        result.run(reader)
        seconds = time.perf_counter() - started
    return result, reader, seconds


def _sweep(console, files, settings, join_config, metrics) -> None:
    from rich.console import Console
    from rich.table import Table

    from evaluators.sweep import describe, outcome

    table = Table(title="what each setting would have decided")
    for column in ("setting", "model", "outcome", "decided at"):
        table.add_column(column)
    for setting, specs in settings:
        result, _, _ = _run(console, files, specs, join_config, metrics, quiet=True)
        for spec in specs:
            text, at = outcome(result.decisions, spec.model)
            table.add_row(describe(setting), spec.model, text, f"{at:%Y-%m-%d %H:%M:%S}" if at else "")
    Console(width=max(console.width, 160)).print(table)  # settings are long: never squeeze them

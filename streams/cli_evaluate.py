"""``shadowcanary evaluate``: run one evaluator worker (run several to share the partitions)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from evaluators.join import JoinConfig
from schemas.types import Duration
from streams.app import AppOptions
from streams.cli_context import Context, pass_context
from streams.local_broker import PROJECT_ROOT


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(Duration).validate_python(value)
    except ValidationError:
        raise click.BadParameter(f"expected a duration such as 90s, 15m, 6h or 7d, got {value!r}") from None


@click.command()
@click.option("--app-id", default="shadowcanary-evaluator", show_default=True,
              help="Consumer group and table namespace; workers with the same id share the work.")
@click.option("--store", type=click.Choice(["rocksdb", "memory"]), default="rocksdb", show_default=True,
              help="Local table store (state is always backed by changelog topics).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for local state (default .shadowcanary/evaluator/<app-id>).")
@click.option("--label-timeout", default="7d", show_default=True, callback=_duration,
              help="Labels later than this after the response are late; unlabelled responses expire.")
@click.option("--expiry-grace", default="10m", show_default=True, callback=_duration,
              help="Extra event time before a response expires (tolerated disorder between topics).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000, show_default=True)
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
@pass_context
def evaluate(ctx: Context, app_id: str, store: str, state_dir: Path | None, label_timeout: float,
             expiry_grace: float, batch_size: int, loglevel: str) -> None:
    """Run an evaluator worker until Ctrl-C (or SIGTERM) stops it cleanly."""
    from faust import Worker

    from streams.evaluator import build_evaluator, mark_clean_stop

    if store == "rocksdb":
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            raise click.UsageError("--store rocksdb needs the rocksdict package (pip install rocksdict); "
                                   "or use --store memory") from None
    state_dir = state_dir or PROJECT_ROOT / ".shadowcanary" / "evaluator" / app_id
    options = AppOptions(app_id=app_id, store=f"{store}://", batch_size=batch_size)
    config = JoinConfig(label_timeout_ms=int(label_timeout * 1000), expiry_grace_ms=int(expiry_grace * 1000))
    evaluator = build_evaluator(ctx.settings, options, config, state_dir)
    for note in evaluator.notes:
        click.echo(note, err=True)
    click.echo(f"evaluator {app_id} (run {evaluator.join.run_id}) on {ctx.settings.bootstrap_servers}, "
               f"state in {state_dir}", err=True)
    logging.getLogger("shadowcanary").setLevel(loglevel.upper())
    worker = Worker(evaluator.app, loglevel=loglevel.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    # Only a normal return is a clean stop (its changelogs were flushed); anything else keeps the mark.
    mark_clean_stop(state_dir)

"""``shadowcanary report --model M [--rollout ID]``: the HTML rollout report of a real rollout, read
from the live topics (``rollout.control``, ``rollout.decisions``, ``evaluator.metrics``,
``evaluator.alerts``): the same report the demo and ``replay`` write."""

from __future__ import annotations

from pathlib import Path

import click

from schemas.codec import DecodeError, decode
from schemas.control import Decision, RoutingCommand
from schemas.monitoring import Alert, MetricsSnapshot
from schemas.topics import Topics
from streams.cli.context import Context, pass_context
from streams.kafka.settings import KafkaSettings


def _read(settings: KafkaSettings, topic: str, kind: type, model: str) -> list:
    """Every record of ``topic`` for ``model`` that decodes (the evaluator wrote them; others are skipped)."""
    from streams.kafka.reading import read_to_end

    records, _ = read_to_end(settings, topic)
    out = []
    for record in records:
        try:
            message = decode(kind, record.value())
        except DecodeError:
            continue
        if message.model == model:
            out.append(message)
    return out


def live_report(settings: KafkaSettings, model: str, rollout_id: str | None = None) -> tuple[str, str, dict[str, int]]:
    """``(rollout id, HTML, counts)`` of ``model``'s rollout (the latest by default) from the live
    topics; ``LookupError`` when there is none."""
    from streams.report.html import render_report

    topics = Topics(settings.topic_prefix)
    commands = _read(settings, topics.control, RoutingCommand, model)
    decisions = _read(settings, topics.decisions, Decision, model)
    if not commands:
        raise LookupError(f"no command for {model} on {topics.control}: no rollout to report")
    chosen = rollout_id or next((c.rollout_id for c in reversed(commands) if c.rollout_id), None)
    commands = [c for c in commands if c.rollout_id == chosen]
    decisions = [d for d in decisions if d.rollout_id == chosen]
    if not commands:
        raise LookupError(f"no command of rollout {chosen!r} for {model} on {topics.control}")
    times = [c.issued_at for c in commands] + [d.ts for d in decisions]
    begin, end = min(times), max(times)
    snapshots = [s for s in _read(settings, topics.metrics, MetricsSnapshot, model) if s.window.end >= begin]
    alerts = [a for a in _read(settings, topics.alerts, Alert, model) if begin <= a.ts <= end]
    document = render_report(f"ShadowCanary rollout {chosen}: {model}", commands, decisions, snapshots, alerts)
    return chosen, document, {"commands": len(commands), "decisions": len(decisions), "windows": len(snapshots),
                              "alerts": len(alerts)}


@click.command()
@click.option("--model", required=True, help="The model whose rollout to report.")
@click.option("--rollout", "rollout_id", help="The rollout (its id, as decisions carry it); default: the latest.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="Where to write the HTML file.")
@pass_context
def report(ctx: Context, model: str, rollout_id: str | None, out: Path) -> None:
    """Write the HTML report of MODEL's rollout from the live topics: traffic split, each guardrail
    per version with the bounds of every decision, metric windows, alerts."""
    try:
        chosen, document, counts = live_report(ctx.settings, model, rollout_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    click.echo(f"{out}: {counts['commands']} commands, {counts['decisions']} decisions, {counts['windows']} metric "
               f"windows, {counts['alerts']} alerts of rollout {chosen}")

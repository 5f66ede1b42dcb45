"""``shadowcanary topics create|verify|list``: the contract's topics on the configured cluster."""

from __future__ import annotations

import click

from schemas.topics import TOPICS
from streams.cli.context import Context, pass_context
from streams.kafka.admin import TopicLayout, create_topics, verify_topics


@click.group()
def topics() -> None:
    """Create and check the topics of the wire contract."""


@topics.command()
@click.option("--partitions", type=click.IntRange(1, 10_000), default=6, show_default=True,
              help="Partitions of the three co-partitioned inference.* topics.")
@click.option("--evaluator-partitions", type=click.IntRange(1, 10_000), default=3, show_default=True,
              help="Partitions of evaluator.metrics, evaluator.alerts and evaluator.dlq.")
@click.option("--control-partitions", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="Partitions of the rollout.* topics (keyed by model).")
@click.option("--replication-factor", type=click.IntRange(1, 100), default=1, show_default=True)
@pass_context
def create(ctx: Context, partitions: int, evaluator_partitions: int, control_partitions: int,
           replication_factor: int) -> None:
    """Create every missing topic; check the existing ones (idempotent)."""
    layout = TopicLayout(partitions, evaluator_partitions, control_partitions, replication_factor)
    created, existing = create_topics(ctx.settings, layout)
    for name in created:
        click.echo(f"created {name}")
    for name in existing:
        click.echo(f"exists  {name}")
    click.echo(f"{len(created) + len(existing)} topics ready on {ctx.settings.bootstrap_servers}")


@topics.command()
@pass_context
def verify(ctx: Context) -> None:
    """Check co-partitioning and cleanup policies of the existing topics."""
    states = verify_topics(ctx.settings)
    missing = [t.full_name(ctx.settings.topic_prefix) for t in TOPICS
               if t.full_name(ctx.settings.topic_prefix) not in states]
    for state in states.values():
        click.echo(f"ok      {state.name}: {state.partitions} partitions, cleanup.policy={state.cleanup_policy}")
    for name in missing:
        click.echo(f"missing {name}")
    if missing:
        raise click.exceptions.Exit(1)

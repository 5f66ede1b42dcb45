"""``shadowcanary broker up|down|status``: the local single-node KRaft broker."""

from __future__ import annotations

import os
from pathlib import Path

import click

from streams.kafka.local_broker import LocalBroker

BROKER_PORT_ENV = "SHADOWCANARY_BROKER_PORT"


def local_broker(port: int | None = None, home: Path | None = None) -> LocalBroker:
    port = port or int(os.environ.get(BROKER_PORT_ENV, "9092"))
    return LocalBroker(home or LocalBroker.default_home(), port=port)


_port = click.option("--port", type=click.IntRange(1024, 65534), default=None,
                     help=f"Client port on 127.0.0.1 (default 9092, env {BROKER_PORT_ENV}); "
                          "the controller uses the next one.")
_home = click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder for the broker's data, config and log (default .shadowcanary/broker).")


@click.group()
def broker() -> None:
    """Run a local Kafka broker (KRaft, from Apache Kafka's jars) for the demo and tests."""


@broker.command()
@_port
@_home
def up(port: int | None, home: Path | None) -> None:
    """Start the broker (formats storage on first start); harmless when it already runs."""
    instance = local_broker(port, home)
    was_running = instance.status().running
    status = instance.up()
    click.echo(("already " if was_running else "") + status.describe())


@broker.command()
@click.option("--purge", is_flag=True, help="Also delete the broker's data folder.")
@_home
def down(purge: bool, home: Path | None) -> None:
    """Stop the broker cleanly."""
    click.echo(local_broker(None, home).down(purge=purge))


@broker.command()
@_home
def status(home: Path | None) -> None:
    """Say whether the broker runs, where, and where its files are."""
    click.echo(local_broker(None, home).status().describe())

"""The ``shadowcanary`` command line.

Every expected failure (bad settings, unreachable Kafka, a port in use, no Java) ends with one line
``error: ...`` on stderr and exit status 1; a bad flag ends with click's usage message (status 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.cli.actuate import actuate
from streams.cli.api import api
from streams.cli.broker import broker
from streams.cli.context import Context
from streams.cli.demo import demo
from streams.cli.evaluate import evaluate
from streams.cli.ingest import ingest
from streams.cli.keys import keys
from streams.cli.labels import labels
from streams.cli.replay import record, replay
from streams.cli.report import report
from streams.cli.rollout import rollout
from streams.cli.schemas import schemas
from streams.cli.sidecar import sidecar
from streams.cli.topics import topics
from streams.errors import ShadowCanaryError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file with a 'kafka:' section (env SHADOWCANARY_CONFIG).")
@click.option("--bootstrap", "bootstrap_servers", metavar="HOST:PORT[,...]",
              help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP).")
@click.option("--topic-prefix", help="Prefix of every topic name (env SHADOWCANARY_TOPIC_PREFIX).")
@click.option("--signing-key", type=click.Path(dir_okay=False, path_type=Path), envvar="SHADOWCANARY_SIGNING_KEY",
              help="Sign routing commands with this key: an Ed25519 private key (PEM) or an HMAC secret "
                   "file (env SHADOWCANARY_SIGNING_KEY; see 'keys generate').")
@click.version_option(package_name="shadowcanary")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, bootstrap_servers: str | None,
        topic_prefix: str | None, signing_key: Path | None) -> None:
    """ShadowCanary: decide, on evidence, whether a new model version is safe to roll out."""
    ctx.obj = Context({"bootstrap_servers": bootstrap_servers, "topic_prefix": topic_prefix}, config_file,
                      signing_key)


for command in (broker, topics, schemas, evaluate, ingest, rollout, keys, labels, sidecar, actuate, api, report, demo,
                record, replay):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        status = cli.main(args=argv, prog_name="shadowcanary", standalone_mode=False)
    except ShadowCanaryError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())

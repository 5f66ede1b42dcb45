"""``shadowcanary keys generate``: a key for signing routing commands."""

from __future__ import annotations

from pathlib import Path

import click

from schemas.signing import SigningKeyError, generate_key
from streams.errors import ShadowCanaryError


@click.group()
def keys() -> None:
    """Keys that sign routing commands (the evaluator and the CLI) and that routers verify them with."""


@keys.command()
@click.option("--kind", type=click.Choice(["ed25519", "hmac"]), default="ed25519", show_default=True,
              help="ed25519: a key pair, routers hold only the public half; hmac: one shared secret.")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def generate(kind: str, path: Path) -> None:
    """Write a new key to PATH (and PATH.pub for ed25519); never overwrites a file."""
    try:
        written = generate_key(kind, path)
    except FileExistsError:
        raise ShadowCanaryError(f"{path}: already exists; not overwritten") from None
    except (SigningKeyError, OSError) as exc:
        raise ShadowCanaryError(f"{path}: {exc}") from None
    click.echo(f"signing key: {written[0]} (give it to the evaluator and the CLI: --signing-key)")
    if len(written) > 1:
        click.echo(f"verify key:  {written[1]} (give it to routers)")
    else:
        click.echo("the same file verifies: give it to routers too, over a secure channel")

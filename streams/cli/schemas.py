"""``shadowcanary schemas export``: regenerate the JSON Schemas and the AsyncAPI document."""

from __future__ import annotations

import click

from schemas.export import export as export_artifacts
from schemas.export import generated_files


@click.group()
def schemas() -> None:
    """The wire contract's generated artifacts."""


@schemas.command()
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the committed files are stale.")
def export(check: bool) -> None:
    """Write schemas/json/*.schema.json, schemas/asyncapi.yaml and docs/contract.md from the models."""
    stale = export_artifacts(check=check)
    if check:
        for path in stale:
            click.echo(f"stale {path}")
        if stale:
            raise click.exceptions.Exit(1)
        click.echo(f"{len(generated_files())} generated files are up to date")
        return
    for path in generated_files():
        click.echo(("updated   " if path in stale else "unchanged ") + str(path))

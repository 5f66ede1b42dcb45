"""``shadowcanary labels load``: publish a file of labels (CSV or JSON Lines) as ``GroundTruth``
events on ``inference.labels``, keyed by request id (murmur2, as the contract requires)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from schemas.topics import Topics
from streams.cli.context import Context, key_value_pairs, pass_context
from streams.ingest.label_files import LabelColumns, check_columns, publish_labels

#: Bad rows listed one by one; past that only counted.
SHOWN_BAD_ROWS = 20


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


@click.group()
def labels() -> None:
    """Ground truth from files."""


@labels.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id-column", required=True, help="Column (CSV) or field (JSON Lines) holding the request id.")
@click.option("--label-column", help="Column holding the label (a row may carry outcomes only).")
@click.option("--model", help="Every row's model.")
@click.option("--model-column", help="Column holding each row's model (instead of --model).")
@click.option("--ts-column", help="Column holding the label's time: epoch ms or ISO 8601 (default: now).")
@click.option("--outcome", "outcomes", multiple=True, metavar="NAME=COLUMN",
              callback=key_value_pairs("NAME=COLUMN (the KPI's name and the column holding it)"),
              help="A business outcome and the column holding it (repeatable), e.g. converted=did_buy.")
@click.option("--label-type", type=click.Choice(["auto", "string", "number", "json"]), default="auto",
              show_default=True, help="How a CSV cell becomes a label: auto takes JSON (1, true, [..]) as JSON.")
@click.option("--dry-run", is_flag=True, help="Read and check every row; publish nothing.")
@pass_context
def load(ctx: Context, path: Path, id_column: str, label_column: str | None, model: str | None,
         model_column: str | None, ts_column: str | None, outcomes: dict[str, str], label_type: str,
         dry_run: bool) -> None:
    """Publish the labels in PATH (.csv or .jsonl). Rows that are no label are reported by line and
    skipped; the exit code is 1 when any was, 0 when every row was published."""
    if (model is None) == (model_column is None):
        raise click.UsageError("give --model (every row's model) or --model-column, one of them")
    if label_column is None and not outcomes:
        raise click.UsageError("give --label-column, --outcome NAME=COLUMN, or both")
    columns = LabelColumns(id=id_column, label=label_column, model=model, model_column=model_column,
                           ts_column=ts_column, outcomes=outcomes, label_type=label_type)
    try:
        check_columns(path, columns)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    producer = topic = None
    if not dry_run:
        from streams.kafka.producer import ContractProducer

        producer = ContractProducer(ctx.settings)
        topic = Topics(ctx.settings.topic_prefix).labels
    started = time.perf_counter()
    with click.progressbar(length=_lines(path), label=f"{'checking' if dry_run else 'loading'} {path.name}",
                           file=click.get_text_stream("stderr")) as bar:
        published, bad = publish_labels(path, columns, producer, topic, progress=bar.update)
        bar.update(bar.length - bar.pos)
    elapsed = time.perf_counter() - started
    verb = "would publish" if dry_run else "published"
    click.echo(f"{path}: {verb} {published:,} labels, skipped {len(bad):,} rows "
               f"({(published + len(bad)) / max(elapsed, 1e-9):,.0f} rows/s)")
    for row in bad[:SHOWN_BAD_ROWS]:
        click.echo(f"  line {row.line}: {row.reason}", err=True)
    if len(bad) > SHOWN_BAD_ROWS:
        click.echo(f"  ... and {len(bad) - SHOWN_BAD_ROWS:,} more", err=True)
    if bad:
        raise SystemExit(1)

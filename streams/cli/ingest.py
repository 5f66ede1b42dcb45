"""``shadowcanary ingest kserve|seldon|json``: a serving tool's log topics to the contract's
requests and responses, exactly once (see :mod:`streams.ingest.bridge`); ``--try`` translates records
written down in a file, without a broker."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from streams.cli.context import Context, configure_logging, pass_context, stop_on_signals


def _load_mapping(path: Path, source: str):
    from schemas.ingest import IngestMapping
    from schemas.spec_yaml import SpecError, load_yaml_model, read_text_file

    try:
        mapping = load_yaml_model(read_text_file(path), str(path), IngestMapping,
                                  "a mapping of ingest fields (versions, outputs, ...)", defaults={"source": source})
    except SpecError as exc:
        raise click.BadParameter("\n".join(exc.messages), param_hint="--mapping") from None
    if mapping.source != source:
        raise click.BadParameter(f"{path}: source: the mapping is for {mapping.source}, not {source}",
                                 param_hint="--mapping")
    return mapping


def _try(mapping, path: Path) -> None:
    """Translate the records written down in ``path``; one JSON line per event or dead letter."""
    from evaluators.ingest.errors import BadRecord
    from evaluators.ingest.samples import SampleError, read_records
    from evaluators.ingest.translate import Translator
    from schemas.codec import encode

    translator = Translator(mapping)
    events = bad = 0
    try:
        with path.open("rb") as lines:
            for number, record in enumerate(read_records(lines), 1):
                try:
                    translated = translator.translate(record)
                except BadRecord as exc:
                    bad += 1
                    click.echo(orjson.dumps({"record": number, "dead_letter": {"reason": exc.reason,
                                                                                "error": exc.detail}}))
                    continue
                for event in translated:
                    events += 1
                    click.echo(orjson.dumps({"record": number, "topic": f"inference.{event.kind}s",
                                             "event": orjson.loads(encode(event))}))
    except SampleError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--try") from None
    except OSError as exc:
        raise click.BadParameter(f"{path}: cannot read ({exc.strerror})", param_hint="--try") from None
    click.echo(f"{events} events, {bad} dead letters", err=True)
    sys.exit(1 if bad else 0)


@click.command()
@click.argument("source", type=click.Choice(["kserve", "seldon", "json"]))
@click.option("--mapping", "mapping_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The mapping (YAML): versions, outputs, features, ... (see docs/ingest.md).")
@click.option("--topic", "input_topics", multiple=True, metavar="TOPIC",
              help="A log topic to read (repeatable; a name starting with ^ is a regular expression, e.g. "
                   "'^seldon\\.prod\\.model\\..*').")
@click.option("--app-id", default=None, help="Consumer group and transactional id prefix (default "
                                              "shadowcanary-ingest-SOURCE); bridges of one group share the partitions.")
@click.option("--instance-id", default=None,
              help="Stable id of this bridge (a restarted one fences its predecessor at once); default random.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Records per transaction at most.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve Prometheus metrics on this port (0: off).")
@click.option("--try", "try_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Translate the records written down in this JSON-lines file and print the events; no broker.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@pass_context
def ingest(ctx: Context, source: str, mapping_path: Path, input_topics: tuple[str, ...], app_id: str | None,
           instance_id: str | None, batch_size: int, metrics_port: int, try_path: Path | None, loglevel: str) -> None:
    """Read a serving tool's log topics (KServe's payload logger CloudEvents, Seldon Core 2's model
    topics, or any JSON log) and publish the contract's requests and responses until Ctrl-C."""
    mapping = _load_mapping(mapping_path, source)
    if try_path is not None:
        _try(mapping, try_path)
        return
    if not input_topics:
        raise click.UsageError("give the log topics to read with --topic (or --try FILE to try the mapping)")
    if source == "seldon":
        from evaluators.ingest.translate import SELDON_TOPIC

        wrong = [t for t in input_topics if not t.startswith("^") and not SELDON_TOPIC.match(t)]
        if wrong:
            raise click.BadParameter(f"{', '.join(wrong)}: not Seldon model topics "
                                     f"(<prefix>.<namespace>.model.<model>.inputs|outputs)", param_hint="--topic")
    from streams.ingest.bridge import build_bridge
    from streams.worker.exporter import serve

    configure_logging(loglevel)
    app_id = app_id or f"shadowcanary-ingest-{source}"
    loop = build_bridge(ctx.settings, mapping, input_topics, app_id, instance_id, batch_size)
    if metrics_port:
        serve([], metrics_port, "0.0.0.0")
        click.echo(f"Prometheus metrics on http://0.0.0.0:{metrics_port}/metrics", err=True)
    click.echo(f"ingest {source} ({app_id}, instance {loop.options.worker_id}): {', '.join(input_topics)} -> "
               f"{loop.topics.requests}, {loop.topics.responses} on {ctx.settings.bootstrap_servers}", err=True)
    loop.run(stop_on_signals())
    click.echo(loop.stage.progress_line("ingest stopped"), err=True)

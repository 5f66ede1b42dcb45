"""``shadowcanary sidecar``: the router and the inference logger over HTTP, for services in any
language (see :mod:`streams.serving.sidecar`)."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli.context import Context, key_value_pairs, pass_context, wait_until_stopped
from streams.serving.sidecar import DEFAULT_PORT


def _cohorts(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    cohorts: dict[str, dict[str, str]] = {}
    for value in values:
        model, sep, condition = value.partition(":")
        attribute, eq, wanted = condition.partition("=")
        if not sep or not eq or not model or not attribute:
            raise click.BadParameter(f"{value!r}: give MODEL:ATTRIBUTE=VALUE (only such requests get a canary)")
        cohorts.setdefault(model, {})[attribute] = wanted
    return cohorts


@click.command()
@click.option("--baseline", "baselines", multiple=True, required=True, metavar="MODEL=VERSION",
              callback=key_value_pairs("MODEL=VERSION (who serves before any command)"),
              help="The version that serves a model before any command is read (repeatable).")
@click.option("--verify-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Obey only commands signed by this key (an Ed25519 public key PEM or the HMAC secret file).")
@click.option("--cohort", "cohorts", multiple=True, callback=_cohorts, metavar="MODEL:ATTRIBUTE=VALUE",
              help="Only requests with this attribute get a non-baseline version of MODEL (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free one, printed).")
@pass_context
def sidecar(ctx: Context, baselines: dict[str, str], verify_key: Path | None, cohorts: dict[str, dict[str, str]],
            host: str, port: int) -> None:
    """Serve the router and the inference logger over HTTP/JSON until Ctrl-C (or SIGTERM):
    POST /v1/route, /v1/log/request, /v1/log/response, /v1/log/label; GET /healthz, /metrics."""
    from schemas.signing import SigningKeyError, load_verifier
    from streams.serving.inference_logger import InferenceLogger
    from streams.serving.router import Router
    from streams.serving.sidecar import Sidecar

    try:
        verifier = load_verifier(verify_key) if verify_key else None
    except SigningKeyError as exc:
        raise click.BadParameter(str(exc), param_hint="--verify-key") from None
    router = Router(ctx.settings, baselines, verifier=verifier, cohorts=cohorts or None)
    logger = InferenceLogger(ctx.settings)
    try:
        server = Sidecar(router, logger, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    router.start()
    server.start()
    click.echo(f"sidecar listening on http://{host}:{server.port} (routes from {router.topic})", err=True)
    try:
        wait_until_stopped()
    finally:
        server.stop()
        router.stop()
        undelivered = logger.close(10)
        click.echo(f"sidecar stopped ({undelivered} events not delivered)", err=True)

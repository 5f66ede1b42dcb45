"""``shadowcanary api``: the rollouts over HTTP/JSON, with the verdict endpoints Argo Rollouts and
Flagger ask (see :mod:`streams.serving.api`)."""

from __future__ import annotations

import click

from streams.cli.context import Context, pass_context, wait_until_stopped


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 to serve a cluster's controllers).")
@click.option("--port", type=click.IntRange(0, 65535), default=8788, show_default=True, help="Port to listen on.")
@pass_context
def api(ctx: Context, host: str, port: int) -> None:
    """Serve the rollouts, their decisions and verdicts until Ctrl-C (or SIGTERM): GET /v1/rollouts,
    /v1/rollouts/MODEL, /v1/rollouts/MODEL/decisions, /v1/rollouts/MODEL/verdict (Argo Rollouts' web
    provider); POST /v1/flagger/KIND (Flagger's webhooks); GET /healthz."""
    from schemas.topics import Topics
    from streams.serving.api import RolloutApi, RolloutFeed

    feed = RolloutFeed(ctx.settings, Topics(ctx.settings.topic_prefix))
    try:
        server = RolloutApi(feed, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    feed.start()
    server.http.start()
    click.echo(f"api listening on http://{host}:{server.http.bound_port}", err=True)
    try:
        wait_until_stopped()
    finally:
        server.http.stop()
        feed.stop()

"""``shadowcanary actuate istio|gateway-api|kserve``: follow ``rollout.control`` for one model,
verify each command, and write the resource that puts it in force (see :mod:`evaluators.actuation`)
to a folder or to standard output."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from evaluators.actuation import KINDS, Target, resource_for
from schemas.control import RoutingCommand
from streams.cli.context import Context, key_value_pairs, pass_context, wait_until_stopped


class Writer:
    """Writes each applied command of ``model`` as a ``kind`` object: one JSON file per command in
    ``folder`` (``<model>-<epoch>.json``, and ``<model>-current.json`` replaced atomically), or one
    JSON object per line on standard output."""

    def __init__(self, kind: str, model: str, target: Target, folder: Path | None) -> None:
        self.kind, self.model, self.target, self.folder = kind, model, target, folder
        self.written = 0
        self.last: dict | None = None

    def __call__(self, command: RoutingCommand) -> None:
        if command.model != self.model:
            return
        obj = resource_for(self.kind, command, self.target)  # type: ignore[arg-type]
        text = orjson.dumps(obj, option=orjson.OPT_INDENT_2 if self.folder else 0)
        if self.folder is None:
            sys.stdout.buffer.write(text + b"\n")
            sys.stdout.flush()
        else:
            (self.folder / f"{self.model}-{command.epoch:06d}.json").write_bytes(text + b"\n")
            partial = self.folder / f".{self.model}-current.json.tmp"
            partial.write_bytes(text + b"\n")
            partial.replace(self.folder / f"{self.model}-current.json")
        self.written += 1
        self.last = obj


@click.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--model", required=True, help="The model whose commands this actuator follows.")
@click.option("--name", required=True, help="The resource's name (VirtualService, HTTPRoute or InferenceService).")
@click.option("--namespace", default="default", show_default=True, help="The resource's namespace.")
@click.option("--host", help="istio: the destination host, e.g. fraud.prod.svc.cluster.local.")
@click.option("--port", type=click.IntRange(1, 65535), help="gateway-api: the backend Services' port.")
@click.option("--parent", help="gateway-api: the Gateway the HTTPRoute attaches to.")
@click.option("--backend", "backends", multiple=True, metavar="VERSION=NAME",
              callback=key_value_pairs("VERSION=NAME (the Istio subset or the Service of a version)"),
              help="The Istio subset or Gateway API Service of a version (default: the version's name).")
@click.option("--verify-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Act only on commands signed by this key (an Ed25519 public key PEM or the HMAC secret file).")
@click.option("--out", "out", default="-", show_default=True,
              help="A folder for one JSON file per command (and <model>-current.json), or - for one "
                   "JSON object per line on standard output.")
@click.option("--once", is_flag=True, help="Write the command in force after reading the topic's history, and exit.")
@pass_context
def actuate(ctx: Context, kind: str, model: str, name: str, namespace: str, host: str | None, port: int | None,
            parent: str | None, backends: dict[str, str], verify_key: Path | None, out: str, once: bool) -> None:
    """Turn MODEL's verified routing commands into KIND resources (istio: a VirtualService; gateway-api:
    an HTTPRoute; kserve: an InferenceService's canaryTrafficPercent), until Ctrl-C (or SIGTERM)."""
    from schemas.signing import SigningKeyError, load_verifier
    from streams.serving.router import Router

    if kind == "istio" and not host:
        raise click.UsageError("istio: give --host, the destination host of the model's Service")
    if kind == "gateway-api" and port is None:
        raise click.UsageError("gateway-api: give --port, the backend Services' port")
    folder = None if out == "-" else Path(out)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        verifier = load_verifier(verify_key) if verify_key else None
    except SigningKeyError as exc:
        raise click.BadParameter(str(exc), param_hint="--verify-key") from None
    target = Target(name=name, namespace=namespace, host=host, port=port, parent=parent, backends=backends)
    writer = Writer(kind, model, target, folder)
    if once:
        commands: list[RoutingCommand] = []  # history only: the last command in force
        router = Router(ctx.settings, {}, verifier=verifier,
                        on_applied=lambda command: commands.append(command) if command.model == model else None)
        router.start()
        ready = router.wait_ready(60)
        router.stop()
        if not ready:
            raise click.ClickException(f"could not read {router.topic} within 60 s")
        if not commands:
            raise click.ClickException(f"no verified command for {model} on {router.topic}")
        writer(commands[-1])
        return
    router = Router(ctx.settings, {}, verifier=verifier, on_applied=writer)
    router.start()
    click.echo(f"actuating {model} as {kind} {namespace}/{name} from {router.topic}", err=True)
    try:
        wait_until_stopped()
    finally:
        router.stop()
        refused = len(router.refused)
        click.echo(f"actuator stopped: objects written {writer.written}, commands refused {refused}", err=True)

"""``shadowcanary rollout ...``: start, inspect and steer rollouts.

A manual action is published like an automatic one: a ``RoutingCommand`` on ``rollout.control``
(issuer ``cli:<user>``, epoch one above the highest on the topic, a required reason) and a
``Decision`` on ``rollout.decisions``. The evaluator's engine reads them and obeys.
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import click
import orjson

from evaluators.integration_checks import ShapeMonitor
from evaluators.integration_checks import describe as describe_shape
from evaluators.policy.control_records import spec_rollout_id
from evaluators.policy.engine import RolloutEngine, describe_routes, stages
from evaluators.policy.guardrails import unplannable_reason, unsupported_reason
from evaluators.policy.watch import EXIT_CODES, EXIT_TIMEOUT, RolloutWatch
from schemas.codec import DecodeError, decode
from schemas.control import Decision, RoutingCommand
from schemas.internal_topics import SHAPES_KEY, partials_topic_name
from schemas.rollout import RolloutSpec
from schemas.spec_yaml import SpecError, load_spec_file
from schemas.topics import Topics
from streams.cli.context import Context, duration, pass_context
from streams.errors import ShadowCanaryError
from streams.kafka.producer import ContractProducer
from streams.kafka.reading import read_to_end
from streams.worker.policy import load_engine_state


def checked_spec(path: Path) -> RolloutSpec:
    """The spec in ``path``, or a message naming the field that is wrong."""
    try:
        spec = load_spec_file(path)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    for i, guardrail in enumerate(spec.guardrails):
        for field, reason in (("metric", unsupported_reason(guardrail, spec.task)),
                              ("min_detectable_effect", unplannable_reason(guardrail))):
            if reason:
                raise click.ClickException(f"{path}: guardrails[{i}].{field}: {reason}")
    return spec


@click.group()
def rollout() -> None:
    """Start, inspect and steer rollouts."""


@rollout.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(path: Path) -> None:
    """Check a spec without starting it."""
    spec = checked_spec(path)
    plan = "; ".join(
        ", ".join(f"{v} {p:g}%" for v, p in routes.items()) + (f" (shadow {', '.join(shadow)})" if shadow else "")
        for routes, shadow in stages(spec)
    )
    click.echo(f"{path}: valid {spec.mode} rollout of {spec.model} {spec.baseline} -> {spec.candidate}: {plan}")


WATCH_HELP = ("Follow the rollout until it ends: exit 0 when it completes, 1 when it is rolled back (or "
              "aborted, or replaced by a newer spec), 3 when it is still running, paused or held at --timeout.")


def _watch_options(command: click.Command) -> click.Command:
    for option in reversed([
        click.option("--watch", is_flag=True, help=WATCH_HELP),
        click.option("--timeout", "timeout_s", default="1h", show_default=True, callback=duration,
                     help="With --watch: how long to wait for the rollout to end."),
        click.option("--every", "every_s", default="2s", show_default=True, callback=duration,
                     help="With --watch: how often to look."),
        click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     help="text, or JSON (with --watch: one JSON object per line, a line per change)."),
    ]):
        command = option(command)
    return command


@rollout.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True,
              help="Say what the evaluator would do (a new rollout, a replacement, no change) and publish nothing.")
@_watch_options
@pass_context
def start(ctx: Context, path: Path, dry_run: bool, watch: bool, timeout_s: float, every_s: float,
          output: str) -> None:
    """Publish a spec on rollout.specs: the evaluator starts the rollout (a spec for a model whose
    rollout is running replaces it: that one is rolled back and the new one starts)."""
    spec = checked_spec(path)  # a spec the evaluator would refuse stops here, naming the field
    if dry_run:
        click.echo(RolloutEngine({"rollouts": _rollouts(ctx)}).preview(spec)[1])
        return
    producer = ContractProducer(ctx.settings)
    producer.send(Topics(ctx.settings.topic_prefix).specs, spec.model, spec)
    producer.flush()
    _, partition, offset = producer.last_delivered
    rollout_id = spec_rollout_id(spec.model, partition, offset)
    if output == "text":
        click.echo(f"rollout {rollout_id} of {spec.model} ({spec.baseline} -> {spec.candidate}, {spec.mode}) submitted")
    if watch:
        _exit(_follow(ctx, RolloutWatch(spec.model, rollout_id), timeout_s, every_s, output))
    elif output == "json":
        click.echo(orjson.dumps({"model": spec.model, "rollout_id": rollout_id, "submitted": True}).decode())


def _exit(code: int) -> None:
    """End the command with ``code`` (a watch's outcome)."""
    click.get_current_context().exit(code)


def _follow(ctx: Context, watch: RolloutWatch, timeout_s: float, every_s: float, output: str) -> int:
    """Look at the engine's saved state every ``every_s`` until the rollout ends or ``timeout_s``
    passes; a line (or JSON object) per change of status, stage or routes; the exit code."""
    deadline = time.monotonic() + timeout_s
    shown: tuple | None = None
    while True:
        outcome = watch.look(_rollouts(ctx))
        state = watch.last
        if state is not None:
            seen = (state["status"], state["stage"], tuple(sorted(state.get("routes", {}).items())))
            if seen != shown and outcome != "replaced":
                shown = seen
                _say(output, {"model": watch.model, "rollout_id": watch.rollout_id, "status": state["status"],
                              "stage": state["stage"] + 1, "routes": state.get("routes", {})},
                     f"{watch.model}: {state['status']}, stage {state['stage'] + 1}: "
                     + describe_routes(state.get("routes", {}), state.get("shadow", [])))
        if outcome is not None:
            decision = _last_decisions(ctx).get(watch.rollout_id or "")
            reason = decision.reason if decision is not None else outcome
            _say(output, {"model": watch.model, "rollout_id": watch.rollout_id, "outcome": outcome, "reason": reason,
                          "exit": EXIT_CODES[outcome]},
                 f"{watch.model}: rollout {watch.rollout_id} {outcome.replace('_', ' ')}: {reason}")
            return EXIT_CODES[outcome]
        if time.monotonic() >= deadline:
            status = state["status"] if state is not None else "not started"
            _say(output, {"model": watch.model, "rollout_id": watch.rollout_id, "outcome": "timeout", "status": status,
                          "exit": EXIT_TIMEOUT},
                 f"{watch.model}: rollout {watch.rollout_id or ''} still {status} after {timeout_s:g}s: giving up")
            return EXIT_TIMEOUT
        time.sleep(every_s)


def _say(output: str, as_json: dict, as_text: str) -> None:
    click.echo(orjson.dumps(as_json).decode() if output == "json" else as_text)


def _rollouts(ctx: Context) -> dict:
    return (load_engine_state(ctx.settings, Topics(ctx.settings.topic_prefix)) or {}).get("rollouts", {})


def _shapes(ctx: Context) -> ShapeMonitor:
    """The shape monitor as the merging owner last saved it (on the internal partials topic)."""
    state = None
    for message in read_to_end(ctx.settings, partials_topic_name(Topics(ctx.settings.topic_prefix)))[0]:
        if message.key() == SHAPES_KEY:
            state = orjson.loads(message.value()) if message.value() is not None else None
    return ShapeMonitor(state=state)


def _last_decisions(ctx: Context) -> dict[str, Decision]:
    latest: dict[str, Decision] = {}
    for message in read_to_end(ctx.settings, Topics(ctx.settings.topic_prefix).decisions)[0]:
        try:
            decision = decode(Decision, message.value())
        except DecodeError:
            continue
        latest[decision.rollout_id] = decision
    return latest


@rollout.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the engine's view as JSON (as --output json).")
@click.option("--rollout", "rollout_id", default=None, help="With --watch: the rollout to follow (default: the "
              "model's current one; `rollout start` prints the id).")
@_watch_options
@pass_context
def status(ctx: Context, model: str | None, as_json: bool, rollout_id: str | None, watch: bool, timeout_s: float,
           every_s: float, output: str) -> None:
    """Each rollout: status, stage, traffic split and each guardrail's last evidence."""
    as_json = as_json or output == "json"
    if watch:
        if model is None:
            raise click.UsageError("--watch follows one rollout: name its MODEL")
        _exit(_follow(ctx, RolloutWatch(model, rollout_id), timeout_s, every_s, "json" if as_json else "text"))
        return
    rollouts = {m: r for m, r in _rollouts(ctx).items() if model in (None, m)}
    decisions = _last_decisions(ctx)
    shapes = _shapes(ctx) if rollouts else ShapeMonitor()
    if as_json:
        click.echo(orjson.dumps({m: {k: r[k] for k in ("id", "status", "stage", "routes", "shadow")}
                                 | {"last_decision": decisions[r["id"]].model_dump(mode="json")
                                    if r["id"] in decisions else None, "shapes": shapes.shapes_of(m)}
                                 for m, r in rollouts.items()}, option=orjson.OPT_INDENT_2).decode())
        return
    if not rollouts:
        click.echo("no rollouts")
        return
    for name, r in rollouts.items():
        spec = r["spec"]
        click.echo(f"{name}: {spec['baseline']} -> {spec['candidate']} ({spec['mode']}) {r['status']}, "
                   f"stage {r['stage'] + 1}: {describe_routes(r.get('routes', {}), r.get('shadow', []))}")
        for version in (spec["baseline"], spec["candidate"]):  # what each answered, side by side
            shape = shapes.shapes_of(name).get(version)
            if shape is not None:
                click.echo(f"  {describe_shape(version, shape)}")
        decision = decisions.get(r["id"])
        if decision is None:
            continue
        click.echo(f"  last decision: {decision.action} ({decision.reason})")
        for e in decision.evidence:
            base = f" vs baseline {e.baseline.value:.4g}" if e.baseline and e.baseline.value is not None else ""
            click.echo(
                f"  {e.guardrail}{f' in {e.segment}' if e.segment else ''}: {e.verdict}: candidate "
                f"{e.candidate.describe()} n={e.candidate.samples}{base}; "
                f"statistic {e.statistic:.3g} / {e.threshold:.3g}"
            )


def _manual(ctx: Context, model: str, action: str, reason: str, user: str | None, output_format: str = "text") -> None:
    signer = ctx.signer  # a bad key file is reported before anything is read or sent
    topics = Topics(ctx.settings.topic_prefix)
    engine = RolloutEngine({"rollouts": _rollouts(ctx)}, signer)
    for message in read_to_end(ctx.settings, topics.control)[0]:
        if message.key() == model.encode():
            try:
                engine.observe_epoch(model, decode(RoutingCommand, message.value()).epoch)
            except DecodeError:
                continue
    try:
        outputs = engine.manual(model, action, f"cli:{user or getpass.getuser()}", reason, int(time.time() * 1000))
    except ValueError as exc:
        raise ShadowCanaryError(str(exc)) from None
    producer = ContractProducer(ctx.settings)
    if action == "abort":
        producer.send(topics.specs, model, None)
    for output in outputs:
        producer.send(getattr(topics, output.topic), output.key, output.message)
    producer.flush()
    command = next(o.message for o in outputs if o.topic == "control")
    if output_format == "json":  # the command and the decision as published, for a pipeline to read
        decision = next(o.message for o in outputs if o.topic == "decisions")
        click.echo(orjson.dumps({"model": model, "action": action, "command": command.model_dump(mode="json"),
                                 "decision": decision.model_dump(mode="json")}).decode())
    else:
        click.echo(f"{model}: {action} published (epoch {command.epoch})")


def _manual_command(action: str, help_text: str) -> click.Command:
    @click.command(name=action, help=help_text)
    @click.argument("model")
    @click.option("--reason", required=True, help="Why (kept on the audit trail).")
    @click.option("--user", default=None, help="Who (default: the login name).")
    @click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
                  help="json: the command and the decision as published, one JSON object.")
    @pass_context
    def command(ctx: Context, model: str, reason: str, user: str | None, output: str) -> None:
        _manual(ctx, model, action, reason, user, output)
    return command


for _action, _help in (
    ("promote", "Move to the next stage now."),
    ("pause", "Stop moving on (guardrails still roll back)."),
    ("resume", "Move on again after a pause or hold."),
    ("rollback", "Send all traffic back to the baseline."),
    ("abort", "End the rollout: delete its spec, traffic back to the baseline."),
):
    rollout.add_command(_manual_command(_action, _help))

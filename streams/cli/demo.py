"""``shadowcanary demo``: the whole loop, live, on the local broker (or KAFKA_BOOTSTRAP's cluster).

1. A broker (started if none is configured) and the contract's topics, under a prefix of this run's
   own (``demo-<time>.``), so runs never see each other's events.
2. An evaluator worker, for real, in a process of its own, signing its commands with a fresh key.
3. A serving fleet (:mod:`streams.demo.fleet`): three scikit-learn models behind the router SDK,
   which verifies every command with that key; the inference logger publishes every request and
   response; a ground-truth service reports each outcome one to four seconds later.
4. Rollout 1: ``v2`` (a unit bug in its training pipeline) as a canary. It must be rolled back.
   Rollout 2: ``v3`` (a sound retrain) as a canary. It must be promoted step by step to 100%.
5. The HTML report, from what the evaluator published.

Exits 0 only if both outcomes happened, as read back from ``rollout.decisions`` and
``rollout.control``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from schemas.rollout import RolloutSpec
from schemas.signing import generate_key, load_verifier
from schemas.topics import Topics
from streams.cli.broker import local_broker
from streams.cli.context import Context, pass_context
from streams.demo.fleet import train_fleet
from streams.demo.traffic import TrafficSimulator
from streams.errors import ShadowCanaryError
from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import local_root
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from streams.report.feed import RolloutFeed
from streams.report.html import write_report
from streams.serving.inference_logger import InferenceLogger
from streams.serving.router import Router
from streams.worker.process import log_digest, start_evaluator, stop_workers

MODEL = "tumor-classifier"


def demo_spec(candidate: str) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "model": MODEL, "baseline": "v1", "candidate": candidate, "mode": "canary", "task": "binary",
        "steps": [10, 25, 50, 100], "bake": {"min_duration": "8s", "min_samples": 150},
        "guardrails": [{"metric": "accuracy", "max_degradation": 0.03},
                       {"metric": "error_rate", "max": 0.02, "critical": True},
                       {"metric": "latency_p99_ms", "max": 250, "critical": True}],
        "label_timeout": "15s"})


@dataclass
class Phase:
    name: str
    candidate: str
    expect: str  # the command action that ends the phase: rollback or promote
    started: float = 0.0
    ended: float | None = None


def _view(phases: list[Phase], router: Router, traffic: TrafficSimulator, feed: RolloutFeed, started: float) -> Group:
    header = Table.grid(padding=(0, 2))
    header.add_row(f"[b]ShadowCanary demo[/b]  {time.monotonic() - started:5.0f}s",
                   f"requests {traffic.stats.requests:,}", f"labels {traffic.stats.labels:,}",
                   f"logger dropped {traffic.logger.outcome('dropped_queue_full')}")
    rollouts = Table(title="Rollouts", expand=True)
    for column in ("phase", "candidate", "expected", "status"):
        rollouts.add_column(column)
    for p in phases:
        status = ("[green]done[/green]" if p.ended else "[yellow]running[/yellow]" if p.started else "waiting")
        rollouts.add_row(p.name, p.candidate, p.expect, status)
    split = Table(title="Traffic split the router obeys, and what it served", expand=True)
    for column in ("version", "route %", "served", "mirrored", "accuracy (seen by the fleet)", "errors"):
        split.add_column(column, justify="right")
    routes = router.serving(MODEL)
    stats = traffic.stats
    for version in sorted(set(routes) | set(stats.served)):
        served = stats.served[version]
        accuracy = f"{stats.correct[version] / served:.3f}" if served else "-"
        split.add_row(version, f"{routes.get(version, 0):g}", f"{served:,}", f"{stats.mirrored[version]:,}", accuracy,
                      f"{stats.errors[version]}")
    evidence = Table(title="Guardrails at the last decision (anytime-valid bounds)", expand=True)
    for column in ("guardrail", "verdict", "baseline", "candidate", "n (candidate)"):
        evidence.add_column(column)
    if feed.decisions:
        for e in feed.decisions[-1].evidence:
            colour = {"fail": "red", "pass": "green"}.get(e.verdict, "yellow")
            name = e.guardrail + (f" ({e.segment})" if e.segment else "")
            evidence.add_row(name, f"[{colour}]{e.verdict}[/{colour}]",
                             e.baseline.describe() if e.baseline else "-", e.candidate.describe(),
                             str(e.candidate.samples))
    log = Table(title="Decisions and commands, as they happen", expand=True)
    log.add_column("epoch / step", justify="right")
    log.add_column("what")
    log.add_column("reason")
    # At one instant the decision comes first, then the command it caused.
    events = [
        (c.issued_at, 1, f"epoch {c.epoch}", f"[b]{c.action}[/b] {c.routes}", c.reason) for c in feed.commands
    ] + [(d.ts, 0, f"step {d.step}", f"decision [b]{d.action}[/b]", d.reason) for d in feed.decisions]
    for _, _, first, what, reason in sorted(events, key=lambda e: (e[0], e[1]))[-10:]:
        log.add_row(first, what, reason)
    return Group(header, rollouts, split, evidence, log)


def _finished(feed: RolloutFeed, phase: Phase) -> bool:
    """Whether the phase's ending command is on ``rollout.control`` and its decision on ``rollout.decisions``."""
    decided = {d.rollout_id for d in feed.decisions}
    return any(c.action == phase.expect and c.rollout_id in decided
               and _candidate_of(feed, c.rollout_id) == phase.candidate for c in feed.commands)


def _candidate_of(feed: RolloutFeed, rollout_id: str) -> str | None:
    for c in feed.commands:
        if c.rollout_id == rollout_id and c.action == "set_routes":
            return next((v for v in c.routes if v != c.baseline), None)
    return None


@click.command()
@click.option("--keep-broker/--stop-broker", default=True, show_default=True,
              help="Leave the local broker running afterwards.")
@click.option("--rate", type=click.FloatRange(10, 5000), default=300, show_default=True,
              help="Requests per second the simulated users send.")
@click.option("--timeout", type=click.FloatRange(30, 3600), default=280, show_default=True,
              help="Give up (exit 1) if both rollouts have not ended within this many seconds.")
@click.option("--with-evaluator/--no-evaluator", default=True, show_default=True,
              help="Start an evaluator for the demo on topics of its own; --no-evaluator drives the evaluators "
                   "already running on the configured topics (docker-compose's traffic profile).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the HTML report goes (default: .shadowcanary/demo/<run>/report.html; the folder is "
                   "$SHADOWCANARY_HOME's when it is set).")
@pass_context
def demo(ctx: Context, keep_broker: bool, rate: float, timeout: float, with_evaluator: bool,
         report_path: Path | None) -> None:
    """Roll out a bad and a good model version, live, on a real broker; write the HTML report."""
    console = Console()
    started = time.monotonic()
    broker = None
    if not ctx.bootstrap_configured:
        broker = local_broker()
        status = broker.up()
        console.print(f"broker: {status.describe()}")
        ctx.use_bootstrap(status.bootstrap)
    run = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = local_root() / "demo" / run
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_path or run_dir / "report.html"
    if with_evaluator:
        settings = KafkaSettings(**{**ctx.settings.model_dump(),
                                    "topic_prefix": f"{ctx.settings.topic_prefix}demo-{run}."})
        create_topics(settings, TopicLayout(inference_partitions=4, evaluator_partitions=2))
        key = generate_key("ed25519", run_dir / "signing.key")
        console.print(f"topics under prefix [b]{settings.topic_prefix}[/b]; commands signed with "
                      f"{key[0].name} (Ed25519)")
    else:  # the running evaluators' topics, made by `shadowcanary topics create`; their signing is theirs
        settings, key = ctx.settings, None
        console.print(f"driving the running evaluators on {settings.bootstrap_servers} (prefix "
                      f"{settings.topic_prefix!r})")
    topics = Topics(settings.topic_prefix)
    console.print("training the fleet: v1 baseline, v2 (area-unit bug in training), v3 (sound retrain) ...")
    fleet = train_fleet()
    console.print("offline accuracy on the served half: " +
                  ", ".join(f"{v} {fleet.accuracy(v):.3f}" for v in sorted(fleet.predictions)))

    worker = start_evaluator(
        settings, f"demo-{run}", str(run_dir / "evaluator"), "--window", "10s", "--label-timeout", "15s",
        "--expiry-grace", "2s", "--idle-after", "2s", "--metrics-port", "0", "--task", f"{MODEL}=binary",
        "--segments", f"{MODEL}=clinic",
        "--loglevel", "info", global_args=("--signing-key", str(key[0]))) if key else None
    router = Router(settings, baselines={MODEL: "v1"}, verifier=load_verifier(key[1]) if key else None)
    logger = InferenceLogger(settings)
    feed = RolloutFeed(settings, topics)
    producer = ContractProducer(settings)
    traffic = TrafficSimulator(fleet, router, logger, ContractProducer(settings), topics, MODEL, rate=rate)
    phases = [Phase("1: bad candidate", "v2", "rollback"), Phase("2: good candidate", "v3", "promote")]
    ok = False
    try:
        router.start()
        feed.start()
        if not router.wait_ready(60):
            raise ShadowCanaryError("the router could not read rollout.control within 60 s")
        traffic.start()
        with Live(_view(phases, router, traffic, feed, started), console=console, refresh_per_second=4) as live:
            deadline = started + timeout
            for phase in phases:
                phase.started = time.monotonic()
                producer.send(topics.specs, MODEL, demo_spec(phase.candidate))
                producer.flush()
                while not _finished(feed, phase) and time.monotonic() < deadline:
                    if worker is not None and worker.poll() is not None:
                        raise ShadowCanaryError(f"the evaluator exited (status {worker.returncode}); "
                                                f"see {run_dir / 'evaluator.log'}")
                    live.update(_view(phases, router, traffic, feed, started))
                    time.sleep(0.25)
                if not _finished(feed, phase):
                    break
                phase.ended = time.monotonic()
                console.print(f"[b]{phase.name}[/b]: {phase.candidate} {phase.expect} "
                              f"after {phase.ended - phase.started:.0f}s")
            ok = all(p.ended for p in phases)
            if ok:  # serve on the promoted version a little, so the report shows it
                settle = time.monotonic() + 15
                while time.monotonic() < settle:
                    live.update(_view(phases, router, traffic, feed, started))
                    time.sleep(0.25)
            live.update(_view(phases, router, traffic, feed, started))
    finally:
        traffic.stop()
        undelivered = logger.close()
        router.stop()
        if worker is not None:
            stop_workers(worker, timeout=30)
        feed.stop()
        if broker is not None and not keep_broker:
            console.print(broker.down())
    path = write_report(report_path, f"ShadowCanary demo {run}: {MODEL}", feed.commands, feed.decisions,
                        feed.snapshots, feed.alerts)
    console.print(f"events: {traffic.stats.requests:,} requests, {traffic.stats.labels:,} labels; logger "
                  f"dropped {logger.outcome('dropped_queue_full')}, undelivered {undelivered}")
    console.print(f"report: [b]{path}[/b]")
    if not ok:
        pending = ", ".join(f"{p.candidate} {p.expect}" for p in phases if not p.ended)
        digest = "".join(f"\n  {line}" for line in log_digest(run_dir / "evaluator.log")) if worker else ""
        raise ShadowCanaryError(f"the demo did not finish within {timeout:.0f}s: still waiting for {pending}; "
                                f"evaluator log: {run_dir / 'evaluator.log'}{digest}")
    console.print(f"[green]done in {time.monotonic() - started:.0f}s[/green]: v2 rolled back, v3 promoted to 100% "
                  f"(see {topics.decisions} and {topics.control})")

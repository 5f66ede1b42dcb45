"""The rollout state machine: specs, merged metric states and a clock in; commands, decisions and
alerts out. Pure: the stream (:mod:`streams.worker.policy`), the benchmark and the tests drive it alike.

**Stages per mode** (each a traffic split the routers apply, with a bake):

- ``canary``: one stage per step, the candidate at ``p`` percent; then the candidate takes 100%.
- ``ab``: the first step's split, held until every guardrail *passes*; then the candidate takes 100%.
- ``bluegreen``: the candidate mirrored (shadow) for a bake, then one switch to 100% and a second
  bake; a failure switches straight back.
- ``shadow``: the candidate mirrored only; after the bake the rollout completes ("fit for canary")
  or is stopped.

**Moving on.** A stage moves on when its bake is over (``min_duration`` at the stage and
``min_samples`` labelled candidate samples at the stage), no guardrail fails and every guardrail has
data. A guardrail with no data never passes: the rollout holds and alerts once per stage. In the
other modes an *undecided* guardrail does not block a baked stage (the bake is the evidence budget
the spec asked for; every decision shows each verdict and its bounds); ``ab`` needs each to pass.
While an undecided guardrail *leans to fail* (its estimate is on the wrong side of its bound, and
the data favour "worse" over the bound: its log e-value is at least :data:`LEAN_EVIDENCE`), a baked
stage waits for at most one more bake (the same duration and labelled samples again), saying so
once in a ``hold`` decision: a bad candidate is then more often rolled back before it reaches the
next stage, while a good one rarely waits (measured in ``bench/policy_metrics.py``).

**Failing.** A critical guardrail that fails rolls back at once, whatever the stage; a non-critical
one rolls back, or with ``on_failure: hold`` holds the rollout (no more steps) and alerts.

**Epochs.** Every command has an epoch one above the highest seen for the model, from this engine or
anyone else on ``rollout.control`` (:meth:`RolloutEngine.observe_command`), so they never go back.
Commands people issue through the CLI are obeyed: rollback, pause, resume and promote.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from evaluators.metrics.version import SlimState, add_slim, is_behind, slim
from evaluators.policy import guardrails as judging
from evaluators.policy.drift_guardrails import DriftView, drift_evidence, is_drift
from evaluators.policy.schema_guardrail import is_schema, schema_evidence
from evaluators.segments import group, pooled
from schemas.control import CommandAction, Decision, DecisionAction, GuardrailEvidence, RoutingCommand
from schemas.monitoring import Alert, AlertKind, Severity
from schemas.rollout import Guardrail, RolloutSpec
from schemas.signing import Signer, sign_command, verifier_for, verify_command
from schemas.types import epoch_ms, from_epoch_ms

ISSUER = "evaluator"
#: The evidence (log e-value against "acceptable") with which an undecided guardrail leaning to fail
#: makes a baked stage wait: 0, the data favour "worse" over the bound (measured in
#: ``bench/policy_metrics.py`` against waiting on any lean and not waiting).
LEAN_EVIDENCE = 0.0
ACTIVE = ("running", "paused", "held")
_NAMESPACE = uuid.UUID("4b1c3f0e-2a55-4d6e-9a53-5c0ab1e1d001")


class Look(TypedDict):
    """Both versions' slim running totals at one look (summed over the roles each answered in)."""

    b: SlimState  #: the baseline's
    c: SlimState  #: the candidate's


class LastDecision(TypedDict):
    action: str
    reason: str
    ts: int  #: epoch ms


class Baked(TypedDict):
    """A baked stage waiting (up to one more bake) on a guardrail leaning to fail."""

    stage: int
    at: int  #: when the wait began, epoch ms
    lab: int  #: the candidate's labelled samples then


class RolloutState(TypedDict):
    """One model's rollout as the engine keeps it (its saved state, on the internal rollouts topic)."""

    id: str  #: the rollout id
    spec: dict[str, Any]  #: its :class:`~schemas.rollout.RolloutSpec`, as JSON
    status: str  #: running, held, paused (:data:`ACTIVE`), completed, rolled_back or aborted
    stage: int  #: index of the current stage
    stage_started: int  #: when it started, epoch ms
    started: int  #: when the rollout started, epoch ms
    start: Look  #: the totals when the rollout started (tests count what came since)
    last: Look  #: the totals at the last look
    stage_c: SlimState  #: the candidate's totals when the stage started (its bake counts from there)
    #: guardrail label (``label\x1fsegment`` for a segment's) -> its sequential test's state
    tests: dict[str, dict[str, Any]]
    no_data_alerted: int  #: the stage whose missing data was last alerted (-1: none)
    routes: NotRequired[dict[str, float]]  #: the split of the last command: version -> percent served
    shadow: NotRequired[list[str]]  #: the versions mirrored by the last command
    last_decision: NotRequired[LastDecision]
    baked: NotRequired[Baked]
    versions: NotRequired[dict[str, Any]]  #: the versions as the model registry knows them (RegistryVersion fields)
    segments: NotRequired[dict[str, list[str]]]  #: attribute -> the values judged one by one (fixed once placed)


@dataclass(frozen=True)
class Output:
    """A message to publish: ``topic`` is ``control``, ``decisions`` or ``alerts``; keyed by model."""

    topic: str
    key: str
    message: Any


def stages(spec: RolloutSpec) -> list[tuple[dict[str, float], list[str]]]:
    """(routes, shadow versions) of each stage."""
    b, c = spec.baseline, spec.candidate
    if spec.mode == "shadow":
        return [({b: 100.0}, [c])]
    if spec.mode == "bluegreen":
        return [({b: 100.0}, [c]), ({c: 100.0}, [])]
    steps = spec.steps[:1] if spec.mode == "ab" else spec.steps
    return [({k: v for k, v in ((b, 100.0 - s.percent), (c, s.percent)) if v > 0}, []) for s in steps]


def rollout_id_for(model: str, spec: RolloutSpec, started_ms: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{model}\x1f{spec.model_dump_json()}\x1f{started_ms}"))


class RolloutEngine:
    """Every model's rollout. ``to_state``/``from_state`` carry it across restarts.

    >>> engine = RolloutEngine()
    >>> spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="canary", task="binary",
    ...                    steps=[10, 100], guardrails=[{"metric": "error_rate", "max": 0.05}])
    >>> [o.message.routes for o in engine.start(spec, now_ms=0, totals={}) if o.topic == "control"]
    [{'v1': 90.0, 'v2': 10.0}]
    """

    def __init__(self, state: dict | None = None, signer: Signer | None = None,
                 lean_evidence: float | None = LEAN_EVIDENCE,
                 tracked_segments: Callable[[str], dict[str, int]] | None = None) -> None:
        state = state or {}
        #: The attributes the evaluator slices each model by (``MetricsConfig.segments_of``): a rollout
        #: whose spec judges by another is told at its start (None: not known, nothing told).
        self.tracked_segments = tracked_segments
        #: A baked stage waits (up to one more bake) while an undecided guardrail leans to fail with
        #: at least this log e-value against "acceptable" (None: never waits; -inf: any lean).
        self.lean_evidence = lean_evidence
        self.signer = signer  # signs every command the engine issues, when set
        #: With a key, commands read back from ``rollout.control`` count only if their signature is good.
        self.verifier = verifier_for(signer) if signer is not None else None
        self.rollouts: dict[str, RolloutState] = state.get("rollouts", {})
        self.epochs: dict[str, int] = state.get("epochs", {})
        self._specs: dict[str, tuple[str, RolloutSpec]] = {}  # model -> (rollout id, spec)
        #: model -> the evidence of the last look (for the exporter; not part of the saved state)
        self.evidence: dict[str, list[GuardrailEvidence]] = {}

    def to_state(self) -> dict:
        return {"rollouts": self.rollouts, "epochs": self.epochs}

    def active_count(self) -> int:
        """Rollouts still being judged."""
        return sum(r["status"] in ACTIVE for r in self.rollouts.values())

    def active(self) -> bool:
        """Whether some rollout is still being judged."""
        return self.active_count() > 0

    def _spec(self, rollout: RolloutState) -> RolloutSpec:
        """The rollout's spec, parsed once (the state keeps it as JSON)."""
        model, rollout_id = rollout["spec"]["model"], rollout["id"]
        cached = self._specs.get(model)
        if cached is None or cached[0] != rollout_id:
            cached = self._specs[model] = (rollout_id, RolloutSpec.model_validate(rollout["spec"]))
        return cached[1]

    def spec_of(self, model: str) -> RolloutSpec | None:
        """The spec of ``model``'s rollout (the last one, running or ended), if any."""
        rollout = self.rollouts.get(model)
        return self._spec(rollout) if rollout is not None else None

    def preview(self, spec: RolloutSpec) -> tuple[str, str]:
        """What :meth:`start` would do with ``spec`` now, without doing it: ``("new" | "unchanged" |
        "replacement", a sentence)`` (``rollout start --dry-run``).

        >>> engine = RolloutEngine()
        >>> spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="canary", task="binary", steps=[10, 100])
        >>> engine.preview(spec)[0], engine.start(spec, 0, {}) != [], engine.preview(spec)[0]
        ('new', True, 'unchanged')
        """
        plan = "; ".join(describe_routes(routes, shadow) for routes, shadow in stages(spec))
        current = self.rollouts.get(spec.model)
        if current is None or current["status"] not in ACTIVE:
            return "new", f"new rollout of {spec.model} ({spec.mode}): {plan}"
        where = (f"rollout {current['id']} ({current['status']}, stage {current['stage'] + 1} of "
                 f"{len(stages(self._spec(current)))})")
        if current["spec"] == spec.model_dump(mode="json"):
            return "unchanged", f"no change: this spec is already running as {where}"
        return "replacement", (f"replacement: {where} would be rolled back to {current['spec']['baseline']} "
                               f"and a new rollout started ({spec.mode}): {plan}")

    # -- inputs ------------------------------------------------------------------------------------
    def start(self, spec: RolloutSpec, now_ms: int, totals: dict, rollout_id: str | None = None) -> list[Output]:
        """Start a rollout for ``spec`` (replacing an ended one). A spec already running is kept."""
        current = self.rollouts.get(spec.model)
        spec_json = spec.model_dump(mode="json")
        if current and ((current["status"] in ACTIVE and current["spec"] == spec_json)
                        or (rollout_id is not None and current["id"] == rollout_id)):
            return []  # already running, or this very spec record was already acted on
        out: list[Output] = []
        rollout_id = rollout_id or rollout_id_for(spec.model, spec, now_ms)
        if current and current["status"] in ACTIVE:
            # Replace and restart (as Argo Rollouts does with a new revision): the spec is what its
            # owner wants now, and the evidence gathered under the old one judged another rollout.
            out += self._finish(current, now_ms, "aborted", f"replaced by a new spec (rollout {rollout_id})",
                                alert=False)
        b, c = self._versions(totals, spec)
        rollout: RolloutState = {"id": rollout_id, "spec": spec_json,
                   "status": "running", "stage": 0, "stage_started": now_ms, "started": now_ms,
                   "start": {"b": b, "c": c}, "last": {"b": b, "c": c}, "stage_c": c,
                   "tests": {g.label: judging.new_test_for(g) for g in spec.guardrails}, "no_data_alerted": -1}
        self.rollouts[spec.model] = rollout
        routes, shadow = stages(spec)[0]
        out.append(self._command(rollout, "set_routes", routes, shadow, now_ms,
                                 f"rollout started ({spec.mode}): stage 1 of {len(stages(spec))}"))
        if self.tracked_segments is not None and spec.segments:
            tracked = self.tracked_segments(spec.model)
            untracked = [s.attribute for s in spec.segments if s.attribute not in tracked]
            if untracked:
                out.append(self._alert(rollout, "warning", "schema", now_ms, (
                    f"{spec.model}/{spec.candidate}: the evaluator does not slice {spec.model} by "
                    f"{', '.join(untracked)}, so per-segment guardrails judge nothing there (start it with "
                    f"--segments {spec.model}={','.join(sorted({*tracked, *untracked}))})")))
        return out

    def stop(self, model: str, now_ms: int, reason: str = "rollout spec deleted") -> list[Output]:
        """The spec's tombstone: end the rollout, traffic back to the baseline."""
        rollout = self.rollouts.get(model)
        if not rollout or rollout["status"] not in ACTIVE:
            return []
        return self._finish(rollout, now_ms, "aborted", reason, alert=False)

    def observe_epoch(self, model: str, epoch: int) -> None:
        """An epoch used on ``rollout.control``: the next command goes above it."""
        self.epochs[model] = max(self.epochs.get(model, -1), epoch)

    def observe_command(self, command: RoutingCommand, raw: bytes | None = None) -> str | None:
        """A command on ``rollout.control`` (``raw``: its record's bytes): keep epochs monotonic;
        obey people's commands. With a signing key, a command whose signature is missing or bad
        changes nothing (routers refuse it too): the reason is returned, for the log."""
        if self.verifier is not None:
            refused = verify_command(command, self.verifier, raw)
            if refused is not None:
                return refused
        self.observe_epoch(command.model, command.epoch)
        rollout = self.rollouts.get(command.model)
        if command.issuer == ISSUER or not rollout or rollout["id"] != command.rollout_id:
            return None
        spec = self._spec(rollout)
        if command.action == "rollback":
            rollout["status"] = "rolled_back"
        elif command.action == "pause":
            rollout["status"] = "paused" if rollout["status"] in ACTIVE else rollout["status"]
        elif command.action == "promote":
            rollout["status"] = "completed"
        elif command.action == "set_routes" and rollout["status"] in ACTIVE:
            rollout["status"] = "running"  # resume, or a manual step
            for i, (routes, shadow) in enumerate(stages(spec)):
                if routes == command.routes and shadow == list(command.shadow) and i != rollout["stage"]:
                    rollout["stage"], rollout["stage_started"] = i, epoch_ms(command.issued_at)
                    rollout["stage_c"] = rollout["last"]["c"]
                    rollout["no_data_alerted"] = -1
        return None

    # -- the clock ---------------------------------------------------------------------------------
    def tick(self, now_ms: int, totals: dict, drift: DriftView | None = None) -> list[Output]:
        """Judge every active rollout on the merged metric states ``totals`` ((model, version,
        role) or (model, version) to state) and, for ``drift.*`` guardrails, the drift monitor's view."""
        out: list[Output] = []
        for rollout in list(self.rollouts.values()):
            if rollout["status"] in ACTIVE:
                out += self._judge(rollout, now_ms, totals, drift or DriftView())
        return out

    def manual(self, model: str, action: str, issuer: str, reason: str, now_ms: int) -> list[Output]:
        """A person's ``promote``, ``pause``, ``resume``, ``rollback`` or ``abort`` as the command and
        decision to publish. The rollout's own status moves when the evaluator's engine reads the
        command back (:meth:`observe_command`), as for any command on the topic."""
        rollout = self.rollouts.get(model)
        if rollout is None:
            raise ValueError(f"no rollout for model {model!r}")
        if rollout["status"] not in ACTIVE and action != "abort":
            raise ValueError(f"the rollout of {model} is {rollout['status']}: nothing to {action}")
        spec = self._spec(rollout)
        plan = stages(spec)
        routes, shadow = rollout["routes"], rollout["shadow"]
        command: CommandAction
        decision: DecisionAction
        if action in ("rollback", "abort"):
            command, decision, routes, shadow = "rollback", "rollback", {spec.baseline: 100.0}, []
        elif action == "promote" and rollout["stage"] + 1 < len(plan):
            command, decision = "set_routes", "promote"
            routes, shadow = plan[rollout["stage"] + 1]
        elif action == "promote":
            command, decision, routes, shadow = "promote", "complete", {spec.candidate: 100.0}, []
        elif action == "pause":
            command, decision = "pause", "hold"
        elif action == "resume":
            command, decision = "set_routes", "hold"
        else:
            raise ValueError(f"unknown action {action!r}")
        text = f"{action} by {issuer}: {reason}"
        return [self._command(rollout, command, routes, shadow, now_ms, text, issuer),
                self._decision(rollout, decision, now_ms, text, [])]

    # -- inside ------------------------------------------------------------------------------------
    @staticmethod
    def _versions(totals: dict[tuple[str, str, str], SlimState], spec: RolloutSpec) -> tuple[SlimState, SlimState]:
        """The baseline's and the candidate's slim states, each summed over every role it answered
        in: a candidate that takes 100% is the one everybody gets, and routers then call it
        ``primary``, not ``canary``."""
        found = {spec.baseline: slim(None), spec.candidate: slim(None)}
        for key, state in totals.items():
            total = found.get(key[1]) if key[0] == spec.model else None
            if total is not None:
                add_slim(total, state)
        return found[spec.baseline], found[spec.candidate]

    def _judge(self, rollout: RolloutState, now_ms: int, totals: dict, drift: DriftView) -> list[Output]:
        spec = self._spec(rollout)
        b, c = self._versions(totals, spec)
        last = rollout["last"]
        if is_behind(b, last["b"]) or is_behind(c, last["c"]):
            return []  # a view behind the last look (a new owner still reading partials): wait
        spent = {g.label: _spent(g, spec) for g in spec.guardrails}
        overall = [drift_evidence(g, spec.model, spec.candidate, drift) if is_drift(g) else
                   schema_evidence(g, spec.model, spec.candidate, drift, b, c) if is_schema(g) else
                   judging.judge(spent[g.label], rollout["tests"][g.label],
                                 (rollout["start"]["b"], rollout["last"]["b"], b),
                                 (rollout["start"]["c"], rollout["last"]["c"], c), spec.task)
                   for g in spec.guardrails]
        evidence = overall + self._segment_evidence(rollout, spec, b, c, spent)
        rollout["last"] = {"b": b, "c": c}
        self.evidence[spec.model] = evidence
        failed = [e for e in evidence if e.verdict == "fail"]
        if failed:
            critical = [e for e in failed if e.critical]
            blamed = critical or failed
            # A check that says what it found (a candidate speaking another schema) is the reason, not
            # the metrics that finding spoils; otherwise the failing guardrails are named (with the
            # segment they fail in).
            reason = "; ".join(e.detail for e in blamed if e.detail and e.segment is None) or (
                f"guardrail failed: {', '.join(_blame(e) for e in blamed)}")
            if critical or spec.on_failure == "rollback":
                return self._finish(rollout, now_ms, "rolled_back", reason, evidence)
            if rollout["status"] != "held":
                rollout["status"] = "held"
                return [self._decision(rollout, "hold", now_ms, f"{reason} (on_failure: hold)", evidence),
                        self._alert(rollout, "warning", "regression", now_ms,
                                    f"{spec.model}/{spec.candidate} held: {reason}")]
            return []
        if rollout["status"] != "running":
            return []
        bake = spec.bake_at(min(rollout["stage"], len(spec.steps) - 1))
        labelled = c["lab"] - rollout["stage_c"]["lab"]
        if now_ms - rollout["stage_started"] < bake.min_duration * 1000 or labelled < bake.min_samples:
            return []
        # Segments judge only to fail: one with too little data says so and holds nothing.
        missing = [e.guardrail for e in overall
                   if e.candidate.samples == 0 or (e.baseline is not None and e.baseline.samples == 0)]
        if missing:
            if rollout["no_data_alerted"] == rollout["stage"]:
                return []
            rollout["no_data_alerted"] = rollout["stage"]
            reason = f"no data for {', '.join(missing)}: holding (no data never passes)"
            return [self._decision(rollout, "hold", now_ms, reason, evidence),
                    self._alert(rollout, "warning", "labels", now_ms, f"{spec.model}/{spec.candidate}: {reason}")]
        if spec.mode == "ab" and any(e.verdict != "pass" for e in overall):
            return []
        leaning = [e.guardrail for e in evidence if e.verdict == "undecided" and e.leaning == "fail"
                   and (e.statistic or 0.0) >= (self.lean_evidence if self.lean_evidence is not None else math.inf)]
        if leaning and (bake.min_duration or bake.min_samples):
            baked = rollout.get("baked")
            if baked is None or baked["stage"] != rollout["stage"]:
                baked = rollout["baked"] = {"stage": rollout["stage"], "at": now_ms, "lab": c["lab"]}
                reason = (f"stage {rollout['stage'] + 1} baked, but {', '.join(leaning)} leans to fail: "
                          f"waiting up to one more bake")
                return [self._decision(rollout, "hold", now_ms, reason, evidence)]
            if now_ms - baked["at"] < bake.min_duration * 1000 or c["lab"] - baked["lab"] < bake.min_samples:
                return []
        return self._advance(rollout, spec, now_ms, evidence)

    def _segment_evidence(self, rollout: RolloutState, spec: RolloutSpec, b: SlimState, c: SlimState,
                          spent: dict[str, Guardrail]) -> list[GuardrailEvidence]:
        """Every ``per_segment`` guardrail judged in every segment with data (see :mod:`evaluators.segments`):
        each segment's own sequential test, on the segment's part of the looks (the rollout's first
        look, its last, this one), at the guardrail's alpha split over all its tests."""
        per_segment = [g for g in spec.guardrails if g.per_segment]
        if not per_segment:
            return []
        members: dict[str, list[str]] = rollout.setdefault("segments", {})
        looks = (rollout["start"]["b"], rollout["last"]["b"], b, rollout["start"]["c"], rollout["last"]["c"], c)
        present = set(b.get("seg", {})) | set(c.get("seg", {}))
        out: list[GuardrailEvidence] = []
        for by in spec.segments:
            kept = members.setdefault(by.attribute, [])
            for segment in group(by.attribute, kept, by.max_values, present):
                views = [pooled(look.get("seg", {}), segment, kept, _empty_slim, add_slim) for look in looks]
                if not views[2]["lab"] and not views[5]["lab"]:
                    continue  # nothing in this segment yet
                for g in per_segment:
                    name = f"{g.label}\x1f{segment}"
                    test = rollout["tests"].get(name)
                    if test is None:
                        test = rollout["tests"][name] = judging.new_test_for(g)
                    e = judging.judge(spent[g.label], test, (views[0], views[1], views[2]),
                                      (views[3], views[4], views[5]), spec.task)
                    detail = None
                    if e.verdict == "fail":
                        detail = f"{g.label} fails in segment {segment}"
                    elif e.verdict == "undecided":
                        detail = (f"not enough data yet in segment {segment} ({e.candidate.samples} candidate, "
                                  f"{e.baseline.samples if e.baseline else 0} baseline samples)")
                    out.append(e.model_copy(update={"segment": segment, "detail": detail}))
        return out

    def _advance(self, rollout: RolloutState, spec: RolloutSpec, now_ms: int,
                 evidence: list[GuardrailEvidence]) -> list[Output]:
        plan = stages(spec)
        nxt = rollout["stage"] + 1
        if nxt < len(plan):
            decision = self._decision(rollout, "promote", now_ms, f"stage {nxt} of {len(plan)} baked: "
                                      f"moving to stage {nxt + 1}", evidence)
            rollout["stage"], rollout["stage_started"], rollout["stage_c"] = nxt, now_ms, rollout["last"]["c"]
            routes, shadow = plan[nxt]
            return [decision, self._command(rollout, "set_routes", routes, shadow, now_ms,
                                            f"stage {nxt + 1} of {len(plan)}: {describe_routes(routes, shadow)}")]
        rollout["status"] = "completed"
        if spec.mode == "shadow":
            return [self._decision(rollout, "complete", now_ms, "shadow evaluation passed: fit for canary",
                                   evidence)]
        return [self._decision(rollout, "complete", now_ms, "every stage baked: candidate takes all traffic",
                               evidence),
                self._command(rollout, "promote", {spec.candidate: 100.0}, [], now_ms,
                              f"{spec.candidate} promoted to 100%")]

    def _finish(self, rollout: RolloutState, now_ms: int, status: str, reason: str,
                evidence: list[GuardrailEvidence] | None = None, alert: bool = True) -> list[Output]:
        spec = self._spec(rollout)
        rollout["status"] = status
        out = [self._decision(rollout, "rollback", now_ms, reason, evidence or []),
               self._command(rollout, "rollback", {spec.baseline: 100.0}, [], now_ms, f"rollback: {reason}")]
        if alert:
            out.append(self._alert(rollout, "critical", "rollback", now_ms,
                                   f"{spec.model}/{spec.candidate} rolled back: {reason}"))
        return out

    def _command(self, rollout: RolloutState, action: CommandAction, routes: dict[str, float], shadow: list[str],
                 now_ms: int, reason: str, issuer: str = ISSUER) -> Output:
        model = rollout["spec"]["model"]
        epoch = self.epochs.get(model, -1) + 1
        self.epochs[model] = epoch
        rollout["routes"], rollout["shadow"] = routes, shadow
        command = RoutingCommand(
            command_id=uuid.uuid5(_NAMESPACE, f"{rollout['id']}\x1f{epoch}"), model=model, epoch=epoch,
            issued_at=from_epoch_ms(now_ms), issuer=issuer, action=action, routes=routes, shadow=shadow, reason=reason,
            rollout_id=rollout["id"],
            # Once promoted, the candidate is who everyone outside any cohort gets.
            baseline=rollout["spec"]["candidate"] if action == "promote" else rollout["spec"]["baseline"])
        if self.signer is not None:
            command = sign_command(command, self.signer)
        return Output("control", model, command)

    def annotate(self, model: str, rollout_id: str, versions: dict[str, dict]) -> None:
        """The rollout's versions as its model registry knows them (``RegistryVersion`` fields), read
        by the shell when it started: every later decision carries them."""
        rollout = self.rollouts.get(model)
        if rollout is not None and rollout["id"] == rollout_id:
            rollout["versions"] = versions

    @staticmethod
    def _decision(rollout: RolloutState, action: DecisionAction, now_ms: int, reason: str,
                  evidence: list[GuardrailEvidence]) -> Output:
        model = rollout["spec"]["model"]
        # What alert notifications quote (the exporter's shadowcanary_rollout_last_decision_info).
        rollout["last_decision"] = {"action": action, "reason": reason, "ts": now_ms}
        return Output("decisions", model, Decision(rollout_id=rollout["id"], model=model, step=rollout["stage"],
                                                   action=action, ts=from_epoch_ms(now_ms), reason=reason,
                                                   evidence=evidence, versions=rollout.get("versions")))

    @staticmethod
    def _alert(rollout: RolloutState, severity: Severity, kind: AlertKind, now_ms: int, message: str) -> Output:
        spec = rollout["spec"]
        return Output("alerts", spec["model"], Alert(model=spec["model"], version=spec["candidate"],
                                                     severity=severity, kind=kind, message=message,
                                                     ts=from_epoch_ms(now_ms)))


def _spent(guardrail: Guardrail, spec: RolloutSpec) -> Guardrail:
    """The guardrail as one of its tests judges it: a ``per_segment`` guardrail's alpha is split evenly
    over all traffic and every segment the spec may judge (Bonferroni), so that the chance it fails
    anywhere in an A/A rollout stays at most its alpha."""
    if not guardrail.per_segment:
        return guardrail
    return guardrail.model_copy(update={"alpha": guardrail.alpha / spec.segment_tests()})


def _empty_slim() -> SlimState:
    return slim(None)


def _blame(evidence: GuardrailEvidence) -> str:
    return evidence.guardrail if evidence.segment is None else f"{evidence.guardrail} in segment {evidence.segment}"


def describe_routes(routes: dict[str, float], shadow: list[str]) -> str:
    """``v1 90%, v2 10%; shadow v3``: a traffic split as decisions, the CLI and logs write it."""
    text = ", ".join(f"{v} {p:g}%" for v, p in routes.items())
    return text + (f"; shadow {', '.join(shadow)}" if shadow else "")


__all__ = ["ACTIVE", "ISSUER", "Output", "RolloutEngine", "stages"]

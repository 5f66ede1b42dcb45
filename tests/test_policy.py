"""The rollout engine and its sequential guardrails, driven by simulated metric states."""

from __future__ import annotations

import copy
import math
import random

import orjson
import pytest

from evaluators.metrics import sketch
from evaluators.metrics.version import new_state
from evaluators.policy import sequential
from evaluators.policy.engine import RolloutEngine
from evaluators.policy.guardrails import unsupported_reason
from evaluators.routing import RouteTable
from schemas.control import RoutingCommand
from schemas.rollout import Guardrail, RolloutSpec

MIN = 60_000


class Version:
    """A version's running metric state, fed with simulated labelled responses."""

    def __init__(self, accuracy: float = 0.9, error_rate: float = 0.0, latency_ms: float = 20.0) -> None:
        self.accuracy, self.error_rate, self.latency_ms = accuracy, error_rate, latency_ms
        self.state = new_state()
        self.state["cls"] = {"cm": {}}

    def serve(self, rng: random.Random, n: int, labelled: bool = True) -> None:
        s = self.state
        for _ in range(n):
            s["n"] += 1
            if rng.random() < self.error_rate:
                s["err"] += 1
                continue
            sketch.add(s["lat"], self.latency_ms * (0.5 + rng.random()))
            if labelled:
                s["lab"] += 1
                cell = "1\x1f1" if rng.random() < self.accuracy else "1\x1f0"
                s["cls"]["cm"][cell] = s["cls"]["cm"].get(cell, 0) + 1


def spec(**overrides) -> RolloutSpec:
    base = dict(model="m", baseline="v1", candidate="v2", mode="canary", task="binary", steps=[10, 50, 100],
                bake={"min_duration": "1m", "min_samples": 1000},
                guardrails=[{"metric": "accuracy", "max_degradation": 0.0},
                            {"metric": "error_rate", "max": 0.05, "critical": True}])
    return RolloutSpec.model_validate({**base, **overrides})


def run(engine: RolloutEngine, baseline: Version, candidate: Version, minutes: int, per_minute: int = 2000,
        labelled: bool = True, seed: int = 1) -> list:
    rng = random.Random(seed)
    outputs = []
    for minute in range(1, minutes + 1):
        rollout = engine.rollouts["m"]
        share = rollout["routes"].get("v2", 0.0) / 100
        candidate.serve(rng, int(per_minute * share), labelled)
        baseline.serve(rng, int(per_minute * (1 - share)), labelled)
        outputs += engine.tick(minute * MIN, {("m", "v1", "primary"): baseline.state,
                                              ("m", "v2", "canary"): candidate.state})
        if rollout["status"] not in ("running", "held", "paused"):
            break
    return outputs


def commands(outputs) -> list[RoutingCommand]:
    return [o.message for o in outputs if o.topic == "control"]


def test_a_worse_candidate_is_rolled_back_with_evidence_and_an_alert():
    engine, b, c = RolloutEngine(), Version(0.9), Version(0.85)
    start = engine.start(spec(), 0, {})
    out = run(engine, b, c, 60)
    assert engine.rollouts["m"]["status"] == "rolled_back"
    last = commands(out)[-1]
    assert last.action == "rollback" and last.routes == {"v1": 100.0}
    decision = [o.message for o in out if o.topic == "decisions"][-1]
    accuracy = next(e for e in decision.evidence if e.metric == "accuracy")
    assert accuracy.verdict == "fail" and accuracy.candidate.value < accuracy.baseline.value
    assert any(o.topic == "alerts" and o.message.kind == "rollback" for o in out)
    epochs = [cmd.epoch for cmd in commands(start + out)]
    assert epochs == sorted(set(epochs))


def test_an_equal_candidate_walks_every_step_and_completes():
    engine, b, c = RolloutEngine(), Version(0.9), Version(0.9)
    engine.start(spec(), 0, {})
    out = run(engine, b, c, 60)
    assert engine.rollouts["m"]["status"] == "completed"
    shares = [cmd.routes.get("v2") for cmd in commands(out)]
    assert shares == [50.0, 100.0, 100.0]
    assert commands(out)[-1].action == "promote"


def test_errors_roll_back_before_any_label():
    engine, b, c = RolloutEngine(), Version(0.9), Version(0.9, error_rate=0.2)
    engine.start(spec(), 0, {})
    out = run(engine, b, c, 3, labelled=False)
    assert engine.rollouts["m"]["status"] == "rolled_back"
    assert "error_rate" in commands(out)[-1].reason


def test_a_latency_regression_is_rolled_back():
    guardrails = [{"metric": "latency_p99_ms", "max": 40}]
    engine, b, c = RolloutEngine(), Version(latency_ms=20), Version(latency_ms=60)
    engine.start(spec(guardrails=guardrails), 0, {})
    run(engine, b, c, 5)
    assert engine.rollouts["m"]["status"] == "rolled_back"


def test_no_labels_holds_and_alerts_once():
    engine, b, c = RolloutEngine(), Version(), Version()
    engine.start(spec(bake={"min_duration": "1m", "min_samples": 0}), 0, {})
    out = run(engine, b, c, 10, labelled=False)
    assert engine.rollouts["m"]["status"] == "running" and engine.rollouts["m"]["stage"] == 0
    alerts = [o.message for o in out if o.topic == "alerts"]
    assert [a.kind for a in alerts] == ["labels"]
    assert [o.message.action for o in out if o.topic == "decisions"] == ["hold"]


def test_state_survives_a_restart_without_repeating_commands():
    engine, b, c = RolloutEngine(), Version(0.9), Version(0.9)
    first = commands(engine.start(spec(), 0, {}, rollout_id="r-1") + run(engine, b, c, 3))
    restored = RolloutEngine(engine.to_state())
    assert restored.start(spec(), 3 * MIN, {}) == []  # the same spec while it runs: the same rollout
    again = commands(run(restored, b, c, 60, seed=2))
    epochs = [cmd.epoch for cmd in first + again]
    assert epochs == list(range(len(epochs)))
    assert restored.start(spec(), 99 * MIN, {}, rollout_id="r-1") == []  # the same spec record, re-read


def test_the_candidate_counts_in_every_role_the_router_gives_it():
    """At 100% the router makes the candidate everyone's version (role ``primary``): the engine
    must sum its roles, not judge whichever one it happens to see."""
    engine, baseline, rng = RolloutEngine(), Version(0.9), random.Random(3)
    by_role = {"canary": Version(0.9), "primary": Version(0.9)}
    table = RouteTable.of(commands(engine.start(spec(), 0, {}))[-1], "v1")
    for minute in range(1, 61):
        role = next(a.role for a in table.answers if a.serve == "v2")
        share = engine.rollouts["m"]["routes"].get("v2", 0.0) / 100
        by_role[role].serve(rng, int(2000 * share))
        baseline.serve(rng, int(2000 * (1 - share)))
        totals = {("m", "v1", "primary"): baseline.state}
        totals.update({("m", "v2", r): v.state for r, v in by_role.items() if v.state["n"]})
        out = engine.tick(minute * MIN, totals)
        for command in commands(out):
            table = RouteTable.of(command, "v1")
        if engine.rollouts["m"]["status"] != "running":
            break
    assert by_role["primary"].state["n"] > 0  # the last stage was served as primary
    assert engine.rollouts["m"]["status"] == "completed"
    accuracy = engine.evidence["m"][0]
    assert accuracy.candidate.samples == sum(v.state["lab"] for v in by_role.values())


def test_a_view_behind_the_last_look_in_any_count_is_not_scored():
    engine, b, c = RolloutEngine(), Version(0.9), Version(0.9)
    engine.start(spec(), 0, {})
    run(engine, b, c, 2)
    last = engine.rollouts["m"]["last"]
    older = copy.deepcopy(c.state)
    cell = next(iter(older["cls"]["cm"]))
    older["cls"]["cm"][cell] -= 1  # one wrong answer fewer, with the same n and lab
    assert engine.tick(3 * MIN, {("m", "v1", "primary"): b.state, ("m", "v2", "canary"): older}) == []
    assert engine.rollouts["m"]["last"] is last


def test_inconsistent_counts_are_refused_by_name():
    state = sequential.new_test()
    with pytest.raises(ValueError, match="5 bad of 3"):
        sequential.update_paired(state, 5, 3, 1, 10)
    with pytest.raises(ValueError, match="-1 bad of 4"):
        sequential.update(sequential.new_test(), -1, 4, 0.1)


def test_a_manual_rollback_and_epochs_from_others_are_obeyed():
    engine = RolloutEngine()
    engine.start(spec(), 0, {})
    rollout_id = engine.rollouts["m"]["id"]
    engine.observe_command(RoutingCommand(model="m", epoch=7, issued_at=1, issuer="cli:ana", action="rollback",
                                          routes={"v1": 100}, reason="bad dashboards", rollout_id=rollout_id))
    assert engine.rollouts["m"]["status"] == "rolled_back"
    out = engine.start(spec(steps=[20, 100]), 2 * MIN, {})
    assert commands(out)[0].epoch == 8


def test_with_a_key_only_well_signed_commands_from_others_are_obeyed():
    from schemas.signing import HmacKey, sign_command

    key = HmacKey(b"k" * 32)
    engine = RolloutEngine(signer=key)
    started = commands(engine.start(spec(), 0, {}))
    rollout_id = engine.rollouts["m"]["id"]
    assert engine.observe_command(started[0]) is None  # its own command, signed by itself
    forged = RoutingCommand(model="m", epoch=9, issued_at=1, issuer="cli:mallory", action="rollback",
                            routes={"v1": 100}, reason="x", rollout_id=rollout_id)
    assert "unsigned" in engine.observe_command(forged)
    other_key = sign_command(forged, HmacKey(b"o" * 32))
    assert "does not match" in engine.observe_command(other_key)
    assert engine.rollouts["m"]["status"] == "running" and engine.epochs["m"] == started[0].epoch
    assert engine.observe_command(sign_command(forged, key)) is None
    assert engine.rollouts["m"]["status"] == "rolled_back" and engine.epochs["m"] == 9


def test_a_manual_promote_is_the_next_stage_with_the_persons_name_and_reason():
    engine = RolloutEngine()
    engine.start(spec(), 0, {})
    command, decision = [o.message for o in engine.manual("m", "promote", "cli:ana", "looks fine", MIN)]
    assert (command.action, command.routes, command.issuer, command.epoch) == \
        ("set_routes", {"v1": 50.0, "v2": 50.0}, "cli:ana", 1)
    assert decision.action == "promote" and "looks fine" in decision.reason
    engine.observe_command(command)
    assert engine.rollouts["m"]["stage"] == 1
    engine.rollouts["m"]["status"] = "rolled_back"
    with pytest.raises(ValueError, match="nothing to pause"):
        engine.manual("m", "pause", "cli:ana", "too late", 2 * MIN)


@pytest.mark.parametrize("guardrail, fragment", [
    ({"metric": "agreement", "max_degradation": 0.01}, "give min"),
    ({"metric": "f1", "max": 0.9}, "give min"),
    ({"metric": "error_rate", "min": 0.01}, "give max"),
])
def test_guardrails_without_a_test_are_named(guardrail, fragment):
    assert fragment in unsupported_reason(Guardrail.model_validate(guardrail))


def test_the_mixture_test_keeps_its_level_under_repeated_looks():
    rng = random.Random(5)
    rejections = 0
    for _ in range(300):
        state = sequential.new_test()
        for _ in range(100):
            bad = sum(rng.random() < 0.1 for _ in range(20))
            sequential.update(state, bad, 20, p0=0.1)
            if sequential.rejects(state, 0.05):
                rejections += 1
                break
    assert rejections / 300 <= 0.05


def _paired_rollouts(rng: random.Random, rates, cand_extra: float, looks: int = 150, rollouts: int = 300,
                     alpha: float = 0.05) -> float:
    """Share of rollouts the paired test rejects; each look draws both versions at ``rates(look)``
    (the candidate ``cand_extra`` worse), 4 candidate and 36 baseline samples."""
    rejected = 0
    for _ in range(rollouts):
        state = sequential.new_test()
        for look in range(looks):
            rate = rates(look)
            cb = sum(rng.random() < rate + cand_extra for _ in range(4))
            bb = sum(rng.random() < rate for _ in range(36))
            sequential.update_paired(state, cb, 4, bb, 36)
            if sequential.rejects(state, alpha):
                rejected += 1
                break
    return rejected / rollouts


def test_the_paired_test_keeps_its_level_without_knowing_the_baseline():
    assert _paired_rollouts(random.Random(6), lambda look: 0.1, 0.0) <= 0.05


def test_the_paired_test_keeps_its_level_when_both_rates_swing_over_the_day():
    """Both versions swing between 5% and 35% bad (the hours they share); judging the candidate's
    samples against the baseline's running rate would roll back equal candidates."""
    def swing(look: int) -> float:
        return 0.2 + 0.15 * math.sin(look / 8)

    assert _paired_rollouts(random.Random(7), swing, 0.0) <= 0.05
    rng, rejected = random.Random(7), 0
    for _ in range(300):  # the plug-in test on the same kind of stream
        state, base_bad, base_n = sequential.new_test(), 0, 0
        for look in range(150):
            rate = swing(look)
            cb = sum(rng.random() < rate for _ in range(4))
            bb = sum(rng.random() < rate for _ in range(36))
            if base_n:
                sequential.update(state, cb, 4, p0=base_bad / base_n)
            base_bad, base_n = base_bad + bb, base_n + 36
            if sequential.rejects(state, 0.05):
                rejected += 1
                break
    assert rejected / 300 > 0.08  # measured: 0.107, twice its level


def test_the_paired_test_finds_a_worse_candidate_and_carries_one_sided_looks():
    assert _paired_rollouts(random.Random(8), lambda look: 0.1, 0.15, rollouts=50) >= 0.9
    state = sequential.new_test()
    sequential.update_paired(state, 3, 3, 0, 0)  # candidate samples only: nothing to compare yet
    assert state["n"] == 0 and state["carry"][:4] == [3, 3, 0, 0]
    sequential.update_paired(state, 0, 0, 1, 30)
    assert state["n"] == 3 and "carry" not in state and sequential.statistic(state) > 0


def test_rollout_validate_names_the_field_of_an_unsupported_guardrail(tmp_path):
    from click.testing import CliRunner

    from streams.cli.main import cli

    path = tmp_path / "spec.yaml"
    path.write_text("model: m\nbaseline: v1\ncandidate: v2\nmode: canary\ntask: binary\n"
                    "guardrails:\n  - {metric: roc_auc, max: 0.99}\n")
    result = CliRunner().invoke(cli, ["rollout", "validate", "-f", str(path)])
    assert result.exit_code == 1 and "guardrails[0].metric" in result.output and "give min" in result.output
    good = CliRunner().invoke(cli, ["rollout", "validate", "-f", "deploy/examples/canary.yaml"])
    assert good.exit_code == 0 and "v1 95%, v2 5%" in good.output


# -- drift guardrails ------------------------------------------------------------------------------
def test_a_critical_drift_guardrail_rolls_back_when_the_monitor_fires():
    from evaluators.policy.drift_guardrails import DriftView
    drift_spec = spec(guardrails=[{"metric": "error_rate", "max": 0.05, "critical": True},
                                  {"metric": "drift.amount", "max": 0.2, "critical": True}])
    engine, b, c, rng = RolloutEngine(), Version(0.9), Version(0.9), random.Random(2)
    engine.start(drift_spec, 0, {})
    calm = DriftView({"m\x1fv2": {"amount.psi": 0.03, "skew.amount.psi": 0.05}}, set())
    drifted = DriftView({"m\x1fv2": {"amount.psi": 0.8, "skew.amount.psi": 0.9}}, {("m", "v2", "amount")})
    small = DriftView({"m\x1fv2": {"amount.psi": 0.1}}, {("m", "v2", "amount")})  # firing, but under max
    outputs = []
    for minute, view in enumerate([calm, calm, small, small, drifted], start=1):
        b.serve(rng, 900)
        c.serve(rng, 100)
        outputs += engine.tick(minute * MIN, {("m", "v1", "primary"): b.state, ("m", "v2", "canary"): c.state}, view)
        if minute <= 4:
            assert engine.rollouts["m"]["status"] == "running", minute
    assert engine.rollouts["m"]["status"] == "rolled_back"
    decision = [o.message for o in outputs if o.topic == "decisions"][-1]
    evidence = next(e for e in decision.evidence if e.metric == "drift.amount")
    assert evidence.verdict == "fail" and evidence.candidate.value == 0.9 and "drift.amount" in decision.reason


def test_a_drift_guardrail_without_judgement_holds_and_needs_max():
    from evaluators.policy.drift_guardrails import DriftView
    drift_spec = spec(guardrails=[{"metric": "drift.country", "max": 0.1}],
                      bake={"min_duration": "1m", "min_samples": 10})
    engine, b, c, rng = RolloutEngine(), Version(0.9), Version(0.9), random.Random(3)
    engine.start(drift_spec, 0, {})
    out = []
    for minute in range(1, 4):
        b.serve(rng, 900)
        c.serve(rng, 100)
        out += engine.tick(minute * MIN, {("m", "v1", "primary"): b.state, ("m", "v2", "canary"): c.state},
                           DriftView())
    assert engine.rollouts["m"]["stage"] == 0
    assert any(o.topic == "decisions" and "no data for drift.country" in o.message.reason for o in out)
    judged = DriftView({"m\x1fv2": {"country.js": 0.02, "country.chi2_p": 0.6}}, set())
    out = engine.tick(5 * MIN, {("m", "v1", "primary"): b.state, ("m", "v2", "canary"): c.state}, judged)
    assert engine.rollouts["m"]["stage"] == 1
    assert "give max" in unsupported_reason(Guardrail(metric="drift.country", min=0.0))


def test_guardrail_totals_are_the_slim_part_of_the_full_totals():
    from evaluators.facts import JoinedRecord, ResponseFact
    from evaluators.merging import PartialsMerger
    from evaluators.metrics import MetricsConfig
    from evaluators.metrics.version import slim
    from evaluators.windows import MetricsAccumulator

    config = MetricsConfig(tasks={"m": "binary"}, window_ms=1000)
    merger, rng = PartialsMerger(config, settle_ms=lambda model: 0, partitions=2), random.Random(4)
    for partition in range(2):
        acc = MetricsAccumulator(config, settle_ms=lambda model: 0)
        for i in range(400):
            version = "v2" if i % 3 else "v1"
            role = "canary" if version == "v2" else "primary"
            error = "boom" if rng.random() < 0.05 else None
            acc.add(ResponseFact("m", version, role, i * 10, rng.uniform(1, 50), error, i % 2))
            acc.add(JoinedRecord("m", version, role, str(i), i * 10, i * 10 + 5, i % 2, rng.random(),
                                 rng.randint(0, 1), {}, 1.0, error, None))
            if i == 200:
                acc.advance(i * 10)  # some windows closed (in base), the rest open
        merger.heartbeat(partition, {"wm": 2000, "v": acc.versions, "q": {}})
    full = merger.totals()
    assert merger.guardrail_totals() == {key: slim(state) for key, state in full.items()}


def test_decisions_carry_the_registry_versions_the_shell_annotated():
    from evaluators.metrics.version import slim
    engine = RolloutEngine()
    rollout_spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="canary", task="binary", steps=[50],
                               guardrails=[{"metric": "error_rate", "max": 0.05}],
                               registry={"name": "m-model", "versions": {"v2": "7"}})
    engine.start(rollout_spec, 0, {})
    rollout_id = engine.rollouts["m"]["id"]
    engine.annotate("m", "another rollout", {"v2": {"name": "x", "version": "1"}})  # not this rollout: ignored
    engine.annotate("m", rollout_id, {"v2": {"name": "m-model", "version": "7", "run_id": "abc", "tags": {}}})
    assert engine.spec_of("m").registry.versions == {"v2": "7"} and engine.spec_of("nobody") is None
    totals = {}
    for version in ("v1", "v2"):
        state = slim(None)
        state["n"], state["err"] = 10_000, 0
        totals[("m", version, "primary")] = state
    decisions = [o.message for o in engine.tick(1_000, totals) if o.topic == "decisions"]
    assert decisions and decisions[0].versions["v2"].run_id == "abc" and decisions[0].versions["v2"].version == "7"


def test_a_persons_step_read_back_moves_the_stage_and_the_engine_goes_on_judging():
    """A manual promote mid-rollout (``rollout promote``) comes back on rollout.control; its stage's
    bake counts from the command's time, in epoch milliseconds like every time the engine keeps (it
    kept the command's datetime, and the next look failed on it)."""
    engine = RolloutEngine()
    spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="canary", task="binary", steps=[10, 50, 100],
                       guardrails=[{"metric": "error_rate", "max": 0.05}])
    engine.start(spec, 0, {})
    command = next(o.message for o in engine.manual("m", "promote", "cli:alice", "looks good", 1_000)
                   if o.topic == "control")
    engine.observe_command(command)
    rollout = engine.rollouts["m"]
    assert (rollout["stage"], rollout["stage_started"]) == (1, 1_000)
    assert engine.tick(5_000, {}) is not None
    assert orjson.loads(orjson.dumps(engine.to_state()))["rollouts"]["m"]["stage_started"] == 1_000

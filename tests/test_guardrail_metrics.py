"""Guardrails on every metric the evaluator computes: means, ratios and scores
(evaluators/policy/estimands.py, evaluators/policy/asymptotic.py)."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from evaluators.facts import AgreementFact, JoinedRecord, ResponseFact
from evaluators.metrics import classification, regression
from evaluators.metrics.version import MetricsConfig, add_facts, add_slim, compute, guardrail_sums, new_state, slim
from evaluators.policy import asymptotic
from evaluators.policy import guardrails as judging
from evaluators.policy.engine import RolloutEngine
from evaluators.policy.estimands import estimand_for
from schemas.metric_names import TASKS, lookup_metric
from schemas.rollout import Guardrail, RolloutSpec

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_metric_names() -> list[str]:
    """Every name in backticks in the README's table of metrics per version."""
    text = README.read_text()
    table = text[text.index("| kind | metrics"):]
    table = table[:table.index("\n\n")]
    return sorted({name for row in table.splitlines()[2:] for name in re.findall(r"`([^`]+)`", row.split("|")[2])})


def concrete(name: str) -> str:
    return name.replace("<kpi>", "converted").replace("<class>", "1").replace("@k", "@10")


def facts_of(task: str, version: str, role: str, n: int, rng: random.Random, worse: bool) -> list:
    """A version's labelled traffic for ``task``: responses, joined labels, outcomes, agreement."""
    facts: list = []
    for i in range(n):
        ts = i * 10
        latency = rng.uniform(5, 50) * (1.5 if worse else 1.0)
        if task in ("binary", "multiclass"):
            classes = (0, 1) if task == "binary" else ("a", "b", "c")
            label = rng.choice(classes)
            correct = rng.random() < (0.6 if worse else 0.85)
            prediction = label if correct else rng.choice([c for c in classes if c != label])
            if task == "binary":
                score = min(max((0.8 if prediction == 1 else 0.2) + rng.uniform(-0.15, 0.15), 0.0), 1.0)
            else:
                score = {str(c): (0.7 if c == prediction else 0.15) for c in classes}
        elif task == "regression":
            label = rng.gauss(10, 3)
            prediction = label + rng.gauss(0, 2.0 if worse else 1.0)
            score = None
        else:
            relevant = rng.sample(range(20), 3)
            ranked = rng.sample(range(20), 10)
            if not worse:
                ranked = relevant[:2] + [x for x in ranked if x not in relevant][:8]
            label, prediction, score = relevant, ranked, None
        facts.append(ResponseFact("m", version, role, ts, latency, None, prediction))
        facts.append(JoinedRecord("m", version, role, f"r{i}", ts, ts + rng.randint(1000, 60_000), prediction,
                                  score, label, {"converted": float(rng.random() < (0.05 if worse else 0.1))},
                                  latency, None, None))
        primary = prediction if rng.random() < (0.7 if worse else 0.95) else label
        facts.append(AgreementFact("m", version, "v0", ts, prediction, primary,
                                   score if isinstance(score, float) else None,
                                   score if isinstance(score, float) else None))
    return facts


def task_for(metric: str) -> str:
    if metric in ("prediction_mean", "rank_overlap@10"):  # numeric predictions, rankings
        return "regression" if metric == "prediction_mean" else "ranking"
    info = lookup_metric(metric)
    return next(t for t in TASKS if info.defined_for(t))


def guardrail_for(metric: str, task: str) -> Guardrail:
    estimand = estimand_for(metric, task)
    higher = lookup_metric(metric).higher_is_better
    if estimand is not None and estimand.absolute_only:
        return Guardrail(metric=metric, **({"min": 0.0} if higher else {"max": 1e9}))
    return Guardrail(metric=metric, max_degradation_relative=0.0)


def judged_looks(guardrail: Guardrail, task: str, rng: random.Random, looks: int, per_look: int, worse: bool,
                 until_fail: bool = False):
    """Judge ``guardrail`` after each of ``looks`` looks of ``per_look`` requests per version, as the
    engine does (start, last look, now); returns the last evidence and the candidate's full state."""
    config = MetricsConfig(tasks={"m": task})
    base, cand = new_state(), new_state()
    test = judging.new_test_for(guardrail)
    start, last_b, last_c = slim(None), slim(None), slim(None)
    evidence = None
    for _ in range(looks):
        add_facts(base, facts_of(task, "v1", "primary", per_look, rng, worse=False), config)
        add_facts(cand, facts_of(task, "v2", "canary", per_look, rng, worse=worse), config)
        now_b, now_c = slim(base), slim(cand)
        evidence = judging.judge(guardrail, test, (start, last_b, now_b), (start, last_c, now_c), task)
        last_b, last_c = now_b, now_c
        if until_fail and evidence.verdict == "fail":
            break
    return evidence, cand


def test_the_readme_table_is_read():
    names = readme_metric_names()
    assert {"accuracy", "f1", "roc_auc", "mae", "r2", "ndcg@k", "outcome.<kpi>", "agreement"} <= set(names)


@pytest.mark.parametrize("name", readme_metric_names())
def test_every_metric_in_the_readme_table_can_be_a_guardrail(name):
    """Validated, judged on real metric states built from facts, with data on both sides, and for
    a clearly worse candidate on metrics that see the difference, failing (the guardrail works)."""
    metric = concrete(name)
    task = task_for(metric)
    guardrail = guardrail_for(metric, task)
    assert judging.unsupported_reason(guardrail, task) is None
    RolloutSpec(model="m", baseline="v1", candidate="v2", mode="ab", task=task, steps=[50],
                guardrails=[guardrail])
    config = MetricsConfig(tasks={"m": task})
    evidence, cand = judged_looks(guardrail, task, random.Random(11), looks=6, per_look=300, worse=True)
    assert evidence.candidate.samples > 0 and evidence.candidate.value is not None, evidence
    if evidence.baseline is not None:
        assert evidence.baseline.samples > 0 and evidence.baseline.value is not None, evidence
    exported = compute(cand, "m", config)
    if metric in exported and metric != "roc_auc":
        # what the guardrail reports is what the evaluator exports (AUC: binned), in its unit
        assert evidence.candidate.value == pytest.approx(exported[metric], rel=1e-6, abs=1e-9)
        assert evidence.candidate.lower <= evidence.candidate.value <= evidence.candidate.upper


@pytest.mark.parametrize("metric, task", [
    ("f1", "binary"), ("precision", "binary"), ("recall", "binary"), ("f1", "multiclass"),
    ("precision", "multiclass"), ("recall", "multiclass"), ("outcome.converted", "binary"), ("log_loss", "binary"),
    ("brier", "binary"), ("roc_auc", "binary"), ("ece", "binary"), ("mae", "regression"), ("rmse", "regression"),
    ("mape", "regression"), ("r2", "regression"), ("ndcg@10", "ranking"), ("mrr", "ranking"),
    ("precision@5", "ranking"), ("recall@10", "ranking"),
])
def test_a_clearly_worse_candidate_fails_and_an_equal_one_does_not(metric, task):
    guardrail = Guardrail(metric=metric, max_degradation=0.0)
    verdicts = {worse: judged_looks(guardrail, task, random.Random(3), looks=20, per_look=200, worse=worse,
                                    until_fail=True)[0].verdict for worse in (True, False)}
    assert verdicts[True] == "fail"
    assert verdicts[False] != "fail"


def test_estimand_values_equal_the_exported_metrics():
    rng = random.Random(4)
    for task, metrics in (("binary", ("precision", "recall", "f1", "ece")),
                          ("multiclass", ("precision", "recall", "f1")),
                          ("regression", ("mae", "rmse", "mape", "r2"))):
        state = new_state()
        add_facts(state, facts_of(task, "v1", "primary", 500, rng, worse=False), MetricsConfig(tasks={"m": task}))
        exported = compute(state, "m", MetricsConfig(tasks={"m": task}))
        view = slim(state)
        for metric in metrics:
            e = estimand_for(metric, task)
            raw = e.raw(view)
            layout = e.layout(raw)
            value = e.value(e.moments(raw, None, layout).mean(), layout)
            assert value == pytest.approx(exported[metric], rel=1e-9), metric


def test_the_auc_of_binned_scores_is_close_to_the_exact_one():
    rng = random.Random(6)
    state = classification.new_state()
    for _ in range(2000):
        y = rng.random() < 0.3
        classification.add(state, int(y), int(y), min(max(rng.gauss(0.6 if y else 0.4, 0.2), 0.0), 1.0))
    exact = classification.compute(state, "binary")["roc_auc"]
    binned = asymptotic.auc_estimate(classification.score_bins(state)["1"], None)[0]
    assert abs(binned - exact) < 0.005


def test_a_swinging_rate_and_a_moving_split_do_not_bias_the_stratified_estimate():
    """Exact expectations, no noise: both versions convert at the same rate each hour, the rate
    swings from 5% to 15%, and the candidate's share moves from 10% to 50% halfway. Pooled over the
    rollout, the candidate looks 2.5 points better (it saw more of the later, higher hours); the
    stratified estimate the test uses says 0."""
    e = estimand_for("outcome.converted", "binary")
    test = asymptotic.new_test()
    start = [0, 0.0, 0.0]
    base, cand = list(start), list(start)
    for look in range(40):
        rate = 0.05 if look < 20 else 0.15
        share = 0.1 if look < 20 else 0.5
        n_c, n_b = 10_000 * share, 10_000 * (1 - share)
        cand = [cand[0] + n_c, cand[1] + n_c * rate, cand[2] + n_c * rate]
        base = [base[0] + n_b, base[1] + n_b * rate, base[2] + n_b * rate]
        asymptotic.update(test, e, (start, cand), (start, base), lam=1.0)
    pooled = cand[1] / cand[0] - base[1] / base[0]
    assert pooled > 0.02
    assert abs(test["weighted_sum"] / test["weight"]) < 1e-12


def test_a_relative_guardrail_tests_the_ratio_itself():
    """Revenue 5% lower passes "at most 10% lower" and fails "at most 1% lower"."""
    rng = np.random.default_rng(1)
    verdicts = {}
    for allowed in (0.10, 0.01):
        guardrail = Guardrail(metric="outcome.revenue", max_degradation_relative=allowed)
        test = judging.new_test_for(guardrail)
        start, last_b, last_c = slim(None), slim(None), slim(None)
        b, c = slim(None), slim(None)
        for _ in range(60):
            for state, scale in ((b, 1.0), (c, 0.95)):
                values = rng.lognormal(1.5, 1.0, 5_000) * scale
                add_slim(state, {"n": 0, "err": 0, "lab": 5_000, "lat": slim(None)["lat"], "cls": None,
                                 "sums": {"outcome.revenue": [5_000, float(values.sum()), float((values ** 2).sum())]}})
            now_b, now_c = slim(b), slim(c)
            evidence = judging.judge(guardrail, test, (start, last_b, now_b), (start, last_c, now_c), "binary")
            last_b, last_c = now_b, now_c
            if evidence.verdict != "undecided":
                break
        verdicts[allowed] = evidence.verdict
    assert verdicts == {0.10: "pass", 0.01: "fail"}


def test_sums_written_before_squares_were_kept_still_merge_and_read():
    old = {"ae": [3, 1.5], "se": [3, 1.0], "ape": [3, 0.2], "y": [3, 2.0, 1.0]}  # no squares, no mom
    state = regression.new_state()
    regression.add(state, 2.0, 1.0)
    regression.merge(state, old)
    assert state["ae"][:2] == [4, 2.5] and "mom" not in state  # the R2 sums no longer cover every sample
    assert regression.compute(state)["mae"] == pytest.approx(2.5 / 4)
    legacy_slim = {"n": 10, "err": 0, "lab": 10, "lat": slim(None)["lat"], "cls": None, "pc": {}, "pm": [0, 0.0]}
    assert guardrail_sums(legacy_slim) == {}


def test_an_engine_ab_on_conversion_rolls_back_a_worse_candidate_and_completes_an_equal_one():
    spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="ab", task="binary", steps=[50],
                       bake={"min_duration": 60, "min_samples": 1000},
                       guardrails=[{"metric": "outcome.converted", "max_degradation": 0.01, "critical": True}])
    outcomes = {}
    for candidate_rate in (0.07, 0.10):
        rng = np.random.default_rng(5)
        engine = RolloutEngine()
        sums = {"v1": [0, 0.0, 0.0], "v2": [0, 0.0, 0.0]}

        def totals(sums: dict = sums) -> dict:
            out = {}
            for version, (n, k, _) in sums.items():
                state = slim(None)
                state["lab"] = state["n"] = n
                state["sums"] = {"outcome.converted": [n, k, k]}
                out[("m", version, "primary")] = state
            return out

        engine.start(spec, 0, totals())
        for second in range(1, 3_000):
            for version, rate in (("v1", 0.10), ("v2", candidate_rate)):
                converted = float(rng.binomial(100, rate))
                sums[version] = [sums[version][0] + 100, sums[version][1] + converted, sums[version][2] + converted]
            engine.tick(second * 1000, totals())
            if engine.rollouts["m"]["status"] not in ("running", "held"):
                break
        outcomes[candidate_rate] = engine.rollouts["m"]["status"]
    assert outcomes == {0.07: "rolled_back", 0.10: "completed"}


def test_a_baked_stage_waits_while_a_guardrail_leans_to_fail():
    spec = RolloutSpec(model="m", baseline="v1", candidate="v2", mode="canary", task="binary", steps=[10, 50, 100],
                       bake={"min_duration": 60, "min_samples": 0},
                       guardrails=[{"metric": "outcome.converted", "max_degradation": 0.0}])
    engine = RolloutEngine()

    def totals(b_conv: float, c_conv: float, n: int) -> dict:
        out = {}
        for version, k in (("v1", b_conv), ("v2", c_conv)):
            state = slim(None)
            state["lab"] = state["n"] = n
            state["sums"] = {"outcome.converted": [n, k, k]}
            out[("m", version, "primary")] = state
        return out

    engine.start(spec, 0, totals(0, 0, 0))
    # the candidate converts less: undecided, leaning to fail with evidence, after the 60 s bake
    outputs = []
    for second in range(1, 61):
        outputs += engine.tick(second * 1000, totals(0.10 * 40 * second, 0.085 * 40 * second, 40 * second))
    holds = [o.message for o in outputs if o.topic == "decisions"]
    assert [d.action for d in holds] == ["hold"] and "leans to fail" in holds[0].reason
    assert holds[0].evidence[0].leaning == "fail" and holds[0].evidence[0].verdict == "undecided"
    assert engine.rollouts["m"]["stage"] == 0
    for second in range(61, 121):  # one more bake: then it moves on
        outputs = engine.tick(second * 1000, totals(0.10 * 40 * second, 0.085 * 40 * second, 40 * second))
        if any(o.topic == "control" for o in outputs):
            break
    assert engine.rollouts["m"]["stage"] == 1 and second == 120
    # without the rule, the same stage moves on when baked
    plain = RolloutEngine(lean_evidence=None)
    plain.start(spec, 0, totals(0, 0, 0))
    for second in range(1, 61):
        plain.tick(second * 1000, totals(0.10 * 40 * second, 0.085 * 40 * second, 40 * second))
    assert plain.rollouts["m"]["stage"] == 1


def test_the_one_sided_evidence_reaches_the_threshold_exactly_at_the_radius():
    variance, effective = 0.09 / 5_000, 5_000
    r = asymptotic.radius(variance, effective, 0.01)
    assert asymptotic.log_evidence(r, variance, effective) == pytest.approx(math.log(100), abs=1e-6)
    assert asymptotic.decide(-1.01 * r, variance, effective, 0.01)[0] == "fail"
    assert asymptotic.decide(-0.99 * r, variance, effective, 0.01)[:2] == ("undecided", "fail")
    assert asymptotic.decide(1.01 * r, variance, effective, 0.01)[0] == "pass"


def test_rollout_validate_accepts_the_examples_and_refuses_a_metric_the_task_does_not_compute(tmp_path):
    from click.testing import CliRunner

    from streams.cli.main import cli

    for example in ("ab", "shadow", "canary", "bluegreen"):
        result = CliRunner().invoke(cli, ["rollout", "validate", "-f", f"deploy/examples/{example}.yaml"])
        assert result.exit_code == 0, result.output
    path = tmp_path / "spec.yaml"
    path.write_text("model: m\nbaseline: v1\ncandidate: v2\nmode: ab\ntask: binary\n"
                    "guardrails:\n  - {metric: mae, max_degradation: 0.1}\n")
    result = CliRunner().invoke(cli, ["rollout", "validate", "-f", str(path)])
    assert result.exit_code == 1
    assert "guardrails[0].metric" in result.output and "'mae' is not defined for task 'binary'" in result.output


def test_the_report_draws_a_panel_for_every_guardrail_of_a_decision(tmp_path):
    from schemas.control import Bounds, Decision, GuardrailEvidence, RoutingCommand
    from streams.report.html import write_report

    command = RoutingCommand(command_id="4b1c3f0e-2a55-4d6e-9a53-5c0ab1e1d002", model="m", epoch=0,
                             issued_at=1_790_000_000_000, issuer="evaluator", action="set_routes",
                             routes={"v1": 50.0, "v2": 50.0}, reason="start", rollout_id="r", baseline="v1")
    evidence = GuardrailEvidence(guardrail="conversion", metric="outcome.converted", verdict="fail",
                                 candidate=Bounds(value=0.08, samples=5000, lower=0.07, upper=0.09),
                                 baseline=Bounds(value=0.10, samples=5000, lower=0.095, upper=0.105),
                                 statistic=6.0, threshold=4.6, leaning="fail")
    decision = Decision(rollout_id="r", model="m", step=0, action="rollback", ts=1_790_000_060_000,
                        reason="guardrail failed: conversion", evidence=[evidence])
    path = write_report(tmp_path / "report.html", "t", [command], [decision], [])
    text = path.read_text()
    assert "outcome.converted: per-window values; error bars" in text


def test_sums_past_float_range_give_no_verdict_rather_than_a_crash():
    guardrail = Guardrail(metric="mape", max_degradation=0.0)
    test = judging.new_test_for(guardrail)
    start = slim(None)
    states = []
    for scale in (1.0, 2.0, 3.0):
        state = slim(None)
        state["sums"] = {"mape": [100 * scale, 1e300 * scale, math.inf]}  # labels of 0: errors over 2^-52
        states.append(state)
    evidence = None
    for last, now in zip(states, states[1:]):
        evidence = judging.judge(guardrail, test, (start, last, now), (start, last, now), "regression")
    assert evidence.verdict == "undecided"


# -- a planned effect (min_detectable_effect) -------------------------------------------------------
def _conversion_look(n: int, converted: int) -> dict:
    return {"n": 0, "err": 0, "lab": n, "lat": slim(None)["lat"], "cls": None,
            "sums": {"outcome.converted": [n, float(converted), float(converted)]}}


def _accuracy_look(n: int, correct: int) -> dict:
    return {
        "n": n,
        "err": 0,
        "lab": n,
        "lat": slim(None)["lat"],
        "cls": {"cm": {"1\x1f1": correct, "1\x1f0": n - correct}},
    }


def looks_to_fail(guardrail: Guardrail, rng: np.random.Generator, rates: tuple[float, float], per_look: int,
                  looks: int, look_of=_conversion_look) -> int | None:
    """Candidate samples at the guardrail's first fail (None if it never fails) over ``looks`` looks of
    ``per_look`` samples per version, rates ``(baseline, candidate)`` of the look's success."""
    test = judging.new_test_for(guardrail)
    start, last_b, last_c = slim(None), slim(None), slim(None)
    b, c = slim(None), slim(None)
    for look in range(1, looks + 1):
        add_slim(b, look_of(per_look, int(rng.binomial(per_look, rates[0]))))
        add_slim(c, look_of(per_look, int(rng.binomial(per_look, rates[1]))))
        now_b, now_c = slim(b), slim(c)
        evidence = judging.judge(guardrail, test, (start, last_b, now_b), (start, last_c, now_c), "binary")
        last_b, last_c = now_b, now_c
        if evidence.verdict == "fail":
            return look * per_look
    return None


def test_a_planned_effect_is_caught_sooner_and_an_equal_candidate_still_rarely_fails():
    """Conversion 10% -> 9%: the fixed-horizon test for 80% power at alpha 0.01 needs about 17,300
    candidate samples. Tuned to that drop, the test rolls back at a median below it; untuned, later
    (the same traffic for both). An equal candidate under the tuned test: at most 1% of rollouts fail,
    allowing the sampling error of 200 rollouts (the bench measures 1,000)."""
    untuned = Guardrail(metric="outcome.converted", max_degradation=0.0)
    tuned = untuned.model_copy(update={"min_detectable_effect": 0.01})
    medians = {}
    for name, guardrail in (("untuned", untuned), ("tuned", tuned)):
        rng = np.random.default_rng(12)
        caught = [looks_to_fail(guardrail, rng, (0.10, 0.09), 500, 120) for _ in range(60)]
        medians[name] = float(np.median([x if x is not None else math.inf for x in caught]))
    assert medians["tuned"] < medians["untuned"]
    assert medians["tuned"] <= 17_300
    rng = np.random.default_rng(13)
    false = sum(looks_to_fail(tuned, rng, (0.10, 0.10), 1_000, 50) is not None for _ in range(200))
    assert false <= 5


def test_the_planned_mixture_is_fixed_at_the_first_judged_look():
    guardrail = Guardrail(metric="outcome.revenue", max_degradation_relative=0.0, min_detectable_effect=0.05)
    test = judging.new_test_for(guardrail)
    rng = np.random.default_rng(3)
    start, last, planned = slim(None), slim(None), []
    state = slim(None)
    for look in range(4):
        values = rng.lognormal(1.5, 1.0 + look, 2_000)  # the spread grows look by look
        add_slim(state, {"n": 0, "err": 0, "lab": 2_000, "lat": slim(None)["lat"], "cls": None,
                         "sums": {"outcome.revenue": [2_000, float(values.sum()), float((values ** 2).sum())]}})
        now = slim(state)
        judging.judge(guardrail, test, (start, last, now), (start, last, now), "binary")
        last = now
        planned.append(list(test["planned"]))
    assert planned[0] == planned[-1]
    size, centre = planned[0]
    assert 0 < centre <= asymptotic.MAX_PLANNED_DRIFT
    assert size == pytest.approx(1 / (asymptotic.PLANNED_SPREAD * centre) ** 2)


def test_an_untuned_mixture_is_the_centred_one_and_a_centred_prior_needs_less_evidence_at_its_drift():
    variance, effective = 1.0 / 4_000, 4_000.0  # a per-sample standard deviation of 1
    centred = asymptotic.log_evidence(0.05, variance, effective, (asymptotic.Mixture(1_600.0),))
    planned = asymptotic.log_evidence(0.05, variance, effective, (asymptotic.Mixture(1_600.0, 0.05),))
    x = 0.05 * math.sqrt(effective) * math.sqrt(effective / (effective + 1_600.0))
    assert centred == pytest.approx(
        0.5 * x * x - 0.5 * math.log(5_600 / 1_600) + math.log(2 * 0.5 * math.erfc(-x / math.sqrt(2)))
    )
    assert planned > centred


def test_an_accuracy_guardrail_with_a_planned_effect_moves_its_grid_of_alternatives():
    """90% -> 88% accuracy: the grid's second odds ratio becomes the planned one (bad 10% -> 12%), and
    the drop is caught sooner than with the default grid on the same traffic."""
    untuned = Guardrail(metric="accuracy", max_degradation=0.0)
    tuned = untuned.model_copy(update={"min_detectable_effect": 0.02})
    test = judging.new_test_for(tuned)
    start = slim(None)
    b, c = slim(None), slim(None)
    add_slim(b, _accuracy_look(1_000, 900))
    add_slim(c, _accuracy_look(1_000, 880))
    judging.judge(tuned, test, (start, start, slim(b)), (start, start, slim(c)), "binary")
    assert test["shifts"][1] == pytest.approx(math.log(0.12 / 0.88) - math.log(0.10 / 0.90))
    medians = {}
    for name, guardrail in (("untuned", untuned), ("tuned", tuned)):
        rng = np.random.default_rng(4)
        caught = [looks_to_fail(guardrail, rng, (0.90, 0.88), 250, 120, _accuracy_look) for _ in range(60)]
        medians[name] = float(np.median([x if x is not None else math.inf for x in caught]))
    assert medians["tuned"] < medians["untuned"]


def test_a_planned_effect_where_no_test_takes_one_is_refused_by_name(tmp_path):
    from click.testing import CliRunner
    from pydantic import ValidationError

    from streams.cli.main import cli

    assert "takes no min_detectable_effect" in judging.unplannable_reason(
        Guardrail(metric="latency_p99_ms", max=250, min_detectable_effect=10))
    assert judging.unplannable_reason(Guardrail(metric="f1", max_degradation=0.0, min_detectable_effect=0.03)) is None
    with pytest.raises(ValidationError, match="min_detectable_effect"):
        Guardrail(metric="schema_compatible", min_detectable_effect=0.1)
    with pytest.raises(ValidationError, match="greater than 0"):
        Guardrail(metric="mae", max_degradation=0.0, min_detectable_effect=0)
    path = tmp_path / "spec.yaml"
    path.write_text("model: m\nbaseline: v1\ncandidate: v2\nmode: ab\ntask: binary\n"
                    "guardrails:\n  - {metric: latency_p95_ms, max_degradation: 5, min_detectable_effect: 5}\n")
    result = CliRunner().invoke(cli, ["rollout", "validate", "-f", str(path)])
    assert result.exit_code == 1
    assert "guardrails[0].min_detectable_effect" in result.output

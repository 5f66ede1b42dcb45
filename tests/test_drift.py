"""Drift: the statistics against scipy, false alarms at or below the configured rate (A/A), shifts
detected once per condition, skew between versions, concept drift, restarts, and the join's facts."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from scipy import stats as scipy_stats

from evaluators.drift import statistics as st
from evaluators.drift.config import DriftConfig
from evaluators.drift.monitor import CONCEPT, RECENT_WINDOWS, DriftMonitor
from evaluators.facts import ServedFeatures
from evaluators.metrics import MetricsConfig
from evaluators.metrics import version as vm
from evaluators.metrics.features import MAX_CATEGORIES, OTHER, PREDICTION, add_features, add_value, new_summary
from evaluators.windows import MetricsAccumulator

MINUTE = 60_000


def numeric(values) -> dict:
    summary = new_summary()
    for v in values:
        add_value(summary, float(v))
    return summary


# -- statistics --------------------------------------------------------------------------------------
def test_ks_on_sketches_matches_scipy_within_the_sketch_accuracy():
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.05, 0.2, 1.0):
        a, b = rng.normal(10, 1, 3000), rng.normal(10 + shift, 1, 2000)
        ours = st.ks(numeric(a)["num"], numeric(b)["num"])
        theirs = scipy_stats.ks_2samp(a, b)
        assert abs(ours.statistic - theirs.statistic) < 0.02
        assert ours.statistic <= theirs.statistic + 1e-9 or abs(ours.statistic - theirs.statistic) < 0.02
        if theirs.pvalue < 1e-6:
            assert ours.p_value < 1e-4


def test_wasserstein_and_psi_measure_the_size_of_a_shift():
    rng = np.random.default_rng(4)
    a, b = rng.normal(100, 10, 5000), rng.normal(130, 10, 5000)
    assert st.wasserstein(numeric(a)["num"], numeric(b)["num"]) == pytest.approx(
        scipy_stats.wasserstein_distance(a, b), rel=0.03)
    same = st.psi(numeric(a)["num"], numeric(rng.normal(100, 10, 5000))["num"])
    shifted = st.psi(numeric(a)["num"], numeric(b)["num"])
    assert same < 0.02 < 1.0 < shifted


def test_chi_square_matches_scipy_and_categorical_magnitudes():
    ref, cur = {"eu": 500, "us": 300, "apac": 200}, {"eu": 380, "us": 420, "apac": 200}
    ours = st.chi_square(ref, cur)
    stat, p, _, _ = scipy_stats.chi2_contingency(np.array([[500, 300, 200], [380, 420, 200]]), correction=False)
    assert ours.statistic == pytest.approx(stat) and ours.p_value == pytest.approx(p)
    assert st.js_distance(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert st.js_distance({"a": 10}, {"b": 10}) == pytest.approx(1.0)
    assert st.unseen_rate(ref, {"eu": 3, "latam": 1}) == 0.25


def test_summaries_count_missing_cap_categories_and_merge():
    features: dict = {}
    add_features(features, {"amount": 3.0, "country": "fr"})
    add_features(features, {"amount": None})  # country absent: missing too
    assert (features["amount"]["miss"], features["country"]["miss"]) == (1, 1)
    summary = new_summary()
    for i in range(MAX_CATEGORIES + 10):
        add_value(summary, f"c{i}")
    assert len(summary["cat"]) == MAX_CATEGORIES + 1 and summary["cat"][OTHER] == 10


# -- the monitor -------------------------------------------------------------------------------------
def window(rng: random.Random, n: int, amount_mean: float = 100.0, eu_share: float = 0.5,
           missing: float = 0.0) -> dict:
    state = vm.new_state()
    for _ in range(n):
        amount = None if rng.random() < missing else rng.gauss(amount_mean, 15)
        add_features(state["ft"], {"amount": amount, "country": "eu" if rng.random() < eu_share else "us"})
    state["n"] = n
    return state


def test_a_a_false_alarm_rate_is_within_the_configured_rate():
    """1,200 windows (24 independent runs of 50, each with its own reference), reference and current
    from one distribution, the tests alone (no effect-size floor), one window to fire: flagged
    conditions per condition-window stay at or below alpha (binomial 99.9% margin)."""
    alpha = 0.01
    config = DriftConfig(alpha=alpha, confirm_windows=1, clear_windows=1, cooldown_ms=0, reference_windows=3,
                         min_samples=50, min_psi=0.0, min_js=0.0, min_missing_change=0.0)
    alarms = checks = 0
    for run in range(24):
        monitor, rng = DriftMonitor(config), random.Random(100 + run)
        for i in range(50 + config.reference_windows):
            _, alerts = monitor.observe("m", i * MINUTE, {"v1": ("primary", window(rng, 200))})
            alarms += sum(a.status == "firing" for a in alerts)
        checks += 50 * 2  # two features, one condition each per window
    margin = 3.1 * (alpha * (1 - alpha) / checks) ** 0.5
    assert alarms / checks <= alpha + margin, (alarms, checks)


def test_a_shift_raises_one_alert_for_that_feature_and_version_then_a_resolved_notice():
    monitor, rng = DriftMonitor(DriftConfig(reference_windows=3, min_samples=100)), random.Random(5)
    alerts = []
    for i in range(30):
        drifted = 10 <= i < 20
        versions = {"v1": ("primary", window(rng, 400)),
                    "v2": ("canary", window(rng, 400, amount_mean=140.0 if drifted else 100.0))}
        scores, new = monitor.observe("m", i * MINUTE, versions)
        alerts += new
        if i == 15:
            assert scores["v2"]["amount.psi"] > 1 and scores["v2"]["skew.amount.ks_p"] < 1e-6
            assert scores["v1"]["amount.psi"] < 0.1
    assert [(a.version, a.feature, a.status, a.kind) for a in alerts] == [
        ("v2", "amount", "firing", "drift"), ("v2", "amount", "resolved", "drift")]
    firing = alerts[0]
    assert firing.value is not None and firing.threshold is not None and firing.value < firing.threshold
    assert firing.ts.timestamp() * 1000 == 11 * MINUTE  # the second flagged window in a row (confirm_windows=2)


def test_cooldown_stops_a_flapping_condition_from_firing_again():
    config = DriftConfig(reference_windows=3, clear_windows=1, cooldown_ms=30 * MINUTE)
    monitor, rng = DriftMonitor(config), random.Random(6)
    statuses = []
    for i in range(40):
        drifted = i >= 5 and (i // 3) % 2 == 0  # on and off every three windows
        _, alerts = monitor.observe("m", i * MINUTE, {"v1": ("primary", window(rng, 400, 150.0 if drifted else 100))})
        statuses += [(i, a.status) for a in alerts]
    firings = [i for i, s in statuses if s == "firing"]
    assert len(firings) >= 2 and all(b - a >= 30 for a, b in zip(firings, firings[1:]))


def test_missing_values_and_new_categories_are_flagged():
    monitor, rng = DriftMonitor(DriftConfig(reference_windows=3)), random.Random(7)
    alerts = []
    for i in range(8):
        state = window(rng, 500, missing=0.3 if i >= 4 else 0.0, eu_share=0.1 if i >= 4 else 0.5)
        scores, new = monitor.observe("m", i * MINUTE, {"v1": ("primary", state)})
        alerts += new
    assert scores["v1"]["amount.missing_rate"] > 0.2
    assert sorted(a.feature for a in alerts) == ["amount", "country"]


def test_a_different_population_is_skew_even_without_drift_over_time():
    """v2 sees another population from its first window on: its own reference learns it, the
    comparison with the baseline's same window does not."""
    monitor, rng = DriftMonitor(DriftConfig(reference_windows=3)), random.Random(8)
    alerts = []
    for i in range(8):
        _, new = monitor.observe("m", i * MINUTE, {"v1": ("primary", window(rng, 400)),
                                                   "v2": ("canary", window(rng, 400, eu_share=0.9))})
        alerts += new
    assert [(a.version, a.feature) for a in alerts] == [("v2", "country")]
    assert "skew" in alerts[0].message


def test_prediction_drift_and_concept_drift_on_errors():
    config = MetricsConfig(tasks={"m": "binary"})
    monitor, rng = DriftMonitor(DriftConfig(reference_windows=3)), random.Random(9)
    from evaluators.facts import JoinedRecord, ResponseFact
    alerts = []
    for i in range(16):
        state, later = vm.new_state(), i >= 8
        for j in range(600):
            label = rng.random() < 0.5
            p_ones = 0.8 if later else 0.5
            prediction = int(rng.random() < p_ones)
            wrong_rate = 0.3 if later else 0.05
            prediction_ok = int(label) if rng.random() > wrong_rate else 1 - int(label)
            value = prediction if later else prediction_ok
            vm.add_fact(state, ResponseFact("m", "v1", "primary", 0, 5.0, None, value), config)
            vm.add_fact(state, JoinedRecord("m", "v1", "primary", str(j), 0, 1, value, None, int(label), {}, 5.0,
                                            None, None), config)
        _, new = monitor.observe("m", i * MINUTE, {"v1": ("primary", state)})
        alerts += new
    assert {a.feature for a in alerts} == {PREDICTION, CONCEPT}


def test_state_survives_a_json_round_trip_and_windows_are_observed_once():
    monitor, rng = DriftMonitor(DriftConfig(reference_windows=3)), random.Random(10)
    twin_rng = random.Random(10)
    for i in range(5):
        monitor.observe("m", i * MINUTE, {"v1": ("primary", window(rng, 300))})
    restored = DriftMonitor(DriftConfig(reference_windows=3), json.loads(json.dumps(monitor.to_state())))
    state = window(rng, 300, amount_mean=160)
    again = json.loads(json.dumps(state))
    first = monitor.observe("m", 5 * MINUTE, {"v1": ("primary", state)})
    second = restored.observe("m", 5 * MINUTE, {"v1": ("primary", again)})
    assert first[0] == second[0] and first[0]["v1"]["amount.psi"] > 1
    assert restored.observe("m", 5 * MINUTE, {"v1": ("primary", again)})[1] == []  # already observed
    del twin_rng


def test_a_window_observed_again_after_a_restart_gets_its_own_scores_and_no_alert():
    """The owner saves the monitor before publishing a window's snapshots: after a crash between the
    two, the next owner closes the window again, and it must come out as the first time."""
    config = DriftConfig(reference_windows=2, confirm_windows=1)
    monitor, rng = DriftMonitor(config), random.Random(11)
    for i in range(3):
        monitor.observe("m", i * MINUTE, {"v1": ("primary", window(rng, 300))})
    shifted = [window(rng, 300, amount_mean=160), window(rng, 300, amount_mean=200)]
    first = [monitor.observe("m", (3 + k) * MINUTE, {"v1": ("primary", w)}) for k, w in enumerate(shifted)]
    assert first[0][1] and first[0][0]["v1"] != first[1][0]["v1"]  # an alert, and two different windows
    restored = DriftMonitor(config, json.loads(json.dumps(monitor.to_state())))
    again = [restored.observe("m", (3 + k) * MINUTE, {"v1": ("primary", w)}) for k, w in enumerate(shifted)]
    assert [scores for scores, _ in again] == [scores for scores, _ in first]
    assert [alerts for _, alerts in again] == [[], []]
    for i in range(6, 6 + RECENT_WINDOWS + 2):  # only recent windows are kept
        monitor.observe("m", i * MINUTE, {"v1": ("primary", window(rng, 300))})
    assert len(monitor.recent["m"]) == RECENT_WINDOWS and str(3 * MINUTE) not in monitor.recent["m"]


# -- the facts behind it -----------------------------------------------------------------------------
def test_served_features_land_in_windows_not_in_running_totals():
    acc = MetricsAccumulator(MetricsConfig(window_ms=1000), settle_ms=lambda model: 0)
    acc.add(ServedFeatures("m", "v1", "primary", 1_100, {"amount": 5.0}))
    acc.advance(2_100)
    (closed,) = acc.closed
    assert closed["state"]["ft"]["amount"]["num"]["n"] == 1
    assert "ft" not in acc.running_totals()["m\x1fv1\x1fprimary"]
    acc.add(ServedFeatures("m", "v1", "primary", 1_200, {"amount": 6.0}))  # its window closed: late
    assert acc.late == 1

"""Metric state against an independent implementation (scikit-learn) on real models and datasets;
merging partitions; windows; the merger."""

from __future__ import annotations

import random

import pytest

from evaluators.facts import JoinedRecord, ResponseFact
from evaluators.merging import PartialsMerger
from evaluators.metrics import MetricsConfig
from evaluators.metrics import version as vm
from evaluators.metrics.sketch import quantile
from evaluators.windows import MetricsAccumulator
from tests.ml_fixtures import served, sklearn_metrics

TASKS = ["binary", "multiclass", "regression", "ranking"]


def joined(task: str, version: str) -> list[JoinedRecord]:
    data = served(task)
    return [JoinedRecord("m", version, "primary", f"r{i}", 1000 + i, 2000 + i, data.predictions[version][i],
                         data.scores[version][i], data.labels[i], {"revenue": float(i % 7)}, 5.0, None, None)
            for i in range(len(data.labels))]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_metrics_equal_sklearn_on_the_same_pairs(task, version):
    config = MetricsConfig(tasks={"m": task})
    state = vm.new_state()
    for record in joined(task, version):
        vm.add_fact(state, record, config)
    ours = vm.compute(state, "m", config)
    data = served(task)
    theirs = sklearn_metrics(task, data.labels, data.predictions[version], data.scores[version])
    assert theirs.keys() <= ours.keys()
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-9, rel=1e-9), name
    assert ours["outcome.revenue.count"] == len(data.labels)


def test_the_weaker_model_is_measurably_weaker():
    config = MetricsConfig(tasks={"m": "binary"})
    values = {}
    for version in ("v1", "v2"):
        state = vm.new_state()
        for record in joined("binary", version):
            vm.add_fact(state, record, config)
        values[version] = vm.compute(state, "m", config)
    assert values["v1"]["accuracy"] > values["v2"]["accuracy"] + 0.02


@pytest.mark.parametrize("task", TASKS)
def test_four_partitions_merged_equal_one_pass(task):
    config = MetricsConfig(tasks={"m": task})
    rng = random.Random(7)
    whole, parts = vm.new_state(), [vm.new_state() for _ in range(4)]
    for record in joined(task, "v1"):
        response = ResponseFact("m", "v1", "primary", record.ts_ms, rng.uniform(1, 300), None, record.prediction)
        target = rng.choice(parts)
        for fact in (response, record):
            vm.add_fact(whole, fact, config)
            vm.add_fact(target, fact, config)
    merged = vm.new_state()
    for part in parts:
        vm.merge(merged, part)
    one, many = vm.compute(whole, "m", config), vm.compute(merged, "m", config)
    assert one.keys() == many.keys()
    for name in one:
        assert many[name] == pytest.approx(one[name], rel=1e-12, abs=1e-12), name
    assert merged["lat"]["pos"] == whole["lat"]["pos"]  # sketches merge exactly
    assert (merged["n"], merged["lab"]) == (whole["n"], whole["lab"])


def test_latency_quantiles_within_the_sketch_error():
    rng = random.Random(3)
    values = [rng.lognormvariate(3, 1) for _ in range(20_000)]
    state = vm.new_state()
    for v in values:
        vm.add_fact(state, ResponseFact("m", "v1", "primary", 0, v, None, 1), MetricsConfig())
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[int(q * (len(values) - 1))]
        assert quantile(state["lat"], q) == pytest.approx(exact, rel=0.0101)


def test_exact_auc_survives_coarsening_with_a_reported_bound(monkeypatch):
    from evaluators.metrics import classification

    monkeypatch.setattr(classification, "MAX_DISTINCT_SCORES", 50)
    rng = random.Random(5)
    state = classification.new_state()
    pairs = [(y, rng.random() * 0.6 + 0.4 * y) for y in (rng.randint(0, 1) for _ in range(2000))]
    for y, s in pairs:
        classification.add(state, y, int(s >= 0.5), s)
    from sklearn.metrics import roc_auc_score

    exact = roc_auc_score([y for y, _ in pairs], [s for _, s in pairs])
    values = classification.compute(state, "binary")
    assert state["coarse"] and 0 < values["roc_auc_max_error"] < 0.01
    assert abs(values["roc_auc"] - exact) <= values["roc_auc_max_error"] + 1e-12


def test_windows_hold_facts_by_response_time_and_close_after_the_settle_time():
    acc = MetricsAccumulator(MetricsConfig(window_ms=1000), settle_ms=lambda model: 5000)
    acc.add(ResponseFact("m", "v1", "primary", 1500, 4.0, None, 1))
    acc.add(JoinedRecord("m", "v1", "primary", "r", 1500, 5400, 1, 0.9, 1, {}, 4.0, None, None))
    acc.advance(6999)
    assert acc.closed == []
    acc.advance(7000)
    [window] = acc.closed
    assert (window["start"], window["state"]["n"], window["state"]["lab"]) == (1000, 1, 1)
    acc.add(ResponseFact("m", "v1", "primary", 1600, 4.0, None, 1))  # its window is already final
    assert acc.late == 1 and acc.running_totals()["m\x1fv1\x1fprimary"]["n"] == 2
    acc.advance(7001)
    assert acc.closed == []  # a closed window is handed out once


def test_merger_publishes_a_window_once_when_every_partition_has_closed_it():
    config = MetricsConfig(window_ms=1000, tasks={"m": "binary"})
    merger = PartialsMerger(config, settle_ms=lambda model: 100, partitions=3)
    for partition in range(3):
        state = vm.new_state()
        vm.add_fact(state, ResponseFact("m", "v1", "primary", 10, 5.0, None, 1), config)
        merger.final(partition, {"model": "m", "version": "v1", "role": "primary", "start": 0, "end": 1000,
                                 "requests": 1, "state": state})
    merger.heartbeat(0, {"wm": 5000})
    merger.heartbeat(1, {"wm": 1100})
    assert merger.ready() == []  # partition 2 has not reported
    merger.heartbeat(2, {"wm": None})  # caught up with no data: it holds nothing back
    [snapshot] = merger.ready()
    assert (snapshot.responses, snapshot.requests, snapshot.window.end.timestamp()) == (3, 3, 1.0)
    merger.final(0, {"model": "m", "version": "v1", "role": "primary", "start": 0, "end": 1000,
                     "requests": 1, "state": vm.new_state()})  # re-sent after a restart
    assert merger.ready() == []


def test_a_version_in_two_roles_within_a_window_is_judged_for_drift_whole():
    """The window in which the candidate took 100% (``canary``, then ``primary``): both snapshots are
    published, and the drift monitor sees the version once, with every response of the window."""
    config = MetricsConfig(window_ms=1000, tasks={"m": "binary"})
    merger = PartialsMerger(config, settle_ms=lambda model: 0, partitions=1)
    seen = {}

    def observe(model, start, versions):
        seen.update({v: (role, state["n"]) for v, (role, state) in versions.items()})
        return {}, []

    merger.drift.observe = observe
    for version, role, n in (("v1", "primary", 2), ("v2", "canary", 3), ("v2", "primary", 4)):
        state = vm.new_state()
        for i in range(n):
            vm.add_fact(state, ResponseFact("m", version, role, 10 + i, 5.0, None, 1), config)
        merger.final(0, {"model": "m", "version": version, "role": role, "start": 0, "end": 1000,
                         "requests": n, "state": state})
    merger.heartbeat(0, {"wm": 5000})
    snapshots = merger.ready()
    assert sorted((s.version, s.role, s.responses) for s in snapshots) == [
        ("v1", "primary", 2), ("v2", "canary", 3), ("v2", "primary", 4)]
    assert seen == {"v1": ("primary", 2), "v2": ("primary", 7)}


def test_clock_skew_is_judged_only_once_every_partition_has_a_time():
    from evaluators.counts import JoinCounts
    from evaluators.facts import ClockSkew

    counts = JoinCounts()
    counts.add(ClockSkew("pay", "request", "future", 7_200_000))
    merger = PartialsMerger(MetricsConfig(), settle_ms=lambda model: 100, partitions=2)
    merger.heartbeat(0, {"wm": 1_790_000_000_000, "counts": counts.to_state()})
    merger.heartbeat(1, {"wm": 0, "counts": JoinCounts().to_state()})  # a source not heard from yet
    merger.ready()
    assert merger.alerts == []  # no alert stamped at time 0, whose cool-down would end at once
    merger.heartbeat(1, {"wm": 1_790_000_000_500, "counts": JoinCounts().to_state()})
    merger.ready()
    [alert] = merger.alerts
    assert alert.kind == "schema" and alert.ts.timestamp() == 1_790_000_000
    counts.add(ClockSkew("pay", "label", "future", 7_200_000))
    merger.heartbeat(0, {"wm": 1_790_000_060_000, "counts": counts.to_state()})
    merger.ready()
    assert len(merger.alerts) == 1  # within the cool-down


# --- a batch's facts folded at once ---------------------------------------------------------

def _fact_stream(seed: int, n: int = 400) -> list:
    from evaluators.facts import AgreementFact, Expired, ServedFeatures
    from evaluators.metrics.features import MAX_CATEGORIES, MAX_FEATURES

    rng = random.Random(seed)
    predictions = [0, 1, "cat", True, 0.25, None, [1, 2], {"a": 1}]
    names = [f"f{i}" for i in range(MAX_FEATURES + 6)]  # more than a summary keeps
    facts: list = []
    for i in range(n):
        ts = rng.randint(0, 10_000)
        roll = rng.random()
        prediction = rng.choice(predictions)
        if roll < 0.35:
            error = "boom" if rng.random() < 0.1 else None
            latency = rng.choice([None, 0.0, -1.5, rng.uniform(0.1, 500.0), float(rng.randint(1, 9))])
            facts.append(ResponseFact("m", "v1", "primary", ts, latency, error,
                                      None if error else (prediction if prediction is not None else 1)))
        elif roll < 0.6:
            facts.append(JoinedRecord("m", "v1", "primary", f"r{i}", ts, ts + rng.randint(-5, 5000),
                                      rng.choice([0, 1]), rng.choice([None, rng.random()]), rng.choice([0, 1]),
                                      {"revenue": rng.uniform(0, 9)}, 3.0, None, None))
        elif roll < 0.85:
            features = {
                name: rng.choice(
                    [rng.gauss(0, 5), rng.randint(-3, 3), f"c{rng.randint(0, MAX_CATEGORIES + 20)}", True, None, [1]]
                )
                for name in rng.sample(names, rng.randint(0, 12))
            }
            facts.append(ServedFeatures("m", "v1", "primary", ts, features))
        elif roll < 0.93:
            facts.append(Expired("m", "v1", "primary", ts))
        else:
            facts.append(AgreementFact("m", "v1", "v0", ts, prediction, rng.choice(predictions), 0.5, 0.25))
    return facts


@pytest.mark.parametrize("seed", range(6))
def test_a_run_of_facts_folded_at_once_equals_one_at_a_time(seed):
    """``add_facts`` (what a batch does per version and window) gives the very state ``add_fact``
    gives fact by fact, float sums to the last bit, in any cut of the stream into runs."""
    config = MetricsConfig(tasks={"m": "binary"})
    facts = _fact_stream(seed)
    one_by_one = vm.new_state()
    for fact in facts:
        vm.add_fact(one_by_one, fact, config)
    in_runs = vm.new_state()
    rng, i = random.Random(seed), 0
    while i < len(facts):
        size = rng.randint(1, 120)
        vm.add_facts(in_runs, facts[i:i + size], config)
        i += size
    assert in_runs == one_by_one
    assert one_by_one["ft"] and one_by_one["lat"]["n"]  # the stream exercised summaries and sketches


def test_a_batch_through_the_windows_equals_one_fact_at_a_time():
    """Windows and running totals to the last bit: a batch adds to each in the facts' order."""
    facts = _fact_stream(7, n=600)
    config = MetricsConfig(tasks={"m": "binary"}, window_ms=1_000)
    singly = MetricsAccumulator(config, settle_ms=lambda model: 2_000)
    batched = MetricsAccumulator(config, settle_ms=lambda model: 2_000)
    for start in range(0, len(facts), 150):
        for fact in facts[start:start + 150]:
            singly.add(fact)
        batched.add_all(facts[start:start + 150])
        watermark = facts[start].ts_ms
        singly.advance(watermark)
        batched.advance(watermark)
        assert batched.closed == singly.closed
        assert list(batched.records) == list(singly.records)
        for key in singly.records:
            assert batched.records.get(key) == singly.records.get(key)
        assert batched.to_state() == singly.to_state()
    assert singly.late  # some facts arrived after their window closed


# --- open windows live in records of their own ----------------------------------------------

def test_the_partition_state_does_not_grow_with_the_windows_a_week_long_label_timeout_keeps_open():
    """At the defaults (labels may come for 7 days, windows of 60 s) a partition keeps thousands of
    windows open. They are records of their own, written by the batches that touch them: the
    partition state the join writes every batch stays the same size (it grew by 0.3 MB an hour at
    30 requests a minute when it held them, past a broker's 1 MB record limit in 3 hours)."""
    import orjson

    from evaluators.accumulators import evaluator_accumulator
    from evaluators.join import Incoming, JoinConfig, JoinPartition
    from evaluators.store import DictStore
    from schemas.fast_codec import LabelEvent, RequestEvent, ResponseEvent

    config, metrics = JoinConfig(), MetricsConfig()
    store = DictStore(snapshot=True)
    join = JoinPartition(store, config, "run", evaluator_accumulator(metrics, config.settle_ms))
    rng, offsets, sizes = random.Random(3), {"q": 0, "s": 0, "l": 0}, []
    t0 = 1_780_000_020_000  # a whole minute

    def incoming(message, source):
        offsets[source] += 1
        return Incoming(message, source, offsets[source])

    for minute in range(180):
        batch = []
        for k in range(10):
            ts, rid = t0 + (minute * 60 + k * 6) * 1000, f"r{minute}-{k}"
            batch.append(incoming(RequestEvent(request_id=rid, model="m", ts_ms=ts, features={
                "amount": rng.random() * 100, "country": rng.choice("ABCDEFGH")}), "q"))
            for version, role in (("v1", "primary"), ("v2", "canary")):
                batch.append(incoming(ResponseEvent(request_id=rid, model="m", version=version, role=role,
                                                    ts_ms=ts + 5, prediction=rng.randint(0, 1),
                                                    score=round(rng.random(), 2),  # a bounded AUC map
                                                    latency_ms=rng.uniform(5, 50)), "s"))
            batch.append(
                incoming(LabelEvent(request_id=rid, model="m", ts_ms=ts + 60_000, label=rng.randint(0, 1)), "l")
            )
        join.process(batch, sources=["q", "s", "l"])
        sizes.append((len(orjson.dumps(join.last_state["acc"])), len(orjson.dumps(join.last_state))))
    windows = [key for key in store if key.startswith("w:")]
    assert len(windows) == 180  # every window still open: labels may come for a week
    metric_sizes = [metric for metric, _ in sizes]
    assert max(metric_sizes[60:]) < 1.1 * metric_sizes[59]  # sketch bins fill, then stay
    # The rest is bounded too: the expiry queue keeps under 500 entries in the partition state.
    assert max(whole for _, whole in sizes) < 40_000
    totals = join.accumulator().metrics.running_totals()
    assert totals["m\x1fv2\x1fcanary"]["n"] == totals["m\x1fv2\x1fcanary"]["lab"] == 1800


def test_windows_kept_in_the_partition_state_by_an_earlier_version_move_to_records():
    from evaluators.facts import ResponseFact
    from evaluators.merging import heartbeat_partial
    from evaluators.store import DictStore

    config = MetricsConfig(window_ms=1000)
    window = vm.new_state()
    vm.add_facts(window, [ResponseFact("m", "v1", "primary", 1_100 + i, 5.0, None, 1) for i in range(3)], config)
    key = "m\x1fv1\x1fprimary"
    earlier = {"v": {key: {"base": vm.new_state(features=False), "w": {"1000": window}}},
               "q": {"m": {"cum": 4, "w": {"1000": 4}}}, "closed": [], "late": 0, "wm": 1_500}
    merger = PartialsMerger(config, settle_ms=lambda model: 500, partitions=1)
    merger.heartbeat(0, {"wm": 1_500, "v": earlier["v"], "q": {"m": 4}})
    assert merger.guardrail_totals()[("m", "v1", "primary")]["n"] == 3  # an earlier heartbeat still reads
    records = DictStore(snapshot=True)
    acc = MetricsAccumulator(config, settle_ms=lambda model: 500, state=earlier, records=records)
    assert acc.running_totals()[key]["n"] == 3 and acc.requests_of("m") == 4
    acc.add(ResponseFact("m", "v1", "primary", 1_900, 5.0, None, 0))
    acc.advance(1_600)
    assert list(records) == ["m\x1f1000"] and "w" not in acc.to_state()["v"][key]
    acc = MetricsAccumulator(config, settle_ms=lambda model: 500, state=acc.to_state(), records=records)
    acc.advance(2_600)
    [closed] = acc.closed
    assert (closed["start"], closed["requests"], closed["state"]["n"]) == (1000, 4, 4)
    assert list(records) == []
    beat = heartbeat_partial(0, {"acc": {"counts": None, "metrics": acc.to_state()}, "seq": 1, "wm": 2_600,
                                 "src": {}, "fence": {}}, "run")
    assert beat["v"][key]["total"]["n"] == 4 and beat["q"] == {"m": 4}

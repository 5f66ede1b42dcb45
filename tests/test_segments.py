"""Segments: the spec's fields, the evaluator's bounded per-segment state (exact and mergeable), the
merger's segment snapshots and totals, and per-segment guardrails in the rollout engine and replay."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from evaluators.facts import AttributedRecord, JoinedRecord, ResponseFact
from evaluators.join import JoinConfig
from evaluators.merging import PartialsMerger, heartbeat_partial
from evaluators.metrics import MetricsConfig
from evaluators.metrics.version import add_slim, new_state, slim
from evaluators.policy.engine import RolloutEngine
from evaluators.replay import Replay
from evaluators.segments import NONE, OTHER, parse_segments, segment_id
from evaluators.windows import MetricsAccumulator, segment_totals
from schemas.rollout import RolloutSpec
from streams.ingest.event_files import EventFiles

T0 = 1_790_000_000_000
SLICED = MetricsConfig(tasks={"m": "binary"}, window_ms=1000, segments={"m": {"region": 3}})


def joined(i: int, version: str, correct: bool, region: str | None, ts: int = T0) -> JoinedRecord:
    attributes = None if region is None else ({"region": region} if region else {})
    return JoinedRecord("m", version, "primary" if version == "v1" else "canary", f"r{i}", ts, ts + 5, 1,
                        None, 1 if correct else 0, {}, 3.0, None, None, attributes)


# -- the spec ------------------------------------------------------------------------------------
def _spec(**overrides) -> dict:
    return {"model": "m", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
            "steps": [50, 100], "bake": {"min_samples": 200},
            "guardrails": [{"metric": "accuracy", "max_degradation": 0.0, "per_segment": True}],
            "segments": ["region", {"attribute": "device", "max_values": 2}], **overrides}


def test_a_spec_names_its_segments_and_splits_alpha_over_every_judged_one():
    spec = RolloutSpec.model_validate(_spec())
    assert [(s.attribute, s.max_values) for s in spec.segments] == [("region", 8), ("device", 2)]
    assert spec.segment_tests() == 1 + (8 + 1) + (2 + 1)
    assert RolloutSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(("overrides", "message"), [
    ({"segments": []}, "guardrails[0].per_segment: the spec names no segments"),
    ({"guardrails": [{"metric": "latency_p99_ms", "max_degradation_relative": 0.1, "per_segment": True}]},
     "only a comparison with the baseline on a labelled metric"),
    ({"guardrails": [{"metric": "accuracy", "min": 0.8, "per_segment": True}]},
     "only a comparison with the baseline on a labelled metric"),
    ({"segments": ["region", "region"]}, "segments: each attribute once"),
    ({"segments": [{"attribute": "a=b"}]}, "attribute"),
])
def test_a_bad_segment_spec_is_refused_naming_the_field(overrides, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RolloutSpec.model_validate(_spec(**overrides))


def test_the_evaluators_segments_option_is_parsed_with_caps():
    assert parse_segments("*=region:4,device") == ("*", {"region": 4, "device": 20})
    for bad in ("fraud", "fraud=", "fraud=region:x", "fraud=region,region", "fraud=a=b"):
        with pytest.raises(ValueError):
            parse_segments(bad)
    config = MetricsConfig(segments={"*": {"region": 4}, "n": {}})
    assert config.segments_of("m") == {"region": 4} and config.segments_of("n") == {}


# -- the evaluator's state -----------------------------------------------------------------------
def test_each_joined_record_counts_in_its_requests_segment_and_responses_do_not():
    acc = MetricsAccumulator(SLICED, settle_ms=lambda m: 0)
    acc.add_all([ResponseFact("m", "v1", "primary", T0, 3.0, None, 1),
                 joined(1, "v1", True, "eu"), joined(2, "v1", False, "eu"), joined(3, "v1", True, "us"),
                 joined(4, "v1", True, None), joined(5, "v1", True, "")])
    totals = segment_totals(acc.to_state()["v"])["m\x1fv1\x1fprimary"]
    # r4's request was not seen: its segment waits for it (or for its expiry, as none)
    assert {s: (t["lab"], t["cls"]["cm"]) for s, t in totals.items()} == {
        "region=eu": (2, {"1\x1f1": 1, "0\x1f1": 1}), "region=us": (1, {"1\x1f1": 1}),
        f"region={NONE}": (1, {"1\x1f1": 1})}
    assert all(t["n"] == 0 for t in totals.values())  # responses are the version's, not a segment's
    assert acc.to_state()["v"]["m\x1fv1\x1fprimary"]["total"]["lab"] == 5
    acc.add_all([AttributedRecord(*[getattr(joined(4, "v1", True, None), f) for f in JoinedRecord.__struct_fields__])])
    totals = segment_totals(acc.to_state()["v"])["m\x1fv1\x1fprimary"]
    assert totals[f"region={NONE}"]["lab"] == 2 and acc.to_state()["v"]["m\x1fv1\x1fprimary"]["total"]["lab"] == 5


def test_ten_thousand_distinct_values_keep_the_state_within_the_cap():
    acc = MetricsAccumulator(SLICED, settle_ms=lambda m: 0)
    acc.add_all([joined(i, "v1", i % 3 > 0, f"user-{i}", T0 + i) for i in range(10_000)])
    state = acc.to_state()
    totals = segment_totals(state["v"])["m\x1fv1\x1fprimary"]
    assert sorted(totals) == ["region=other", "region=user-0", "region=user-1", "region=user-2"]
    assert sum(t["lab"] for t in totals.values()) == 10_000 and totals[f"region={OTHER}"]["lab"] == 9_997
    assert state["models"]["m"]["seg"] == {"region": ["user-0", "user-1", "user-2"]}
    for record in acc.records.data.values():  # the open windows' segments: bounded the same way
        assert all(len(segments) <= 4 for segments in record.get("seg", {}).values())


def test_segment_states_do_not_depend_on_how_the_stream_is_cut_into_batches():
    rng = random.Random(3)
    facts = [joined(i, rng.choice(["v1", "v2"]), rng.random() < 0.8, rng.choice(["eu", "us", "apac", "mx", None]),
                    T0 + i * 7) for i in range(600)]
    whole, cut = MetricsAccumulator(SLICED, lambda m: 0), MetricsAccumulator(SLICED, lambda m: 0)
    whole.add_all(facts)
    for start in range(0, len(facts), 37):
        cut.add_all(facts[start:start + 37])
    assert orjson.dumps(whole.to_state(), option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        cut.to_state(), option=orjson.OPT_SORT_KEYS)


def test_the_merger_publishes_each_segments_window_and_merges_its_totals_over_partitions():
    merger = PartialsMerger(SLICED, settle_ms=lambda m: 0, partitions=2)
    for partition, region in ((0, "eu"), (1, "us")):
        acc = MetricsAccumulator(SLICED, lambda m: 0)
        acc.add_all([joined(partition * 10 + i, "v1", i % 2 == 0, region, T0 + i) for i in range(4)])
        acc.advance(T0 + 5_000)
        for window in acc.closed:
            merger.final(partition, window)
        part = {"seq": 1, "wm": T0 + 5_000, "src": {}, "fence": {}, "acc": {"metrics": acc.to_state(), "counts": {}}}
        merger.heartbeat(partition, heartbeat_partial(partition, part, "run"))
    snapshots = merger.ready()
    assert [(s.segment, s.labelled) for s in snapshots] == [(None, 8), ("region=eu", 4), ("region=us", 4)]
    assert len({s.snapshot_id for s in snapshots}) == 3
    assert snapshots[1].metrics["accuracy"] == 0.5
    slim_total = merger.guardrail_totals()[("m", "v1", "primary")]
    assert {s: t["lab"] for s, t in slim_total["seg"].items()} == {"region=eu": 4, "region=us": 4}
    assert {s: t["lab"] for s, t in merger.segment_totals()[("m", "v1", "primary")].items()} == {
        "region=eu": 4, "region=us": 4}


# -- judging -------------------------------------------------------------------------------------
def _slim(right: dict[str, int], n: dict[str, int]):
    def one(r: int, k: int):
        state = new_state()
        state["n"] = state["lab"] = k
        state["cls"] = {"cm": {"1\x1f1": r, "1\x1f0": k - r}, "ll": [0, 0.0, 0.0], "br": [0, 0.0, 0.0], "ece": [],
                        "auc": {}, "coarse": False}
        return slim(state)
    total = slim(None)
    segments = {}
    for region in n:
        segments[segment_id("region", region)] = one(right[region], n[region])
        add_slim(total, one(right[region], n[region]))
    total["seg"] = segments
    return total


def _run(engine: RolloutEngine, spec: RolloutSpec, accuracy: dict[str, dict[str, float]], shares: dict[str, float],
         looks: int = 400, seed: int = 5) -> list:
    rng = random.Random(seed)
    right = {v: dict.fromkeys(shares, 0) for v in ("v1", "v2")}
    count = {v: dict.fromkeys(shares, 0) for v in ("v1", "v2")}

    def totals():
        return {("m", "v1", "primary"): _slim(right["v1"], count["v1"]),
                ("m", "v2", "canary"): _slim(right["v2"], count["v2"])}

    decisions = [o.message for o in engine.start(spec, 0, totals()) if o.topic == "decisions"]
    for look in range(1, looks + 1):
        share = engine.rollouts["m"]["routes"].get("v2", 0) / 100
        for _ in range(100):
            region = rng.choices(list(shares), weights=list(shares.values()))[0]
            version = "v2" if rng.random() < share else "v1"
            count[version][region] += 1
            right[version][region] += rng.random() < accuracy[version][region]
        decisions += [o.message for o in engine.tick(look * 1000, totals()) if o.topic == "decisions"]
        if engine.rollouts["m"]["status"] not in ("running", "held"):
            break
    return decisions


SHARES = {"eu": 0.6, "us": 0.3, "apac": 0.1}
BASE = dict.fromkeys(SHARES, 0.9)
WORSE_IN_APAC = {"eu": 0.95, "us": 0.95, "apac": 0.6}


def test_a_candidate_worse_in_one_segment_is_rolled_back_naming_it():
    spec = RolloutSpec.model_validate(_spec(segments=["region"], bake={"min_samples": 1000}))
    decisions = _run(RolloutEngine(), spec, {"v1": BASE, "v2": WORSE_IN_APAC}, SHARES)
    assert decisions[-1].action == "rollback"
    assert "accuracy in segment region=apac" in decisions[-1].reason
    failing = [e for e in decisions[-1].evidence if e.verdict == "fail"]
    assert [e.segment for e in failing] == ["region=apac"]
    assert failing[0].detail == "accuracy fails in segment region=apac"


def test_the_same_candidate_judged_on_all_traffic_only_is_promoted():
    spec = RolloutSpec.model_validate(_spec(
        segments=[], bake={"min_samples": 1000},
        guardrails=[{"metric": "accuracy", "max_degradation": 0.0}]))
    decisions = _run(RolloutEngine(), spec, {"v1": BASE, "v2": WORSE_IN_APAC}, SHARES)
    assert [d.action for d in decisions] == ["promote", "complete"]


def test_a_segment_with_too_little_data_is_reported_and_holds_nothing():
    shares = {"eu": 0.995, "tiny": 0.005}
    spec = RolloutSpec.model_validate(_spec(segments=["region"], bake={"min_samples": 300}))
    decisions = _run(RolloutEngine(), spec, {"v1": dict.fromkeys(shares, 0.9), "v2": dict.fromkeys(shares, 0.9)},
                     shares)
    assert [d.action for d in decisions] == ["promote", "complete"]
    tiny = [e for e in decisions[0].evidence if e.segment == "region=tiny"]
    assert tiny and tiny[0].verdict == "undecided" and tiny[0].detail.startswith("not enough data yet in segment")


def test_a_rollout_judging_by_an_attribute_the_evaluator_does_not_keep_is_told():
    spec = RolloutSpec.model_validate(_spec())
    outputs = RolloutEngine(tracked_segments=SLICED.segments_of).start(spec, 0, {})
    alerts = [o.message for o in outputs if o.topic == "alerts"]
    assert len(alerts) == 1 and "does not slice m by device" in alerts[0].message
    assert "--segments m=device,region" in alerts[0].message


def write_events(folder: Path, n: int) -> list[Path]:
    rng = random.Random(9)
    out: dict[str, list[bytes]] = {"requests": [], "responses": [], "labels": []}
    for i in range(n):
        ts, version = T0 + i * 10, "v2" if i % 2 else "v1"
        region = "apac" if rng.random() < 0.15 else rng.choice(["eu", "us"])
        accuracy = 0.9 if version == "v1" else (0.55 if region == "apac" else 0.97)
        label = rng.randint(0, 1)
        prediction = label if rng.random() < accuracy else 1 - label
        out["requests"].append(orjson.dumps({"request_id": f"r{i}", "model": "m", "ts": ts,
                                             "attributes": {"region": region}}))
        out["responses"].append(orjson.dumps({"request_id": f"r{i}", "model": "m", "version": version, "ts": ts + 5,
                                              "role": "primary" if version == "v1" else "canary",
                                              "prediction": prediction, "latency_ms": 8.0}))
        out["labels"].append(orjson.dumps({"request_id": f"r{i}", "model": "m", "ts": ts + 50, "label": label}))
    paths = []
    for name, lines in out.items():
        path = folder / f"{name}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(path)
    return paths


def test_replay_judges_segments_from_the_requests_attributes(tmp_path):
    spec = RolloutSpec.model_validate(_spec(segments=["region"], steps=[50, 100], bake={"min_samples": 1500}))
    replay = Replay(JoinConfig(label_timeout_ms=2000, expiry_grace_ms=1000), SLICED, specs=[spec])
    replay.run(EventFiles(write_events(tmp_path, 8000)))
    assert replay.decisions[-1].action == "rollback"
    assert "segment region=apac" in replay.decisions[-1].reason
    regions = {s.segment for s in replay.snapshots if s.segment}
    assert regions == {"region=eu", "region=us", "region=apac"}
    whole = sum(s.labelled for s in replay.snapshots if s.segment is None)
    assert sum(s.labelled for s in replay.snapshots if s.segment) == whole


def test_the_exporter_shows_each_segment_and_the_fairness_gap():
    from streams.worker.exporter import EvaluatorCollector, PolicyCollector

    acc = MetricsAccumulator(SLICED, settle_ms=lambda m: 0)
    acc.add_all([joined(i, "v1", i % 10 < (9 if region == "eu" else 6), region, T0 + i)
                 for i in range(400) for region in ("eu", "us")])
    segments = {("m", "v1", "primary"): segment_totals(acc.to_state()["v"])["m\x1fv1\x1fprimary"]}
    collector = EvaluatorCollector(lambda: ({}, {}), dict, lambda: True, SLICED, segments=lambda: segments)
    families = {f.name: f for f in collector.collect()}
    accuracy = {s.labels["segment"]: s.value for s in families["shadowcanary_segment_metric"].samples
                if s.labels["metric"] == "accuracy"}
    assert accuracy == {"region=eu": 0.9, "region=us": 0.6}
    (gap,) = [s for s in families["shadowcanary_segment_gap"].samples if s.labels["metric"] == "accuracy"]
    assert (gap.labels["best"], gap.labels["worst"], gap.labels["attribute"]) == ("region=eu", "region=us", "region")
    assert gap.value == pytest.approx(0.3)

    spec = RolloutSpec.model_validate(_spec(segments=["region"], bake={"min_samples": 1000}))
    engine = RolloutEngine()
    _run(engine, spec, {"v1": BASE, "v2": WORSE_IN_APAC}, SHARES)
    failing = {(s.labels["guardrail"], s.labels["segment"]): s.value
               for f in PolicyCollector(lambda: engine).collect() if f.name == "shadowcanary_guardrail_failing"
               for s in f.samples}
    assert failing[("accuracy", "region=apac")] == 1.0 and failing[("accuracy", "")] == 0.0


def test_the_report_shows_each_segments_verdict_and_the_fairness_gap(tmp_path):
    from streams.report.html import render_report

    spec = RolloutSpec.model_validate(_spec(segments=["region"], steps=[50, 100], bake={"min_samples": 1500}))
    replay = Replay(JoinConfig(label_timeout_ms=2000, expiry_grace_ms=1000), SLICED, specs=[spec])
    replay.run(EventFiles(write_events(tmp_path, 8000)))
    document = render_report("r", replay.commands, replay.decisions, replay.snapshots, replay.alerts)
    assert "<h3>Segments (per_segment guardrails at the last decision)</h3>" in document
    assert "<td>region=apac</td><td>accuracy</td><td>fail</td>" in document
    assert "accuracy in region=apac: fail" in document  # the decision's failing segment, in its row
    fairness = document[document.index("<h3>Fairness"):]
    assert "<td>v2</td><td>region</td><td>accuracy</td>" in fairness and "(region=apac)</td><td>" in fairness


def test_a_record_that_joins_before_its_request_counts_in_its_segment_once_the_request_comes():
    from evaluators.join import Incoming, JoinPartition
    from evaluators.store import DictStore
    from schemas import GroundTruth, InferenceRequest, InferenceResponse

    join = JoinPartition(DictStore(), JoinConfig(label_timeout_ms=1000, expiry_grace_ms=0), "t")
    acc = MetricsAccumulator(SLICED, settle_ms=lambda m: 0)
    offsets = iter(range(100))

    def feed(*messages, advance_to=None):
        facts = join.process([Incoming(m, "s", next(offsets)) for m in messages], advance_to=advance_to)
        acc.add_all(facts)
        return facts

    def response(rid, ts):
        return InferenceResponse(request_id=rid, model="m", version="v1", role="primary", ts=ts, prediction=1)

    # r1: response and label first, the request after; r2: its request never comes.
    first = feed(response("r1", T0), GroundTruth(request_id="r1", model="m", ts=T0 + 5, label=1),
                 response("r2", T0), GroundTruth(request_id="r2", model="m", ts=T0 + 5, label=0))
    assert [f.attributes for f in first if type(f) is JoinedRecord] == [None, None]
    assert "seg" not in acc.to_state()["v"]["m\x1fv1\x1fprimary"]  # not counted in a segment yet
    later = feed(InferenceRequest(request_id="r1", model="m", ts=T0 + 1, attributes={"region": "eu"}))
    assert [(type(f), f.attributes) for f in later if isinstance(f, JoinedRecord)] == [
        (AttributedRecord, {"region": "eu"})]
    feed(advance_to=T0 + 10_000)
    totals = segment_totals(acc.to_state()["v"])["m\x1fv1\x1fprimary"]
    assert {s: t["lab"] for s, t in totals.items()} == {"region=eu": 1, f"region={NONE}": 1}
    assert acc.to_state()["v"]["m\x1fv1\x1fprimary"]["total"]["lab"] == 2  # the version counted each once


def test_a_segments_roc_auc_map_stays_small_where_the_versions_is_exact():
    rng = random.Random(2)
    acc = MetricsAccumulator(SLICED, settle_ms=lambda m: 0)
    records = []
    for i in range(20_000):
        label = rng.randint(0, 1)
        records.append(JoinedRecord("m", "v1", "primary", f"r{i}", T0 + i, T0 + i + 5, 1, rng.random(), label, {},
                                    3.0, None, None, {"region": "eu"}))
    acc.add_all(records)
    entry = acc.to_state()["v"]["m\x1fv1\x1fprimary"]
    version_scores = entry["total"]["cls"]["auc"]["1"]
    segment_scores = entry["seg"]["region=eu"]["cls"]["auc"]["1"]
    assert len(version_scores) == 20_000 and len(segment_scores) <= 1_001
    from evaluators.metrics.version import compute
    exact, gridded = compute(entry["total"], "m", SLICED), compute(entry["seg"]["region=eu"], "m", SLICED)
    assert abs(exact["roc_auc"] - gridded["roc_auc"]) <= gridded["roc_auc_max_error"]
    assert exact["roc_auc_max_error"] == 0

"""Integration mistakes caught by replay (evaluators/integration_checks.py): one alert per mistake, naming the
model, the version and both shapes; none on the demo's own traffic."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from evaluators.replay import Replay
from schemas import GroundTruth, InferenceRequest, InferenceResponse
from streams.demo.fleet import train_fleet

T0 = 1_790_000_000_000
MODEL = "cancer"
#: Respond(version, row, rng) -> (prediction, score).
Respond = Callable[[str, int, random.Random], tuple[Any, Any]]


@pytest.fixture(scope="module")
def fleet():
    return train_fleet()


def traffic(fleet, n: int = 4000, respond: Respond | None = None, label: Callable[[int], Any] | None = None,
            features: Callable[[str, int], dict] | None = None, canary_share: float = 0.3) -> list:
    """The demo's traffic as events: v1 primary, v2 canary (``canary_share`` of the requests), v3 a
    shadow of every request; each version answers as the demo's real models do unless ``respond``
    says otherwise; every request labelled 30 s later."""
    rng = random.Random(5)
    respond = respond or (lambda version, row, _: (int(fleet.predictions[version][row]),
                                                   float(fleet.scores[version][row])))
    label = label or (lambda row: int(fleet.labels[row]))
    features = features or (lambda version, row: fleet.row_features(row))
    events = []
    for i in range(n):
        row, ts, rid = rng.randrange(len(fleet.labels)), T0 + i * 50, f"r{i}"
        served = "v2" if rng.random() < canary_share else "v1"
        events.append(InferenceRequest(request_id=rid, model=MODEL, ts=ts, features=features(served, row)))
        for version, role in ((served, "primary" if served == "v1" else "canary"), ("v3", "shadow")):
            prediction, score = respond(version, row, rng)
            events.append(InferenceResponse(request_id=rid, model=MODEL, version=version, role=role, ts=ts + 5,
                                            prediction=prediction, score=score, latency_ms=6.0))
        events.append(GroundTruth(request_id=rid, model=MODEL, ts=ts + 30_000, label=label(row)))
    return sorted(events, key=lambda event: event.ts_ms)


def schema_alerts(events: list) -> list:
    replay = Replay(JoinConfig(label_timeout_ms=60_000, expiry_grace_ms=5_000),
                    MetricsConfig(tasks={MODEL: "binary"}, window_ms=10_000))
    replay.run(events)
    return [alert for alert in replay.alerts if alert.kind == "schema"]


def test_the_demos_traffic_raises_no_schema_alert(fleet):
    # v2 is the demo's bad candidate (a unit bug makes it call almost everything malignant): a worse
    # model, not a broken integration.
    assert schema_alerts(traffic(fleet)) == []


def test_string_predictions_against_number_labels(fleet):
    events = traffic(fleet, respond=lambda version, row, _: (str(int(fleet.predictions[version][row])),
                                                             float(fleet.scores[version][row])))
    alerts = schema_alerts(events)
    # Every version logs strings: each is told once; none is compared with a baseline that differs.
    assert sorted(alert.version for alert in alerts) == ["v1", "v2", "v3"]
    v1 = next(alert for alert in alerts if alert.version == "v1")
    assert v1.model == MODEL and "differ only by their JSON type" in v1.message
    assert '"0", "1" (string)' in v1.message and "labels 0, 1 (integer)" in v1.message
    assert "label_map" in v1.message


def test_predictions_and_labels_that_never_share_a_value(fleet):
    names = {0: "malignant", 1: "benign"}
    events = traffic(fleet, respond=lambda version, row, _: (names[int(fleet.predictions[version][row])], None),
                     label=lambda row: ["no", "yes"][int(fleet.labels[row])])
    alerts = schema_alerts(events)
    assert sorted(alert.version for alert in alerts) == ["v1", "v2", "v3"]
    assert all("never share a value" in alert.message for alert in alerts)
    assert '"benign", "malignant" (string)' in alerts[0].message and '"no", "yes"' in alerts[0].message


def test_a_candidate_answering_class_names_where_the_baseline_answers_indices(fleet):
    names = {0: "malignant", 1: "benign"}

    def respond(version: str, row: int, _: random.Random) -> tuple[Any, Any]:
        prediction = int(fleet.predictions[version][row])
        return (names[prediction] if version == "v2" else prediction), float(fleet.scores[version][row])

    [alert] = schema_alerts(traffic(fleet, respond=respond))
    assert (alert.model, alert.version) == (MODEL, "v2")
    assert "predictions are string, the baseline's integer" in alert.message and "baseline v1" in alert.message


def test_a_candidate_whose_classes_are_shifted(fleet):
    def respond(version: str, row: int, _: random.Random) -> tuple[Any, Any]:
        if version == "v2":  # a good model whose classes come out one too high
            return int(fleet.predictions["v3"][row]) + 1, float(fleet.scores["v3"][row])
        return int(fleet.predictions[version][row]), float(fleet.scores[version][row])

    [alert] = schema_alerts(traffic(fleet, respond=respond))
    assert alert.version == "v2" and "classes the baseline never does (2" in alert.message


def test_a_candidate_scoring_per_class_where_the_baseline_gives_one_probability(fleet):
    def respond(version: str, row: int, _: random.Random) -> tuple[Any, Any]:
        p1 = float(fleet.scores[version][row])
        return int(fleet.predictions[version][row]), ({"0": 1 - p1, "1": p1} if version == "v2" else p1)

    [alert] = schema_alerts(traffic(fleet, respond=respond))
    assert alert.version == "v2" and "scores are per-class, the baseline's number" in alert.message


def _without_worst_area(values: dict) -> None:
    del values["worst_area"]


def _mean_radius_as_text(values: dict) -> None:
    values["mean_radius"] = f"{values['mean_radius']:.1f}"


@pytest.mark.parametrize(("change", "told"), [
    (_without_worst_area, "lack the feature 'worst_area'"),
    (_mean_radius_as_text, "'mean_radius' as category, the baseline's as number"),
])
def test_requests_served_by_the_candidate_with_other_features(fleet, change, told):
    def features(version: str, row: int) -> dict:
        values = fleet.row_features(row)
        if version == "v2":
            change(values)
        return values

    [alert] = schema_alerts(traffic(fleet, features=features))
    assert alert.version == "v2" and told in alert.message


def test_schema_compatible_rolls_a_candidate_back_for_its_schema_before_its_accuracy_is_judged(fleet):
    from schemas.rollout import RolloutSpec

    names = {0: "malignant", 1: "benign"}

    def respond(version: str, row: int, _: random.Random) -> tuple[Any, Any]:
        prediction = int(fleet.predictions[version][row])
        return (names[prediction] if version == "v2" else prediction), float(fleet.scores[version][row])

    spec = RolloutSpec.model_validate({
        "model": MODEL, "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
        "steps": [30, 100], "bake": {"min_duration": "0s", "min_samples": 300},
        "guardrails": [{"metric": "schema_compatible", "critical": True},
                       {"metric": "accuracy", "max_degradation": 0.03, "critical": True}]})
    replay = Replay(JoinConfig(label_timeout_ms=60_000, expiry_grace_ms=5_000),
                    MetricsConfig(tasks={MODEL: "binary"}, window_ms=10_000), specs=[spec])
    replay.batch = 200  # the engine looks every 10 s of event time; labels follow responses by 30 s
    replay.run(traffic(fleet, respond=respond))
    [decision] = [d for d in replay.decisions if d.action == "rollback"]
    assert decision.reason.startswith("output schema differs from the baseline's: its predictions are string")
    verdicts = {e.metric: e.verdict for e in decision.evidence}
    assert verdicts["schema_compatible"] == "fail" and verdicts["accuracy"] != "fail"
    assert [c.action for c in replay.commands][-1] == "rollback"


def test_schema_compatible_passes_the_demos_good_candidate(fleet):
    from schemas.rollout import RolloutSpec

    spec = RolloutSpec.model_validate({
        "model": MODEL, "baseline": "v1", "candidate": "v3", "mode": "canary", "task": "binary",
        "steps": [30, 100], "bake": {"min_duration": "0s", "min_samples": 100},
        "guardrails": [{"metric": "schema_compatible", "critical": True}]})
    replay = Replay(JoinConfig(label_timeout_ms=60_000, expiry_grace_ms=5_000),
                    MetricsConfig(tasks={MODEL: "binary"}, window_ms=10_000), specs=[spec])

    def respond(version: str, row: int, _: random.Random) -> tuple[Any, Any]:  # v3 as the canary
        version = "v3" if version == "v2" else version
        return int(fleet.predictions[version][row]), float(fleet.scores[version][row])

    events = [e.model_copy(update={"version": "v3"}) if getattr(e, "version", None) == "v2" else e
              for e in traffic(fleet, respond=respond) if getattr(e, "role", None) != "shadow"]
    replay.run(events)
    assert [d.action for d in replay.decisions][-1] == "complete"
    assert all(e.verdict == "pass" for e in replay.decisions[-1].evidence)


def test_a_label_map_gives_the_true_accuracy_of_string_predictions_against_number_labels(fleet, tmp_path):
    """The issue's run: predictions logged as "0"/"1", labels as 0/1. Without a map every labelled
    prediction counts as wrong (and the shape alert says why); ``--label-map MODEL=string`` compares
    them as they are meant."""
    import orjson
    from click.testing import CliRunner

    from streams.cli.main import cli

    events = traffic(fleet, n=1000, respond=lambda version, row, _: (str(int(fleet.predictions[version][row])),
                                                                     float(fleet.scores[version][row])))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event.model_dump(mode="json")) + b"\n" for event in events))
    accuracy = {}
    for label_map in ((), ("--label-map", f"{MODEL}=string")):
        out = tmp_path / f"out{len(label_map)}"
        result = CliRunner().invoke(cli, ["replay", str(path), "--out", str(out), "--window", "10s",
                                          "--label-timeout", "60s", "--task", f"{MODEL}=binary", "--no-report",
                                          *label_map])
        assert result.exit_code == 0, result.output
        snapshots = [orjson.loads(line) for line in (out / "snapshots.jsonl").read_bytes().splitlines()]
        v1 = [s for s in snapshots if s["version"] == "v1" and s["labelled"]]
        accuracy[bool(label_map)] = sum(s["metrics"]["accuracy"] * s["labelled"] for s in v1) / sum(
            s["labelled"] for s in v1)
        alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
        assert bool([a for a in alerts if a["kind"] == "schema"]) is not bool(label_map)
    assert accuracy[False] == 0.0
    assert accuracy[True] == pytest.approx(fleet.accuracy("v1"), abs=0.03)


def test_a_label_map_that_is_not_json_is_refused_naming_the_model():
    from click.testing import CliRunner

    from streams.cli.main import cli

    result = CliRunner().invoke(cli, ["replay", "x.jsonl", "--label-map", "fraud={fraud: 1}"])
    assert result.exit_code == 2 and "the map of model 'fraud'" in result.output


def test_the_replay_report_shows_each_versions_shape_side_by_side(fleet, tmp_path):
    import orjson
    from click.testing import CliRunner

    from schemas.rollout import RolloutSpec
    from schemas.spec_yaml import dump_spec_yaml
    from streams.cli.main import cli

    names = {0: "malignant", 1: "benign"}
    events = traffic(fleet, n=1500, respond=lambda version, row, _: (
        names[int(fleet.predictions[version][row])] if version == "v2" else int(fleet.predictions[version][row]),
        float(fleet.scores[version][row])))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event.model_dump(mode="json")) + b"\n" for event in events))
    spec = tmp_path / "spec.yaml"
    spec.write_text(dump_spec_yaml(RolloutSpec.model_validate({
        "model": MODEL, "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary", "steps": [30, 100],
        "bake": {"min_duration": "0s", "min_samples": 100},
        "guardrails": [{"metric": "schema_compatible", "critical": True}]})))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["replay", str(path), "--spec", str(spec), "--out", str(out), "--window", "10s",
                                      "--label-timeout", "60s", "--task", f"{MODEL}=binary"])
    assert result.exit_code == 0, result.output
    report = (out / "report.html").read_text()
    shapes = report.split("What flows (learned shapes)")[1]
    v1_row = shapes.split("<tr><td>v1</td>")[1].split("</tr>")[0]
    v2_row = shapes.split("<tr><td>v2</td>")[1].split("</tr>")[0]
    assert "<td>integer</td>" in v1_row and "<td>string</td>" in v2_row
    assert "&quot;malignant&quot;" in v2_row and "mean_radius (number, 100%)" in v1_row

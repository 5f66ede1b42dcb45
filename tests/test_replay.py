"""Replay without a broker: event files (bad lines reported and skipped), the pure replay core,
sweeps, and the CLI end to end on files."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from evaluators.join import JoinConfig
from evaluators.metrics import MetricsConfig
from evaluators.replay import Replay
from evaluators.sweep import apply_setting, parse_sweep
from schemas.rollout import RolloutSpec
from schemas.spec_yaml import dump_spec_yaml
from streams.cli.main import cli
from streams.ingest import event_files
from streams.ingest.event_files import EventFiles

T0 = 1_790_000_000_000


def rows(n: int, accuracy: dict[str, float], seed: int = 1, model: str = "m"):
    rng = random.Random(seed)
    requests, responses, labels = [], [], []
    for i in range(n):
        ts, version = T0 + i * 10, "v2" if i % 2 else "v1"
        label = rng.randint(0, 1)
        prediction = label if rng.random() < accuracy[version] else 1 - label
        requests.append({"request_id": f"r{i}", "model": model, "ts": ts, "features": {"amount": rng.gauss(100, 10)}})
        responses.append({"request_id": f"r{i}", "model": model, "version": version, "ts": ts + 5,
                          "role": "primary" if version == "v1" else "canary", "prediction": prediction,
                          "latency_ms": 8.0})
        labels.append({"request_id": f"r{i}", "model": model, "ts": ts + 50, "label": label})
    return requests, responses, labels


def write(folder: Path, n: int = 3000, accuracy=None, extra_label_lines: list[bytes] = ()) -> list[Path]:
    paths = []
    for name, items in zip(("requests", "responses", "labels"), rows(n, accuracy or {"v1": 0.95, "v2": 0.95})):
        path = folder / f"inference.{name}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
        paths.append(path)
    with open(paths[2], "ab") as out:
        for line in extra_label_lines:
            out.write(line + b"\n")
    return paths


def spec(**overrides) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "model": "m", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary", "steps": [50, 100],
        "bake": {"min_duration": "0s", "min_samples": 150},
        "guardrails": [{"metric": "accuracy", "max_degradation": 0.03},
                       {"metric": "error_rate", "max": 0.05, "critical": True}], **overrides})


def test_event_files_merge_by_time_and_report_bad_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(event_files, "REORDER", 2)
    path = tmp_path / "mixed.jsonl"
    good = [{"request_id": f"r{i}", "model": "m", "ts": T0 + t} for i, t in enumerate([30, 10, 20, 40, 50])]
    lines = [orjson.dumps(g) for g in good]
    lines.insert(4, orjson.dumps({"request_id": "old", "model": "m", "ts": T0}))  # too late to reorder
    lines.insert(2, b'{"request_id": "x", "model": "m", "ts": 5, "trunc')
    lines.insert(3, b'{"request_id": "", "model": "m", "ts": 5}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    reader = EventFiles([path])
    events = list(reader)
    assert [e.ts_ms - T0 for e in events] == [10, 20, 30, 40, 50]
    assert [(p.line, p.reason) for p in reader.problems] == [(3, "not_json"), (4, "invalid"), (7, "out_of_order")]
    assert all(str(path) in str(p) for p in reader.problems)


def test_replay_counts_every_window_and_rolls_back_a_worse_candidate(tmp_path):
    paths = write(tmp_path, 3000, {"v1": 0.95, "v2": 0.6})
    replay = Replay(JoinConfig(label_timeout_ms=2000, expiry_grace_ms=1000),
                    MetricsConfig(tasks={"m": "binary"}, window_ms=5000), specs=[spec()])
    replay.run(EventFiles(paths))
    assert sum(s.responses for s in replay.snapshots) == 3000
    assert sum(s.labelled for s in replay.snapshots) == 3000 and not any(s.expired for s in replay.snapshots)
    assert [d.action for d in replay.decisions] == ["rollback"]
    assert [(c.action, c.epoch) for c in replay.commands] == [("set_routes", 0), ("rollback", 1)]
    assert all("amount.psi" in s.drift or s.window.start.timestamp() * 1000 < T0 + 25_000
               for s in replay.snapshots if s.version == "v1")


def test_the_same_input_replays_to_the_same_output(tmp_path):
    paths = write(tmp_path, 2000)
    outputs = []
    for _ in range(2):
        replay = Replay(JoinConfig(label_timeout_ms=2000, expiry_grace_ms=1000),
                        MetricsConfig(tasks={"m": "binary"}, window_ms=5000), specs=[spec()], batch=333)
        replay.run(EventFiles(paths))
        outputs.append(([s.model_dump(mode="json", exclude={"snapshot_id"}) for s in replay.snapshots],
                        [(d.action, d.step) for d in replay.decisions], [c.epoch for c in replay.commands]))
    assert outputs[0] == outputs[1]
    assert [a for a, _ in outputs[0][1]] == ["promote", "complete"]


def test_sweep_settings_and_their_errors():
    grid = parse_sweep(["alpha=0.01,0.05", "bake.min_samples=100,500"])
    assert len(grid) == 4
    assert apply_setting(spec(), {"guardrails.0.max_degradation": 0.1}).guardrails[0].max_degradation == 0.1
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_sweep(["alpha"])
    with pytest.raises(ValueError, match="alpha"):
        apply_setting(spec(), {"alpha": 0.9})


def test_replay_cli_writes_outputs_reports_bad_lines_and_sweeps(tmp_path):
    paths = write(tmp_path, 3000, {"v1": 0.95, "v2": 0.6}, extra_label_lines=[b'{"request_id": "r1", "mod'])
    (tmp_path / "spec.yaml").write_text(dump_spec_yaml(spec()))
    args = ["replay", "--spec", str(tmp_path / "spec.yaml"), "--window", "5s", "--label-timeout", "2s",
            "--expiry-grace", "1s", "--task", "m=binary"]
    result = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "out"), *map(str, paths)])
    assert result.exit_code == 0, result.output
    assert "inference.labels.jsonl:3001: not_json" in result.output
    assert "rollback: guardrail failed: accuracy" in result.output
    decisions = [orjson.loads(line) for line in (tmp_path / "out" / "decisions.jsonl").read_bytes().splitlines()]
    assert [d["action"] for d in decisions] == ["rollback"]
    assert (tmp_path / "out" / "report.html").read_text().count("<svg") >= 1
    swept = CliRunner().invoke(cli, args + ["--sweep", "guardrails.0.max_degradation=0.03,0.5", *map(str, paths)])
    assert swept.exit_code == 0, swept.output
    assert "rolled back" in swept.output and "max_degradation=0.5" in swept.output
    bad = CliRunner().invoke(cli, args + ["--sweep", "steps=oops", *map(str, paths)])
    assert bad.exit_code == 2 and "steps" in bad.output


def test_request_ids_shared_by_two_models_give_each_model_its_own_exact_metrics(tmp_path):
    # A gateway fans one request id out to a fraud model and a pricing model; each has its own
    # request, response and label (2,000 ids, 12,000 events). Pricing is wrong half the time.
    from sklearn.metrics import accuracy_score

    rng = random.Random(7)
    events: dict[str, list] = {"requests": [], "responses": [], "labels": []}
    truth: dict[str, tuple[list, list]] = {"fraud": ([], []), "pricing": ([], [])}
    for i in range(2000):
        ts = T0 + i * 10
        for model, accuracy in (("fraud", 1.0), ("pricing", 0.5)):
            label = rng.randint(0, 1)
            prediction = label if rng.random() < accuracy else 1 - label
            truth[model][0].append(label)
            truth[model][1].append(prediction)
            events["requests"].append({"request_id": f"id{i}", "model": model, "ts": ts})
            events["responses"].append({"request_id": f"id{i}", "model": model, "version": "v1", "role": "primary",
                                        "ts": ts + 5, "prediction": prediction, "latency_ms": 4.0})
            events["labels"].append({"request_id": f"id{i}", "model": model, "ts": ts + 50, "label": label})
    paths = []
    for name, items in events.items():
        paths.append(tmp_path / f"inference.{name}.jsonl")
        paths[-1].write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
    replay = Replay(JoinConfig(label_timeout_ms=2000, expiry_grace_ms=1000),
                    MetricsConfig(tasks={"fraud": "binary", "pricing": "binary"}, window_ms=5000))
    replay.run(EventFiles(paths))
    for model in ("fraud", "pricing"):
        snapshots = [s for s in replay.snapshots if s.model == model]
        assert sum(s.requests for s in snapshots) == 2000
        assert sum(s.responses for s in snapshots) == 2000
        assert sum(s.labelled for s in snapshots) == 2000 and not any(s.expired for s in snapshots)
        correct = sum(round(s.metrics["accuracy"] * s.labelled) for s in snapshots)
        assert correct / 2000 == pytest.approx(accuracy_score(*truth[model]))


def test_a_client_clock_two_hours_ahead_does_not_expire_the_others_in_replay(tmp_path):
    requests, responses, labels = rows(1000, {"v1": 0.9, "v2": 0.9})
    ahead = T0 + 1000 * 10 + 2 * 3_600_000
    requests.append({"request_id": "skewed", "model": "m", "ts": ahead})
    responses.append({"request_id": "skewed", "model": "m", "version": "v1", "role": "primary", "ts": ahead,
                      "prediction": 1})
    labels.append({"request_id": "skewed", "model": "m", "ts": ahead, "label": 1})
    # The real labels a minute after their responses, after the skewed triple.
    for label in labels[:-1]:
        label["ts"] = label["ts"] + 60_000
    paths = []
    for name, items in (("requests", requests), ("responses", responses), ("labels", labels)):
        paths.append(tmp_path / f"inference.{name}.jsonl")
        paths[-1].write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
    replay = Replay(JoinConfig(label_timeout_ms=600_000), MetricsConfig(tasks={"m": "binary"}, window_ms=60_000),
                    batch=100)
    replay.run(EventFiles(paths))
    assert sum(s.labelled for s in replay.snapshots) == 1001
    assert sum(s.expired for s in replay.snapshots) == 0
    skew_alerts = [a for a in replay.alerts if a.kind == "schema"]
    assert [(a.model, a.value) for a in skew_alerts] == [("m", pytest.approx(2 * 3600 - 60, abs=120))]


def test_traffic_resuming_after_a_gap_is_not_a_clock_running_ahead(tmp_path):
    before = rows(500, {"v1": 0.9, "v2": 0.9})
    after = rows(500, {"v1": 0.9, "v2": 0.9}, seed=2)
    for items in after:  # the same traffic an hour later, under other ids
        for item in items:
            item["ts"] += 3_600_000
            item["request_id"] = "late-" + item["request_id"]
    paths = []
    for name, first, second in zip(("requests", "responses", "labels"), before, after):
        paths.append(tmp_path / f"inference.{name}.jsonl")
        paths[-1].write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in first + second))
    replay = Replay(JoinConfig(label_timeout_ms=600_000), MetricsConfig(tasks={"m": "binary"}, window_ms=60_000))
    replay.run(EventFiles(paths))
    assert sum(s.labelled for s in replay.snapshots) == 1000
    assert not [a for a in replay.alerts if a.kind == "schema"]

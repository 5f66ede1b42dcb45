"""Records on the control topics: each kind of bad record is refused by name and changes nothing;
only a real tombstone ends a rollout; a valid spec for a running model replaces it, and the decision
trail says so."""

from __future__ import annotations

import orjson
import pytest

from evaluators.policy.control_records import (
    MAX_CONTROL_RECORD_BYTES,
    REFUSAL_REASONS,
    ReadRecord,
    ToldPositions,
    latest_specs,
    read_command_record,
    read_spec_record,
    refusal_alert,
)
from evaluators.policy.engine import RolloutEngine
from schemas import encode
from schemas.control import RoutingCommand
from schemas.monitoring import Alert
from schemas.rollout import RolloutSpec

SPEC = {"model": "fraud", "baseline": "v1", "candidate": "v2", "mode": "canary", "task": "binary",
        "steps": [10, 50], "guardrails": [{"metric": "error_rate", "max": 0.05}]}
VALID = orjson.dumps(SPEC)


@pytest.mark.parametrize("key, value, reason, names", [
    (None, VALID, "no_key", "no key"),
    (b"", VALID, "no_key", "no key"),
    (b"fr\xffaud", VALID, "key_not_utf8", "UTF-8"),
    (b"fraud", b"", "empty", "empty"),
    (b"fraud", b"x" * (MAX_CONTROL_RECORD_BYTES + 1), "oversize", "limit"),
    (b"fraud", b"steps: [10, 150]", "not_json", "JSON"),
    (b"fraud", b"[1, 2]", "not_object", "object"),
    (b"fraud", orjson.dumps({**SPEC, "steps": [10, 150]}), "invalid", "steps[1]"),
    (b"fraud", orjson.dumps({**SPEC, "mode": "yolo"}), "invalid", "mode"),
    (b"pricing", VALID, "model_mismatch", "'fraud' but its key is 'pricing'"),
])
def test_each_bad_spec_record_is_refused_by_name(key, value, reason, names):
    read = read_spec_record(key, value)
    assert read.refusal is not None and read.spec is None and not read.tombstone
    assert read.refusal.reason == reason
    assert names in read.refusal.detail
    assert reason in REFUSAL_REASONS


def test_a_null_value_under_a_readable_key_is_the_only_tombstone():
    assert read_spec_record(b"fraud", None).tombstone
    assert read_spec_record(b"fraud", None).model == "fraud"
    assert not read_spec_record(None, None).tombstone  # no key: refused, not a tombstone
    assert not read_spec_record(b"fraud", b"").tombstone  # empty bytes are not null


def test_a_valid_spec_under_its_own_key_is_accepted():
    read = read_spec_record(b"fraud", VALID)
    assert read.refusal is None and read.spec == RolloutSpec.model_validate(SPEC)


@pytest.mark.parametrize("value, reason", [
    (None, "empty"), (b"", "empty"), (b"{oops", "not_json"), (b'"set_routes"', "not_object"),
    (b'{"model": "fraud", "epoch": -1}', "invalid"), (b"x" * (MAX_CONTROL_RECORD_BYTES + 1), "oversize"),
])
def test_an_unreadable_command_is_refused_by_name(value, reason):
    refusal = read_command_record(value)
    assert refusal.reason == reason


def test_a_readable_command_is_read():
    command = RoutingCommand(model="fraud", epoch=3, issued_at=0, issuer="cli:ann", action="rollback",
                             routes={"v1": 100}, reason="by hand", rollout_id="fraud@0:0")
    assert read_command_record(encode(command)) == command


def _history(*values, key=b"fraud") -> list[ReadRecord]:
    return [ReadRecord("rollout.specs", 0, offset, key, value) for offset, value in enumerate(values)]


def test_the_history_keeps_the_last_valid_spec_past_bad_records():
    newer = orjson.dumps({**SPEC, "candidate": "v3"})
    wanted, refused = latest_specs(_history(VALID, newer, b"steps: [10, 150]", orjson.dumps({**SPEC, "steps": [150]})))
    assert wanted["fraud"][0].spec.candidate == "v3" and wanted["fraud"][1] == "fraud@0:1"
    assert [(r.offset, read.refusal.reason) for r, read in refused] == [(2, "not_json"), (3, "invalid")]


def test_the_history_ends_a_rollout_only_on_a_tombstone():
    wanted, _ = latest_specs(_history(VALID, None, b"garbage"))
    assert wanted["fraud"][0].tombstone
    # Compaction may leave only a bad record: the model is not asked for anything; its rollout stays.
    wanted, refused = latest_specs(_history(b"garbage"))
    assert wanted == {} and len(refused) == 1


def test_a_refusal_is_told_once_across_owners():
    first = ToldPositions()
    record = ReadRecord("rollout.specs", 2, 40, b"fraud", b"garbage")
    assert first.is_new(record)
    first.tell(record)
    second = ToldPositions(orjson.loads(orjson.dumps(first.to_state())))  # the next owner, from saved state
    assert not second.is_new(record)
    assert second.is_new(ReadRecord("rollout.specs", 2, 41, b"fraud", b"garbage"))
    assert second.is_new(ReadRecord("rollout.specs", 1, 0, b"fraud", b"garbage"))


def test_the_alert_names_the_record_and_the_problem_and_is_a_valid_alert():
    read = read_spec_record(b"fraud", orjson.dumps({**SPEC, "steps": [10, 150]}))
    alert = refusal_alert("p.rollout.specs", 3, 17, read.model, read.refusal, 1_700_000_000_000)
    again = Alert.model_validate_json(encode(alert))
    assert (again.kind, again.model, again.source_topic, again.source_partition, again.source_offset) == \
        ("schema", "fraud", "p.rollout.specs", 3, 17)
    assert "steps[1].percent" in again.message and "changed nothing" in again.message
    nameless = refusal_alert("p.rollout.specs", 0, 0, None, read_spec_record(None, VALID).refusal, 0)
    assert nameless.model == "(unknown)"


def test_a_new_valid_spec_for_a_running_model_replaces_it_and_the_trail_says_so():
    engine = RolloutEngine()
    engine.start(RolloutSpec.model_validate(SPEC), now_ms=0, totals={}, rollout_id="fraud@0:0")
    outputs = engine.start(RolloutSpec.model_validate({**SPEC, "candidate": "v3"}), now_ms=1000, totals={},
                           rollout_id="fraud@0:5")
    decisions = [o.message for o in outputs if o.topic == "decisions"]
    commands = [o.message for o in outputs if o.topic == "control"]
    assert [(d.rollout_id, d.action) for d in decisions] == [("fraud@0:0", "rollback")]
    assert decisions[0].reason == "replaced by a new spec (rollout fraud@0:5)"
    assert [(c.action, c.rollout_id, c.routes) for c in commands] == [
        ("rollback", "fraud@0:0", {"v1": 100.0}), ("set_routes", "fraud@0:5", {"v1": 90.0, "v3": 10.0})]
    assert [c.epoch for c in commands] == [1, 2]
    # The same spec record again (a new owner replaying the topic) changes nothing.
    assert engine.start(RolloutSpec.model_validate({**SPEC, "candidate": "v3"}), now_ms=2000, totals={},
                        rollout_id="fraud@0:5") == []

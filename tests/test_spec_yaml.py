"""Rollout specs from YAML: errors name the file, the line and the field."""

from __future__ import annotations

import pytest

from schemas.spec_yaml import SpecError, dump_spec_yaml, load_spec_file, load_spec_text

GOOD = """\
model: fraud
baseline: v1
candidate: v2
mode: canary
task: binary
steps: [1, 5, 25, 50, 100]
bake:
  min_duration: 10m
  min_samples: 500
guardrails:
  - metric: accuracy
    max_degradation: 0.01
  - metric: latency_p99_ms
    max: 250
    critical: true
label_timeout: 2d
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "spec.yaml")
    return info.value.messages


def test_good_spec_loads_and_round_trips_through_yaml():
    spec = load_spec_text(GOOD)
    assert spec.bake.min_duration == 600 and spec.label_timeout == 2 * 86400
    assert [s.percent for s in spec.steps] == [1, 5, 25, 50, 100]
    assert load_spec_text(dump_spec_yaml(spec)) == spec


def test_misspelt_metric_names_line_field_and_suggestion():
    text = GOOD.replace("metric: accuracy", "metric: acuracy")
    assert errors_of(text) == [
        "spec.yaml:11: guardrails[0].metric: unknown metric 'acuracy' (did you mean 'accuracy'?)"]


def test_unknown_keys_are_errors_in_files_with_suggestions():
    text = GOOD.replace("guardrails:", "gaurdrails:").replace("  min_samples: 500", "  min_sample: 500")
    messages = errors_of(text)
    assert "spec.yaml:10: gaurdrails: unknown field (did you mean 'guardrails'?)" in messages
    assert "spec.yaml:9: bake.min_sample: unknown field (did you mean 'min_samples'?)" in messages


@pytest.mark.parametrize("replace, expected", [
    (("steps: [1, 5, 25, 50, 100]", "steps: [5, 1]"), "spec.yaml:6: steps: must increase strictly"),
    (("candidate: v2", "candidate: v1"), "spec.yaml:3: candidate: must differ from baseline"),
    (("mode: canary", "mode: yolo"), "spec.yaml:4: mode: Input should be"),
    (("    max: 250", "    max: lots"), "spec.yaml:14: guardrails[1].max:"),
    (("min_duration: 10m", "min_duration: ten minutes"), "spec.yaml:8: bake.min_duration: expected a duration"),
    (("metric: accuracy", "metric: rmse"), "spec.yaml:11: guardrails[0].metric: 'rmse' is not defined for task"),
    (("    max_degradation: 0.01\n", ""), "spec.yaml:11: guardrails[0]: give either an absolute bound"),
])
def test_each_problem_points_at_its_line(replace, expected):
    messages = errors_of(GOOD.replace(*replace))
    assert any(m.startswith(expected) for m in messages), messages


def test_missing_required_field_points_at_the_mapping():
    messages = errors_of(GOOD.replace("task: binary\n", ""))
    assert messages == ["spec.yaml:1: task: Field required"]


def test_not_yaml_and_not_a_mapping():
    assert errors_of("model: [unclosed\n")[0].startswith("spec.yaml:2: not valid YAML")
    assert errors_of("- just\n- a list\n")[0].startswith("spec.yaml:1: expected a mapping")


def test_unreadable_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(tmp_path / "nope.yaml")

"""The JSON Schemas and the AsyncAPI document are generated, current, and valid by outside tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from schemas.export import ASYNCAPI_FILE, JSON_DIR, asyncapi_document, export
from schemas.topics import TOPICS
from tests.test_contract_models import INVALID, VALID

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "tools" / "asyncapi-validate"

#: Constraints that need more than one field or outside knowledge, which JSON Schema cannot state;
#: the models enforce them (see test_contract_models).
BEYOND_JSON_SCHEMA = {
    ("InferenceRequest", "ts"),          # RFC 3339 needs a time zone; "format" is only an annotation
    ("InferenceResponse", "prediction"),  # required unless error is set
    ("GroundTruth", "label"),             # label or outcomes
    ("RolloutSpec", "steps"),             # strictly increasing
    ("RolloutSpec", "candidate"),         # differs from baseline
    ("RolloutSpec", "guardrails"),        # metric names and one comparison each
    ("RoutingCommand", "routes"),         # sum to 100
    ("MetricsSnapshot", "window"),        # end after start
}


def test_committed_artifacts_are_what_the_models_generate():
    stale = export(check=True)
    assert stale == [], f"run `shadowcanary schemas export`; stale: {stale}"


def test_asyncapi_describes_every_topic_with_key_bindings_and_roles():
    document = yaml.safe_load(ASYNCAPI_FILE.read_text())
    channels = {c["address"]: c for c in document["channels"].values()}
    assert set(channels) == {t.name for t in TOPICS}
    for spec in TOPICS:
        channel = channels[spec.name]
        assert channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == [spec.cleanup_policy]
        assert channel["x-key"] == spec.key and channel["x-written-by"] == spec.written_by
    assert len(document["operations"]) == len(TOPICS)


def _node_validate(path: Path) -> subprocess.CompletedProcess:
    if shutil.which("node") is None or not (VALIDATOR / "node_modules").exists():
        pytest.fail("the AsyncAPI parser is not installed: run `make setup` (needs node and npm)")
    return subprocess.run(["node", str(VALIDATOR / "validate.mjs"), str(path)], capture_output=True,
                          text=True, timeout=120)


def test_asyncapi_parser_accepts_the_document():
    result = _node_validate(ASYNCAPI_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"ok {len(TOPICS)} channels, {len(TOPICS)} operations")
    assert "warning" not in result.stdout


def test_asyncapi_parser_rejects_a_broken_document(tmp_path):
    broken = asyncapi_document()
    broken["operations"]["receiveInferenceRequests"]["channel"] = {"$ref": "#/channels/nowhere"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = _node_validate(path)
    assert result.returncode == 1 and "error" in result.stdout


def _validator(message: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((JSON_DIR / f"{message}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("sample", VALID, ids=lambda s: s["message"])
def test_valid_samples_pass_the_json_schema(sample):
    errors = list(_validator(sample["message"]).iter_errors(sample["event"]))
    assert errors == []


@pytest.mark.parametrize("sample", INVALID, ids=lambda s: f"{s['message']}.{s['field']}")
def test_invalid_samples_fail_the_json_schema_where_it_can_say_so(sample):
    errors = list(_validator(sample["message"]).iter_errors(sample["event"]))
    if (sample["message"], sample["field"]) in BEYOND_JSON_SCHEMA and not errors:
        return
    assert errors, f"JSON Schema accepts an event the model refuses ({sample['field']})"

"""The ingestion bridges' translation, without a broker: KServe's payload logger CloudEvents (binary
and structured), Seldon Core 2's Open Inference Protocol records (protobuf and JSON), any JSON log;
dead letters with their reasons; mappings refused with the field and line."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from evaluators.ingest.errors import BadRecord
from evaluators.ingest.oip import decode_protobuf, encode_protobuf, tensors_from_json
from evaluators.ingest.samples import read_records
from evaluators.ingest.translate import ExternalRecord, Translator
from schemas.ingest import IngestMapping
from schemas.spec_yaml import SpecError, load_yaml_model
from streams.cli.main import cli

DATA = Path(__file__).parent / "data" / "ingest"
EXAMPLES = Path(__file__).parent.parent / "deploy" / "examples" / "ingest"
KSERVE = {"source": "kserve", "versions": {"default": {"version": "v1", "role": "primary"},
                                           "canary": {"version": "v2", "role": "canary"}}}
T = 1796205600000


def translator(**mapping) -> Translator:
    return Translator(IngestMapping.model_validate(mapping))


def records(name: str) -> list[ExternalRecord]:
    return list(read_records((DATA / name).read_bytes().splitlines()))


def events(t: Translator, name: str) -> list:
    return [event for record in records(name) for event in t.translate(record)]


def test_kserve_binary_cloudevents_become_one_request_and_response_per_row():
    out = events(translator(**KSERVE, subject='attributes.metadata."x-user-id"[0]'), "kserve_binary.jsonl")
    requests = [e for e in out if e.kind == "request"]
    responses = [e for e in out if e.kind == "response"]
    rid = "0009174a-24a8-4603-b098-09c8799950e9"
    assert [e.request_id for e in requests][:3] == [f"{rid}#0", f"{rid}#1", "5b6f7e5e-1c1e-4e0c-9f38-2f1f3c1c0a01"]
    assert requests[0].model == "sklearn-iris" and requests[0].features == {"x0": 6.8, "x1": 2.8, "x2": 4.8, "x3": 1.4}
    assert requests[0].subject == "u-17" and requests[2].subject is None
    # the CloudEvent's time, to the microsecond (ce_time has nanoseconds)
    assert requests[0].ts.isoformat() == "2026-12-02T10:00:00.078952+00:00"
    assert [(e.request_id[-2:], e.version, e.role, e.prediction) for e in responses] == [
        ("#0", "v1", "primary", 1), ("#1", "v1", "primary", 1), ("01", "v2", "canary", 0),
        ("#0", "v1", "primary", 1), ("#1", "v1", "primary", 1)]
    # v2 (Open Inference Protocol JSON): the tensor's columns named after it, the model from the event
    v2 = [e for e in requests if e.model == "sklearn-v2-iris"]
    assert v2[1].features == {"input-0_0": 6.0, "input-0_1": 3.4, "input-0_2": 4.5, "input-0_3": 1.6}


def test_kserve_structured_mode_reads_like_binary_mode():
    t = translator(**KSERVE)
    structured = events(t, "kserve_structured.jsonl")
    binary = events(t, "kserve_binary.jsonl")
    assert [e.model_dump() for e in structured[:5]] == [e.model_dump() for e in binary[:5]]
    assert structured[-1].prediction == 2  # data_base64


def test_feature_names_and_classes_from_the_mapping():
    t = translator(**KSERVE, features={"names": ["sl", "sw", "pl", "pw"]},
                   outputs={"classes": ["setosa", "versicolor", "virginica"]})
    out = events(t, "kserve_binary.jsonl")
    assert out[0].features == {"sl": 6.8, "sw": 2.8, "pl": 4.8, "pw": 1.4}
    assert [e.prediction for e in out if e.kind == "response"][:3] == ["versicolor", "versicolor", "setosa"]


def _kserve_response(data: dict, endpoint: str = "default", rid: str = "r1") -> ExternalRecord:
    headers = [("ce_id", rid.encode()), ("ce_type", b"org.kubeflow.serving.inference.response"),
               ("ce_source", b"s"), ("ce_specversion", b"1.0"), ("ce_inferenceservicename", b"m"),
               ("ce_endpoint", endpoint.encode())]
    return ExternalRecord("logs", None, orjson.dumps(data), headers, T)


def test_scores_probabilities_and_their_predictions():
    t = translator(**KSERVE, outputs={"score": "proba", "prediction": "label", "classes": ["a", "b", "c"]})
    # v2: a probability tensor [n, 3] -> class to probability; no prediction tensor named -> the argmax
    probabilities = {"outputs": [{"name": "proba", "shape": [2, 3], "datatype": "FP64",
                                  "data": [0.1, 0.7, 0.2, 0.5, 0.25, 0.25]}]}
    with pytest.raises(BadRecord, match="no tensor named 'label'"):
        t.translate(_kserve_response(probabilities))
    t = translator(**KSERVE, outputs={"score": "proba", "classes": ["a", "b", "c"]})
    out = t.translate(_kserve_response(probabilities))
    assert [(e.prediction, e.score) for e in out] == [("b", {"a": 0.1, "b": 0.7, "c": 0.2}),
                                                      ("a", {"a": 0.5, "b": 0.25, "c": 0.25})]
    # two probabilities without classes: the positive class's (sklearn's predict_proba order)
    t = translator(**KSERVE, outputs={"score": "proba"})
    out = t.translate(_kserve_response({"outputs": [
        {"name": "label", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "proba", "shape": [1, 2], "datatype": "FP32", "data": [0.2, 0.8]}]}))
    assert [(e.prediction, e.score) for e in out] == [(1, 0.8)]
    # v1: a row that is an object names its prediction and score
    t = translator(**KSERVE, outputs={"prediction": "label", "score": "p"})
    out = t.translate(_kserve_response({"predictions": [{"label": 0, "p": 0.3}]}))
    assert [(e.prediction, e.score) for e in out] == [(0, 0.3)]
    # v1 predict_proba rows with classes
    t = translator(**KSERVE, outputs={"classes": ["no", "yes"]})
    assert [(e.prediction, e.score) for e in t.translate(_kserve_response({"predictions": [[0.9, 0.1]]}))] == [
        ("no", {"no": 0.9, "yes": 0.1})]
    # three probabilities and no classes cannot be named
    with pytest.raises(BadRecord, match="need outputs.classes"):
        translator(**KSERVE, outputs={"score": "proba"}).translate(_kserve_response(probabilities))


def test_a_model_error_is_an_error_response():
    out = translator(**KSERVE).translate(_kserve_response({"error": "model crashed"}, "canary"))
    assert [(e.version, e.error, e.prediction) for e in out] == [("v2", "model crashed", None)]


def test_batch_reject_makes_a_batch_a_dead_letter():
    record = records("kserve_binary.jsonl")[0]
    with pytest.raises(BadRecord) as caught:
        translator(**KSERVE, batch="reject").translate(record)
    assert caught.value.reason == "batch" and "2 rows" in caught.value.detail


def test_seldon_protobuf_and_raw_contents():
    t = Translator(load_yaml_model((EXAMPLES / "seldon.yaml").read_text(), "seldon.yaml", IngestMapping, "x"))
    out = events(t, "seldon.jsonl")
    assert [(e.kind, e.request_id[-2:]) for e in out] == [("request", "40"), ("response", "40"), ("response", "41"),
                                                          ("request", "41"), ("request", "42"), ("response", "42")]
    assert out[0].features == {"sepal_length": 1.0, "sepal_width": 2.0, "petal_length": 3.0, "petal_width": 4.0}
    assert out[3].features == {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    assert out[4].features["sepal_length"] == 6.3  # raw little-endian FP32
    assert [(e.version, e.role, e.prediction) for e in out if e.kind == "response"] == [
        ("v1", "primary", 2), ("v2", "canary", 0), ("v1", "primary", 2)]
    assert out[0].ts.timestamp() * 1000 == T  # the record's timestamp


def test_seldon_json_records_and_the_request_id_from_the_message():
    t = translator(source="seldon", versions={"iris": {"version": "v1"}})
    value = orjson.dumps({"id": "from-body", "model_name": "iris",
                          "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]}]})
    (event,) = t.translate(ExternalRecord("seldon.ns.model.iris.outputs", None, value, None, T))
    assert (event.request_id, event.model, event.prediction) == ("from-body", "iris", 1)
    with pytest.raises(BadRecord, match="not a Seldon model topic"):
        t.translate(ExternalRecord("iris-outputs", b"k", value, None, T))


def test_oip_tensors_rows_bytes_and_high_rank():
    request = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "world"]},
                          {"name": "image", "shape": [2, 2, 2], "datatype": "UINT8", "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}
    text, image = tensors_from_json(request, "inputs")
    assert text.rows() == ["hello", "world"] and image.rows() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    t = translator(source="seldon", versions={"m": {"version": "v1"}})
    out = t.translate(ExternalRecord("seldon.ns.model.m.inputs", b"r", orjson.dumps(request), None, T))
    assert [e.features for e in out] == [{"text": "hello"}, {"text": "world"}]  # an image row gives no features
    # raw BYTES: each element a 4-byte little-endian length, then its bytes
    raw = b"".join(len(w).to_bytes(4, "little") + w for w in (b"ab", b"cde"))
    message = encode_protobuf({"inputs": [{"name": "s", "datatype": "BYTES", "shape": ["2"]}],
                               "raw_input_contents": [base64.b64encode(raw).decode()]}, "request")
    assert decode_protobuf(message, "request")[1][0].values == ["ab", "cde"]
    message = encode_protobuf({"inputs": [{"name": "s", "datatype": "FP64", "shape": ["3"]}],
                               "raw_input_contents": [base64.b64encode(np.zeros(2).tobytes()).decode()]}, "request")
    with pytest.raises(BadRecord, match=r"shape \[3\] needs 3 values, found 2"):
        decode_protobuf(message, "request")


def test_malformed_records_become_dead_letters_with_their_reasons():
    kserve = translator(**KSERVE)
    seldon = translator(source="seldon", versions={"iris": {"version": "v1"}})
    lines = (DATA / "malformed.jsonl").read_bytes().splitlines()
    assert len(lines) >= 10
    for line, record in zip(lines, read_records(lines)):
        expected = orjson.loads(line)["expect"]
        with pytest.raises(BadRecord) as caught:
            (seldon if record.topic.startswith("seldon.") else kserve).translate(record)
        assert caught.value.reason == expected["reason"], (line, caught.value)
        assert expected["error_contains"] in caught.value.detail, (line, caught.value)


def test_any_json_log_with_the_users_field_names():
    mapping = load_yaml_model((EXAMPLES / "json.yaml").read_text(), "json.yaml", IngestMapping, "x")
    t = Translator(mapping)
    request = {"event": "input", "trace_id": "t-1", "at": "2026-12-02T10:00:00Z", "customer_id": 42,
               "inputs": {"tenure": 7, "plan": "pro", "nested": {"ignored": 1}}}
    response = {"event": "prediction", "trace_id": "t-1", "at": T + 20, "model_version": "2026-12",
                "output": {"label": True, "probability": 0.81}, "elapsed_ms": 12.5}
    failed = {"event": "prediction", "trace_id": "t-2", "model_version": "2026-11", "failure": {"code": 500}}
    (req,) = t.translate(ExternalRecord("serving-log", None, orjson.dumps(request), None, T))
    (resp,) = t.translate(ExternalRecord("serving-log", None, orjson.dumps(response), None, T))
    (err,) = t.translate(ExternalRecord("serving-log", None, orjson.dumps(failed), None, T + 5))
    assert (req.model, req.request_id, req.features, req.subject, req.attributes) == (
        "churn", "t-1", {"tenure": 7, "plan": "pro"}, "42", {"plan": "pro"})
    assert (resp.version, resp.role, resp.prediction, resp.score, resp.latency_ms) == ("v2", "canary", True, 0.81, 12.5)
    assert (err.version, err.error, err.ts.timestamp() * 1000) == ("v1", '{"code":500}', T + 5)
    with pytest.raises(BadRecord) as caught:
        t.translate(
            ExternalRecord("serving-log", None, orjson.dumps({**response, "model_version": "2027-01"}), None, T)
        )
    assert caught.value.reason == "unknown_version" and "'2027-01'" in caught.value.detail


def test_a_bad_mapping_names_the_field_and_line():
    text = "source: kserve\nverions:\n  default: {version: v1}\noutputs:\n  clases: [a, b]\n"
    with pytest.raises(SpecError) as caught:
        load_yaml_model(text, "m.yaml", IngestMapping, "x")
    assert "m.yaml:2: verions: unknown field (did you mean 'versions'?)" in caught.value.messages
    assert "m.yaml:5: outputs.clases: unknown field (did you mean 'classes'?)" in caught.value.messages
    with pytest.raises(SpecError, match="a json source needs json, model, version_from"):
        load_yaml_model("source: json\nversions: {a: {version: v1}}\n", "j.yaml", IngestMapping, "x")
    with pytest.raises(SpecError, match=r"versions.default.role: Input should be 'primary', 'canary' or 'shadow'"):
        load_yaml_model(
            "source: kserve\nversions: {default: {version: v1, role: blue}}\n", "r.yaml", IngestMapping, "x"
        )


def test_ingest_try_prints_events_and_dead_letters(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["ingest", "kserve", "--mapping", str(EXAMPLES / "kserve.yaml"),
                                 "--try", str(DATA / "kserve_binary.jsonl")])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 10 and {line["topic"] for line in lines} == {"inference.requests", "inference.responses"}
    assert lines[0]["event"]["model"] == "iris" and lines[0]["event"]["attributes"] == {"region": "eu"}
    result = runner.invoke(cli, ["ingest", "kserve", "--mapping", str(EXAMPLES / "kserve.yaml"),
                                 "--try", str(DATA / "malformed.jsonl")])
    assert result.exit_code == 1
    assert all("dead_letter" in orjson.loads(line) for line in result.stdout.splitlines())
    # the mapping is for another source; a bad mapping; no topics
    result = runner.invoke(cli, ["ingest", "seldon", "--mapping", str(EXAMPLES / "kserve.yaml"), "--topic", "x"])
    assert result.exit_code == 2 and "source: the mapping is for kserve, not seldon" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("versions: {default: {version: v1}}\nsubjet: x\n")
    result = runner.invoke(cli, ["ingest", "kserve", "--mapping", str(bad), "--topic", "x"])
    assert result.exit_code == 2 and "bad.yaml:2: subjet: unknown field (did you mean 'subject'?)" in result.output
    result = runner.invoke(cli, ["ingest", "seldon", "--mapping", str(EXAMPLES / "seldon.yaml"), "--topic", "iris-out"])
    assert result.exit_code == 2 and "not Seldon model topics" in result.output


def test_feature_names_apply_to_a_single_input_of_as_many_columns():
    t = translator(source="seldon", versions={"m": {"version": "v1"}}, features={"names": ["a", "b"]})

    def features(inputs: list) -> list:
        return [e.features for e in t.translate(ExternalRecord("seldon.ns.model.m.inputs", b"r",
                                                               orjson.dumps({"inputs": inputs}), None, T))]
    assert features([{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.5, 2.5]}]) == [{"a": 1.5, "b": 2.5}]
    # three columns for two names: the tensor's own names
    assert features([{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]) == [
        {"x_0": 1, "x_1": 2, "x_2": 3}]
    # two inputs: each named after its tensor, whatever the names say
    assert features(
        [
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [40]},
            {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
        ]
    ) == [{"age": 40, "plan": "pro"}]


def test_the_bridge_stage_writes_events_by_request_id_and_counts_what_committed(caplog):
    from schemas import Topics
    from streams.ingest.bridge import BridgeStage
    from streams.worker.loop import Record

    class Transaction:
        def __init__(self) -> None:
            self.records: list[tuple[str, bytes, bytes]] = []

        def produce(self, topic, key, value):
            self.records.append((topic, key, value))

    stage = BridgeStage(Topics("p."), "kserve", progress_every_s=0.0, records_read=lambda: 8)
    translated = [events(translator(**KSERVE), "kserve_binary.jsonl")[:3]]  # one record: 2 requests, a response
    transaction = Transaction()
    stage.process(0, [Record("logs", 0, 7, translated[0])], transaction)
    assert [(t, k) for t, k, _ in transaction.records] == [
        ("p.inference.requests", b"0009174a-24a8-4603-b098-09c8799950e9#0"),
        ("p.inference.requests", b"0009174a-24a8-4603-b098-09c8799950e9#1"),
        ("p.inference.responses", b"0009174a-24a8-4603-b098-09c8799950e9#0")]
    assert orjson.loads(transaction.records[2][2])["version"] == "v1"
    stage.aborted()  # the transaction did not commit: nothing counted
    assert stage.written == {} and stage.translated == 0
    stage.process(0, [Record("logs", 0, 7, translated[0])], transaction)
    stage.committed()
    with caplog.at_level("INFO", logger="shadowcanary.ingest"):
        stage.tick(transaction)
    assert "ingest progress: 8 records read, 2 requests and 1 responses written, 7 dead letters" in caplog.text

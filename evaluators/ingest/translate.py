"""A serving tool's log record in, the contract's requests and responses out (pure: no Kafka).

:class:`Translator` applies an :class:`~schemas.ingest.IngestMapping` to one
:class:`ExternalRecord` (a Kafka record's topic, key, headers, value and timestamp) and returns the
contract events it stands for, validated by the contract's own models, or raises
:class:`~evaluators.ingest.errors.BadRecord` with a reason and the field at fault.

**Rows.** A request of ``n`` rows (KServe v1 ``instances``, the first dimension of v2 tensors)
becomes ``n`` contract requests with ids ``<id>#<row>`` (``<id>`` itself when ``n`` is 1), and its
response ``n`` responses with the same ids; labels must use them. ``batch: reject`` makes such a
record a dead letter instead.

**Outputs.** The prediction is ``outputs.prediction`` (v2: that output tensor; v1: that key of a row
that is an object), else the first output that is not the score; the score is ``outputs.score``.
A score row with a probability per class is ``{class: probability}`` with ``outputs.classes``, and
for two numbers without classes the second (sklearn's ``predict_proba`` order: the positive
class). With only a score, the prediction is the most probable class, or ``score >= 0.5`` for a
single probability.

**Context.** ``version_from``, ``subject`` and ``attributes`` are JMESPath expressions over the
record's context: ``attributes`` (the CloudEvent's, with KServe's ``metadata`` parsed), ``data``
(the payload), ``seldon`` (``model``, ``namespace``, ``model_name``, ``model_version``),
``headers`` (as text), ``key``, ``topic`` and ``timestamp``; a ``json`` source's record is
``value``.

>>> from schemas.ingest import IngestMapping
>>> translator = Translator(IngestMapping.model_validate({
...     "source": "kserve", "versions": {"default": {"version": "v1"}}}))
>>> headers = [("ce_id", b"r1"), ("ce_type", b"org.kubeflow.serving.inference.response"),
...            ("ce_source", b"http://localhost:9081/"), ("ce_specversion", b"1.0"),
...            ("ce_inferenceservicename", b"iris"), ("ce_endpoint", b"default"),
...            ("ce_time", b"2026-12-02T10:00:00.123456789Z")]
>>> [(e.request_id, e.model, e.version, e.prediction) for e in
...  translator.translate(ExternalRecord("logs", None, b'{"predictions": [1, 0]}', headers, None))]
[('r1#0', 'iris', 'v1', 1), ('r1#1', 'iris', 'v1', 0)]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
import orjson
from pydantic import ValidationError

from evaluators.ingest.cloudevents import from_kafka
from evaluators.ingest.errors import BadRecord, load_json, load_json_object
from evaluators.ingest.oip import Direction, Tensor, decode_protobuf, tensors_from_json
from schemas.errors import error_locations, field_path
from schemas.inference import InferenceRequest, InferenceResponse, Role
from schemas.ingest import IngestMapping

Translated = InferenceRequest | InferenceResponse

#: Seldon Core 2's model topics: ``<prefix>.<namespace>.model.<model>.inputs|outputs``.
SELDON_TOPIC = re.compile(
    r"^(?P<prefix>.+)\.(?P<namespace>[^.]+)\.model\.(?P<model>[^.]+)\.(?P<direction>inputs|outputs)$"
)
#: The CloudEvent types of KServe's payload logger.
KSERVE_TYPES = {"org.kubeflow.serving.inference.request": "request",
                "org.kubeflow.serving.inference.response": "response"}


@dataclass(frozen=True)
class ExternalRecord:
    """A record of a serving tool's log topic, as read."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] | None
    timestamp_ms: int | None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _finite(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRecord("invalid", f"{where}: {value} is not a finite number")
    return value


class Translator:
    """Applies one mapping to records (see the module's docstring)."""

    def __init__(self, mapping: IngestMapping) -> None:
        self.mapping = mapping
        self._version_from = jmespath.compile(mapping.version_expression())
        self._subject = jmespath.compile(mapping.subject) if mapping.subject else None
        self._attributes = {name: jmespath.compile(expression) for name, expression in mapping.attributes.items()}
        fields = mapping.json_fields
        self._json: dict[str, Any] = {}
        if fields is not None:
            self._json = {name: jmespath.compile(expression) for name, expression in fields.model_dump().items()
                          if expression is not None}
        expressions = [mapping.version_expression(), mapping.subject or "", *mapping.attributes.values(),
                       *(fields.model_dump(exclude_none=True).values() if fields is not None else ())]
        #: The Kafka headers as text cost a decode each: put in the context only if an expression reads them.
        self._needs_headers = any("headers" in expression for expression in expressions)
        self._source: Callable[[ExternalRecord], list[Translated]] = {
            "kserve": self._kserve, "seldon": self._seldon, "json": self._json_record}[mapping.source]

    def translate(self, record: ExternalRecord) -> list[Translated]:
        """The contract events ``record`` stands for; :class:`BadRecord` if it cannot be read."""
        if not record.value:
            raise BadRecord("empty", "an empty record")
        try:
            return self._source(record)
        except ValidationError as exc:
            first_loc, message = next(iter(error_locations(exc)))
            raise BadRecord("invalid", f"{field_path(first_loc)}: {message}") from None
        except jmespath.exceptions.JMESPathError as exc:
            raise BadRecord("invalid", f"an expression of the mapping failed on this record: {exc}") from None

    # -- shared ----------------------------------------------------------------------------------
    def _context(self, record: ExternalRecord, **parts: Any) -> dict[str, Any]:
        headers = {name: _text(value) for name, value in record.headers or []} if self._needs_headers else {}
        return {"headers": headers, "key": _text(record.key), "topic": record.topic,
                "timestamp": record.timestamp_ms, **parts}

    def _version(self, context: dict[str, Any]) -> tuple[str, Role]:
        value = self._version_from.search(context)
        target = self.mapping.versions.get("" if value is None else str(value))
        if target is None:
            raise BadRecord(
                "unknown_version",
                f"{self.mapping.version_expression()} is {value!r}, which the "
                f"mapping's versions do not name ({', '.join(sorted(self.mapping.versions))})",
            )
        return target.version, target.role

    def _extras(self, context: dict[str, Any]) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if self._subject is not None:
            subject = self._subject.search(context)
            if subject is not None:
                extras["subject"] = str(subject)
        attributes = {name: expression.search(context) for name, expression in self._attributes.items()}
        attributes = {name: value if isinstance(value, str) else orjson.dumps(value).decode()
                      for name, value in attributes.items() if value is not None}
        if attributes:
            extras["attributes"] = attributes
        return extras

    def _row_ids(self, request_id: str, rows: int) -> list[str]:
        if rows == 0:
            raise BadRecord("invalid", "no rows")
        if rows == 1:
            return [request_id]
        if self.mapping.batch == "reject":
            raise BadRecord("batch", f"{rows} rows in one request (the mapping says batch: reject)")
        return [f"{request_id}#{row}" for row in range(rows)]

    def _features(self, row: Any, prefix: str | None, named: bool = True) -> dict[str, Any]:
        """A row's features: an object's scalar fields; a list's values named by ``features.names``
        (when ``named`` and their count matches; else ``<prefix>_<j>``, or ``x<j>`` without a
        prefix); nothing for a row over ``features.max_per_row`` values."""
        names = self.mapping.features.names if named else None
        if isinstance(row, dict):
            return {str(k): _finite(v, f"features.{k}") for k, v in row.items()
                    if v is None or isinstance(v, (bool, int, float, str))}
        if not isinstance(row, list):
            row = [row]
        if len(row) > self.mapping.features.max_per_row or any(isinstance(v, (list, dict)) for v in row):
            return {}
        if names is not None and len(names) == len(row):
            keys = names
        elif prefix is None:
            keys = [f"x{j}" for j in range(len(row))]
        else:
            keys = [prefix] if len(row) == 1 else [f"{prefix}_{j}" for j in range(len(row))]
        return {key: _finite(value, f"features.{key}") for key, value in zip(keys, row)}

    def _requests(self, model: str, request_id: str, ts: Any, rows: list[dict[str, Any]],
                  context: dict[str, Any]) -> list[Translated]:
        extras = self._extras(context)
        return [InferenceRequest(request_id=rid, model=model, ts=ts, features=features, **extras)
                for rid, features in zip(self._row_ids(request_id, len(rows)), rows)]

    def _responses(self, model: str, request_id: str, ts: Any, answers: list[tuple[Any, Any]],
                   context: dict[str, Any]) -> list[Translated]:
        version, role = self._version(context)
        return [InferenceResponse(request_id=rid, model=model, version=version, role=role, ts=ts,
                                  prediction=prediction, score=score)
                for rid, (prediction, score) in zip(self._row_ids(request_id, len(answers)), answers)]

    def _error_response(self, model: str, request_id: str, ts: Any, error: Any,
                        context: dict[str, Any]) -> list[Translated]:
        version, role = self._version(context)
        text = error if isinstance(error, str) else orjson.dumps(error).decode()
        return [InferenceResponse(request_id=request_id, model=model, version=version, role=role, ts=ts,
                                  error=text or "error")]

    def _answer(self, prediction: Any, score: Any) -> tuple[Any, Any]:
        """A row's ``(prediction, score)`` from its prediction and score values (module docstring)."""
        classes = self.mapping.outputs.classes
        prediction, score = _finite(prediction, "prediction"), score
        if isinstance(score, list):
            score = [_finite(p, "score") for p in score]
            if classes is not None:
                if len(score) != len(classes):
                    raise BadRecord("invalid", f"score: {len(score)} probabilities for {len(classes)} classes")
                score = {name: float(p) for name, p in zip(classes, score)}
            elif len(score) == 2:
                score = float(score[1])
            elif len(score) == 1:
                score = float(score[0])
            else:
                raise BadRecord("invalid", f"score: {len(score)} probabilities need outputs.classes to name them")
        elif isinstance(score, dict):
            if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in score.values()):
                raise BadRecord("invalid", "score: an object of class to probability needs numbers")
            score = {str(name): float(_finite(p, f"score.{name}")) for name, p in score.items()}
        elif isinstance(score, (int, float)) and not isinstance(score, bool):
            score = float(_finite(score, "score"))
        elif score is not None:
            raise BadRecord("invalid", f"score: expected a number, probabilities or class to probability, "
                                       f"got {type(score).__name__}")
        if prediction is None and score is not None:
            prediction = max(score, key=lambda cls: score[cls]) if isinstance(score, dict) else int(score >= 0.5)
        elif classes is not None and isinstance(prediction, int) and not isinstance(prediction, bool) \
                and 0 <= prediction < len(classes):
            prediction = classes[prediction]
        if prediction is None:
            raise BadRecord("invalid", "prediction: none in the response")
        return prediction, score

    def _answers_from_tensors(self, tensors: list[Tensor]) -> list[tuple[Any, Any]]:
        by_name = {t.name: t for t in tensors}
        outputs = self.mapping.outputs
        for name in (outputs.prediction, outputs.score):
            if name is not None and name not in by_name:
                raise BadRecord("invalid", f"outputs: no tensor named {name!r} (found {', '.join(by_name)})")
        score = by_name.get(outputs.score) if outputs.score else None
        prediction = by_name.get(outputs.prediction) if outputs.prediction else next(
            (t for t in tensors if t is not score), None)
        counts = {t.row_count for t in (prediction, score) if t is not None}
        if len(counts) > 1:
            raise BadRecord("invalid", "outputs: the prediction and the score have different numbers of rows")
        predictions = prediction.rows() if prediction is not None else [None] * next(iter(counts))
        scores = score.rows() if score is not None else [None] * len(predictions)
        return [self._answer(p, s) for p, s in zip(predictions, scores)]

    def _rows_from_tensors(self, tensors: list[Tensor]) -> list[dict[str, Any]]:
        counts = {t.row_count for t in tensors}
        if len(counts) > 1:
            raise BadRecord("invalid", "inputs: tensors with different numbers of rows")
        rows: list[dict[str, Any]] = [{} for _ in range(counts.pop())]
        named = len(tensors) == 1  # names are a single input's columns
        for tensor in tensors:
            for features, row in zip(rows, tensor.rows()):
                features.update(self._features(row, tensor.name, named))
        return rows

    # -- KServe ----------------------------------------------------------------------------------
    def _kserve(self, record: ExternalRecord) -> list[Translated]:
        event = from_kafka(record.headers, record.value)
        kind = KSERVE_TYPES.get(event.attributes["type"])
        if kind is None:
            raise BadRecord("unknown_type", f"ce_type {event.attributes['type']!r} is not one of KServe's "
                                            f"({', '.join(KSERVE_TYPES)})")
        attributes: dict[str, Any] = dict(event.attributes)
        if attributes.get("metadata"):
            try:
                attributes["metadata"] = orjson.loads(attributes["metadata"])
            except orjson.JSONDecodeError:
                pass  # kept as text
        data = event.json_data()
        if not isinstance(data, dict):
            raise BadRecord("invalid", "data: expected a JSON object (KServe v1 or v2)")
        model = self.mapping.model or attributes.get("inferenceservicename")
        if not model:
            raise BadRecord("invalid", "ce_inferenceservicename: required (or model in the mapping)")
        ts = attributes.get("time") or record.timestamp_ms
        if ts is None:
            raise BadRecord("invalid", "ce_time: required (the record has no timestamp either)")
        context = self._context(record, attributes=attributes, data=data)
        request_id = attributes["id"]
        if kind == "request":
            if "instances" in data:
                instances = data["instances"]
                if not isinstance(instances, list):
                    raise BadRecord("invalid", "data.instances: expected a list")
                rows = [self._features(row, None) for row in instances]
            elif "inputs" in data:
                rows = self._rows_from_tensors(tensors_from_json(data, "inputs"))
            else:
                raise BadRecord("invalid", "data: expected instances (v1) or inputs (v2)")
            return self._requests(model, request_id, ts, rows, context)
        if "predictions" in data:
            predictions = data["predictions"]
            if not isinstance(predictions, list):
                raise BadRecord("invalid", "data.predictions: expected a list")
            return self._responses(model, request_id, ts, [self._v1_answer(p) for p in predictions], context)
        if "outputs" in data:
            return self._responses(model, request_id, ts, self._answers_from_tensors(
                tensors_from_json(data, "outputs")), context)
        if "error" in data:
            return self._error_response(model, request_id, ts, data["error"], context)
        raise BadRecord("invalid", "data: expected predictions (v1), outputs (v2) or error")

    def _v1_answer(self, row: Any) -> tuple[Any, Any]:
        outputs = self.mapping.outputs
        if isinstance(row, dict):
            return self._answer(row.get(outputs.prediction or "prediction"), row.get(outputs.score or "score"))
        if isinstance(row, list) and outputs.classes is not None and len(row) == len(outputs.classes) \
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            return self._answer(None, row)  # predict_proba's rows
        return self._answer(row, None)

    # -- Seldon ----------------------------------------------------------------------------------
    def _seldon(self, record: ExternalRecord) -> list[Translated]:
        match = SELDON_TOPIC.match(record.topic)
        if match is None:
            raise BadRecord("invalid", f"topic {record.topic}: not a Seldon model topic "
                                       f"(<prefix>.<namespace>.model.<model>.inputs|outputs)")
        direction: Direction = "request" if match["direction"] == "inputs" else "response"
        value = record.value or b""
        if value[:1] == b"{":  # the REST path writes JSON
            document = load_json_object(value, "the record")
            header = {k: str(document.get(k) or "") for k in ("model_name", "model_version", "id")}
            tensors = tensors_from_json(document, "inputs" if direction == "request" else "outputs")
        else:
            header, tensors = decode_protobuf(value, direction)
        request_id = _text(record.key) or header["id"]
        if not request_id:
            raise BadRecord("invalid", "key: the request id is required (the record has no key and no id)")
        if record.timestamp_ms is None:
            raise BadRecord("invalid", "timestamp: the record has none")
        seldon = {"model": match["model"], "namespace": match["namespace"], "model_name": header["model_name"],
                  "model_version": header["model_version"]}
        context = self._context(record, seldon=seldon, data=header)
        model = self.mapping.model or match["model"]
        if direction == "request":
            return self._requests(model, request_id, record.timestamp_ms, self._rows_from_tensors(tensors), context)
        return self._responses(model, request_id, record.timestamp_ms, self._answers_from_tensors(tensors), context)

    # -- any JSON --------------------------------------------------------------------------------
    def _json_record(self, record: ExternalRecord) -> list[Translated]:
        value = load_json(record.value, "the record")
        context = self._context(record, value=value)
        fields = {name: expression.search(context) for name, expression in self._json.items()}
        kind = fields.get("kind")
        if kind not in ("request", "response"):
            raise BadRecord("unknown_type", f"json.kind gives {kind!r}, not 'request' or 'response'")
        request_id = fields.get("request_id")
        if request_id is None or isinstance(request_id, (dict, list)):
            expression = self.mapping.json_fields.request_id if self.mapping.json_fields else "request_id"
            raise BadRecord("invalid", f"json.request_id: {expression} gives {request_id!r}")
        ts: Any = fields.get("ts") if fields.get("ts") is not None else record.timestamp_ms  # the models validate it
        model = self.mapping.model
        assert model is not None  # the mapping requires it for a json source
        if kind == "request":
            features = fields.get("features") or {}
            if not isinstance(features, dict):
                raise BadRecord("invalid", "json.features: expected an object")
            return self._requests(model, str(request_id), ts, [self._features(features, None)], context)
        if fields.get("error") is not None:
            return self._error_response(model, str(request_id), ts, fields["error"], context)
        version, role = self._version(context)
        prediction, score = self._answer(fields.get("prediction"), fields.get("score"))
        latency = fields.get("latency_ms")
        return [InferenceResponse(request_id=str(request_id), model=model, version=version, role=role, ts=ts,
                                  prediction=prediction, score=score,
                                  latency_ms=float(latency) if isinstance(latency, (int, float)) else None)]


__all__ = ["ExternalRecord", "KSERVE_TYPES", "SELDON_TOPIC", "Translated", "Translator"]

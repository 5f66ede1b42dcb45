"""``IngestMapping``: how a serving tool's own log records become the contract's requests and
responses (``shadowcanary ingest``), written by people as YAML.

Three sources:

- ``kserve``: KServe's payload logger, CloudEvents on a Kafka topic (Knative's KafkaSink, binary
  mode with ``ce_`` headers or structured mode): ``ce-type`` says request or response, ``ce-id``
  is the request id, ``ce-time`` the time; the data is KServe's v1 (``instances`` /
  ``predictions``) or the Open Inference Protocol's v2 JSON (``inputs`` / ``outputs``).
- ``seldon``: Seldon Core 2's model topics ``<prefix>.<namespace>.model.<model>.inputs`` and
  ``.outputs``: Open Inference Protocol v2 records in protobuf (or JSON), the request id in the key.
- ``json``: any other JSON serving log, with the user's own field names as JMESPath expressions.

Which version answered is looked up in ``versions`` (each value of ``version_from`` names a
contract version and its role); a record of a version the mapping does not know is a dead letter.

>>> mapping = IngestMapping.model_validate({
...     "source": "kserve", "model": "iris",
...     "versions": {"default": {"version": "v1", "role": "primary"},
...                  "canary": {"version": "v2", "role": "canary"}},
...     "outputs": {"score": "predict_proba", "classes": ["setosa", "versicolor", "virginica"]}})
>>> mapping.version_expression(), mapping.outputs.prediction
('attributes.endpoint', None)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.inference import Role
from schemas.types import Name

Source = Literal["kserve", "seldon", "json"]

#: Where each source finds the value ``versions`` is keyed by, unless ``version_from`` says.
DEFAULT_VERSION_FROM: dict[str, str] = {"kserve": "attributes.endpoint", "seldon": "seldon.model"}


class _Part(BaseModel):
    """Strict about unknown keys: people write mappings by hand, and a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class VersionTarget(_Part):
    """The contract version and role a value of ``version_from`` stands for."""

    version: Name
    role: Role = "primary"


class Outputs(_Part):
    """Which output is the prediction and which the score (``kserve`` and ``seldon``)."""

    prediction: str | None = Field(
        None, description="The output tensor holding the prediction (v2); None: the first output, or "
                          "the argmax of the score when only a score is there.")
    score: str | None = Field(
        None, description="The output tensor holding the score: one number per row, or a probability per "
                          "class (with ``classes``).")
    classes: list[str] | None = Field(
        None, min_length=2, description="Class names, in the order of a row's probabilities; then the score is "
                                        "class to probability, and a prediction that is a class index becomes "
                                        "the class name.")


class Features(_Part):
    """How request inputs become features (``kserve`` and ``seldon``)."""

    names: list[str] | None = Field(
        None, description="Names of the columns of a row of the (single) input tensor, or of a v1 instance "
                          "given as a list; without names a column is ``<input>_<j>`` (v2) or ``x<j>`` (v1).")
    max_per_row: int = Field(
        256, ge=0, description="A row with more values than this (an image, an embedding) gives no features.")


class JsonFields(_Part):
    """The fields of a generic JSON log record, as JMESPath expressions over ``{"value": <the record's
    JSON>, "key": <its key>, "headers": {...}, "topic": ..., "timestamp": <ms>}``."""

    kind: str = Field(description="Evaluates to 'request' or 'response'.")
    request_id: str = "value.request_id"
    ts: str | None = Field(None, description="Epoch milliseconds or RFC 3339; None: the record's timestamp.")
    features: str | None = Field(None, description="An object of feature name to value (requests).")
    prediction: str | None = Field(None, description="The prediction (responses).")
    score: str | None = Field(None, description="A number, or an object of class to probability (responses).")
    latency_ms: str | None = None
    error: str | None = Field(None, description="A model error (responses): a string, or anything not null.")


class IngestMapping(_Part):
    source: Source
    model: Name | None = Field(
        None, description="The contract's model name; None: the InferenceService (kserve), the Seldon model "
                          "(seldon), required for json.")
    version_from: str | None = Field(
        None, description="A JMESPath expression over the record's context whose value is looked up in "
                          "``versions``; defaults: kserve ``attributes.endpoint``, seldon ``seldon.model``.")
    versions: dict[str, VersionTarget] = Field(
        min_length=1, description="Value of version_from -> contract version and role.")
    outputs: Outputs = Field(default_factory=Outputs)
    features: Features = Field(default_factory=Features)
    subject: str | None = Field(None, description="JMESPath over the record's context: the subject.")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Attribute name -> JMESPath over the record's context (requests).")
    batch: Literal["split", "reject"] = Field(
        "split", description="A request of several rows: one contract request per row (id ``<id>#<row>``, "
                             "the id labels must use), or a dead letter.")
    json_fields: JsonFields | None = Field(None, alias="json", description="The fields of a ``json`` source.")

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    @model_validator(mode="after")
    def _json_needs_its_fields(self) -> IngestMapping:
        if self.source == "json":
            missing = [name for name, value in (("json", self.json_fields), ("model", self.model),
                                                ("version_from", self.version_from)) if value is None]
            if missing:
                raise ValueError(f"a json source needs {', '.join(missing)} (the fields of its records, the "
                                 f"contract's model name, where the version is)")
        return self

    def version_expression(self) -> str:
        """The JMESPath expression whose value ``versions`` is keyed by."""
        return self.version_from if self.version_from is not None else DEFAULT_VERSION_FROM[self.source]


__all__ = ["DEFAULT_VERSION_FROM", "Features", "IngestMapping", "JsonFields", "Outputs", "Source", "VersionTarget"]

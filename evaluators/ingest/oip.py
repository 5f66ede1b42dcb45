"""Open Inference Protocol (KServe v2) tensors, from JSON or protobuf, split into rows.

The protobuf messages are ``ModelInferRequest`` and ``ModelInferResponse`` of the protocol's
``grpc_predict_v2.proto`` (the part of it a log holds: names, datatypes, shapes, typed contents and
raw contents); their descriptors are built here with protobuf's own descriptor API, so no generated
code ties the package to one protobuf release.

>>> request = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
...                                    "data": [1, 2, 3, 4, 5, 6]}]}
>>> [t.rows() for t in tensors_from_json(request, "inputs")]
[[[1, 2, 3], [4, 5, 6]]]
>>> message = encode_protobuf({"id": "r1", "outputs": [{"name": "p", "datatype": "INT64", "shape": [2],
...                                                      "contents": {"int64_contents": [1, 0]}}]}, "response")
>>> header, tensors = decode_protobuf(message, "response")
>>> header["id"], [(t.name, t.rows()) for t in tensors]
('r1', [('p', [1, 0])])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError as ProtobufDecodeError

from evaluators.ingest.errors import BadRecord

Direction = Literal["request", "response"]

#: numpy dtype of each fixed-width datatype in raw contents (little endian, row-major).
RAW_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
              "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
#: The typed-contents field each datatype is written in.
CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                  "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                  "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                  "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


@dataclass(frozen=True)
class Tensor:
    """One named tensor: its datatype, shape and flat (row-major) values."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: list[Any]

    def rows(self) -> list[Any]:
        """The tensor split along its first dimension: a scalar per row for shape ``[n]`` or
        ``[n, 1]``, else a (nested) list per row. A tensor of rank 0 is one row."""
        values = self.values
        if len(self.shape) <= 1 or all(d == 1 for d in self.shape[1:]):
            return list(values)
        per_row = math.prod(self.shape[1:])
        rows = [values[i:i + per_row] for i in range(0, len(values), per_row)]
        if len(self.shape) > 2:
            rows = [np.asarray(row, dtype=object).reshape(self.shape[1:]).tolist() for row in rows]
        return rows

    @property
    def row_count(self) -> int:
        return self.shape[0] if self.shape else 1


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        flat: list[Any] = []
        for item in data:
            flat.extend(_flatten(item))
        return flat
    return [data]


def _shortest(values: list[Any], datatype: str) -> list[Any]:
    """FP32 and FP16 values as the shortest decimal that reads back to the same value (``5.1``, not
    the ``5.099999904632568`` a float32 is as a float64), as the serving code wrote them."""
    if datatype not in ("FP32", "FP16") or not values:
        return values
    return [float(text) for text in np.asarray(values, dtype=RAW_DTYPES[datatype]).astype(str)]


def _tensor(name: str, datatype: str, shape: list[int], values: list[Any], where: str) -> Tensor:
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise BadRecord("invalid", f"{where}.shape: not a list of sizes: {shape}")
    expected = math.prod(shape) if shape else 1
    if len(values) != expected:
        raise BadRecord("invalid", f"{where}: shape {list(shape)} needs {expected} values, found {len(values)}")
    return Tensor(name, datatype, tuple(shape), values)


def tensors_from_json(document: dict[str, Any], field: str) -> list[Tensor]:
    """The tensors of an OIP JSON request (``field`` ``inputs``) or response (``outputs``)."""
    items = document.get(field)
    if not isinstance(items, list) or not items:
        raise BadRecord("invalid", f"{field}: expected a non-empty list of tensors")
    tensors = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRecord("invalid", f"{where}: expected a tensor with a name")
        shape = item.get("shape")
        if not isinstance(shape, list):
            raise BadRecord("invalid", f"{where}.shape: required")
        values = _flatten(item.get("data"))
        datatype = str(item.get("datatype", ""))
        if datatype == "BYTES":
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
        tensors.append(_tensor(item["name"], datatype, shape, values, where))
    return tensors


# -- protobuf -------------------------------------------------------------------------------------
_TYPE = descriptor_pb2.FieldDescriptorProto


def _message(file: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, str | None, bool]],
             parent: descriptor_pb2.DescriptorProto | None = None) -> descriptor_pb2.DescriptorProto:
    """Add a message of ``(name, number, type, type_name, repeated)`` fields to ``file`` (or nested)."""
    message = (parent.nested_type if parent is not None else file.message_type).add(name=name)
    for field_name, number, kind, type_name, repeated in fields:
        field = message.field.add(name=field_name, number=number, type=kind,
                                  label=_TYPE.LABEL_REPEATED if repeated else _TYPE.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
    return message


def _parameters_entry(parent: descriptor_pb2.DescriptorProto, file) -> None:
    entry = _message(file, "ParametersEntry", [("key", 1, _TYPE.TYPE_STRING, None, False),
                                               ("value", 2, _TYPE.TYPE_MESSAGE, ".inference.InferParameter", False)],
                     parent)
    entry.options.map_entry = True


def _build_messages() -> tuple[type, type]:
    file = descriptor_pb2.FileDescriptorProto(name="shadowcanary_oip_v2.proto", package="inference", syntax="proto3")
    parameter = _message(file, "InferParameter", [("bool_param", 1, _TYPE.TYPE_BOOL, None, False),
                                                  ("int64_param", 2, _TYPE.TYPE_INT64, None, False),
                                                  ("string_param", 3, _TYPE.TYPE_STRING, None, False),
                                                  ("double_param", 4, _TYPE.TYPE_DOUBLE, None, False),
                                                  ("uint64_param", 5, _TYPE.TYPE_UINT64, None, False)])
    parameter.oneof_decl.add(name="parameter_choice")
    for field in parameter.field:
        field.oneof_index = 0
    _message(file, "InferTensorContents", [
        ("bool_contents", 1, _TYPE.TYPE_BOOL, None, True), ("int_contents", 2, _TYPE.TYPE_INT32, None, True),
        ("int64_contents", 3, _TYPE.TYPE_INT64, None, True), ("uint_contents", 4, _TYPE.TYPE_UINT32, None, True),
        ("uint64_contents", 5, _TYPE.TYPE_UINT64, None, True), ("fp32_contents", 6, _TYPE.TYPE_FLOAT, None, True),
        ("fp64_contents", 7, _TYPE.TYPE_DOUBLE, None, True), ("bytes_contents", 8, _TYPE.TYPE_BYTES, None, True)])
    tensor_fields = [("name", 1, _TYPE.TYPE_STRING, None, False), ("datatype", 2, _TYPE.TYPE_STRING, None, False),
                     ("shape", 3, _TYPE.TYPE_INT64, None, True)]
    for top, tensor, tensors_number, raw_name, raw_number in (
            ("ModelInferRequest", "InferInputTensor", 5, "raw_input_contents", 7),
            ("ModelInferResponse", "InferOutputTensor", 5, "raw_output_contents", 6)):
        fields = [
            ("model_name", 1, _TYPE.TYPE_STRING, None, False),
            ("model_version", 2, _TYPE.TYPE_STRING, None, False),
            ("id", 3, _TYPE.TYPE_STRING, None, False),
            ("parameters", 4, _TYPE.TYPE_MESSAGE, f".inference.{top}.ParametersEntry", True),
            (
                "outputs" if top.endswith("Response") else "inputs",
                tensors_number,
                _TYPE.TYPE_MESSAGE,
                f".inference.{top}.{tensor}",
                True,
            ),
            (raw_name, raw_number, _TYPE.TYPE_BYTES, None, True),
        ]
        message = _message(file, top, fields)
        _parameters_entry(message, file)
        nested = _message(file, tensor, tensor_fields + [
            ("parameters", 4, _TYPE.TYPE_MESSAGE, f".inference.{top}.{tensor}.ParametersEntry", True),
            ("contents", 5, _TYPE.TYPE_MESSAGE, ".inference.InferTensorContents", False)], message)
        _parameters_entry(nested, file)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelInferRequest")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelInferResponse")))


ModelInferRequest, ModelInferResponse = _build_messages()


def _raw_values(raw: bytes, datatype: str, where: str) -> list[Any]:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then the bytes
        values, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise BadRecord("invalid", f"{where}: raw BYTES contents cut short")
            size = int.from_bytes(raw[at:at + 4], "little")
            values.append(raw[at + 4:at + 4 + size].decode("utf-8", "replace"))
            at += 4 + size
        return values
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise BadRecord("invalid", f"{where}.datatype: unknown datatype {datatype!r}")
    if len(raw) % np.dtype(dtype).itemsize:
        raise BadRecord("invalid", f"{where}: {len(raw)} raw bytes are not a whole number of {datatype}")
    return np.frombuffer(raw, dtype=dtype).tolist()


def decode_protobuf(data: bytes, direction: Direction) -> tuple[dict[str, str], list[Tensor]]:
    """``({"model_name", "model_version", "id"}, tensors)`` of a protobuf ``ModelInferRequest``
    (``request``) or ``ModelInferResponse`` (``response``)."""
    message = (ModelInferRequest if direction == "request" else ModelInferResponse)()
    try:
        message.ParseFromString(data)
    except (ProtobufDecodeError, RuntimeError) as exc:
        raise BadRecord("not_protobuf", f"not an Open Inference Protocol {direction}: {exc}") from None
    field, raw = ("inputs", message.raw_input_contents) if direction == "request" else \
        ("outputs", message.raw_output_contents)
    items = getattr(message, field)
    if not items:
        raise BadRecord("invalid", f"{field}: no tensors")
    if raw and len(raw) != len(items):
        raise BadRecord("invalid", f"raw contents for {len(raw)} of {len(items)} tensors")
    tensors = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if raw:
            values = _raw_values(raw[i], item.datatype, where)
        else:
            contents_field = CONTENTS_FIELD.get(item.datatype)
            if contents_field is None:
                raise BadRecord("invalid", f"{where}.datatype: unknown datatype {item.datatype!r}")
            values = list(getattr(item.contents, contents_field))
            if item.datatype == "BYTES":
                values = [v.decode("utf-8", "replace") for v in values]
        tensors.append(_tensor(item.name, item.datatype, list(item.shape), _shortest(values, item.datatype), where))
    header = {"model_name": message.model_name, "model_version": message.model_version, "id": message.id}
    return header, tensors


def encode_protobuf(document: dict[str, Any], direction: Direction) -> bytes:
    """A request or response given as the protocol's JSON mapping of the protobuf message (field names
    as in the .proto), as protobuf bytes: how tests and samples write Seldon's records."""
    message = (ModelInferRequest if direction == "request" else ModelInferResponse)()
    json_format.ParseDict(document, message)
    return message.SerializeToString()


__all__ = ["ModelInferRequest", "ModelInferResponse", "Tensor", "decode_protobuf", "encode_protobuf",
           "tensors_from_json"]

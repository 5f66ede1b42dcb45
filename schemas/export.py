"""Generated artifacts of the contract, for services in other languages: never written by hand.

- one JSON Schema (draft 2020-12) per message under ``schemas/json/``;
- an AsyncAPI 3 document, ``schemas/asyncapi.yaml``: every topic with its key, message, Kafka
  bindings (partitions, cleanup policy) and who writes and reads it;
- the contract for people, ``docs/contract.md`` (:mod:`schemas.contract_doc`): the topic table and
  every message's fields, from the same models.

``shadowcanary schemas export`` writes them; a test fails when the committed files differ from what
the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from schemas.catalog import MESSAGES
from schemas.contract_doc import contract_markdown
from schemas.ingest import IngestMapping
from schemas.topics import TOPICS, TopicSpec

SCHEMAS_DIR = Path(__file__).parent
JSON_DIR = SCHEMAS_DIR / "json"
ASYNCAPI_FILE = SCHEMAS_DIR / "asyncapi.yaml"
CONTRACT_FILE = SCHEMAS_DIR.parent / "docs" / "contract.md"
SCHEMA_ID_BASE = "https://shadowcanary.dev/schemas/v1/"
CONTRACT_VERSION = "1.0.0"

#: Default partition counts written into the Kafka bindings (see streams.kafka.admin.TopicLayout).
DEFAULT_PARTITIONS = {"inference": 6, "evaluator": 3, "control": 1}

#: From the evaluator's point of view: what it receives and what it sends.
EVALUATOR_RECEIVES = {"inference.requests", "inference.responses", "inference.labels", "rollout.specs"}


#: Files people write that are not messages, with a JSON Schema for their editors (YAML language
#: servers validate and complete with it).
DOCUMENTS = {"IngestMapping": IngestMapping}


def json_schema(model_name: str) -> dict[str, Any]:
    """The JSON Schema of one message's wire form (what a producer may send), or of a document."""
    model = MESSAGES[model_name] if model_name in MESSAGES else DOCUMENTS[model_name]
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_ID_BASE}{model_name}.schema.json", **schema}


def json_schema_files() -> dict[str, str]:
    """File name -> text of every message's and document's JSON Schema."""
    return {f"{name}.schema.json": json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n"
            for name in (*MESSAGES, *DOCUMENTS)}


def _component_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(model, "validation") for model in MESSAGES.values()],
                                ref_template="#/components/schemas/{model}")
    return top["$defs"]


def _channel_id(spec: TopicSpec) -> str:
    head, _, tail = spec.name.partition(".")
    return head + tail[:1].upper() + tail[1:]


def _kafka_key_schema(spec: TopicSpec) -> dict[str, Any]:
    return {"type": "string", "description": f"Record key: {spec.key}."}


def _channel(spec: TopicSpec) -> dict[str, Any]:
    message_ref = {"$ref": f"#/components/messages/{spec.value}"} if spec.value in MESSAGES else \
        {"$ref": "#/components/messages/DeadLetter"}
    config: dict[str, Any] = {"cleanup.policy": [spec.cleanup_policy]}
    for name in ("retention.ms", "max.message.bytes"):
        if name in spec.configs:
            config[name] = int(spec.configs[name])
    return {
        "address": spec.name,
        "title": spec.name,
        "description": f"{spec.description} Key: {spec.key}. Written by {spec.written_by}; "
                       f"read by {spec.read_by}. The address takes the deployment's topic prefix.",
        "messages": {spec.value if spec.value in MESSAGES else "DeadLetter": message_ref},
        "bindings": {"kafka": {
            "topic": spec.name,
            "partitions": DEFAULT_PARTITIONS[spec.group],
            "topicConfiguration": config,
            "bindingVersion": "0.5.0",
        }},
        "x-key": spec.key,
        "x-written-by": spec.written_by,
        "x-read-by": spec.read_by,
        "x-co-partitioned": spec.co_partitioned,
    }


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for spec in TOPICS:
        if spec.value in MESSAGES:
            messages[spec.value] = {
                "name": spec.value,
                "title": spec.value,
                "summary": (MESSAGES[spec.value].__doc__ or "").strip().splitlines()[0],
                "contentType": "application/json",
                "payload": {"$ref": f"#/components/schemas/{spec.value}"},
                "bindings": {"kafka": {"key": _kafka_key_schema(spec), "bindingVersion": "0.5.0"}},
            }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A record that could not be decoded or validated, with its original key and bytes.",
        "contentType": "application/octet-stream",
        "headers": {"type": "object", "required": ["error", "source.topic", "source.partition", "source.offset"],
                    "properties": {
                        "error": {"type": "string", "description": "The field and the problem."},
                        "reason": {"type": "string", "description": "Added in v1: the category of the "
                                   "problem (empty, oversize, not_json, not_object, invalid)."},
                        "source.topic": {"type": "string"},
                        "source.partition": {"type": "string", "description": "decimal"},
                        "source.offset": {"type": "string", "description": "decimal"}}},
        "payload": {"description": "The original bytes, unchanged."},
        "bindings": {"kafka": {"key": {"type": "string", "description": "The original key."},
                               "bindingVersion": "0.5.0"}},
    }
    return messages


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for spec in TOPICS:
        channel = _channel_id(spec)
        receives = spec.name in EVALUATOR_RECEIVES
        message = spec.value if spec.value in MESSAGES else "DeadLetter"
        operations[("receive" if receives else "send") + channel[:1].upper() + channel[1:]] = {
            "action": "receive" if receives else "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": (f"The evaluator reads {spec.name}, written by {spec.written_by}."
                        if receives else f"The evaluator writes {spec.name}, read by {spec.read_by}."),
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }
    return operations


def asyncapi_document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ShadowCanary wire contract",
            "version": CONTRACT_VERSION,
            "description": "Topics, keys and JSON messages of the ShadowCanary evaluator (v1). "
                           "Fields may be added within v1, never renamed or removed; readers ignore "
                           "fields they do not know. Generated from the pydantic models in schemas/.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "The local broker of `shadowcanary broker up`."}},
        "channels": {_channel_id(spec): _channel(spec) for spec in TOPICS},
        "operations": _operations(),
        "components": {"messages": _messages(), "schemas": _component_schemas()},
    }


def asyncapi_text() -> str:
    header = "# Generated by `shadowcanary schemas export` from the models in schemas/. Do not edit.\n"
    return header + yaml.safe_dump(asyncapi_document(), sort_keys=False, width=100, allow_unicode=True)


def generated_files() -> dict[Path, str]:
    files = {JSON_DIR / name: text for name, text in json_schema_files().items()}
    files[ASYNCAPI_FILE] = asyncapi_text()
    files[CONTRACT_FILE] = contract_markdown()
    return files


def export(check: bool = False) -> list[Path]:
    """Write the artifacts (or, with ``check``, only list those that differ); return the differing paths."""
    stale = [path for path, text in generated_files().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if not check:
        for path, text in generated_files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return stale

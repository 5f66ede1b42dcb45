"""Rollout specs written by people as YAML: validated by :class:`RolloutSpec`, errors with the line.

On the wire a spec may carry fields this version does not know (readers ignore them); in a file a
person wrote, an unknown key is far more likely a typo, so it is an error with a suggestion.

>>> load_spec_text('''
... model: fraud
... baseline: v1
... candidate: v2
... mode: canary
... task: binary
... guardrails:
...   - metric: latency_p99_ms
...     max: 250
...   - metric: acuracy
...     max_degradation: 0.01
... ''', "spec.yaml")
Traceback (most recent call last):
...
schemas.spec_yaml.SpecError: spec.yaml:10: guardrails[1].metric: unknown metric 'acuracy' (did you mean 'accuracy'?)
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from schemas.errors import error_locations, field_path
from schemas.rollout import RolloutSpec

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A spec that cannot be used; ``messages`` holds one ``file:line: field: problem`` per error."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


def _line_index(node: yaml.Node, path: tuple[Any, ...] = (), index: dict | None = None) -> dict:
    """Location path -> 1-based line of the key (mappings) or item (sequences) in the YAML."""
    index = {} if index is None else index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            index[child] = key_node.start_mark.line + 1
            _line_index(value_node, child, index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[path + (i,)] = item.start_mark.line + 1
            _line_index(item, path + (i,), index)
    return index


def _line_of(lines: dict, loc: tuple[Any, ...]) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def all_field_names(model: type[BaseModel]) -> set[str]:
    """The field names (and aliases) of ``model`` and of every model nested in it, at any depth."""
    names: set[str] = set()
    seen: set[type] = set()

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.add(annotation)
            for name, info in annotation.model_fields.items():
                names.add(info.alias or name)
                walk(info.annotation)
        for argument in get_args(annotation):
            walk(argument)

    walk(model)
    return names


def load_yaml_model(text: str, source: str, model: type[M], expected: str,
                    known_keys: list[str] | None = None, defaults: dict[str, Any] | None = None) -> M:
    """Parse ``text`` as YAML and validate it as ``model``; :class:`SpecError` names the file, line and
    field of every problem. ``expected`` says what the top level should be (for a document that is
    not a mapping); ``known_keys`` are suggested for an unknown key (default: ``model``'s fields).
    A top-level key ``model`` does not know is refused even where the model allows extra fields on
    the wire (a typo in a file a person wrote). ``defaults``: top-level values the file may leave out."""
    known = known_keys if known_keys is not None else sorted(all_field_names(model))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SpecError([f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(document, dict) or root is None:
        raise SpecError([f"{source}:1: expected {expected}"])
    document = {**(defaults or {}), **document}
    lines = _line_index(root)
    aliases = {field.alias for field in model.model_fields.values() if field.alias}
    problems: list[tuple[tuple[Any, ...], str]] = []
    if model.model_config.get("extra") != "forbid":
        problems = [((key,), f"unknown field{_suggest(str(key), known)}") for key in document
                    if key not in model.model_fields and key not in aliases]
    result: M | None = None
    try:
        result = model.model_validate(document)
    except ValidationError as exc:
        for loc, message in error_locations(exc):
            if message == "Extra inputs are not permitted":
                message = f"unknown field{_suggest(str(loc[-1]), known)}"
            problems.append((loc, message))
    if problems:
        raise SpecError([f"{source}:{_line_of(lines, loc)}: {field_path(loc) or '(top level)'}: {message}"
                         for loc, message in problems])
    assert result is not None
    return result


def load_spec_text(text: str, source: str = "spec.yaml") -> RolloutSpec:
    """Parse and validate one spec; :class:`SpecError` names the file, line and field."""
    return load_yaml_model(text, source, RolloutSpec, "a mapping of spec fields (model, baseline, candidate, ...)")


def read_text_file(path: str | Path) -> str:
    """A file a person wrote, as text; :class:`SpecError` says why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{path}: not UTF-8 text"]) from None


def load_spec_file(path: str | Path) -> RolloutSpec:
    return load_spec_text(read_text_file(path), str(path))


def dump_spec_yaml(spec: BaseModel) -> str:
    """A spec as YAML a person can read and edit (the form :func:`load_spec_text` reads)."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)

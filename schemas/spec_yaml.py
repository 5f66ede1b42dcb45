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
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from schemas.errors import error_locations, field_path
from schemas.rollout import Bake, Guardrail, RolloutSpec, Step

#: Every key a person may write somewhere in a spec, for "did you mean" suggestions.
_SPEC_KEYS = sorted({name for model in (RolloutSpec, Bake, Step, Guardrail) for name in model.model_fields})


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


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, _SPEC_KEYS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_top_level_keys(document: dict) -> list[tuple[tuple[Any, ...], str]]:
    return [((key,), f"unknown field{_suggest(str(key))}") for key in document
            if key not in RolloutSpec.model_fields]


def load_spec_text(text: str, source: str = "spec.yaml") -> RolloutSpec:
    """Parse and validate one spec; :class:`SpecError` names the file, line and field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SpecError([f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(document, dict) or root is None:
        raise SpecError([f"{source}:1: expected a mapping of spec fields (model, baseline, candidate, ...)"])
    lines = _line_index(root)
    problems = _unknown_top_level_keys(document)
    spec: RolloutSpec | None = None
    try:
        spec = RolloutSpec.model_validate(document)
    except ValidationError as exc:
        for loc, message in error_locations(exc):
            if message == "Extra inputs are not permitted":
                message = f"unknown field{_suggest(str(loc[-1]))}"
            problems.append((loc, message))
    if problems:
        raise SpecError([f"{source}:{_line_of(lines, loc)}: {field_path(loc)}: {message}"
                         for loc, message in problems])
    assert spec is not None
    return spec


def load_spec_file(path: str | Path) -> RolloutSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{path}: not UTF-8 text"]) from None
    return load_spec_text(text, str(path))


def dump_spec_yaml(spec: BaseModel) -> str:
    """A spec as YAML a person can read and edit (the form :func:`load_spec_text` reads)."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)

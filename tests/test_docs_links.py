"""The documents' links resolve inside the repository: files that exist, headings that exist.

A clone has nothing outside the repository, so a link that leaves it (``../shared/...``) is broken
for every reader but the authors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.md")])
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.

    >>> slug("Two commands"), slug("The worker (confluent-kafka, exactly once)")
    ('two-commands', 'the-worker-confluent-kafka-exactly-once')
    """
    text = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(path):
    assert broken_links(path) == []


def test_the_check_catches_a_link_outside_and_a_missing_heading(tmp_path, monkeypatch):
    monkeypatch.setattr("tests.test_docs_links.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Two words\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#two-words) [up](../x.md) [gone](docs/b.md) [head](docs/a.md#nope) "
                    "[web](https://example.org) [self](#readme)\n\n# README\n")
    assert broken_links(page) == ["../x.md: no such file in the repository",
                                  "docs/b.md: no such file in the repository",
                                  "docs/a.md#nope: no heading with that anchor"]


def test_the_readme_links_the_contract_in_the_repository():
    assert "docs/contract.md" in links(ROOT / "README.md")


def test_the_readmes_rollout_spec_is_valid_and_names_every_field_of_the_spec():
    from schemas.rollout import RolloutSpec
    from schemas.spec_yaml import all_field_names, load_spec_text

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Write a rollout spec"):]
    example = section[section.index("```yaml\n") + 8:section.index("\n```", section.index("```yaml\n"))]
    spec = load_spec_text(example, "README.md")
    assert spec.mode == "canary" and spec.registry is not None and len(spec.guardrails) == 7
    written = set(re.findall(r"^\s*(?:- )?([a-z_]+):", example, re.M))
    assert all_field_names(RolloutSpec) - {"percent"} <= written  # a step's own fields: in the line below it

"""``make test`` lints everything with ruff and type-checks the contract and the core with mypy, as
configured in pyproject.toml (``[tool.ruff]``, ``[tool.mypy]``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_ruff_finds_nothing_in_the_repository():
    result = _ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_with_the_projects_settings_catches_an_unused_import_and_a_long_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n\nX = '" + "x" * 130 + "'\n")
    result = _ruff("check", "--no-cache", "--output-format", "concise", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert "F401" in result.stdout and "E501" in result.stdout


def _mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_mypy_passes_on_the_contract_and_the_core():
    result = _mypy()  # files and settings from pyproject.toml: schemas/ and evaluators/
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_mypy_with_the_projects_settings_catches_a_wrong_type(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    for package in ("schemas", "evaluators"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "evaluators" / "bad.py").write_text("def half(x: int) -> int:\n    return x / 2\n")
    result = _mypy(cwd=tmp_path)
    assert result.returncode == 1 and "Incompatible return value type" in result.stdout

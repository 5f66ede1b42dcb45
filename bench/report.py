"""Benchmark results: one row per measured quantity, with its target when it has one."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


@dataclass
class Result:
    benchmark: str
    metric: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def write(results: list[Result], name: str = "latest") -> Path:
    """Write the results; rows of benchmarks not run this time are kept from the previous file."""
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / f"{name}.json"
    if previous.exists():
        ran = {r.benchmark for r in results}
        kept = [Result(**row) for row in json.loads(previous.read_text())["results"] if row["benchmark"] not in ran]
        results = kept + results
    meta = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]},
                                                     indent=2) + "\n")
    lines = [f"# Benchmark results ({meta['when']}, Python {meta['python']}, {meta['cpus']} CPUs)", "",
             "| benchmark | metric | value | unit | target | met |", "|---|---|---:|---|---|---|"]
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.benchmark} | {r.metric} | {r.value:,.4g} | {r.unit} | {r.target} | {met} |")
    notes = [f"- {r.benchmark} / {r.metric}: {r.note}" for r in results if r.note]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines + ([""] + notes if notes else [])) + "\n")
    return path

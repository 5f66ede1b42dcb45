"""``python -m bench [NAME ...]``: run the benchmarks (all by default) and write the results."""

from __future__ import annotations

import importlib
import sys

from bench.report import write

BENCHMARKS = ["codec", "join", "merger", "join_memory", "metrics", "policy", "policy_metrics", "segments",
              "labels_load", "ingest", "sidecar", "routing", "drift", "replay", "decision_latency"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    results = []
    for name in names:
        print(f"running {name} ...", flush=True)
        module_results = importlib.import_module(f"bench.{name}").run()
        for r in module_results:
            print(f"  {r.metric}: {r.value:,.0f} {r.unit}" + (f"  (target {r.target})" if r.target else ""))
        results += module_results
    path = write(results)
    print(f"results written to {path} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Per-version metric state of one partition: event-time tumbling windows and a running total.

A join :class:`~evaluators.join.Accumulator`: it takes the join's facts, keeps one
:mod:`~evaluators.metrics.version` state per (model, version, role) and window of ``window_ms`` by
the response's event time, and counts each model's requests per window. Each fact updates one state
only: a version's running total since it was first seen is its ``base`` (the windows already closed,
merged in as they close) merged with its open windows, computed when asked (:func:`running_totals`).

**When a window closes.** A window is final once every response in it has either joined its label or
expired: when the partition's stream time passes the window's end + the model's ``label_timeout``
+ expiry grace (the join expires responses then). :meth:`MetricsAccumulator.advance` moves final
windows to ``closed``, where they stay for exactly one batch: the caller publishes them after the
batch is stored, and again after a restart if it cannot tell that it did (publication is keyed,
so a second copy is harmless). A fact whose window has already closed (a response that arrived
after its window was final) counts in the running total only, and in ``late``.

>>> from evaluators.facts import ResponseFact
>>> from evaluators.metrics import MetricsConfig
>>> acc = MetricsAccumulator(MetricsConfig(window_ms=1000), settle_ms=lambda model: 500)
>>> acc.add(ResponseFact("m", "v1", "primary", 1_200, 7.0, None, 1))
>>> acc.advance(2_400); acc.closed
[]
>>> acc.advance(2_600); [(c["version"], c["start"], c["end"], c["state"]["n"]) for c in acc.closed]
[('v1', 1000, 2000, 1)]
"""

from __future__ import annotations

from typing import Any, Callable

from evaluators.facts import AgreementFact, Fact, RequestFact, ServedFeatures
from evaluators.metrics import version as version_metrics
from evaluators.metrics.version import MetricsConfig

SEP = "\x1f"


def version_key(model: str, version: str, role: str) -> str:
    return f"{model}{SEP}{version}{SEP}{role}"


def split_key(key: str) -> tuple[str, str, str]:
    model, version, role = key.split(SEP)
    return model, version, role


class MetricsAccumulator:
    def __init__(self, config: MetricsConfig, settle_ms: Callable[[str], int],
                 state: dict[str, Any] | None = None) -> None:
        self.config = config
        self.settle_ms = settle_ms
        state = state or {"v": {}, "q": {}, "closed": [], "late": 0, "wm": 0}
        self.versions: dict[str, dict] = state["v"]
        self.requests: dict[str, dict] = state["q"]
        self.closed: list[dict] = state["closed"]
        self.late: int = state["late"]
        self.watermark: int = state["wm"]
        self._last: tuple | None = None

    def window_of(self, ts_ms: int) -> int:
        return ts_ms - ts_ms % self.config.window_ms

    def _is_closed(self, model: str, start: int) -> bool:
        return start + self.config.window_ms + self.settle_ms(model) <= self.watermark

    def add(self, fact: Fact) -> None:
        kind = type(fact)
        if kind is RequestFact:
            per_model = self.requests.get(fact.model)
            if per_model is None:
                per_model = self.requests[fact.model] = {"cum": 0, "w": {}}
            per_model["cum"] += 1
            start = self.window_of(fact.ts_ms)
            if not self._is_closed(fact.model, start):
                key = str(start)
                per_model["w"][key] = per_model["w"].get(key, 0) + 1
            return
        role = "shadow" if kind is AgreementFact else getattr(fact, "role", None)
        if role is None:
            return  # model-level facts (labels, late and unmatched labels, duplicates): counted elsewhere
        start = fact.ts_ms - fact.ts_ms % self.config.window_ms
        cached = self._last
        if cached is not None and cached[0] == (fact.model, fact.version, role, start):
            version_metrics.add_fact(cached[1], fact, self.config)  # same version and window as before
            return
        key = version_key(fact.model, fact.version, role)
        entry = self.versions.get(key)
        if entry is None:
            entry = self.versions[key] = {"base": version_metrics.new_state(features=False), "w": {}}
        if self._is_closed(fact.model, start):
            self.late += 1
            if kind is not ServedFeatures:  # drift is judged per window only
                version_metrics.add_fact(entry["base"], fact, self.config)
            return
        window = entry["w"].get(str(start))
        if window is None:
            window = entry["w"][str(start)] = version_metrics.new_state()
        # Facts come in runs of one version and window; whether a window is closed changes only in advance().
        self._last = ((fact.model, fact.version, role, start), window)
        version_metrics.add_fact(window, fact, self.config)

    def add_all(self, facts: list[Fact]) -> None:
        """A batch's facts: the same as ``add`` on each, with each open window's facts, and each
        version's facts for closed windows (its running total), folded in one pass in their order."""
        runs: dict[tuple, list[Fact]] = {}
        closed: dict[tuple[str, int], bool] = {}
        window_ms = self.config.window_ms
        for fact in facts:
            kind = type(fact)
            if kind is AgreementFact:
                role = "shadow"
            elif kind is RequestFact:
                self.add(fact)
                continue
            else:
                role = getattr(fact, "role", None)
                if role is None:
                    continue  # model-level facts: counted elsewhere
            start = fact.ts_ms - fact.ts_ms % window_ms
            is_closed = closed.get((fact.model, start))
            if is_closed is None:
                is_closed = closed[(fact.model, start)] = self._is_closed(fact.model, start)
            target = (fact.model, fact.version, role, None if is_closed else start)
            run = runs.get(target)
            if run is None:
                run = runs[target] = []
            run.append(fact)
        for (model, version, role, start), run in runs.items():
            key = version_key(model, version, role)
            entry = self.versions.get(key)
            if entry is None:
                entry = self.versions[key] = {"base": version_metrics.new_state(features=False), "w": {}}
            if start is None:  # facts of closed windows: the running total only
                self.late += len(run)
                version_metrics.add_facts(entry["base"], [f for f in run if type(f) is not ServedFeatures],
                                          self.config)  # drift is judged per window only
                continue
            window = entry["w"].get(str(start))
            if window is None:
                window = entry["w"][str(start)] = version_metrics.new_state()
            version_metrics.add_facts(window, run, self.config)

    def advance(self, watermark: int) -> None:
        """Stream time is now ``watermark``: the last batch's closed windows go, newly final ones close."""
        self.closed = []
        self._last = None
        self.watermark = max(self.watermark, watermark)
        for key, entry in self.versions.items():
            model, version, role = split_key(key)
            for start in sorted(int(s) for s in entry["w"]):
                if not self._is_closed(model, start):
                    break
                requests = self.requests.get(model, {"w": {}})["w"].get(str(start), 0)
                window = entry["w"].pop(str(start))
                version_metrics.merge(entry["base"], window)
                self.closed.append({"model": model, "version": version, "role": role, "start": start,
                                    "end": start + self.config.window_ms, "requests": requests,
                                    "state": window})
        for model, per_model in self.requests.items():
            for start in [s for s in per_model["w"] if self._is_closed(model, int(s))]:
                del per_model["w"][start]

    def running_totals(self) -> dict[str, dict]:
        return running_totals(self.versions)

    def to_state(self) -> dict[str, Any]:
        return {"v": self.versions, "q": self.requests, "closed": self.closed, "late": self.late,
                "wm": self.watermark}


def running_totals(versions: dict[str, Any]) -> dict[str, dict]:
    """Each version's state since it was first seen: its closed windows and late facts (``base``)
    merged with its open windows (``versions`` is the accumulator state's ``v``). New dicts: the
    partition state is not changed."""
    totals = {}
    for key, entry in versions.items():
        total = version_metrics.merge(version_metrics.new_state(features=False), entry["base"])
        for window in entry["w"].values():
            version_metrics.merge(total, window)
        totals[key] = total
    return totals

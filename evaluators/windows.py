"""Per-version metric state of one partition: event-time tumbling windows and a running total.

A join :class:`~evaluators.join.Accumulator`: it takes the join's facts, keeps one
:mod:`~evaluators.metrics.version` state per (model, version, role) and window of ``window_ms`` by
the response's event time, and counts each model's requests per window. Each version also keeps its
**running total** since it was first seen (every fact, whatever its window; no feature summaries),
what live metrics and the guardrails read. For a model sliced by request attributes
(:mod:`evaluators.segments`), each version also keeps a window state and a running total per segment.

**Where the state lives.** Windows stay open as long as labels may still join (the model's label
timeout: a week by default), so a partition holds thousands of them. They are not kept in the
partition state, which the join writes every batch: each (model, window) is a record of its own in
``records`` (a :class:`~evaluators.store.KeyValueStore`), read and written only by the batches that
touch it. The partition state keeps, per version, its running total, and per model the range of
its open windows: its size does not grow with the label timeout.

Shapes (JSON): the partition state is a :class:`WindowsState` (``to_state``), a window record a
:class:`WindowRecord` under the key ``<model>\x1f<start>``, a closed window a :class:`ClosedWindow`.

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

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NotRequired, TypedDict, cast

from evaluators.facts import (
    AgreementFact,
    AttributedRecord,
    Fact,
    JoinedRecord,
    RequestFact,
    ServedFeatures,
)
from evaluators.metrics import version as version_metrics
from evaluators.metrics.version import MetricsConfig, VersionState
from evaluators.segments import AUC_GRID, assign, segment_id
from evaluators.store import DictStore, KeyValueStore
from schemas.inference import Role

SEP = "\x1f"


class VersionEntry(TypedDict):
    """A version's entry in the partition state (key: :func:`version_key`)."""

    total: VersionState  #: its running total since first seen (no feature summaries)
    seg: NotRequired[dict[str, VersionState]]  #: segment -> its running total (a sliced model's versions)


class ModelWindows(TypedDict):
    """A model's entry in the partition state."""

    requests: int  #: its requests since first seen
    first: int | None  #: start of its earliest open window (``None``: none open)
    last: int | None  #: start of its latest open window
    #: attribute -> the values kept as segments of their own, in the order first seen (at most its cap)
    seg: NotRequired[dict[str, list[str]]]


class WindowsState(TypedDict):
    """The accumulator's part of the partition state (what :meth:`MetricsAccumulator.to_state` gives)."""

    v: dict[str, VersionEntry]  #: version key -> entry
    models: dict[str, ModelWindows]  #: model -> its requests and open windows
    closed: list[ClosedWindow]  #: the windows the last batch closed (published after it is stored)
    late: int  #: facts that came after their window closed (in running totals only)
    wm: int  #: stream time, ms


class WindowRecord(TypedDict):
    """One model's open window, a store record of its own (key ``<model>\x1f<start>``)."""

    requests: int  #: the model's requests in the window
    versions: dict[str, VersionState]  #: version key -> the window's state (with feature summaries)
    seg: NotRequired[dict[str, dict[str, VersionState]]]  #: version key -> segment -> the window's state


class ClosedWindow(TypedDict):
    """A version's final window, as the partition publishes it (a window partial adds ``partition``)."""

    model: str
    version: str
    role: Role
    start: int  #: window start, ms
    end: int  #: window end (exclusive), ms
    requests: int  #: the model's requests in the window (every version of it)
    state: VersionState  #: the version's state over the window
    seg: NotRequired[dict[str, VersionState]]  #: segment -> the version's state in it over the window


def version_key(model: str, version: str, role: str) -> str:
    return f"{model}{SEP}{version}{SEP}{role}"


def split_key(key: str) -> tuple[str, str, Role]:
    """(model, version, role) of a :func:`version_key` (its role came from a decoded event, so is a ``Role``)."""
    model, version, role = key.split(SEP)
    return model, version, cast(Role, role)


class MetricsAccumulator:
    """``records``: where the window records live (the join gives a part of its store; default: a
    dict of its own, for tests and one-off use)."""

    def __init__(self, config: MetricsConfig, settle_ms: Callable[[str], int],
                 state: WindowsState | None = None, records: KeyValueStore | None = None) -> None:
        self.config = config
        #: How segment states fold: as the versions', with a bounded ROC AUC score map.
        self.segment_config = replace(config, auc_grid=AUC_GRID) if config.segments else config
        self.settle_ms = settle_ms
        self.records: KeyValueStore = records if records is not None else DictStore()
        state = state or {"v": {}, "models": {}, "closed": [], "late": 0, "wm": 0}
        self.versions: dict[str, VersionEntry] = state["v"]
        self.closed: list[ClosedWindow] = state["closed"]
        self.late: int = state["late"]
        self.watermark: int = state["wm"]
        #: Window records this batch read or made (None: deleted), and those to write.
        self._windows: dict[str, WindowRecord | None] = {}
        self._changed: set[str] = set()
        if "q" in state:  # the layout before window records: its windows move out now
            self.models: dict[str, ModelWindows] = {}
            self._move_inline_windows(state["q"])  # type: ignore[typeddict-item]
        else:
            self.models = state["models"]

    def _is_closed(self, model: str, start: int) -> bool:
        return start + self.config.window_ms + self.settle_ms(model) <= self.watermark

    # -- window records ----------------------------------------------------------------------------
    def _window(self, model: str, start: int) -> WindowRecord:
        """The record of one open window (made when new), to change."""
        key = f"{model}{SEP}{start}"
        record = self._windows.get(key)
        if record is None:
            record = self.records.get(key)
            if record is None:
                record = {"requests": 0, "versions": {}}
                bounds = self._model(model)
                if bounds["first"] is None or start < bounds["first"]:
                    bounds["first"] = start
                if bounds["last"] is None or start > bounds["last"]:
                    bounds["last"] = start
            self._windows[key] = record
        self._changed.add(key)
        return record

    def _model(self, model: str) -> ModelWindows:
        bounds = self.models.get(model)
        if bounds is None:
            bounds = self.models[model] = {"requests": 0, "first": None, "last": None}
        return bounds

    def _version(self, key: str) -> VersionEntry:
        entry = self.versions.get(key)
        if entry is None:
            entry = self.versions[key] = {"total": version_metrics.new_state(features=False)}
        return entry

    def _move_inline_windows(self, requests: dict[str, dict[str, Any]]) -> None:
        """The layout before window records (``q``: per model ``{"cum": requests, "w": {start:
        requests}}``; per version ``base`` and open windows ``w``): windows move to records."""
        for model, per_model in requests.items():
            self._model(model)["requests"] = per_model["cum"]
            for start, n in per_model["w"].items():
                self._window(model, int(start))["requests"] += n
        for key, entry in self.versions.items():
            model = split_key(key)[0]
            legacy: dict[str, Any] = entry  # type: ignore[assignment]
            total = version_metrics.merge(version_metrics.new_state(features=False), legacy.pop("base"))
            for start, window in legacy.pop("w", {}).items():
                self._window(model, int(start))["versions"][key] = window
                version_metrics.merge(total, window)
            entry["total"] = total

    # -- facts -------------------------------------------------------------------------------------
    def add(self, fact: Fact) -> None:
        self.add_all([fact])

    def add_all(self, facts: list[Fact]) -> None:
        """A batch's facts: each open window's facts, and each version's facts (its running total),
        folded in one pass each, in their order (the same states, to the last bit, as ``add`` on
        each: results do not depend on how the stream was cut into batches)."""
        windows: dict[tuple, list[Fact]] = {}
        totals: dict[str, list[Fact]] = {}
        #: (version key, segment) -> its facts; (version key, model, start, segment) -> its window's
        segment_totals: dict[tuple[str, str], list[Fact]] = {}
        segment_windows: dict[tuple[str, str, int, str], list[Fact]] = {}
        closed: dict[tuple[str, int], bool] = {}
        window_ms = self.config.window_ms
        sliced = bool(self.config.segments)  # no model sliced: no record asks for its segments
        for fact in facts:
            kind = type(fact)
            if kind is AgreementFact:
                role = "shadow"
            elif kind is RequestFact:
                role = None
            else:
                role = getattr(fact, "role", None)
                if role is None:
                    continue  # model-level facts (labels, late and unmatched labels, ...): counted elsewhere
            # Facts without an event time have no role (left above); these all have one.
            start = fact.ts_ms - fact.ts_ms % window_ms  # type: ignore[union-attr]
            is_closed = closed.get((fact.model, start))
            if is_closed is None:
                is_closed = closed[(fact.model, start)] = self._is_closed(fact.model, start)
            if role is None:  # a request
                self._model(fact.model)["requests"] += 1
                if not is_closed:
                    self._window(fact.model, start)["requests"] += 1
                continue
            key = version_key(fact.model, fact.version, role)  # type: ignore[union-attr]  # requests: left above
            attributed = kind is AttributedRecord  # its version counted it when it joined: segments only
            if not attributed:
                run = totals.get(key)
                if run is None:
                    run = totals[key] = []  # every version seen has a running total, if only of features
                if kind is not ServedFeatures:  # drift is judged per window only
                    run.append(fact)
            segments = (self._segments_of(cast(JoinedRecord, fact))
                        if sliced and (kind is JoinedRecord or attributed) else None)
            if segments:
                for segment in segments:
                    segment_run = segment_totals.get((key, segment))
                    if segment_run is None:
                        segment_run = segment_totals[(key, segment)] = []
                    segment_run.append(fact)
                    if not is_closed:
                        segment_window = segment_windows.get((key, fact.model, start, segment))
                        if segment_window is None:
                            segment_window = segment_windows[(key, fact.model, start, segment)] = []
                        segment_window.append(fact)
            if attributed:
                continue
            if is_closed:  # a fact of a closed window: in the running total only
                self.late += 1
                continue
            target = (key, fact.model, start)
            run = windows.get(target)
            if run is None:
                run = windows[target] = []
            run.append(fact)
        for key, run in totals.items():
            version_metrics.add_facts(self._version(key)["total"], run, self.config)
        for (key, model, start), run in windows.items():
            _fold(self._window(model, start)["versions"], key, run, self.config, features=True)
        for (key, segment), run in segment_totals.items():
            _fold(self._version(key).setdefault("seg", {}), segment, run, self.segment_config, features=False)
        for (key, model, start, segment), run in segment_windows.items():
            in_window = self._window(model, start).setdefault("seg", {}).setdefault(key, {})
            _fold(in_window, segment, run, self.segment_config, features=False)

    def _segments_of(self, record: JoinedRecord) -> list[str] | None:
        """The segments a joined record counts in (None: its model is not sliced, or its request was not
        seen yet: an :class:`~evaluators.facts.AttributedRecord` counts it once it is, or never is)."""
        caps = self.config.segments_of(record.model)
        if not caps or (record.attributes is None and type(record) is JoinedRecord):
            return None
        kept = self._model(record.model).setdefault("seg", {})
        attributes = record.attributes or {}
        return [segment_id(attribute, assign(kept.setdefault(attribute, []), attributes.get(attribute), cap))
                for attribute, cap in caps.items()]

    def advance(self, watermark: int) -> None:
        """Stream time is now ``watermark``: the last batch's closed windows go, newly final ones
        close; then the window records this batch changed are written (or deleted, once closed)."""
        self.closed = []
        self.watermark = max(self.watermark, watermark)
        window_ms = self.config.window_ms
        for model, bounds in self.models.items():
            start, last = bounds["first"], bounds["last"]
            if start is None or last is None:
                continue
            while start <= last and self._is_closed(model, start):
                self._close(model, start)
                start += window_ms
            if start > last:
                bounds["first"] = bounds["last"] = None
            else:
                bounds["first"] = start
        for key in self._changed:
            record = self._windows[key]
            if record is None:
                self.records.delete(key)
            else:
                self.records.set(key, record)
        self._changed = set()
        self._windows = {}

    def _close(self, model: str, start: int) -> None:
        key = f"{model}{SEP}{start}"
        record = self._windows[key] if key in self._windows else self.records.get(key)
        if record is None:
            return  # nothing came in this window
        segments = record.get("seg", {})
        for version, window in record["versions"].items():
            _, version_name, role = split_key(version)
            closed: ClosedWindow = {"model": model, "version": version_name, "role": role, "start": start,
                                    "end": start + self.config.window_ms, "requests": record["requests"],
                                    "state": window}
            if version in segments:
                closed["seg"] = segments[version]
            self.closed.append(closed)
        self._windows[key] = None
        self._changed.add(key)

    def running_totals(self) -> dict[str, VersionState]:
        return running_totals(self.versions)

    def requests_of(self, model: str) -> int:
        """The model's requests since it was first seen."""
        bounds = self.models.get(model)
        return bounds["requests"] if bounds else 0

    def to_state(self) -> WindowsState:
        return {"v": self.versions, "models": self.models, "closed": self.closed, "late": self.late,
                "wm": self.watermark}


def _fold(states: dict[str, VersionState], key: str, facts: list[Fact], config: MetricsConfig,
          features: bool) -> None:
    """Add a run of facts to the state under ``key`` in ``states`` (a new one, with or without feature
    summaries, when it has none)."""
    state = states.get(key)
    if state is None:
        state = states[key] = version_metrics.new_state(features=features)
    version_metrics.add_facts(state, facts, config)


def segment_totals(versions: dict[str, Any]) -> dict[str, dict[str, VersionState]]:
    """Each sliced version's running total per segment (``versions``: as for :func:`running_totals`);
    the partition state's own dicts (read them, do not change them)."""
    return {key: entry["seg"] for key, entry in versions.items() if entry.get("seg")}


def running_totals(versions: dict[str, Any]) -> dict[str, VersionState]:
    """Each version's state since it was first seen (``versions``: the accumulator state's ``v``,
    or a heartbeat's). New dicts: the partition state is not changed. (A state written before the
    running total was kept has no ``total``: its base merged with its open windows.)"""
    totals = {}
    for key, entry in versions.items():
        total = version_metrics.new_state(features=False)
        for part in total_parts(entry):
            version_metrics.merge(total, part)
        totals[key] = total
    return totals


def total_parts(entry: VersionEntry | dict[str, Any]) -> list[VersionState]:
    """The states whose sum is a version's running total, in an accumulator state's or a heartbeat's
    ``v`` entry: its ``total``, or (the layout before running totals were kept) its base and its
    open windows."""
    if "total" in entry:
        return [entry["total"]]
    legacy: dict[str, Any] = dict(entry)
    return [legacy["base"], *legacy["w"].values()]

"""One owner merges the partitions' partial states: live totals per version, and final windows.

Pure (no Kafka). Each input partition reports two kinds of partial (see ``streams.metrics_worker``):

- a **heartbeat** (latest wins): the partition's stream time ``wm`` and its metric state per
  version (``v``, as :mod:`evaluators.windows` keeps it), plus the model request counts (``q``);
- a **final window** (idempotent, keyed): the partition's part of one window, sent once the window
  closed on that partition, before any heartbeat that shows the window closed.

A window is published when every input partition's stream time has passed the window's close time
(see :mod:`evaluators.windows`): then every final for it is in, and their sum is the window. Each
window gets a deterministic ``snapshot_id``, so a new owner that finds it on the metrics topic does
not publish it again.

>>> from evaluators.metrics import MetricsConfig
>>> from evaluators.metrics import version as vm
>>> merger = PartialsMerger(MetricsConfig(window_ms=1000), settle_ms=lambda m: 0, partitions=2)
>>> part = vm.new_state(); part["n"] = 3
>>> merger.final(0, {"model": "m", "version": "v1", "role": "primary", "start": 0, "end": 1000,
...                  "requests": 3, "state": part})
>>> merger.heartbeat(0, {"wm": 1500, "v": {}, "q": {}}); merger.ready()
[]
>>> merger.heartbeat(1, {"wm": 1200, "v": {}, "q": {}})
>>> [(s.version, s.responses, s.requests) for s in merger.ready()]
[('v1', 3, 3)]
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypedDict

from evaluators.clock import ClockSkewAlerts
from evaluators.counts import JoinCounts
from evaluators.drift.config import DriftConfig
from evaluators.drift.monitor import DriftMonitor
from evaluators.integration_checks import ShapeMonitor
from evaluators.join.state import PartitionState
from evaluators.metrics import version as version_metrics
from evaluators.metrics.version import MetricsConfig, SlimState, VersionState, add_slim, slim
from evaluators.policy.drift_guardrails import DriftView
from evaluators.windows import ClosedWindow, VersionEntry, running_totals, segment_totals, split_key, total_parts
from schemas.inference import Role
from schemas.monitoring import Alert, LatencyQuantiles, MetricsSnapshot, Window
from schemas.types import from_epoch_ms

SNAPSHOT_NAMESPACE = uuid.UUID("6f1d9a52-4a0e-4f43-9a57-0d8c3f1b2e11")
#: How long (event time past its close) a published window's id is remembered, to ignore re-sent finals.
PUBLISHED_MEMORY_MS = 3_600_000


class HeartbeatPartial(TypedDict):
    """A partition's heartbeat (:func:`heartbeat_partial`); the latest one counts."""

    partition: int
    seq: int  #: batches the partition applied
    wm: int | None  #: its stream time, ms (``None``: an idle partition, one that holds no events)
    src: dict[str, int]  #: source -> the latest event time it brought
    fence: dict[str, int]  #: source -> the last applied offset
    run: str  #: the worker run that sent it
    counts: dict[str, Any]  #: the join's per-model counts (:meth:`evaluators.counts.JoinCounts.to_state`)
    v: dict[str, VersionEntry]  #: version key -> its running total
    q: dict[str, int]  #: model -> its requests since first seen


class WindowPartial(ClosedWindow):
    """A partition's part of a final window: the window as :mod:`evaluators.windows` closed it."""

    partition: int


class PendingWindow(TypedDict):
    """A window the merger holds until every partition has closed it."""

    model: str
    version: str
    role: Role
    start: int
    end: int
    parts: dict[int, tuple[int, VersionState]]  #: partition -> (its requests, its state)
    segs: dict[int, dict[str, VersionState]]  #: partition -> segment -> its state (a sliced model's)


def snapshot_id(model: str, version: str, role: str, start: int, segment: str | None = None) -> str:
    name = f"{model}/{version}/{role}/{start}"
    return str(uuid.uuid5(SNAPSHOT_NAMESPACE, name if segment is None else f"{name}/{segment}"))


def heartbeat_partial(partition: int, state: PartitionState, run_id: str) -> HeartbeatPartial:
    """A partition's heartbeat for the merger, from the partition state its last batch wrote."""
    acc = state["acc"]
    # Running totals only (open windows, with their feature summaries, stay home: drift reads
    # closed windows): the heartbeat's size does not grow with the label timeout.
    versions: dict[str, VersionEntry] = {}
    for key, entry in acc["metrics"]["v"].items():
        versions[key] = {"total": entry["total"], "seg": entry["seg"]} if "seg" in entry else {"total": entry["total"]}
    return {"partition": partition, "seq": state["seq"], "wm": state["wm"], "src": state["src"],
            "fence": state["fence"], "run": run_id, "counts": acc["counts"], "v": versions,
            "q": {model: entry["requests"] for model, entry in acc["metrics"]["models"].items()}}


def build_snapshot(model: str, version: str, role: Role, start: int, end: int, requests: int, state: VersionState,
                   config: MetricsConfig, drift: dict[str, float] | None = None,
                   segment: str | None = None) -> MetricsSnapshot:
    values = version_metrics.compute(state, model, config)
    latency = LatencyQuantiles(p50=values.get("latency_p50_ms"), p95=values.get("latency_p95_ms"),
                               p99=values.get("latency_p99_ms"))
    return MetricsSnapshot(
        model=model, version=version, role=role, window=Window(start=from_epoch_ms(start), end=from_epoch_ms(end)),
        requests=requests, responses=state["n"], errors=state["err"], labelled=state["lab"],
        expired=state["exp"], metrics=values, latency_ms=latency, drift=drift or {}, segment=segment,
        snapshot_id=snapshot_id(model, version, role, start, segment))


def by_version(windows: list[tuple[str, PendingWindow, int, VersionState]]) -> dict[str, tuple[str, VersionState]]:
    """One model's closed window per version, for the drift monitor: a version that answered in
    two roles within the window (the candidate that took 100% and became ``primary``) counts
    whole, as ``primary`` if it was one. The merged states given are not changed."""
    out: dict[str, tuple[str, VersionState]] = {}
    for _, entry, _, merged in windows:
        version, role = entry["version"], entry["role"]
        seen = out.get(version)
        if seen is None:
            out[version] = (role, merged)
            continue
        both = version_metrics.merge(version_metrics.merge(version_metrics.new_state(), seen[1]), merged)
        out[version] = ("primary" if "primary" in (role, seen[0]) else seen[0], both)
    return out


def _merged_segments(window: PendingWindow) -> dict[str, VersionState]:
    """A pending window's segment states, merged over its partitions (new states)."""
    merged: dict[str, VersionState] = {}
    for segments in window["segs"].values():
        for segment, state in segments.items():
            _merge_into(merged, segment, state)
    return merged


def _merge_into(totals: dict[str, VersionState], key: str, state: VersionState) -> None:
    """Add ``state`` to the total under ``key`` (a new state, without feature summaries, at first)."""
    if key not in totals:
        totals[key] = version_metrics.new_state(features=False)
    version_metrics.merge(totals[key], state)


class PartialsMerger:
    """``drift``: the drift monitor's saved state (see :meth:`drift_state`); its alerts collect in
    ``alerts`` as windows are published, for the caller to send and clear. ``drift_config``: how
    the drift monitor judges (its defaults when not given)."""

    def __init__(self, config: MetricsConfig, settle_ms: Callable[[str], int], partitions: int,
                 drift: dict | None = None, skew_tolerance_ms: int = 5 * 60_000,
                 drift_config: DriftConfig | None = None) -> None:
        self.config = config
        self.settle_ms = settle_ms
        self.partitions = partitions
        self.drift_config = drift_config or DriftConfig()
        self.drift = DriftMonitor(self.drift_config, drift)
        #: Alerts on clients stamping events ahead of the evaluator's clock (see :mod:`evaluators.clock`).
        self.clock = ClockSkewAlerts(skew_tolerance_ms)
        #: What flows per version, and alerts on integration mistakes (see :mod:`evaluators.integration_checks`).
        self.shapes = ShapeMonitor()
        self.alerts: list[Alert] = []
        self.heartbeats: dict[int, HeartbeatPartial] = {}
        #: partition -> (the heartbeat they were taken from, its versions' totals reduced to slim
        #: states): reduced once per heartbeat, not on every look of the engine.
        self._slim_totals: dict[int, tuple[HeartbeatPartial, dict[str, SlimState]]] = {}
        self.finals: dict[str, PendingWindow] = {}
        self.published: dict[str, int] = {}  # snapshot id -> close time

    # -- input -----------------------------------------------------------------------------------
    def heartbeat(self, partition: int, message: HeartbeatPartial) -> None:
        self.heartbeats[partition] = message

    def final(self, partition: int, window: WindowPartial | ClosedWindow) -> None:
        sid = snapshot_id(window["model"], window["version"], window["role"], window["start"])
        if sid in self.published:
            return
        entry = self.finals.get(sid)
        if entry is None:
            entry = self.finals[sid] = {"model": window["model"], "version": window["version"], "role": window["role"],
                                        "start": window["start"], "end": window["end"], "parts": {}, "segs": {}}
        entry["parts"][partition] = (window["requests"], window["state"])
        if "seg" in window:
            entry["segs"][partition] = window["seg"]

    def mark_published(self, sid: str, close_ms: int = 2**62) -> None:
        self.published[sid] = close_ms
        self.finals.pop(sid, None)

    # -- output ----------------------------------------------------------------------------------
    def stream_time(self) -> int | None:
        """The oldest stream time over all input partitions (None until every one has reported)."""
        times = [wm for h in self.heartbeats.values() if (wm := h.get("wm")) is not None]
        idle = sum(1 for h in self.heartbeats.values() if h.get("wm") is None)
        if len(times) + idle < self.partitions or not times:
            return None
        return min(times)

    def ready(self) -> list[MetricsSnapshot]:
        """Windows every partition has closed, merged, in window order; they count as published."""
        now = self.stream_time()
        if now is None:
            return []
        if now > 0:  # 0: some partition's time has not started (a source not heard from yet)
            self.alerts += self.clock.observe(self.model_counts(), now)
        # One model's window: all its versions together (drift compares them with each other).
        groups: dict[tuple[int, str], list[tuple[str, PendingWindow, int, VersionState]]] = {}
        for sid, entry in sorted(self.finals.items(), key=lambda item: (item[1]["start"], item[0])):
            close = entry["end"] + self.settle_ms(entry["model"])
            if close > now:
                continue
            merged = version_metrics.new_state()
            requests = 0
            for part_requests, state in entry["parts"].values():
                version_metrics.merge(merged, state)  # merge copies what it takes; b is not kept
                requests += part_requests
            groups.setdefault((entry["start"], entry["model"]), []).append((sid, entry, requests, merged))
            self.mark_published(sid, close)
        out = []
        for (start, model), windows in sorted(groups.items()):
            versions = by_version(windows)
            scores, alerts = self.drift.observe(model, start, versions)
            self.alerts += alerts
            self.alerts += self.shapes.observe(model, start, versions)
            for _sid, entry, requests, merged in windows:
                out.append(build_snapshot(model, entry["version"], entry["role"], start, entry["end"],
                                          requests, merged, self.config, scores.get(entry["version"])))
                for segment, state in sorted(_merged_segments(entry).items()):
                    out.append(build_snapshot(model, entry["version"], entry["role"], start, entry["end"],
                                              requests, state, self.config, segment=segment))
        for sid in [s for s, close in self.published.items() if close + PUBLISHED_MEMORY_MS < now]:
            del self.published[sid]
        return out

    def monitor_view(self) -> DriftView:
        """What the drift and shape monitors know now, as the rollout engine reads it."""
        return DriftView(dict(self.drift.latest), self.drift.firing(), self.shapes.differences())

    def drift_state(self) -> dict:
        return self.drift.to_state()

    def totals(self) -> dict[tuple[str, str, str], VersionState]:
        """Each version's running total, merged over partitions (for live metrics and the policy)."""
        merged: dict[str, VersionState] = {}
        for heartbeat in self.heartbeats.values():
            for key, state in running_totals(heartbeat.get("v", {})).items():
                _merge_into(merged, key, state)
        return {split_key(key): state for key, state in merged.items()}

    def segment_totals(self) -> dict[tuple[str, str, str], dict[str, VersionState]]:
        """Each sliced version's running total per segment, merged over partitions."""
        merged: dict[str, dict[str, VersionState]] = {}
        for heartbeat in self.heartbeats.values():
            for key, segments in segment_totals(heartbeat.get("v", {})).items():
                mine = merged.setdefault(key, {})
                for segment, state in segments.items():
                    _merge_into(mine, segment, state)
        return {split_key(key): segments for key, segments in merged.items()}

    def guardrail_totals(self) -> dict[tuple[str, str, str], SlimState]:
        """The running totals the rollout engine reads (counts, latency, confusion matrix): what
        :meth:`totals` gives, reduced as the engine's ``slim`` reduces it, without the full merge."""
        merged: dict[str, SlimState] = {}
        for partition, heartbeat in self.heartbeats.items():
            cached = self._slim_totals.get(partition)
            if cached is None or cached[0] is not heartbeat:
                reduced: dict[str, SlimState] = {}
                for key, entry in heartbeat.get("v", {}).items():
                    reduced[key] = slim(None)
                    for part in total_parts(entry):
                        add_slim(reduced[key], part)
                    if "seg" in entry:
                        reduced[key]["seg"] = {segment: slim(state) for segment, state in entry["seg"].items()}
                cached = self._slim_totals[partition] = (heartbeat, reduced)
            for key, state in cached[1].items():
                total = merged.get(key)
                if total is None:
                    total = merged[key] = slim(None)
                add_slim(total, state)
        return {split_key(key): state for key, state in merged.items()}

    def model_counts(self) -> dict[str, dict[str, int]]:
        """The join's per-model counts (:class:`evaluators.counts.JoinCounts`), merged over partitions."""
        total = JoinCounts()
        for heartbeat in self.heartbeats.values():
            if heartbeat.get("counts"):
                total.merge(JoinCounts.from_state(heartbeat["counts"]))
        return {model: dict(counts) for model, counts in total.models.items()}

    def model_requests(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for heartbeat in self.heartbeats.values():
            for model, n in heartbeat.get("q", {}).items():
                totals[model] = totals.get(model, 0) + n
        return totals


__all__ = ["PartialsMerger", "build_snapshot", "heartbeat_partial", "snapshot_id"]

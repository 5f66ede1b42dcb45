"""Mergeable summaries of a feature's values in one window: what the drift tests compare.

Numeric values go into a DDSketch (the same 1%-relative-accuracy bins as latency, see
:mod:`evaluators.metrics.sketch`), so two partitions' summaries merge exactly by adding counts and
two summaries can be compared bin by bin. Strings and booleans are categories (at most
``MAX_CATEGORIES`` distinct values per summary; the rest count under ``OTHER``). ``None`` or an
absent feature counts as missing. A summary is plain JSON, like every partial state.

>>> s = new_summary()
>>> for v in (1.0, 2.0, None, "eu"): add_value(s, v)
>>> s["n"], s["miss"], s["num"]["n"], s["cat"]
(4, 1, 2, {'eu': 1})
"""

from __future__ import annotations

from typing import Any, TypedDict

from evaluators.metrics import sketch

#: Distinct categories kept per feature summary; later new values count under OTHER.
MAX_CATEGORIES = 100
OTHER = "\x00other"
#: Features tracked per version and window (the first ones seen); the rest are ignored.
MAX_FEATURES = 64
#: The pseudo-feature holding each version's predictions (prediction drift).
PREDICTION = "@prediction"


class FeatureSummary(TypedDict):
    """One feature's values in one window (or a version's predictions, under ``PREDICTION``)."""

    n: int  # values seen, missing ones included
    miss: int  # missing: None or absent, or a list or an object
    num: sketch.Sketch | None  # the numbers, once there is one
    cat: dict[str, int]  # category (strings; booleans as "true"/"false") -> count, at most MAX_CATEGORIES


def new_summary() -> FeatureSummary:
    return {"n": 0, "miss": 0, "num": None, "cat": {}}


def add_value(summary: FeatureSummary, value: Any) -> None:
    add_values(summary, (value,))


def add_values(summary: FeatureSummary, values: list[Any] | tuple[Any, ...]) -> None:
    """Add ``values`` in order (the same summary as ``add_value`` on each)."""
    missing = 0
    numbers: list[float] = []
    categories = summary["cat"]
    for value in values:
        kind = type(value)
        if kind is float or kind is int:
            numbers.append(float(value))
            continue
        if kind is str:
            key = value
        elif value is None:
            missing += 1
            continue
        elif isinstance(value, bool):
            key = "true" if value else "false"
        elif isinstance(value, (int, float)):
            numbers.append(float(value))
            continue
        elif isinstance(value, str):
            key = value
        else:  # lists, objects: not a distribution this module compares
            missing += 1
            continue
        if key not in categories and len(categories) >= MAX_CATEGORIES:
            key = OTHER
        categories[key] = categories.get(key, 0) + 1
    summary["n"] += len(values)
    summary["miss"] += missing
    if numbers:
        numeric = summary["num"]
        if numeric is None:
            numeric = summary["num"] = sketch.new_sketch()
        sketch.add_many(numeric, numbers)


def add_features(summaries: dict[str, FeatureSummary], features: dict[str, Any] | None) -> None:
    """Add one request's features; a feature seen before but absent here counts as missing."""
    pending: dict[str, list[Any]] = {}
    collect_features(summaries, features, pending)
    add_collected(summaries, pending)


def collect_features(summaries: dict[str, FeatureSummary], features: dict[str, Any] | None,
                     pending: dict[str, list[Any]]) -> None:
    """What ``add_features`` does for one request, with the values held in ``pending`` (feature ->
    values in order) until :func:`add_collected` adds them: a run of requests adds each feature's
    values at once. Summaries are made here, in the requests' order (the first ``MAX_FEATURES``
    names seen are kept)."""
    features = features or {}
    for name, value in features.items():
        values = pending.get(name)
        if values is None:
            if name not in summaries:
                if len(summaries) >= MAX_FEATURES:
                    continue
                summaries[name] = new_summary()
            values = pending[name] = []
        values.append(value)
    if len(summaries) > len(features):
        for name in summaries:
            if name not in features and name != PREDICTION:
                values = pending.get(name)
                if values is None:
                    values = pending[name] = []
                values.append(None)


def add_collected(summaries: dict[str, FeatureSummary], pending: dict[str, list[Any]]) -> None:
    for name, values in pending.items():
        add_values(summaries[name], values)


def merge(a: FeatureSummary, b: FeatureSummary) -> FeatureSummary:
    """Add summary ``b`` into ``a``."""
    a["n"] += b["n"]
    a["miss"] += b["miss"]
    if b["num"] is not None:
        numeric = a["num"]
        if numeric is None:
            numeric = a["num"] = sketch.new_sketch()
        sketch.merge(numeric, b["num"])
    categories = a["cat"]
    for key, count in b["cat"].items():
        if key not in categories and len(categories) >= MAX_CATEGORIES:
            key = OTHER
        categories[key] = categories.get(key, 0) + count
    return a


def merge_all(a: dict[str, FeatureSummary], b: dict[str, FeatureSummary]) -> dict[str, FeatureSummary]:
    """Add every feature summary of ``b`` into ``a`` (a version's summaries, by feature)."""
    for name, summary in b.items():
        if name in a:
            merge(a[name], summary)
        elif len(a) < MAX_FEATURES:
            a[name] = merge(new_summary(), summary)
    return a

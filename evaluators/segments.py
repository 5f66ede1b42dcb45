"""Segments: a version's metrics per value of a request attribute (``region=eu``), beside its
metrics over all traffic.

The evaluator keeps, for each attribute it is told to slice a model by
(:attr:`~evaluators.metrics.version.MetricsConfig.segments`), one metric state per value, fed by the
version's joined records (a record's segment is its request's attribute value, known once the label
joins). So segment metrics are those of labelled requests: task metrics, business outcomes and the
label delay, over the same records as the version's own.

**Bounded.** Each partition keeps the first ``cap`` values it sees of an attribute; later values
count under :data:`OTHER`, and a record whose request was not seen or lacks the attribute under
:data:`NONE`. A partition holds at most ``cap + 2`` segment states per attribute and version,
whatever the number of distinct values; merged over ``P`` partitions, at most ``P * cap + 2``.
Every state is exact and mergeable, as a version's own is.

**Judged.** A rollout judges the first ``max_values`` values it sees one by one and the rest
together (:func:`group`), with a fixed membership, so that looks can be subtracted.

>>> segment_id("region", "eu"), split_segment("region=eu")
('region=eu', ('region', 'eu'))
>>> kept = []
>>> [assign(kept, value, cap=2) for value in ("eu", "us", "eu", "apac", None)]
['eu', 'us', 'eu', 'other', 'none']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

from schemas.metric_names import lookup_metric
from schemas.rollout import RolloutSpec

#: The value of a segment pooling values past the cap.
OTHER = "other"
#: The value of a segment of records without the attribute (or whose request was not seen).
NONE = "none"
#: Distinct values an evaluator keeps per attribute and partition, by default.
DEFAULT_CAP = 20
#: The grid of a segment state's ROC AUC scores: at most 1,001 per class, where an exact map can hold
#: 20,000 (every segment's state rides in each heartbeat); the AUC's error bound is reported.
AUC_GRID = 0.001
#: Labelled requests a segment needs before it counts in a fairness gap (fewer: its value is noise).
MIN_GAP_LABELS = 100

State = TypeVar("State")


def parse_segments(text: str) -> tuple[str, dict[str, int]]:
    """``MODEL=ATTRIBUTE[:CAP][,ATTRIBUTE[:CAP]...]`` (``*`` for every model not named), as the
    evaluator's ``--segments`` takes it: the model and its attributes with their caps.

    >>> parse_segments("fraud=region:8,device")
    ('fraud', {'region': 8, 'device': 20})
    >>> parse_segments("fraud=region:0")
    Traceback (most recent call last):
    ValueError: the cap of 'region' must be a whole number from 1 to 1000, got '0'
    """
    model, sep, attributes = text.partition("=")
    if not sep or not model or not attributes:
        raise ValueError(f"expected MODEL=ATTRIBUTE[:CAP][,ATTRIBUTE[:CAP]...], got {text!r}")
    caps: dict[str, int] = {}
    for part in attributes.split(","):
        attribute, has_cap, cap = part.strip().partition(":")
        if not attribute or "=" in attribute:
            raise ValueError(f"not an attribute name: {part!r}")
        if attribute in caps:
            raise ValueError(f"attribute {attribute!r} given twice")
        if has_cap and not (cap.isdigit() and 1 <= int(cap) <= 1000):
            raise ValueError(f"the cap of {attribute!r} must be a whole number from 1 to 1000, got {cap!r}")
        caps[attribute] = int(cap) if has_cap else DEFAULT_CAP
    return model, caps


def with_spec_segments(segments: Mapping[str, dict[str, int]],
                       specs: Iterable[RolloutSpec]) -> dict[str, dict[str, int]]:
    """``segments`` (as :attr:`MetricsConfig.segments <evaluators.metrics.version.MetricsConfig.segments>`)
    extended to keep what ``specs`` judge by, each attribute at least as many values as they judge
    (what replay slices by without being told).

    >>> spec = RolloutSpec.model_validate({"model": "m", "baseline": "v1", "candidate": "v2", "mode": "canary",
    ...                                    "task": "binary", "segments": ["region", {"attribute": "device",
    ...                                                                             "max_values": 30}]})
    >>> with_spec_segments({"*": {"plan": 5}}, [spec])
    {'*': {'plan': 5}, 'm': {'plan': 5, 'region': 20, 'device': 30}}
    """
    out = {model: dict(caps) for model, caps in segments.items()}
    for spec in specs:
        kept = out.setdefault(spec.model, dict(out.get("*", {})))
        for by in spec.segments:
            kept[by.attribute] = max(kept.get(by.attribute, DEFAULT_CAP), by.max_values)
    return out


def segment_id(attribute: str, value: str) -> str:
    """How a segment is named everywhere: ``attribute=value``."""
    return f"{attribute}={value}"


def split_segment(segment: str) -> tuple[str, str]:
    """(attribute, value) of a :func:`segment_id`."""
    attribute, _, value = segment.partition("=")
    return attribute, value


def assign(kept: list[str], value: str | None, cap: int) -> str:
    """The segment value a record counts under: its own while ``kept`` holds it or has room (then
    it is kept, in the order first seen), :data:`OTHER` past the cap, :data:`NONE` without one."""
    if value is None:
        return NONE
    if value in kept:
        return value
    if len(kept) < cap:
        kept.append(value)
        return value
    return OTHER


def group(attribute: str, members: list[str], max_values: int, present: Iterable[str]) -> list[str]:
    """The judged segments of ``attribute``: ``members`` (the values judged one by one so far, in the
    order first seen, extended in place by the new values of ``present``, sorted, while there is room
    for ``max_values``), then :data:`OTHER` (every other value). ``present``: segment ids.

    >>> members = []
    >>> group("region", members, 2, ["region=us", "region=eu", "device=ios"])
    ['region=eu', 'region=us', 'region=other']
    >>> group("region", members, 2, ["region=apac", "region=eu"]), members
    (['region=eu', 'region=us', 'region=other'], ['eu', 'us'])
    """
    prefix = f"{attribute}="
    new = sorted({split_segment(s)[1] for s in present if s.startswith(prefix)} - set(members) - {OTHER, NONE})
    for value in new:
        if len(members) >= max_values:
            break
        members.append(value)
    return [segment_id(attribute, value) for value in members] + [segment_id(attribute, OTHER)]


class Gap(NamedTuple):
    """The spread of one metric over one attribute's segments: ``gap`` is best minus worst, in the
    metric's units and direction (0 when they are alike)."""

    gap: float
    best: str
    worst: str


def gaps(values: Mapping[str, Mapping[str, float]], labelled: Mapping[str, int],
         min_labelled: int = MIN_GAP_LABELS) -> dict[tuple[str, str], Gap]:
    """The fairness view of a version: per (attribute, metric), its best and worst segment and the gap
    between them, over the segments of a value of their own (not :data:`OTHER` or :data:`NONE`) with
    at least ``min_labelled`` labelled requests. ``values``: segment -> metric -> value.

    >>> gaps({"region=eu": {"accuracy": 0.9}, "region=us": {"accuracy": 0.8}, "region=other": {"accuracy": 0.1}},
    ...      {"region=eu": 500, "region=us": 400, "region=other": 900})
    {('region', 'accuracy'): Gap(gap=0.09999999999999998, best='region=eu', worst='region=us')}
    """
    by_metric: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for segment, metrics in values.items():
        attribute, value = split_segment(segment)
        if value in (OTHER, NONE) or labelled.get(segment, 0) < min_labelled:
            continue
        for metric, number in metrics.items():
            if not metric.endswith((".count", ".sum")):  # sizes, not rates: they differ with the segment's size
                by_metric.setdefault((attribute, metric), []).append((number, segment))
    out: dict[tuple[str, str], Gap] = {}
    for (attribute, metric), found in sorted(by_metric.items()):
        if len(found) < 2:
            continue
        try:
            higher_is_better = lookup_metric(metric).higher_is_better
        except ValueError:
            continue  # a count or sum, not a metric with a direction
        found.sort()
        (low, low_segment), (high, high_segment) = found[0], found[-1]
        best, worst = (high_segment, low_segment) if higher_is_better else (low_segment, high_segment)
        out[(attribute, metric)] = Gap(high - low, best, worst)
    return out


def pooled(segments: Mapping[str, State], judged: str, members: list[str], empty: Callable[[], State],
           add: Callable[[State, State], object]) -> State:
    """The state of one judged segment in a map of segment states: the member's own, or for
    ``<attribute>=other`` the sum of every value of the attribute that is not a member (a new state)."""
    attribute, value = split_segment(judged)
    if value != OTHER:
        return segments.get(judged) or empty()
    total = empty()
    prefix = f"{attribute}="
    kept = set(members)
    for segment, state in segments.items():
        if segment.startswith(prefix) and split_segment(segment)[1] not in kept:
            add(total, state)
    return total


__all__ = ["AUC_GRID", "DEFAULT_CAP", "MIN_GAP_LABELS", "NONE", "OTHER", "Gap", "assign", "gaps", "group",
           "parse_segments", "pooled", "segment_id", "split_segment", "with_spec_segments"]

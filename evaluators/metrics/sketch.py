"""Mergeable quantile sketches (DDSketch, 1% relative accuracy) kept as JSON-compatible bins.

DDSketch (DataDog's ``ddsketch`` package) guarantees every quantile within 1% of the true value,
whatever the distribution, and merges exactly by adding bin counts, which is what partial states
need. Latency and label delay use it.

>>> s = new_sketch()
>>> for v in range(1, 101): add(s, float(v))
>>> round(quantile(s, 0.5), 0), s["n"]
(50.0, 100)
"""

from __future__ import annotations

import math
from typing import TypedDict

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from evaluators.metrics.sums import counts_below

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE = _MAPPING.min_possible
# LogarithmicMapping.key, inlined in add_many (the same float operations, so the same keys): it runs
# for every latency and label delay, and the method call chain was a fifth of a record's cost.
_MULTIPLIER = _MAPPING._multiplier
_OFFSET = _MAPPING._offset
_log = math.log
_ceil = math.ceil


class Sketch(TypedDict):
    """A DDSketch as JSON (what partial states carry)."""

    n: int  # values added
    sum: float  # their sum, in the order they were added
    zero: int  # values too close to 0 for a bin
    pos: dict[str, int]  # bin key (as a string: the state is JSON) -> count of positive values
    neg: dict[str, int]  # the same for negative values (binned by their absolute value)


def new_sketch() -> Sketch:
    return {"n": 0, "sum": 0.0, "zero": 0, "pos": {}, "neg": {}}


def add(sketch: Sketch, value: float) -> None:
    add_many(sketch, (value,))


def add_many(sketch: Sketch, values: list[float] | tuple[float, ...]) -> None:
    """Add ``values`` in order (the same sketch, to the last bit of its sum, as ``add`` on each)."""
    total, zero = sketch["sum"], 0
    positive, negative = sketch["pos"], sketch["neg"]  # string keys: the state is JSON
    for value in values:
        total += value
        if value > _MIN_POSITIVE:
            key = str(int(_ceil(_log(value, 2) * _MULTIPLIER) + _OFFSET))
            positive[key] = positive.get(key, 0) + 1
        elif value < -_MIN_POSITIVE:
            key = str(int(_ceil(_log(-value, 2) * _MULTIPLIER) + _OFFSET))
            negative[key] = negative.get(key, 0) + 1
        else:
            zero += 1
    sketch["n"] += len(values)
    sketch["sum"] = total
    sketch["zero"] += zero


def merge(a: Sketch, b: Sketch) -> Sketch:
    a["n"] += b["n"]
    a["sum"] += b["sum"]
    a["zero"] += b["zero"]
    for side in ("pos", "neg"):
        bins = a[side]
        for key, count in b[side].items():
            bins[key] = bins.get(key, 0) + count
    return a


def is_behind(a: Sketch, b: Sketch) -> bool:
    """Whether some bin (or the count) of ``a`` is below ``b``'s: ``a`` is not a later state of the
    stream ``b`` was taken from."""
    return (a["n"] < b["n"] or a["zero"] < b["zero"]
            or counts_below(a["pos"], b["pos"]) or counts_below(a["neg"], b["neg"]))


def subtract(a: Sketch, b: Sketch) -> Sketch:
    """A new sketch of what ``a`` holds beyond ``b`` (``b`` an earlier state of the same stream)."""
    out = new_sketch()
    out["n"], out["sum"], out["zero"] = a["n"] - b["n"], a["sum"] - b["sum"], a["zero"] - b["zero"]
    for side in ("pos", "neg"):
        earlier = b[side]
        out[side] = {k: c - earlier.get(k, 0) for k, c in a[side].items() if c > earlier.get(k, 0)}
    return out


def bin_value(key: str | int) -> float:
    """The value a bin stands for (within the 1% relative accuracy), by its key in ``pos``/``neg``
    (in ``neg`` the value of the absolute value)."""
    return _MAPPING.value(int(key))


def count(sketch: Sketch) -> int:
    """Values in the sketch."""
    return sketch["n"]


def total(sketch: Sketch) -> float:
    """The sum of the values in the sketch."""
    return sketch["sum"]


def count_above(sketch: Sketch, bound: float) -> int:
    """Values over ``bound`` (within the 1% relative accuracy)."""
    above = sum(count for key, count in sketch["pos"].items() if _MAPPING.value(int(key)) > bound)
    if bound < 0:
        above += sketch["zero"] + sum(count for key, count in sketch["neg"].items()
                                      if -_MAPPING.value(int(key)) > bound)
    return above


def to_ddsketch(sketch: Sketch) -> DDSketch:
    result = DDSketch(RELATIVE_ACCURACY)
    for key, count in sketch["pos"].items():
        result._store.add(int(key), count)
    for key, count in sketch["neg"].items():
        result._negative_store.add(int(key), count)
    result._zero_count = sketch["zero"]
    result._count = sketch["n"]
    result._sum = sketch["sum"]
    return result


def quantile(sketch: Sketch, q: float) -> float | None:
    """The ``q`` quantile within 1% relative error; ``None`` when empty."""
    if sketch["n"] == 0:
        return None
    return to_ddsketch(sketch).get_quantile_value(q)

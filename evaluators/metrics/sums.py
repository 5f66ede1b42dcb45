"""Running sums ``[n, total]``: the mergeable form of a mean (merge = add both parts).

Kept as sums rather than ``(n, mean)`` so that merging partitions is plain addition, in any order;
river's :class:`~river.stats.Mean` turns one into a mean.

>>> s = new_sum(); add(s, 2.0); add(s, 4.0); mean(s)
3.0
>>> mean(merge_sum([1, 1.0], [3, 9.0]))
2.5
"""

from __future__ import annotations

from river import stats


def new_sum() -> list:
    return [0, 0.0]


def add(running: list, value: float) -> None:
    running[0] += 1
    running[1] += value


def merge_sum(a: list, b: list) -> list:
    a[0] += b[0]
    a[1] += b[1]
    return a


def mean(running: list) -> float | None:
    """The mean, through river's ``stats.Mean``; ``None`` when empty."""
    n, total = running
    if n == 0:
        return None
    return stats.Mean._from_state(n, total / n).get()


def counts_below(a: dict, b: dict) -> bool:
    """Whether some count in ``b`` is above ``a``'s (missing keys count 0): ``a`` is not a later
    state of the counts ``b`` was taken from.

    >>> counts_below({"x": 2}, {"x": 1}), counts_below({"x": 2}, {"x": 1, "y": 1})
    (False, True)
    """
    return any(a.get(key, 0) < count for key, count in b.items())


def merge_counts(a: dict, b: dict) -> dict:
    """Add a dict of counts (or of nested ``[n, total]`` sums) into another."""
    for key, value in b.items():
        if isinstance(value, list):
            merge_sum(a.setdefault(key, [0, 0.0]), value)
        else:
            a[key] = a.get(key, 0) + value
    return a

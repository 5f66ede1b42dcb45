"""Running sums ``[n, total, total of squares]``: the mergeable form of a mean and its variance
(merge = add the parts).

Kept as sums rather than ``(n, mean)`` so that merging partitions is plain addition, in any order;
river's :class:`~river.stats.Mean` turns one into a mean. The sum of squares is what the policy
engine's sequential tests need for a mean's variance (:mod:`evaluators.policy.estimands`). A sum
written before it was kept (``[n, total]``) still reads and merges: its missing part counts 0 (a
rollout's tests use differences of sums taken after the upgrade, which are whole).
Hot paths (:mod:`evaluators.metrics.regression`, :mod:`~evaluators.metrics.ranking`) add in place
the same way, without a call per value.

>>> s = new_sum(); add(s, 2.0); add(s, 4.0); mean(s), s[2]
(3.0, 20.0)
>>> mean(merge_sum([1, 1.0, 1.0], [3, 9.0, 27.0]))
2.5
"""

from __future__ import annotations

from typing import TypeAlias

from river import stats

#: ``[count, total, total of squares]`` (a sum written before squares were kept has the first two).
RunningSum: TypeAlias = list[float]

#: Where each part of a running sum sits.
COUNT, TOTAL, SQUARES = 0, 1, 2


def new_sum() -> RunningSum:
    """``[count, total, total of squares]``."""
    return [0, 0.0, 0.0]


def add(running: RunningSum, value: float) -> None:
    """One value. A sum written before squares were kept gains them from here on (the squares of
    its earlier values count 0, as when merging it)."""
    running[0] += 1
    running[1] += value
    try:
        running[2] += value * value
    except IndexError:
        running.append(value * value)


def merge_sum(a: RunningSum, b: RunningSum) -> RunningSum:
    """Add ``b`` into ``a`` part by part (a shorter, older sum gains the missing parts as 0)."""
    a[0] += b[0]
    a[1] += b[1]
    if len(b) > 2:
        if len(a) > 2:
            a[2] += b[2]
        else:
            a.append(b[2])
    return a


def squares(running: RunningSum) -> float:
    """The total of squares (0 for a sum written before it was kept)."""
    return running[2] if len(running) > 2 else 0.0


def mean(running: RunningSum) -> float | None:
    """The mean, through river's ``stats.Mean``; ``None`` when empty."""
    n, total = running[0], running[1]
    if n == 0:
        return None
    return stats.Mean._from_state(n, total / n).get()


def mean_of(running: RunningSum) -> float:
    """The mean of a running sum that has values (:func:`mean` for one that may be empty)."""
    value = mean(running)
    if value is None:
        raise ValueError("the mean of an empty running sum")
    return value


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
            merge_sum(a.setdefault(key, [0] + [0.0] * (len(value) - 1)), value)
        else:
            a[key] = a.get(key, 0) + value
    return a

"""Two-sample comparisons of feature summaries: tests with p-values, and magnitudes.

Numeric features (compared bin by bin on their DDSketches, which share one bin layout):

- Kolmogorov-Smirnov: the largest gap between the two empirical CDFs, and its p-value from the
  Kolmogorov distribution (``scipy.stats.kstwo`` at the effective size nm/(n+m), as
  ``scipy.stats.ks_2samp(method="asymp")`` does). Binning can only shrink the gap, so the test is
  conservative: its false-alarm rate stays at or below alpha.
- PSI over ten bins cut at the reference's deciles, and the Wasserstein (earth mover's) distance in
  the feature's own units: magnitudes, reported, and PSI is the effect-size floor of an alarm.

Categorical features: the chi-square test of homogeneity (categories expected fewer than five times
pooled into one), the Jensen-Shannon distance (base 2, 0 to 1) and the share of current values in
categories the reference never had. Missing values: a two-proportion z-test of the missing rates.

>>> from evaluators.metrics.features import new_summary, add_value
>>> a, b = new_summary(), new_summary()
>>> for i in range(1000): add_value(a, float(i)); add_value(b, float(i) + 300.0)
>>> round(ks(a["num"], b["num"]).statistic, 1), ks(a["num"], b["num"]).p_value < 1e-6
(0.3, True)
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon

from evaluators.metrics.sketch import Sketch, bin_value

PSI_BINS = 10
_EPS = 1e-4


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float


def _points(sketch: Sketch) -> list[tuple[float, int]]:
    """(bin value, count) in increasing value order."""
    points = [(-bin_value(k), c) for k, c in sketch["neg"].items()]
    if sketch["zero"]:
        points.append((0.0, sketch["zero"]))
    points += [(bin_value(k), c) for k, c in sketch["pos"].items()]
    points.sort()
    return points


def _cdf_pairs(a: Sketch, b: Sketch) -> list[tuple[float, float, float]]:
    """(value, F_a, F_b) at every bin either sketch has, in increasing order."""
    counts: dict[float, list[int]] = {}
    for value, count in _points(a):
        counts.setdefault(value, [0, 0])[0] += count
    for value, count in _points(b):
        counts.setdefault(value, [0, 0])[1] += count
    na, nb = max(a["n"], 1), max(b["n"], 1)
    out, ca, cb = [], 0, 0
    for value in sorted(counts):
        ca += counts[value][0]
        cb += counts[value][1]
        out.append((value, ca / na, cb / nb))
    return out


def ks(a: Sketch, b: Sketch) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test of two sketches."""
    n, m = a["n"], b["n"]
    if not n or not m:
        return TestResult(0.0, 1.0)
    d = max((abs(fa - fb) for _, fa, fb in _cdf_pairs(a, b)), default=0.0)
    effective = max(1, (n * m) // (n + m))  # rounded down: the p-value errs on the large side
    return TestResult(d, float(scipy_stats.kstwo.sf(d, effective)))


def wasserstein(a: Sketch, b: Sketch) -> float:
    """Earth mover's distance between two sketches (the area between their CDFs)."""
    if not a["n"] or not b["n"]:
        return 0.0
    pairs = _cdf_pairs(a, b)
    return sum(abs(fa - fb) * (pairs[i + 1][0] - x) for i, (x, fa, fb) in enumerate(pairs[:-1]))


def psi(reference: Sketch, current: Sketch, bins: int = PSI_BINS) -> float:
    """Population stability index over ``bins`` bins cut at the reference's quantiles."""
    if not reference["n"] or not current["n"]:
        return 0.0
    edges: list[float] = []  # upper edges (inclusive) of every bin but the last
    total, seen = reference["n"], 0
    for value, count in _points(reference):
        seen += count
        if seen / total >= (len(edges) + 1) / bins and len(edges) < bins - 1:
            edges.append(value)
    ref_mass = _binned(reference, edges)
    cur_mass = _binned(current, edges)
    return _psi_of(ref_mass, cur_mass)


def _binned(sketch: Sketch, edges: list[float]) -> list[float]:
    mass = [0.0] * (len(edges) + 1)
    for value, count in _points(sketch):
        mass[bisect_left(edges, value)] += count  # an edge is its bin's inclusive upper end
    total = sum(mass) or 1.0
    return [m / total for m in mass]


def _psi_of(ref: list[float], cur: list[float]) -> float:
    return sum((c - r) * math.log((c + _EPS) / (r + _EPS)) for r, c in zip(ref, cur))


def chi_square(reference: dict[str, int], current: dict[str, int]) -> TestResult:
    """Chi-square test that two category counts come from one distribution."""
    n, m = sum(reference.values()), sum(current.values())
    if not n or not m:
        return TestResult(0.0, 1.0)
    pooled = {k: reference.get(k, 0) + current.get(k, 0) for k in set(reference) | set(current)}
    rows: list[tuple[int, int]] = []
    rare = [0, 0]
    for key, total in pooled.items():
        # The smaller sample's expected count decides whether the cell is big enough.
        if total * min(n, m) / (n + m) < 5:
            rare[0] += reference.get(key, 0)
            rare[1] += current.get(key, 0)
        else:
            rows.append((reference.get(key, 0), current.get(key, 0)))
    if rare[0] + rare[1]:
        rows.append((rare[0], rare[1]))
    if len(rows) < 2:
        return TestResult(0.0, 1.0)
    stat = 0.0
    for r, c in rows:
        total = r + c
        expected_r, expected_c = total * n / (n + m), total * m / (n + m)
        stat += (r - expected_r) ** 2 / expected_r + (c - expected_c) ** 2 / expected_c
    return TestResult(stat, float(scipy_stats.chi2.sf(stat, len(rows) - 1)))


def js_distance(reference: dict[str, int], current: dict[str, int]) -> float:
    """Jensen-Shannon distance (base 2: 0 same, 1 disjoint) of two category counts."""
    keys = sorted(set(reference) | set(current))
    p = [reference.get(k, 0) for k in keys]
    q = [current.get(k, 0) for k in keys]
    if not sum(p) or not sum(q):
        return 0.0
    return float(jensenshannon(p, q, base=2))


def unseen_rate(reference: dict[str, int], current: dict[str, int]) -> float:
    """Share of current values in categories the reference never had."""
    total = sum(current.values())
    if not total:
        return 0.0
    return sum(c for k, c in current.items() if k not in reference) / total


def two_proportions(bad_a: int, n_a: int, bad_b: int, n_b: int) -> TestResult:
    """Two-sided z-test that two rates are equal (pooled variance)."""
    if not n_a or not n_b:
        return TestResult(0.0, 1.0)
    pooled = (bad_a + bad_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return TestResult(0.0, 1.0)
    z = (bad_b / n_b - bad_a / n_a) / math.sqrt(variance)
    return TestResult(abs(z), float(2 * scipy_stats.norm.sf(abs(z))))

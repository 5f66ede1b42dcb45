"""Drift per model version over closed windows, and the alerts it raises: pure, JSON state.

For each closed window (all versions of one model at once), per version and feature (and the
``@prediction`` pseudo-feature):

- **against the reference**: the version's own first ``reference_windows`` windows with data,
  pinned once complete (a snapshot of what the version saw when it started), compared with the
  window: KS + PSI + Wasserstein (numeric), chi-square + Jensen-Shannon + unseen-category rate
  (categorical), and the missing rate;
- **against the baseline** (input skew, for every version but the baseline, the primary with
  most responses): the same tests between the version's and the baseline's traffic of the *same*
  window, so a verdict is not drawn from different populations;
- **concept drift**: ADWIN over the version's errors (:mod:`evaluators.drift.concept`).

**False alarms are controlled.** A condition (model, version, feature) runs up to four tests per
window (distribution and missing rate, against the reference and the baseline); each is judged at
``alpha / tests`` (Bonferroni), so a window falsely flags a condition with probability at most
``alpha``. A flag also needs an effect of a size someone cares about (PSI, JS distance or missing
rate change over a floor), so huge windows do not alarm on negligible shifts. An alert fires after
``confirm_windows`` flagged windows in a row (a window's false flag has probability at most alpha,
so the expected run between false alerts of one condition is about ``1 / alpha**confirm_windows``
windows), is resolved after ``clear_windows`` clean windows in a row, and does not fire again
within ``cooldown_ms`` of its last firing: one alert per condition, not one per window.

>>> from evaluators.metrics.features import add_features
>>> from evaluators.metrics.version import new_state
>>> import random
>>> rng, monitor = random.Random(1), DriftMonitor(DriftConfig(reference_windows=2, min_samples=50))
>>> def window(shift):
...     ft = {}
...     for _ in range(500): add_features(ft, {"amount": rng.gauss(100 + shift, 10)})
...     return {"v1": ("primary", {**new_state(), "ft": ft, "n": 500})}
>>> alerts = []
>>> for i in range(8): alerts += monitor.observe("m", i * 60_000, window(0 if i < 4 else 30))[1]
>>> [(a.version, a.status, "amount" in a.message) for a in alerts]
[('v1', 'firing', True)]
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from evaluators.drift import statistics as st
from evaluators.drift.concept import ErrorDriftDetector
from evaluators.drift.config import DriftConfig
from evaluators.metrics import classification
from evaluators.metrics.features import PREDICTION, FeatureSummary, merge_all
from evaluators.metrics.version import VersionState
from schemas.monitoring import Alert
from schemas.types import from_epoch_ms

CONCEPT = "@errors"
#: Windows per model whose scores are kept, so that a window published again after a crash gets
#: its own scores (its owner saves the monitor's state before the window's snapshots go out).
RECENT_WINDOWS = 16
_SKEW = "skew."
_ALERT_NAMESPACE = uuid.UUID("0d6c1f7e-3b0a-4d55-9d0e-6a9b2f4c8e21")


def score_name(feature: str, measure: str, against: str = "reference") -> str:
    """A drift score's name in ``MetricsSnapshot.drift``: ``<feature>.<measure>`` against the
    version's reference, ``skew.<feature>.<measure>`` against the baseline's same window.

    >>> score_name("amount", "psi", "baseline"), split_score_name("skew.amount.psi")
    ('skew.amount.psi', ('amount', 'psi', 'baseline'))
    """
    return f"{_SKEW if against == 'baseline' else ''}{feature}.{measure}"


def split_score_name(name: str) -> tuple[str, str, str]:
    """(feature, measure, against) of a score name (see :func:`score_name`)."""
    against = "baseline" if name.startswith(_SKEW) else "reference"
    feature, _, measure = name.removeprefix(_SKEW).rpartition(".")
    return feature, measure, against


@dataclass(frozen=True)
class Verdict:
    """A condition's window: flagged (a test under its level with a big enough effect), judged
    (some test could be run), the strongest reason, its p-value (or rate) and the level."""

    flagged: bool
    judged: bool
    why: str = ""
    value: float | None = None
    threshold: float | None = None


@dataclass
class Comparison:
    """One feature of one version against one other side: the scores and whether it flags."""

    scores: dict[str, float]
    p_values: list[tuple[str, float, bool]]  # (test, p, effect over the floor)


def compare(reference: FeatureSummary, current: FeatureSummary, config: DriftConfig) -> Comparison:
    """Compare one feature's ``current`` summary with ``reference``."""
    if reference["n"] < config.min_samples or current["n"] < config.min_samples:
        return Comparison({}, [])
    scores: dict[str, float] = {}
    tests: list[tuple[str, float, bool]] = []
    ref_missing, cur_missing = reference["miss"] / reference["n"], current["miss"] / current["n"]
    scores["missing_rate"] = cur_missing
    if reference["miss"] or current["miss"]:  # with none on either side the test cannot flag: no alpha spent
        missing = st.two_proportions(reference["miss"], reference["n"], current["miss"], current["n"])
        tests.append(("missing", missing.p_value, abs(cur_missing - ref_missing) >= config.min_missing_change))
    ref_num, cur_num = reference["num"], current["num"]
    if ref_num is not None and cur_num is not None and min(ref_num["n"], cur_num["n"]) >= config.min_samples:
        result = st.ks(ref_num, cur_num)
        scores["ks"], scores["ks_p"] = result.statistic, result.p_value
        scores["psi"] = st.psi(ref_num, cur_num)
        scores["wasserstein"] = st.wasserstein(ref_num, cur_num)
        tests.append(("ks", result.p_value, scores["psi"] >= config.min_psi))
    ref_cat, cur_cat = reference["cat"], current["cat"]
    if min(sum(ref_cat.values()), sum(cur_cat.values())) >= config.min_samples:
        result = st.chi_square(ref_cat, cur_cat)
        scores["chi2"], scores["chi2_p"] = result.statistic, result.p_value
        scores["js"] = st.js_distance(ref_cat, cur_cat)
        scores["unseen_rate"] = st.unseen_rate(ref_cat, cur_cat)
        tests.append(("chi2", result.p_value, scores["js"] >= config.min_js))
    return Comparison(scores, tests)


class Reference(TypedDict):
    """A version's reference distributions: its first windows with data, merged."""

    windows: int  #: windows merged so far; pinned once it reaches ``reference_windows``
    ft: dict[str, FeatureSummary]  #: feature (and :data:`PREDICTION`) -> its summary


class DriftMonitor:
    """Every model version's references, alert conditions and concept detectors."""

    def __init__(self, config: DriftConfig | None = None, state: dict | None = None) -> None:
        self.config = config or DriftConfig()
        state = state or {}
        #: "model\x1fversion" -> its reference
        self.references: dict[str, Reference] = state.get("references", {})
        #: "model\x1fversion\x1ffeature" -> {"streak", "clean", "firing", "fired_at"}
        self.conditions: dict[str, dict] = state.get("conditions", {})
        #: model -> last window start observed (a window is observed once)
        self.observed: dict[str, int] = state.get("observed", {})
        self.detectors = {key: ErrorDriftDetector(self.config.adwin_delta, history)
                          for key, history in state.get("concept", {}).items()}
        #: "model\x1fversion" -> the last judged window's scores (for the exporter and the policy)
        self.latest: dict[str, dict[str, float]] = state.get("latest", {})
        #: model -> window start (as a string: JSON keys) -> version -> the scores it gave
        self.recent: dict[str, dict[str, dict[str, dict[str, float]]]] = state.get("recent", {})

    def to_state(self) -> dict[str, Any]:
        return {"references": self.references, "conditions": self.conditions, "observed": self.observed,
                "concept": {k: d.to_state() for k, d in self.detectors.items()}, "latest": self.latest,
                "recent": self.recent}

    def firing(self) -> set[tuple[str, str, str]]:
        """(model, version, feature) of every firing condition."""
        firing: set[tuple[str, str, str]] = set()
        for key, condition in self.conditions.items():
            if condition["firing"]:
                model, version, feature = key.split("\x1f")
                firing.add((model, version, feature))
        return firing

    # -- one window --------------------------------------------------------------------------------
    def observe(self, model: str, start: int, versions: dict[str, tuple[str, VersionState]]
                ) -> tuple[dict[str, dict[str, float]], list[Alert]]:
        """One closed window of ``model``: ``versions`` maps version to (role, metric state).
        Returns each version's drift scores (``MetricsSnapshot.drift``) and the alerts to publish.
        A window already observed (a re-published one) gives the scores it gave, and no alert."""
        if start <= self.observed.get(model, -1):
            gave = self.recent.get(model, {}).get(str(start), {})
            return {v: gave.get(v, {}) for v in versions}, []
        self.observed[model] = start
        baseline = self._baseline(versions)
        features = {v: state.get("ft", {}) for v, (_, state) in versions.items()}
        scores: dict[str, dict[str, float]] = {}
        alerts: list[Alert] = []
        for version, (_role, state) in sorted(versions.items()):
            out: dict[str, float] = {}
            reference = self.references.get(f"{model}\x1f{version}")
            pinned = reference is not None and self._pinned(reference)
            for name, current in sorted(features[version].items()):
                comparisons = []
                if reference is not None and pinned and name in reference["ft"]:
                    comparisons.append(("reference", compare(reference["ft"][name], current, self.config)))
                other = features.get(baseline, {}).get(name) if baseline and version != baseline else None
                if other is not None and name != PREDICTION:
                    comparisons.append(("baseline", compare(other, current, self.config)))
                verdict = self._judge(comparisons)
                for against, comparison in comparisons:
                    for measure, value in comparison.scores.items():
                        out[score_name(name, measure, against)] = value
                alerts += self._condition(model, version, name, verdict, start)  # event time: deterministic
            alerts += self._concept(model, version, state, out, start)
            self._grow_reference(model, version, features[version])
            scores[version] = out
            if any(not name.startswith(CONCEPT) for name in out):  # the last window with enough data
                self.latest[f"{model}\x1f{version}"] = out
        recent = self.recent.setdefault(model, {})
        recent[str(start)] = scores
        for old in sorted(recent, key=int)[:-RECENT_WINDOWS]:
            del recent[old]
        return scores, alerts

    @staticmethod
    def _baseline(versions: dict[str, tuple[str, VersionState]]) -> str | None:
        primaries = [(state["n"], v) for v, (role, state) in versions.items() if role == "primary"]
        return max(primaries)[1] if primaries else None

    def _judge(self, comparisons: list[tuple[str, Comparison]]) -> Verdict:
        tests = [(against, t) for against, c in comparisons for t in c.p_values]
        if not tests:
            return Verdict(False, False)
        level = self.config.alpha / len(tests)
        hits = sorted((p, f"{'skew ' if against == 'baseline' else ''}{name} p={p:.2g} < {level:.2g}")
                      for against, (name, p, big) in tests if p < level and big)
        if not hits:
            return Verdict(False, True)
        return Verdict(True, True, hits[0][1], hits[0][0], level)

    def _condition(self, model: str, version: str, feature: str, verdict: Verdict, ts: int,
                   confirm: int | None = None) -> list[Alert]:
        flagged = verdict.flagged
        if not verdict.judged:
            return []
        key = f"{model}\x1f{version}\x1f{feature}"
        c = self.conditions.get(key)
        if c is None:
            if not flagged:
                return []
            c = self.conditions[key] = {"streak": 0, "clean": 0, "firing": False, "fired_at": None}
        config = self.config
        if flagged:
            c["streak"], c["clean"] = c["streak"] + 1, 0
            cooled = c["fired_at"] is None or ts - c["fired_at"] >= config.cooldown_ms
            if not c["firing"] and c["streak"] >= (confirm or config.confirm_windows) and cooled:
                c["firing"], c["fired_at"] = True, ts
                return [_alert(model, version, feature, "firing", ts,
                               f"{model}/{version}: {_what(feature)} drifted ({verdict.why}; "
                               f"{c['streak']} windows in a row)", verdict.value, verdict.threshold)]
            return []
        c["streak"], c["clean"] = 0, c["clean"] + 1
        if c["firing"] and c["clean"] >= config.clear_windows:
            c["firing"] = False
            return [_alert(model, version, feature, "resolved", ts,
                           f"{model}/{version}: {_what(feature)} back to normal "
                           f"({c['clean']} clean windows)", None, None)]
        if not c["firing"] and c["streak"] == 0 and c["fired_at"] is None:
            del self.conditions[key]  # nothing to remember
        return []

    def _concept(self, model: str, version: str, state: VersionState, out: dict[str, float], ts: int) -> list[Alert]:
        bad, n = classification.wrong(state["cls"])
        if not n:
            return []
        key = f"{model}\x1f{version}"
        detector = self.detectors.get(key)
        if detector is None:
            detector = self.detectors[key] = ErrorDriftDetector(self.config.adwin_delta)
        detected = detector.update(bad, n)
        out[score_name(CONCEPT, "error_rate")] = bad / n
        out[score_name(CONCEPT, "adwin")] = 1.0 if detected else 0.0
        # ADWIN's cut is the confirmed event itself (its delta bounds false cuts): no second window.
        return self._condition(model, version, CONCEPT, Verdict(
            detected, True, f"ADWIN cut its window at error rate {bad / n:.3f}", bad / n, None), ts, confirm=1)

    def _grow_reference(self, model: str, version: str, features: dict[str, FeatureSummary]) -> None:
        if not features:
            return
        key = f"{model}\x1f{version}"
        reference = self.references.get(key)
        if reference is None:
            reference = self.references[key] = {"windows": 0, "ft": {}}
        if not self._pinned(reference):
            merge_all(reference["ft"], features)
            reference["windows"] += 1

    def _pinned(self, reference: Reference) -> bool:
        return reference["windows"] >= self.config.reference_windows


def _what(feature: str) -> str:
    if feature == PREDICTION:
        return "the prediction distribution"
    if feature == CONCEPT:
        return "the error rate (concept drift)"
    return f"feature {feature!r}"


def _alert(model: str, version: str, feature: str, status: Literal["firing", "resolved"], ts: int, message: str,
           value: float | None, threshold: float | None) -> Alert:
    # A deterministic id: the same condition's same transition is one alert, even if re-published.
    alert_id = uuid.uuid5(_ALERT_NAMESPACE, f"{model}\x1f{version}\x1f{feature}\x1f{status}\x1f{ts}")
    return Alert(alert_id=alert_id, model=model, version=version,
                 severity="warning" if status == "firing" else "info", kind="drift", message=message,
                 ts=from_epoch_ms(ts), status=status, value=value, threshold=threshold, feature=feature)

"""Drift detection: delay and false alarms on river's synthetic streams and injected feature shifts.

(a) Concept drift (labels known, features unchanged): river's SEA (noise 10%) and Agrawal streams
    switch concept through ``ConceptDriftStream`` centred on event 50,000 (width 500). The served model is fixed
    before the drift (SEA: the first concept's own rule; Agrawal: a Hoeffding tree trained on 20,000
    events of the first concept), so its error stream shifts at the drift point. ADWIN (what the
    evaluator uses), Page-Hinkley and KSWIN each read that error stream event by event; ADWIN also as
    the evaluator feeds it, per window of 1,000 events (:class:`ErrorDriftDetector`). Delay = events
    after the drift point to the first detection; false alarms = detections per 100,000 events of
    the same streams without drift.
(b) Feature drift: the evaluator's :class:`DriftMonitor` (defaults: alpha 0.001, two flagged
    windows in a row) over windows of 1,000 requests with a numeric ``amount`` (log-normal) and a
    categorical ``country``; at a known window ``amount`` is scaled (+10%, +25%) or a country's
    share moves (25% -> 40%). Delay = requests after the shift to the alert; false alarms = alerts
    per 100,000 requests without a shift.
(c) A/A calibration: 2,000 windows of 500 requests (40 independent runs of 50, each with its own
    reference), reference and current from one distribution, alpha 0.01, one window to fire:
    flagged conditions per condition-window must be at most alpha, for the tests alone (effect-size
    floors off) and with the default floors.
"""

from __future__ import annotations

import itertools
import random
import statistics

from river import drift, tree
from river.datasets import synth

from bench.report import Result
from evaluators.drift.concept import ErrorDriftDetector
from evaluators.drift.config import DriftConfig
from evaluators.drift.monitor import DriftMonitor
from evaluators.metrics.features import add_features
from evaluators.metrics.version import new_state

DRIFT_AT = 50_000
#: ConceptDriftStream blends the concepts over this many events around DRIFT_AT (river overflows
#: exp() on widths under ~300 with streams this long).
WIDTH = 500
AFTER = 50_000
SEEDS = (1, 2, 3)
SEA_THRESHOLDS = (8.0, 9.0, 7.0, 9.5)


def _sea(drifting: bool, seed: int):
    first = synth.SEA(variant=0, noise=0.1, seed=seed)
    if not drifting:
        return first, lambda x: x[0] + x[1] <= SEA_THRESHOLDS[0]
    stream = synth.ConceptDriftStream(stream=first, drift_stream=synth.SEA(variant=2, noise=0.1, seed=seed + 100),
                                      position=DRIFT_AT, width=WIDTH, seed=seed)
    return stream, lambda x: x[0] + x[1] <= SEA_THRESHOLDS[0]


def _agrawal(drifting: bool, seed: int):
    model = tree.HoeffdingTreeClassifier()
    for x, y in synth.Agrawal(classification_function=0, seed=seed + 500).take(20_000):
        model.learn_one(x, y)
    first = synth.Agrawal(classification_function=0, seed=seed)
    stream = first if not drifting else synth.ConceptDriftStream(
        stream=first, drift_stream=synth.Agrawal(classification_function=2, seed=seed + 100),
        position=DRIFT_AT, width=WIDTH, seed=seed)
    return stream, model.predict_one


def _errors(make, drifting: bool, seed: int) -> list[int]:
    stream, predict = make(drifting, seed)
    return [int(predict(x) != y) for x, y in itertools.islice(stream, DRIFT_AT + AFTER)]


DETECTORS = {
    "ADWIN (delta 0.002)": lambda: drift.ADWIN(delta=0.002),
    "Page-Hinkley (river defaults)": lambda: drift.PageHinkley(),
    "KSWIN (river defaults)": lambda: drift.KSWIN(seed=1),
}


def _detections(make_detector, errors: list[int]) -> list[int]:
    detector, found = make_detector(), []
    for i, e in enumerate(errors):
        detector.update(float(e))
        if detector.drift_detected:
            found.append(i)
    return found


def _windowed(errors: list[int], size: int = 1000) -> list[int]:
    detector, found = ErrorDriftDetector(), []
    for start in range(0, len(errors), size):
        chunk = errors[start:start + size]
        if detector.update(sum(chunk), len(chunk)):
            found.append(start + len(chunk))
    return found


def _delay(found: list[int]) -> float | None:
    after = [i - DRIFT_AT for i in found if i >= DRIFT_AT]
    return after[0] if after else None


def concept_rows() -> list[Result]:
    rows = []
    for stream_name, make in (("SEA", _sea), ("Agrawal", _agrawal)):
        drifted = {seed: _errors(make, True, seed) for seed in SEEDS}
        steady = {seed: _errors(make, False, seed) for seed in SEEDS}
        for name, run in [(n, lambda e, f=f: _detections(f, e)) for n, f in DETECTORS.items()] + \
                         [("ADWIN per 1,000-event window (the evaluator)", _windowed)]:
            delays = [_delay(run(drifted[s])) for s in SEEDS]
            found = [d for d in delays if d is not None]
            false = sum(len(run(steady[s])) for s in SEEDS) / (len(SEEDS) * (DRIFT_AT + AFTER)) * 100_000
            rows.append(Result("drift", f"{stream_name}: {name}: detection delay (median of {len(SEEDS)})",
                               statistics.median(found) if found else float("nan"), "events",
                               note=f"detected {len(found)}/{len(SEEDS)}"))
            rows.append(Result("drift", f"{stream_name}: {name}: false alarms without drift", false,
                               "per 100k events"))
    return rows


def _requests(rng: random.Random, n: int, scale: float, fr_share: float) -> dict:
    state = new_state()
    others = ["de", "us", "jp"]
    for _ in range(n):
        country = "fr" if rng.random() < fr_share else rng.choice(others)
        add_features(state["ft"], {"amount": rng.lognormvariate(4, 0.5) * scale, "country": country})
    state["n"] = n
    return state


def feature_rows() -> list[Result]:
    rows = []
    size, shift_window, windows = 1000, 10, 40
    for name, scale, share in (("amount +10%", 1.10, 0.25), ("amount +25%", 1.25, 0.25),
                               ("country fr 25% -> 40%", 1.0, 0.40), ("none (false alarms)", 1.0, 0.25)):
        delays, alarms, total = [], 0, 0
        for seed in SEEDS:
            rng, monitor = random.Random(seed), DriftMonitor(DriftConfig())
            fired = None
            for w in range(windows):
                shifted = w >= shift_window
                state = _requests(rng, size, scale if shifted else 1.0, share if shifted else 0.25)
                _, alerts = monitor.observe("m", w * 60_000, {"v1": ("primary", state)})
                if any(a.status == "firing" for a in alerts) and fired is None:
                    fired = w
                alarms += sum(a.status == "firing" for a in alerts)
                total += size
            if fired is not None:
                delays.append((fired - shift_window + 1) * size)
        if name.startswith("none"):
            rows.append(Result("drift", "feature drift: false alarms without a shift", alarms / total * 100_000,
                               "per 100k requests", note=f"{total:,} requests, alpha 0.001, 2 windows to fire"))
        else:
            rows.append(Result("drift", f"feature drift: {name}: detection delay (median of {len(SEEDS)})",
                               statistics.median(delays) if delays else float("nan"), "requests",
                               note=f"detected {len(delays)}/{len(SEEDS)}; windows of {size}"))
    return rows


def _aa_rate(config: DriftConfig, runs: int, windows: int, size: int, seed: int) -> float:
    """False flags per condition-window over ``runs`` independent A/A runs (each with its own
    reference: one run's windows all share its reference, so one run alone says little)."""
    flagged = 0
    for run_index in range(runs):
        monitor, rng = DriftMonitor(config), random.Random(seed + run_index)
        for w in range(windows + config.reference_windows):
            _, alerts = monitor.observe("m", w * 60_000, {"v1": ("primary", _requests(rng, size, 1.0, 0.25))})
            flagged += sum(a.status == "firing" for a in alerts)
    return flagged / (runs * windows * 2)


def aa_rows() -> list[Result]:
    alpha, runs, windows = 0.01, 40, 50
    one_window = dict(alpha=alpha, confirm_windows=1, clear_windows=1, cooldown_ms=0, reference_windows=5,
                      min_samples=50)
    tests_alone = _aa_rate(DriftConfig(**one_window, min_psi=0.0, min_js=0.0, min_missing_change=0.0),
                           runs, windows, 500, 99)
    with_floors = _aa_rate(DriftConfig(**one_window), runs, windows, 500, 99)
    total = f"{runs * windows:,} windows ({runs} runs x {windows}) x 2 features, alpha {alpha}, one window to fire"
    return [Result("drift", "A/A false-alarm rate, the tests alone (no effect-size floor)", tests_alone,
                   "per condition-window", target=f"<= {alpha}", met=tests_alone <= alpha, note=total),
            Result("drift", "A/A false-alarm rate with the default effect-size floors", with_floors,
                   "per condition-window", target=f"<= {alpha}", met=with_floors <= alpha, note=total)]


def run() -> list[Result]:
    return aa_rows() + feature_rows() + concept_rows()

"""Classification state: a confusion matrix, probability losses, calibration bins and exact ROC AUC.

River computes accuracy, precision, recall and F1 (binary, or macro for multiclass) from its
``ConfusionMatrix``, rebuilt from the merged counts. Log loss and Brier score are running sums of
the per-record losses (as sklearn defines them). ROC AUC is exact: each class keeps the count of
positives and negatives at every distinct score, so merged partitions give the same AUC as one pass
(river's ``ROCAUC`` approximates with a few thresholds, so it is not used). Past
``MAX_DISTINCT_SCORES`` distinct scores the map is coarsened to a 1e-4 grid, which bounds its size;
the AUC error that adds is at most half the share of positive-negative pairs that share a grid
cell, reported as ``roc_auc_max_error`` (0 while exact).

>>> state = new_state()
>>> for y, p, s in [(1, 1, 0.9), (0, 0, 0.2), (1, 0, 0.4), (0, 1, 0.6)]: add(state, y, p, s)
>>> values = compute(state, "binary"); values["accuracy"], values["roc_auc"]
(0.5, 0.75)
"""

from __future__ import annotations

import math
from typing import Any, NotRequired, TypeAlias, TypedDict

import numpy as np
import orjson
from river import metrics

from evaluators.metrics.sums import RunningSum, mean_of, merge_counts, merge_sum, new_sum
from evaluators.metrics.sums import add as add_to_sum

ECE_BINS = 10
MAX_DISTINCT_SCORES = 20_000
COARSE_GRID = 1e-4
_EPS = float.fromhex("0x1p-52")  # numpy's float64 eps: sklearn clips probabilities with it


#: A score's AUC counts: ``[positives, negatives]`` with that score.
ScoreCounts: TypeAlias = list[int]


class ClassificationState(TypedDict):
    """A classification state. Classes are keys of :func:`class_key` (JSON texts)."""

    cm: dict[str, int]  #: confusion counts: ``"<label>\x1f<prediction>"`` -> records
    ll: RunningSum  #: log loss of each scored record
    br: RunningSum  #: Brier score of each scored record
    ece: list[list[float]]  #: :data:`ECE_BINS` calibration bins by confidence (see ``_new_bin``)
    auc: dict[str, dict[str, ScoreCounts]]  #: class -> score (``repr``, or on the grid when coarse) -> counts
    coarse: bool  #: whether ``auc``'s scores are on a grid
    grid: NotRequired[float]  #: that grid, when not :data:`COARSE_GRID` (a state made coarse from the start)


class SlimClassification(TypedDict):
    """The part of a classification state a slim state keeps (:class:`evaluators.metrics.version.SlimState`)."""

    cm: dict[str, int]  #: the confusion counts, as :class:`ClassificationState`'s


def new_state(grid: float | None = None) -> ClassificationState:
    """An empty state; with ``grid``, its AUC scores are on that grid from the start (a bounded state:
    at most ``1 / grid + 1`` scores per class, the AUC's error reported as ``roc_auc_max_error``)."""
    state: ClassificationState = {"cm": {}, "ll": new_sum(), "br": new_sum(),
                                  "ece": [_new_bin() for _ in range(ECE_BINS)], "auc": {}, "coarse": False}
    if grid is not None:
        state["coarse"], state["grid"] = True, grid
    return state


def _new_bin() -> list[float]:
    """A calibration bin: ``[records, sum of confidences, correct ones, sum of squared confidences,
    sum of the confidences of correct ones]``; bins written before the last two were kept have 3."""
    return [0, 0.0, 0, 0.0, 0.0]


_KEYS: dict[tuple[type, Any], str] = {}


def class_key(value: Any) -> str:
    """A class as a JSON text, so ``1``, ``"1"`` and ``true`` stay distinct in the state."""
    try:
        return _KEYS[(type(value), value)]
    except KeyError:
        key = orjson.dumps(value).decode()
        if len(_KEYS) < 10_000:
            _KEYS[(type(value), value)] = key
        return key
    except TypeError:  # unhashable (a list or an object as a class)
        return orjson.dumps(value).decode()


def _score_class(name: str) -> str:
    """Score object keys are strings; ``"1"`` names the class ``1``, ``"cat"`` the class ``"cat"``."""
    try:
        value = orjson.loads(name)
    except orjson.JSONDecodeError:
        return class_key(name)
    return class_key(value) if isinstance(value, (int, bool)) else class_key(name)


_POSITIVE = {"1": 1.0, "true": 1.0}
_NEGATIVE = {"0", "false"}


def _observe(y: str, p: str, score: dict) -> tuple | None:
    """What a record with per-class scores adds beyond its confusion-matrix cell:
    ``(log loss, Brier score, confidence in the predicted class or None, ((class, score, is the true
    class), ...))``."""
    probabilities = {}
    for name, q in score.items():
        if isinstance(q, (int, float)) and not isinstance(q, bool):
            probabilities[_score_class(name)] = float(q)
    if not probabilities:
        return None
    p_true = min(max(probabilities.get(y, 0.0), _EPS), 1 - _EPS)
    if len(probabilities) <= 2 and set(probabilities) <= _NEGATIVE | set(_POSITIVE):
        p1 = probabilities.get("1", probabilities.get("true", 0.0))
        brier = (p1 - (y in _POSITIVE)) ** 2
    else:
        brier = sum((q - (k == y)) ** 2 for k, q in probabilities.items()) + (y not in probabilities)
    return (-math.log(p_true), brier, probabilities.get(p),
            tuple((cls, q, cls == y) for cls, q in probabilities.items()))


def add(state: ClassificationState, label: Any, prediction: Any, score: Any) -> None:
    """Add one labelled prediction."""
    y, p = class_key(label), class_key(prediction)
    cell = f"{y}\x1f{p}"
    cm = state["cm"]
    cm[cell] = cm.get(cell, 0) + 1
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        p1 = float(score)  # a binary model's P(class 1): the common case, no observation tuple built
        positive = y in _POSITIVE
        _add_probabilities(state, y, p, -math.log(min(max(p1 if positive else 1.0 - p1, _EPS), 1 - _EPS)),
                           (p1 - positive) ** 2, p1 if p in _POSITIVE else (1.0 - p1 if p in _NEGATIVE else None))
        _count_score(state, "1", p1, positive)
        return
    observation = _observe(y, p, score) if isinstance(score, dict) else None
    if observation is None:
        return
    loss, brier, confidence, auc_scores = observation
    _add_probabilities(state, y, p, loss, brier, confidence)
    for cls, q, is_true in auc_scores:
        _count_score(state, cls, q, is_true)


def _add_probabilities(state: ClassificationState, y: str, p: str, loss: float, brier: float,
                       confidence: float | None) -> None:
    """Log loss, Brier score and the calibration bin of one scored record."""
    add_to_sum(state["ll"], loss)
    add_to_sum(state["br"], brier)
    if confidence is not None:
        cell_bin = state["ece"][min(int(confidence * ECE_BINS), ECE_BINS - 1)]
        correct = y == p
        cell_bin[0] += 1
        cell_bin[1] += confidence
        cell_bin[2] += correct
        try:  # the parts the ECE guardrail's variance needs (a bin of an older state has none)
            cell_bin[3] += confidence * confidence
            if correct:
                cell_bin[4] += confidence
        except IndexError:
            pass


def _count_score(state: ClassificationState, cls: str, q: float, is_true: bool) -> None:
    """One score of ``cls`` for its AUC; past MAX_DISTINCT_SCORES distinct scores, on a grid."""
    auc = state["auc"]
    scores = auc.get(cls)
    if scores is None:
        scores = auc[cls] = {}
    key = _grid(q, state.get("grid", COARSE_GRID)) if state["coarse"] else repr(q)
    counts = scores.get(key)
    if counts is None:
        counts = scores[key] = [0, 0]
        if len(scores) > MAX_DISTINCT_SCORES and not state["coarse"]:
            counts[0 if is_true else 1] += 1
            _coarsen(state)
            return
    counts[0 if is_true else 1] += 1


def _grid(score: float, grid: float = COARSE_GRID) -> str:
    return repr(round(round(score / grid) * grid, 6))


def _coarsen(state: ClassificationState, grid: float = COARSE_GRID) -> None:
    state["coarse"] = True
    if grid != COARSE_GRID:
        state["grid"] = grid
    for cls, scores in state["auc"].items():
        coarse: dict[str, ScoreCounts] = {}
        for key, (pos, neg) in scores.items():
            counts = coarse.setdefault(_grid(float(key), grid), [0, 0])
            counts[0] += pos
            counts[1] += neg
        state["auc"][cls] = coarse


def merge(a: ClassificationState, b: ClassificationState) -> ClassificationState:
    merge_counts(a["cm"], b["cm"])
    merge_sum(a["ll"], b["ll"])
    merge_sum(a["br"], b["br"])
    for mine, theirs in zip(a["ece"], b["ece"]):
        mine[0] += theirs[0]
        mine[1] += theirs[1]
        mine[2] += theirs[2]
        if len(mine) > 3 and len(theirs) > 3:
            mine[3] += theirs[3]
            mine[4] += theirs[4]
        elif theirs[0]:
            del mine[3:]  # older records without those parts: the sums would not cover them
    if b["coarse"] and not a["coarse"]:
        _coarsen(a, b.get("grid", COARSE_GRID))
    grid = a.get("grid", COARSE_GRID)
    for cls, scores in b["auc"].items():
        target = a["auc"].setdefault(cls, {})
        for key, (pos, neg) in scores.items():
            if a["coarse"]:
                key = _grid(float(key), grid)
            counts = target.setdefault(key, [0, 0])
            counts[0] += pos
            counts[1] += neg
    return a


def confusion_matrix(state: ClassificationState) -> metrics.ConfusionMatrix:
    cm = metrics.ConfusionMatrix()
    for cell, count in state["cm"].items():
        y, p = cell.split("\x1f")
        cm.update(orjson.loads(y), orjson.loads(p), w=count)
    return cm


def _auc(scores: dict[str, ScoreCounts]) -> tuple[float | None, float]:
    """Exact AUC of one class (ties count one half) and the coarsening error bound."""
    positives = sum(c[0] for c in scores.values())
    negatives = sum(c[1] for c in scores.values())
    if positives == 0 or negatives == 0:
        return None, 0.0
    area = 0.0
    ties = 0.0
    negatives_below = 0
    for _, (pos, neg) in sorted(((float(k), v) for k, v in scores.items())):
        area += pos * (negatives_below + 0.5 * neg)
        ties += pos * neg
        negatives_below += neg
    total = positives * negatives
    return area / total, 0.5 * ties / total


#: Score bins of the AUC guardrail's view of the score map (:func:`score_bins`).
AUC_BINS = 200


def score_bins(state: ClassificationState) -> dict[str, list[int]]:
    """Each class's scores in :data:`AUC_BINS` equal bins over [0, 1] (scores outside are clipped):
    ``[positives per bin..., negatives per bin...]``. Small and mergeable by addition, for the AUC
    guardrail, where the exact map can hold thousands of distinct scores.

    >>> state = new_state()
    >>> for y, s in [(1, 0.9), (0, 0.2), (1, 0.4)]: add(state, y, y, s)
    >>> bins = score_bins(state)["1"]; bins[180], bins[80], bins[AUC_BINS + 40]
    (1, 1, 1)
    """
    binned: dict[str, list[int]] = {}
    for cls, scores in state["auc"].items():
        if not scores:
            binned[cls] = [0] * (2 * AUC_BINS)
            continue
        keys = np.fromiter(map(float, scores), float, len(scores))
        counts = np.array(list(scores.values()), dtype=np.int64).reshape(-1, 2)
        index = np.clip((keys * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)
        pos = np.bincount(index, weights=counts[:, 0], minlength=AUC_BINS)
        neg = np.bincount(index, weights=counts[:, 1], minlength=AUC_BINS)
        binned[cls] = [int(x) for x in np.concatenate([pos, neg])]
    return binned


def wrong(state: ClassificationState | SlimClassification | None) -> tuple[int, int]:
    """(wrong predictions, labelled predictions) of a classification state (``None``: none)."""
    if not state:
        return 0, 0
    n = correct = 0
    for cell, count in state["cm"].items():
        y, p = cell.split("\x1f")
        n += count
        correct += count if y == p else 0
    return n - correct, n


def is_binary(state: ClassificationState) -> bool:
    classes = {part for cell in state["cm"] for part in cell.split("\x1f")}
    return classes <= {"0", "1", "true", "false"}


def compute(state: ClassificationState, task: str) -> dict[str, float]:
    """Metric name -> value (metrics that are undefined for the data so far are left out)."""
    values: dict[str, float] = {}
    if not state["cm"]:
        return values
    cm = confusion_matrix(state)
    values["accuracy"] = metrics.Accuracy(cm=cm).get()
    if task == "binary":
        positive = True if any("true" in cell for cell in state["cm"]) else 1
        values["precision"] = metrics.Precision(cm=cm, pos_val=positive).get()
        values["recall"] = metrics.Recall(cm=cm, pos_val=positive).get()
        values["f1"] = metrics.F1(cm=cm, pos_val=positive).get()
    else:
        values["precision"] = metrics.MacroPrecision(cm=cm).get()
        values["recall"] = metrics.MacroRecall(cm=cm).get()
        values["f1"] = metrics.MacroF1(cm=cm).get()
    if state["ll"][0]:
        values["log_loss"] = mean_of(state["ll"])
        values["brier"] = mean_of(state["br"])
    n = sum(b[0] for b in state["ece"])
    if n:
        values["ece"] = sum(abs(b[2] - b[1]) for b in state["ece"] if b[0]) / n
    if task == "binary":
        positive_key = "1" if "1" in state["auc"] else "true"
        auc, error = _auc(state["auc"].get(positive_key, {}))
    else:
        per_class = [_auc(scores) for scores in state["auc"].values()]
        defined = [(a, e) for a, e in per_class if a is not None]
        auc = sum(a for a, _ in defined) / len(defined) if defined else None
        error = max((e for _, e in defined), default=0.0) if state["coarse"] else 0.0
    if auc is not None:
        values["roc_auc"] = auc
        values["roc_auc_max_error"] = error if state["coarse"] else 0.0
    return values

"""Real models on datasets that ship with scikit-learn, serving as baseline and a weaker canary.

Each task gives, per row, the label and each version's prediction and score as they would travel in
an ``InferenceResponse`` (JSON types: ints for classes, floats for regression, lists for ranking).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Served:
    task: str
    labels: list[Any]
    features: list[dict[str, float]]
    predictions: dict[str, list[Any]]  # version -> per row
    scores: dict[str, list[Any]]


def _features(x: np.ndarray, names: list[str]) -> list[dict[str, float]]:
    return [{n: float(v) for n, v in zip(names[:4], row[:4])} for row in x]


@cache
def served(task: str) -> Served:
    from sklearn import datasets
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if task in ("binary", "multiclass", "ranking"):
        data = datasets.load_breast_cancer() if task == "binary" else datasets.load_digits()
        x = StandardScaler().fit_transform(data.data)
        y = data.target
        half = len(y) // 2
        versions = {"v1": slice(None), "v2": slice(0, 3)}  # the canary sees only three features
        predictions: dict[str, list] = {}
        scores: dict[str, list] = {}
        for version, columns in versions.items():
            model = LogisticRegression(max_iter=2000).fit(x[:half, columns], y[:half])
            proba = model.predict_proba(x[:, columns])
            if task == "binary":
                predictions[version] = [int(p) for p in (proba[:, 1] >= 0.5)]
                scores[version] = [float(p) for p in proba[:, 1]]
            elif task == "multiclass":
                predictions[version] = [int(model.classes_[i]) for i in proba.argmax(axis=1)]
                scores[version] = [{str(int(c)): float(p) for c, p in zip(model.classes_, row)} for row in proba]
            else:  # rank the ten digits by probability; the relevant item is the true digit
                order = np.argsort(-proba, axis=1, kind="stable")
                predictions[version] = [[f"d{int(model.classes_[i])}" for i in row] for row in order]
                scores[version] = [None] * len(y)
        labels = [int(v) for v in y] if task != "ranking" else [[f"d{int(v)}"] for v in y]
        return Served(task, labels, _features(data.data, list(data.feature_names)), predictions, scores)
    data = datasets.load_diabetes()
    x, y = data.data, data.target
    half = len(y) // 2
    predictions = {}
    for version, columns in {"v1": slice(None), "v2": slice(0, 2)}.items():
        model = LinearRegression().fit(x[:half, columns], y[:half])
        predictions[version] = [float(p) for p in model.predict(x[:, columns])]
    return Served("regression", [float(v) for v in y], _features(x, list(data.feature_names)), predictions,
                  {v: [None] * len(y) for v in predictions})


def sklearn_metrics(task: str, labels: list, predictions: list, scores: list, ks=(5, 10)) -> dict[str, float]:
    """The same metrics computed offline, independently (scikit-learn, and plain numpy where it has none)."""
    from sklearn import metrics as sk

    out: dict[str, float] = {}
    if task == "binary":
        y, p, s = np.array(labels), np.array(predictions), np.array(scores)
        out |= {"accuracy": sk.accuracy_score(y, p), "precision": sk.precision_score(y, p),
                "recall": sk.recall_score(y, p), "f1": sk.f1_score(y, p), "log_loss": sk.log_loss(y, s),
                "roc_auc": sk.roc_auc_score(y, s), "brier": sk.brier_score_loss(y, s)}
        confidence = np.where(p == 1, s, 1 - s)
        out["ece"] = _ece(confidence, (p == y).astype(float))
    elif task == "multiclass":
        classes = sorted({int(k) for row in scores for k in row})
        y, p = np.array(labels), np.array(predictions)
        proba = np.array([[row[str(c)] for c in classes] for row in scores])
        out |= {"accuracy": sk.accuracy_score(y, p),
                "precision": sk.precision_score(y, p, average="macro", zero_division=0),
                "recall": sk.recall_score(y, p, average="macro", zero_division=0),
                "f1": sk.f1_score(y, p, average="macro", zero_division=0),
                "log_loss": sk.log_loss(y, proba, labels=classes),
                "roc_auc": sk.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes),
                "brier": float(np.mean(np.sum((proba - np.eye(len(classes))[y]) ** 2, axis=1)))}
        confidence = proba[np.arange(len(p)), p]
        out["ece"] = _ece(confidence, (p == y).astype(float))
    elif task == "regression":
        y, p = np.array(labels), np.array(predictions)
        out |= {"mae": sk.mean_absolute_error(y, p), "rmse": sk.root_mean_squared_error(y, p),
                "mape": sk.mean_absolute_percentage_error(y, p), "r2": sk.r2_score(y, p)}
    else:
        items = sorted({item for row in predictions for item in row})
        relevance = np.array([[1.0 if item in rel else 0.0 for item in items] for rel in labels])
        for k in ks:
            hits = [[item in rel for item in ranked[:k]] for rel, ranked in zip(labels, predictions)]
            out[f"precision@{k}"] = float(np.mean([sum(h) / k for h in hits]))
            out[f"recall@{k}"] = float(np.mean([sum(h) / len(rel) for h, rel in zip(hits, labels)]))
            # sklearn's ndcg_score ranks items by a score: give each item its reversed rank.
            ranked_scores = np.array([[len(items) - ranked.index(item) for item in items] for ranked in predictions])
            out[f"ndcg@{k}"] = sk.ndcg_score(relevance, ranked_scores, k=k)
        out["mrr"] = float(np.mean([1.0 / (ranked.index(rel[0]) + 1) for rel, ranked in zip(labels, predictions)]))
    return {k: float(v) for k, v in out.items()}


def _ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() / len(confidence) * abs(correct[members].mean() - confidence[members].mean())
    return float(total)

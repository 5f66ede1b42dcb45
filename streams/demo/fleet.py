"""The demo's serving fleet: real scikit-learn models on the breast-cancer dataset bundled with it.

- ``v1``, the baseline: standardised logistic regression.
- ``v2``, the bad candidate: the same model, but its training pipeline read the three *area* features
  in cm² while serving sends them in mm² (a unit bug nobody saw offline, since the offline evaluation
  ran through the same buggy pipeline). Served, it calls almost everything malignant.
- ``v3``, the good candidate: a more regularised logistic regression, as accurate as ``v1``.

Models are trained on one half of the data; the demo's requests are drawn from the other half, and
each version's answers for that half are computed by the real models once, up front, so the traffic
loop can serve hundreds of requests a second on a shared core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AREA_FEATURES = ("mean area", "area error", "worst area")


@dataclass(frozen=True)
class Fleet:
    feature_names: list[str]
    features: np.ndarray          # the served rows (held out from training)
    labels: np.ndarray            # 1 = benign, as in the dataset
    predictions: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]  # probability of class 1

    def accuracy(self, version: str) -> float:
        return float((self.predictions[version] == self.labels).mean())

    def row_features(self, row: int) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.feature_names, self.features[row])}


def train_fleet(seed: int = 0) -> Fleet:
    """Train the three versions and answer every served row with each."""
    try:
        from sklearn import datasets
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise RuntimeError("the demo's models need scikit-learn: pip install 'shadowcanary[demo]'") from None
    data = datasets.load_breast_cancer()
    x, y = data.data, data.target
    order = np.random.default_rng(seed).permutation(len(y))
    train, serve = order[: len(y) // 2], order[len(y) // 2:]
    names = [str(n) for n in data.feature_names]
    buggy = x[train].copy()
    for feature in AREA_FEATURES:  # the unit bug: cm² in training, mm² when served
        buggy[:, names.index(feature)] /= 100.0
    models = {
        "v1": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x[train], y[train]),
        "v2": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(buggy, y[train]),
        "v3": make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000)).fit(x[train], y[train]),
    }
    scores = {v: m.predict_proba(x[serve])[:, 1] for v, m in models.items()}
    return Fleet(feature_names=[n.replace(" ", "_") for n in names], features=x[serve], labels=y[serve],
                 predictions={v: (s >= 0.5).astype(int) for v, s in scores.items()}, scores=scores)

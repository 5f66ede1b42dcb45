"""What flows per model version, learned from closed windows, and alerts on integration mistakes.

A service that logs its class predictions as strings (``"1"``) while its labels are numbers (``1``)
gets accuracy 0 in every window; a candidate that returns class names where the baseline returns
indices is rolled back "for accuracy". Neither is a model that is always wrong: both are broken
integrations, and this monitor says so.

Per model and version it learns, from each closed window's merged state (the same
:mod:`~evaluators.metrics.version` state the window's snapshot is built from), the **shape** of what
flows: the predictions' JSON types and classes, the form of the scores of labelled predictions
(a number, a map per class, or none), the labels' JSON types and values, and the request features'
names, kinds (number or category) and how often each is present. Classes and values are kept up to
``MAX_VALUES`` each. Then, once a version has ``min_samples`` (labelled predictions for the first
check, responses for the others), it alerts (kind ``schema``, naming the model, the version and
both shapes, with a hint) when:

- a version's **predictions and labels never share a value**, or share one only once their JSON
  type is set aside (``"1"`` and ``1``, ``true`` and ``1``);
- a **candidate** (a canary or shadow) differs from its model's **baseline** (the primary) in its
  predictions' JSON types, in its classes (a tenth or more of its predictions in classes the
  baseline never predicts: a new model may predict a rare class the old one missed, so a few are not
  a mistake), or in the form of its scores;
- requests served by a candidate **lack features** the baseline's requests carry (present in at
  least 90% of the baseline's, at most 10% of the candidate's), or carry one with **another kind**.

Each condition alerts once, and again after ``cooldown_ms`` of event time if it still holds. The
state is JSON, saved by the merging owner with the drift monitor's, so a new owner does not repeat
what was told. Pure: no Kafka.

>>> from evaluators.facts import JoinedRecord
>>> from evaluators.metrics import MetricsConfig, version as vm
>>> config = MetricsConfig(tasks={"m": "binary"})
>>> window = vm.new_state()
>>> vm.add_facts(window, [JoinedRecord("m", "v1", "primary", f"r{i}", 0, 5, str(i % 2), None, i % 2, {},
...                                    3.0, None, None) for i in range(60)], config)
>>> monitor = ShapeMonitor(min_samples=50)
>>> [alert] = monitor.observe("m", 0, {"v1": ("primary", window)})
>>> alert.kind, alert.version, alert.message.split(": ")[1][:42]
('schema', 'v1', 'predictions "0", "1" (string), labels 0, 1')
>>> monitor.observe("m", 60_000, {"v1": ("primary", window)})  # told once
[]
"""

from __future__ import annotations

import uuid
from typing import Any, TypedDict

import orjson

from evaluators.metrics.features import PREDICTION
from evaluators.metrics.version import SlimState, VersionState
from evaluators.windows import SEP
from schemas.monitoring import Alert

_ALERT_NAMESPACE = uuid.UUID("4a5e7c8f-1f0b-4f55-8d1d-6b3e9a0c2d71")
#: Distinct classes (and label values) a shape keeps.
MAX_VALUES = 50
#: A feature the baseline carries in at least this share of its requests, and the candidate in at
#: most ``RARELY_PRESENT``, is missing from the candidate's requests.
USUALLY_PRESENT = 0.9
RARELY_PRESENT = 0.1
#: Share of a candidate's predictions in classes its baseline never predicts that makes its class
#: set differ.
NEW_CLASS_SHARE = 0.1
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
               dict: "object", type(None): "null"}


class FeatureShape(TypedDict):
    kinds: list[str]  # "number", "category"
    seen: int  # requests (served by this version) that carried it
    requests: int  # requests with features this version served since the feature was first seen


class VersionShape(TypedDict):
    """What one version's windows showed so far."""

    role: str
    responses: int
    prediction_types: list[str]
    classes: dict[str, int]  # class (its JSON text) -> predictions, at most MAX_VALUES classes
    score_forms: list[str]  # "number", "per-class", "none" (of labelled classifications)
    labelled: int  # labelled classifications
    label_types: list[str]
    label_values: list[str]  # JSON texts, at most MAX_VALUES
    labelled_predictions: list[str]  # the predictions labels were compared with, at most MAX_VALUES
    matched: int  # labelled classifications whose prediction equals the label
    served: int  # requests with features this version answered
    features: dict[str, FeatureShape]


def new_shape(role: str) -> VersionShape:
    return {"role": role, "responses": 0, "prediction_types": [], "classes": {}, "score_forms": [],
            "labelled": 0, "label_types": [], "label_values": [], "labelled_predictions": [], "matched": 0,
            "served": 0, "features": {}}


def _json_type(text: str) -> str:
    return _JSON_TYPES.get(type(orjson.loads(text)), "object")


def _add_to(values: list[str], new: Any) -> None:
    if new not in values and len(values) < MAX_VALUES:
        values.append(new)


def learn(shape: VersionShape, state: VersionState) -> None:
    """Add one closed window's metric state (with its feature summaries) to ``shape``."""
    shape["responses"] += state["n"] - state["err"]
    types, classes = prediction_shape(state)
    for kind in types:
        _add_to(shape["prediction_types"], kind)
    for text, count in classes.items():
        if text in shape["classes"] or len(shape["classes"]) < MAX_VALUES:
            shape["classes"][text] = shape["classes"].get(text, 0) + count
    cls = state["cls"]
    if cls:
        labelled = sum(cls["cm"].values())
        shape["labelled"] += labelled
        for cell, count in cls["cm"].items():
            label, prediction = cell.split(SEP)
            _add_to(shape["label_types"], _json_type(label))
            _add_to(shape["label_values"], label)
            _add_to(shape["labelled_predictions"], prediction)
            if label == prediction:
                shape["matched"] += count
        scored = cls["ll"][0]
        if scored:
            _add_to(shape["score_forms"], "number" if set(cls["auc"]) <= {"1"} else "per-class")
        if scored < labelled:
            _add_to(shape["score_forms"], "none")
    summaries = {name: summary for name, summary in state.get("ft", {}).items() if name != PREDICTION}
    served = max((summary["n"] for summary in summaries.values()), default=0)
    shape["served"] += served
    for name, summary in summaries.items():
        feature = shape["features"].setdefault(name, {"kinds": [], "seen": 0, "requests": 0})
        feature["requests"] += served
        feature["seen"] += summary["n"] - summary["miss"]
        if summary["num"] and summary["num"]["n"]:
            _add_to(feature["kinds"], "number")
        if summary["cat"]:
            _add_to(feature["kinds"], "category")


def prediction_shape(state: VersionState | SlimState) -> tuple[list[str], dict[str, int]]:
    """The JSON types and classes of the predictions a metric state (full or slim) counted."""
    types: list[str] = []
    classes = state.get("pc", {})
    for text in classes:
        _add_to(types, _json_type(text))
    if state.get("pm", [0])[0]:
        _add_to(types, "number")
    if "rk" in state and state["rk"]:
        _add_to(types, "array")
    return types, dict(classes)


def compare_predictions(vs: str, candidate: tuple[list[str], dict[str, int]],
                        baseline: tuple[list[str], dict[str, int]]) -> list[tuple[str, str, str]]:
    """A candidate's predictions against the baseline's (each: JSON types, class -> count):
    ``(condition, message, hint)`` for another JSON type, or classes the baseline never predicts
    carrying ``NEW_CLASS_SHARE`` of the candidate's predictions."""
    (types, classes), (base_types, base_classes) = candidate, baseline
    if sorted(types) != sorted(base_types):
        return [("prediction-type", f"output schema of {vs}: its predictions are {'/'.join(sorted(types))}, "
                 f"the baseline's {'/'.join(sorted(base_types))}.",
                 "The candidate answers in another form: fix its output before judging it.")]
    if classes and base_classes:
        new = {text: n for text, n in classes.items() if text not in base_classes}
        if sum(new.values()) >= NEW_CLASS_SHARE * sum(classes.values()):
            return [("classes", f"output schema of {vs}: it predicts classes the baseline never does "
                     f"({_listed(new)}; the baseline's: {_listed(base_classes)}).",
                     "Check the candidate's class names and order.")]
    return []


def describe(version: str, shape: VersionShape) -> str:
    """One line of what a version's traffic looked like (``rollout status``, reports).

    >>> shape = new_shape("canary"); shape.update(responses=300, prediction_types=["string"],
    ...     classes={'"benign"': 200, '"malignant"': 100}, score_forms=["number"], labelled=280,
    ...     label_types=["integer"], label_values=["0", "1"])
    >>> describe("v2", shape)
    'v2 (canary, 300 answers): predictions string ("benign", "malignant"), scores number, labels integer (0, 1)'
    """
    parts = [f"predictions {'/'.join(shape['prediction_types']) or 'none'}"
             + (f" ({_listed(shape['classes'])})" if shape["classes"] else "")]
    if shape["score_forms"]:
        parts.append(f"scores {'/'.join(shape['score_forms'])}")
    if shape["labelled"]:
        parts.append(f"labels {'/'.join(shape['label_types'])} ({_listed(shape['label_values'])})")
    features = [f"{name} {'/'.join(f['kinds'])}" for name, f in sorted(shape["features"].items()) if f["kinds"]]
    if features:
        parts.append(f"features {', '.join(features[:6])}" + (", ..." if len(features) > 6 else ""))
    return f"{version} ({shape['role']}, {shape['responses']:,} answers): {', '.join(parts)}"


def _normalized(text: str) -> Any:
    """A JSON value with its type set aside: ``"1"``, ``1``, ``1.0`` and ``true`` are alike."""
    value = orjson.loads(text)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return 1.0 if lowered == "true" else 0.0
        try:
            return float(lowered)
        except ValueError:
            return value
    if isinstance(value, (bool, int, float)):
        return float(value)
    return text


def _listed(texts: list[str] | dict[str, int]) -> str:
    shown = sorted(texts)[:8]
    return ", ".join(shown) + (", ..." if len(texts) > len(shown) else "")


class ShapeMonitor:
    """``min_samples``: labelled predictions (first check) or responses and requests (the others)
    a version needs before it is judged; ``cooldown_ms``: event time before a condition that still
    holds alerts again; ``state``: what :meth:`to_state` gave."""

    def __init__(self, min_samples: int = 200, cooldown_ms: int = 3_600_000,
                 state: dict[str, Any] | None = None) -> None:
        self.min_samples = min_samples
        self.cooldown_ms = cooldown_ms
        state = state or {}
        #: model -> version -> shape.
        self.shapes: dict[str, dict[str, VersionShape]] = state.get("shapes", {})
        #: condition id -> event time it last alerted.
        self.told: dict[str, int] = state.get("told", {})
        #: "model\x1fversion" -> what differs in a candidate's output and inputs from the baseline's,
        #: as of the last window (present once the candidate and the baseline have enough samples).
        self.judged: dict[str, list[str]] = state.get("judged", {})

    def observe(self, model: str, start: int, versions: dict[str, tuple[str, VersionState]]) -> list[Alert]:
        """One closed window of ``model`` (``versions``: version -> (role, merged state), as the
        drift monitor takes them). Returns the alerts to publish."""
        shapes = self.shapes.setdefault(model, {})
        for version, (role, state) in versions.items():
            shape = shapes.setdefault(version, new_shape(role))
            shape["role"] = role
            learn(shape, state)
        alerts: list[Alert] = []
        for version, shape in sorted(shapes.items()):
            if self._baseline_of(shape, shapes) is not None:
                self.judged[f"{model}{SEP}{version}"] = [
                    message for _, message, _ in self._against_baseline(model, version, shape, shapes)]
            for condition, message, hint in self._conditions(model, version, shape, shapes):
                alert = self._tell(model, version, condition, message + " " + hint, start)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _conditions(self, model: str, version: str, shape: VersionShape,
                    shapes: dict[str, VersionShape]) -> list[tuple[str, str, str]]:
        """The conditions that hold for ``version``: a candidate's differences from the baseline
        first, then its predictions against its labels (unless its output differs from the
        baseline's: then that is why they never match)."""
        found = self._against_baseline(model, version, shape, shapes)
        if any(condition in ("prediction-type", "classes") for condition, _, _ in found):
            return found
        if shape["labelled"] >= self.min_samples and shape["matched"] == 0:
            predictions = {_normalized(text) for text in shape["labelled_predictions"]}
            labels = {_normalized(text) for text in shape["label_values"]}
            kinds = sorted({_json_type(text) for text in shape["labelled_predictions"]})
            both = (f"predictions {_listed(shape['labelled_predictions'])} ({'/'.join(kinds)}), "
                    f"labels {_listed(shape['label_values'])} ({'/'.join(shape['label_types'])})")
            if predictions & labels:
                found.append(("type-mismatch", f"predictions and labels of {model} {version} differ only by "
                              f"their JSON type: {both}; every labelled prediction counts as wrong.",
                              "Log predictions and labels as the same JSON type, or map the labels "
                              "(label_map in the rollout spec or the worker's settings)."))
            else:
                found.append(("disjoint", f"predictions and labels of {model} {version} never share a value: "
                              f"{both}.", "Check that the label pipeline and the service name classes alike."))
        return found

    def _baseline_of(self, shape: VersionShape, shapes: dict[str, VersionShape]) -> tuple[str, VersionShape] | None:
        """The baseline ``shape`` is compared with: None unless ``shape`` is a candidate's and both
        have enough responses."""
        baseline = self._baseline(shapes)
        if (baseline is None or shape["role"] == "primary" or shape is baseline[1]
                or min(shape["responses"], baseline[1]["responses"]) < self.min_samples):
            return None
        return baseline

    def _against_baseline(self, model: str, version: str, shape: VersionShape,
                          shapes: dict[str, VersionShape]) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        baseline = self._baseline_of(shape, shapes)
        if baseline is None:
            return found
        base_version, base = baseline
        vs = f"{model} {version} ({shape['role']}) against the baseline {base_version}"
        found += compare_predictions(vs, (shape["prediction_types"], shape["classes"]),
                                     (base["prediction_types"], base["classes"]))
        if (shape["labelled"] >= self.min_samples and base["labelled"] >= self.min_samples
                and sorted(shape["score_forms"]) != sorted(base["score_forms"])):
            found.append(("score-form", f"output schema of {vs}: its scores are "
                          f"{'/'.join(sorted(shape['score_forms']))}, the baseline's "
                          f"{'/'.join(sorted(base['score_forms']))}.",
                          "A score of another form changes log loss, AUC and calibration."))
        if shape["served"] < self.min_samples:
            return found
        for name, feature in sorted(base["features"].items()):
            if feature["requests"] < self.min_samples or feature["seen"] < USUALLY_PRESENT * feature["requests"]:
                continue
            mine = shape["features"].get(name)
            present = mine["seen"] / mine["requests"] if mine and mine["requests"] else 0.0
            if present <= RARELY_PRESENT:
                found.append((f"feature-missing:{name}", f"requests served by {vs} lack the feature {name!r} "
                              f"(in {present:.0%} of them; in {feature['seen'] / feature['requests']:.0%} "
                              f"of the baseline's).", "Both versions should be judged on the same inputs."))
            elif mine and mine["kinds"] and feature["kinds"] and not set(mine["kinds"]) & set(feature["kinds"]):
                found.append((f"feature-kind:{name}", f"requests served by {vs} carry the feature {name!r} as "
                              f"{'/'.join(mine['kinds'])}, the baseline's as {'/'.join(feature['kinds'])}.",
                              "Both versions should be judged on the same inputs."))
        return found

    @staticmethod
    def _baseline(shapes: dict[str, VersionShape]) -> tuple[str, VersionShape] | None:
        """The model's primary with the most responses."""
        primaries = [(shape["responses"], version) for version, shape in shapes.items() if shape["role"] == "primary"]
        if not primaries:
            return None
        version = max(primaries)[1]
        return version, shapes[version]

    def _tell(self, model: str, version: str, condition: str, message: str, start: int) -> Alert | None:
        key = f"{model}{SEP}{version}{SEP}{condition}"
        last = self.told.get(key)
        if last is not None and start - last < self.cooldown_ms:
            return None
        self.told[key] = start
        return Alert(alert_id=uuid.uuid5(_ALERT_NAMESPACE, f"{key}{SEP}{start}"), model=model, version=version,
                     severity="critical", kind="schema", ts=start, message=message)  # type: ignore[arg-type]  # validated from epoch ms

    def shapes_of(self, model: str) -> dict[str, VersionShape]:
        """The shapes learned for ``model``'s versions (for reports and status)."""
        return self.shapes.get(model, {})

    def differences(self) -> dict[tuple[str, str], list[str]]:
        """Per (model, candidate version) judged so far, what differs in its output and inputs from
        its baseline's (empty: nothing); what the ``schema_compatible`` guardrail reads."""
        return {(key.split(SEP)[0], key.split(SEP)[1]): list(found) for key, found in self.judged.items()}

    def to_state(self) -> dict[str, Any]:
        return {"shapes": self.shapes, "told": self.told, "judged": self.judged}


__all__ = ["ShapeMonitor", "VersionShape", "compare_predictions", "describe", "learn", "new_shape",
           "prediction_shape"]

"""One model version's metric state (over a window, or since it was first seen), fed by join facts.

Label-free numbers are there at once: responses, errors, latency quantiles, the prediction
distribution, and for a shadow version its agreement with the primary on the same requests.
Labelled numbers follow the model's task (classification, regression or ranking) as labels join,
with business outcomes (count, sum and mean per labelled request of each KPI) and the label delay.

>>> from evaluators.facts import ResponseFact
>>> config = MetricsConfig(tasks={"m": "binary"})
>>> state = new_state()
>>> add_fact(state, ResponseFact("m", "v2", "canary", 0, 12.0, None, 1), config)
>>> compute(state, "m", config)["error_rate"]
0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, NotRequired, TypedDict, final

import orjson

from evaluators.facts import AgreementFact, AttributedRecord, Expired, Fact, JoinedRecord, ResponseFact, ServedFeatures
from evaluators.metrics import classification, ranking, regression, sketch
from evaluators.metrics import features as feature_summaries
from evaluators.metrics.classification import ClassificationState, SlimClassification
from evaluators.metrics.features import FeatureSummary
from evaluators.metrics.ranking import RankingState
from evaluators.metrics.regression import RegressionState
from evaluators.metrics.sketch import Sketch
from evaluators.metrics.sums import RunningSum, counts_below, mean_of, merge_counts, merge_sum, new_sum, squares
from evaluators.metrics.sums import add as add_to_sum
from schemas.metric_names import Task

RANK_OVERLAP_K = 10
_KIND = {"binary": "classification", "multiclass": "classification", "regression": "regression",
         "ranking": "ranking"}


#: Label maps that are coercions rather than tables: every label as a JSON string, or as a number.
LABEL_COERCIONS = ("string", "number")


def parse_label_map(text: str) -> dict[str, Any] | str:
    """A label map as written on a command line: a coercion's name or a JSON object.

    >>> parse_label_map("string"), parse_label_map('{"fraud": 1}')
    ('string', {'fraud': 1})
    >>> parse_label_map("[1]")
    Traceback (most recent call last):
    ValueError: not a JSON object: '[1]'
    """
    if text in LABEL_COERCIONS:
        return text
    try:
        table = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"neither {' nor '.join(LABEL_COERCIONS)} nor a JSON object: {exc}") from None
    if not isinstance(table, dict):
        raise ValueError(f"not a JSON object: {text!r}")
    return table


@dataclass(frozen=True)
class MetricsConfig:
    """How facts become metrics: each model's task (else inferred per record from the prediction's
    JSON type: a list is ranking, a float regression, anything else classification), the ``k`` of
    ranking metrics, the window size, and each model's label map. (How drift is judged is the
    drift monitor's :class:`~evaluators.drift.config.DriftConfig`.)

    A **label map** turns labels into what the predictions are compared with, for teams whose label
    pipeline cannot change: a table (``{"fraud": 1, "legit": 0}``; a label found in it, as itself
    when a string or as its JSON text otherwise, is replaced) or a coercion, ``"string"`` (``1`` ->
    ``"1"``) or ``"number"`` (``"1"`` -> ``1``; a label that is no number is kept).

    >>> config = MetricsConfig(label_maps={"m": {"fraud": 1, "legit": 0}, "n": "string"})
    >>> config.map_label("m", "fraud"), config.map_label("m", "other"), config.map_label("n", 1)
    (1, 'other', '1')
    """

    tasks: dict[str, Task] = field(default_factory=dict)
    ks: tuple[int, ...] = ranking.DEFAULT_KS
    window_ms: int = 60_000
    label_maps: dict[str, dict[str, Any] | str] = field(default_factory=dict)
    #: Segments (:mod:`evaluators.segments`): model (``"*"``: any model not named) -> request
    #: attribute -> the most distinct values each partition keeps of it.
    segments: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The grid of the exact ROC AUC's score map from the start (None: exact until it is large);
    #: segment states use :data:`evaluators.segments.AUC_GRID`, to stay small.
    auc_grid: float | None = None

    def segments_of(self, model: str) -> dict[str, int]:
        """The attributes ``model``'s metrics are sliced by, with their caps."""
        found = self.segments.get(model)
        return found if found is not None else self.segments.get("*", {})

    def map_label(self, model: str, label: Any) -> Any:
        mapping = self.label_maps.get(model)
        if mapping is None:
            return label
        if mapping == "string":
            return label if isinstance(label, str) else classification.class_key(label)
        if mapping == "number":
            if isinstance(label, str):
                try:
                    number = float(label)
                except ValueError:
                    return label
                return int(number) if number.is_integer() else number
            return int(label) if isinstance(label, bool) else label
        if isinstance(mapping, str):  # not a coercion's name: the spec layer refuses any other
            return label
        key = label if isinstance(label, str) else classification.class_key(label)
        return mapping.get(key, label)

    def task_of(self, model: str, prediction: Any) -> str:
        task = self.tasks.get(model)
        if task is not None:
            return _KIND[task]
        if isinstance(prediction, list):
            return "ranking"
        if isinstance(prediction, float):
            return "regression"
        return "classification"


class Agreement(TypedDict):
    """A shadow version's agreement with the primary, over requests both answered with a prediction."""

    n: int  #: such requests
    eq: int  #: of them, those with the same prediction
    mad: RunningSum  #: absolute difference of the scores (else of numeric predictions)
    ro: RunningSum  #: shared share of the top :data:`RANK_OVERLAP_K` items of ranked predictions


@final
class VersionState(TypedDict):
    """One version's metric state: a window's, or a running total's since it was first seen. Plain
    JSON (the wire form of partials and the changelog), so the keys are short; each is named here."""

    n: int  #: responses
    err: int  #: failed responses (``error`` set)
    lab: int  #: labelled requests (joined records)
    exp: int  #: requests whose label timed out
    lat: Sketch  #: latency of the responses that carry one, ms
    delay: Sketch  #: label delay (label time minus request time), s
    pc: dict[str, int]  #: class predictions: class key (:func:`classification.class_key`) -> responses
    pm: RunningSum  #: float predictions
    ag: Agreement  #: agreement with the primary (shadow versions)
    oc: dict[str, RunningSum]  #: business outcome (KPI) -> its values over labelled requests
    cls: ClassificationState | None  #: classification metrics, once a labelled class prediction came
    reg: RegressionState | None  #: regression metrics, once a labelled float prediction came
    rk: RankingState | None  #: ranking metrics, once a labelled ranked prediction came
    ft: NotRequired[dict[str, FeatureSummary]]  #: feature and prediction distributions (windows only)


@final
class SlimState(TypedDict):
    """The part of a version's state the guardrails read (:func:`slim`), mergeable by :func:`add_slim`;
    the keys are :class:`VersionState`'s. Slim states saved by older versions may lack the
    not-required parts."""

    n: int
    err: int
    lab: int
    lat: Sketch
    delay: NotRequired[Sketch]
    cls: SlimClassification | None
    pc: NotRequired[dict[str, int]]
    pm: NotRequired[RunningSum]
    #: metric name -> the sums its guardrail's test reads (:func:`guardrail_sums`)
    sums: NotRequired[dict[str, Any]]
    #: segment (:func:`evaluators.segments.segment_id`) -> its slim state, when the version has segments
    seg: NotRequired[dict[str, SlimState]]


def new_state(features: bool = True) -> VersionState:
    """An empty state. ``features``: whether it keeps feature and prediction distributions (``ft``,
    for drift): windows do; running totals since a version was first seen do not need them."""
    state: VersionState = {"n": 0, "err": 0, "lab": 0, "exp": 0, "lat": sketch.new_sketch(),
                           "delay": sketch.new_sketch(), "pc": {}, "pm": new_sum(),
                           "ag": {"n": 0, "eq": 0, "mad": new_sum(), "ro": new_sum()},
                           "oc": {}, "cls": None, "reg": None, "rk": None}
    if features:
        state["ft"] = {}
    return state


def add_fact(state: VersionState, fact: Fact, config: MetricsConfig) -> None:
    """Add one fact to ``state``."""
    add_facts(state, (fact,), config)


def add_facts(state: VersionState, facts: list[Fact] | tuple[Fact, ...], config: MetricsConfig) -> None:
    """Add a run of facts to ``state``: the same state as :func:`add_fact` on each, in order. Each
    sketch and feature summary takes its run's values at once (in their order)."""
    latencies: list[float] = []
    delays: list[float] = []
    features = state.get("ft")
    pending_features: dict[str, list[Any]] = {}
    predictions: list[Any] = pending_features.setdefault(feature_summaries.PREDICTION, [])
    class_counts, prediction_sum = state["pc"], state["pm"]
    responses = errors = 0
    for fact in facts:
        if type(fact) is ResponseFact:
            responses += 1
            if fact.error is not None:
                errors += 1
                continue
            if fact.latency_ms is not None:
                latencies.append(fact.latency_ms)
            prediction = fact.prediction
            if features is not None and prediction is not None:
                if feature_summaries.PREDICTION not in features:
                    features[feature_summaries.PREDICTION] = feature_summaries.new_summary()
                predictions.append(prediction)
            if isinstance(prediction, float):
                add_to_sum(prediction_sum, prediction)
            elif prediction is not None and not isinstance(prediction, (list, dict)):
                key = classification.class_key(prediction)
                class_counts[key] = class_counts.get(key, 0) + 1
        elif type(fact) is JoinedRecord or type(fact) is AttributedRecord:  # the latter: segment states only
            delay = fact.label_ts_ms - fact.ts_ms
            delays.append(delay / 1000.0 if delay > 0 else 0.0)
            _add_joined(state, fact, config)
        elif type(fact) is ServedFeatures:
            if features is not None:
                feature_summaries.collect_features(features, fact.features, pending_features)
        elif type(fact) is Expired:
            state["exp"] += 1
        elif type(fact) is AgreementFact:
            _add_agreement(state, fact)
    state["n"] += responses
    state["err"] += errors
    if latencies:
        sketch.add_many(state["lat"], latencies)
    if delays:
        sketch.add_many(state["delay"], delays)
    if not predictions:
        del pending_features[feature_summaries.PREDICTION]
    if pending_features and features is not None:  # only collected when the state keeps features
        feature_summaries.add_collected(features, pending_features)


def _add_joined(state: VersionState, fact: JoinedRecord, config: MetricsConfig) -> None:
    """A joined record's counts, outcomes and task metrics (its label delay: ``add_facts``)."""
    state["lab"] += 1
    for kpi, value in fact.outcomes.items():
        add_to_sum(_outcome_sum(state["oc"], kpi), float(value))
    prediction = fact.prediction
    if fact.error is not None or prediction is None or fact.label is None:
        return  # a failed response has no prediction to judge; it counts in error_rate
    task = config.task_of(fact.model, prediction)
    if task == "classification":
        cls = state["cls"]
        if cls is None:
            cls = state["cls"] = classification.new_state(config.auc_grid)
        classification.add(cls, config.map_label(fact.model, fact.label), prediction, fact.score)
    elif task == "regression":
        if isinstance(fact.label, (int, float)) and isinstance(prediction, (int, float)):
            reg = state["reg"]
            if reg is None:
                reg = state["reg"] = regression.new_state()
            regression.add(reg, float(fact.label), float(prediction))
    else:
        rk = state["rk"]
        if rk is None:
            rk = state["rk"] = ranking.new_state()
        ranking.add(rk, fact.label, prediction, config.ks)


def _outcome_sum(outcomes: dict[str, RunningSum], kpi: str) -> RunningSum:
    running = outcomes.get(kpi)
    if running is None:
        running = outcomes[kpi] = new_sum()
    return running


def _add_agreement(state: VersionState, fact: AgreementFact) -> None:
    mine, theirs = fact.prediction, fact.primary_prediction
    if mine is None or theirs is None:
        return
    ag = state["ag"]
    ag["n"] += 1
    ag["eq"] += mine == theirs
    numeric = (isinstance(mine, (int, float)) and isinstance(theirs, (int, float))
               and not isinstance(mine, bool) and not isinstance(theirs, bool))
    if isinstance(fact.score, (int, float)) and isinstance(fact.primary_score, (int, float)):
        add_to_sum(ag["mad"], abs(float(fact.score) - float(fact.primary_score)))
    elif numeric:
        add_to_sum(ag["mad"], abs(float(mine) - float(theirs)))
    if isinstance(mine, list) and isinstance(theirs, list):
        top_mine, top_theirs = mine[:RANK_OVERLAP_K], theirs[:RANK_OVERLAP_K]
        size = max(len(top_mine), len(top_theirs))
        if size:
            shared = len({repr(i) for i in top_mine} & {repr(i) for i in top_theirs})
            add_to_sum(ag["ro"], shared / size)


class VersionCounts(NamedTuple):
    """A version state's exact counts."""

    responses: int
    errors: int
    labelled: int
    expired: int


def counts(state: VersionState) -> VersionCounts:
    """The exact counts of a version's metric state.

    >>> counts(new_state())
    VersionCounts(responses=0, errors=0, labelled=0, expired=0)
    """
    return VersionCounts(state["n"], state["err"], state["lab"], state["exp"])


def latency_sketch(state: VersionState | SlimState) -> Sketch:
    """The state's latency sketch (ms; :mod:`evaluators.metrics.sketch`)."""
    return state["lat"]


def label_delay_sketch(state: VersionState) -> Sketch:
    """The state's label-delay sketch (s)."""
    return state["delay"]


def merge(a: VersionState, b: VersionState) -> VersionState:
    """Add state ``b`` into ``a`` (partitions of one version, or windows). Feature distributions
    are added only when ``a`` keeps them."""
    a["n"] += b["n"]
    a["err"] += b["err"]
    a["lab"] += b["lab"]
    a["exp"] += b["exp"]
    sketch.merge(a["lat"], b["lat"])
    sketch.merge(a["delay"], b["delay"])
    merge_counts(a["pc"], b["pc"])
    merge_sum(a["pm"], b["pm"])
    a["ag"]["n"] += b["ag"]["n"]
    a["ag"]["eq"] += b["ag"]["eq"]
    merge_sum(a["ag"]["mad"], b["ag"]["mad"])
    merge_sum(a["ag"]["ro"], b["ag"]["ro"])
    merge_counts(a["oc"], b["oc"])
    if "ft" in a and "ft" in b and b["ft"]:
        feature_summaries.merge_all(a["ft"], b["ft"])
    if b["cls"] is not None:
        a["cls"] = classification.merge(a["cls"] or classification.new_state(), b["cls"])
    if b["reg"] is not None:
        a["reg"] = regression.merge(a["reg"] or regression.new_state(), b["reg"])
    if b["rk"] is not None:
        a["rk"] = ranking.merge(a["rk"] or ranking.new_state(), b["rk"])
    return a


def slim(state: VersionState | SlimState | None) -> SlimState:
    """The part of a version's metric state the guardrails read (the rest can be large), copied."""
    empty: SlimState = {"n": 0, "err": 0, "lab": 0, "lat": sketch.new_sketch(), "delay": sketch.new_sketch(),
                        "cls": None, "pc": {}, "pm": new_sum(), "sums": {}}
    return add_slim(empty, state) if state else empty


def guardrail_sums(state: VersionState | SlimState) -> dict[str, Any]:
    """The sums the guardrails' tests of means, ratios and scores read, by metric name (see
    :mod:`evaluators.policy.estimands` for what each holds): a flat list of numbers, or for
    ``roc_auc`` a flat list per class; each mergeable by adding part by part. A slim state has them
    already; a full state gives them from its parts.

    >>> from evaluators.facts import JoinedRecord
    >>> state = new_state()
    >>> add_fact(state, JoinedRecord("m", "v1", "primary", "r", 0, 5, 1, None, 1, {"converted": 1},
    ...                                     None, None, None), MetricsConfig())
    >>> guardrail_sums(state)["outcome.converted"]
    [1, 1.0, 1.0]
    """
    if "oc" not in state:  # a slim state (one saved before slim states kept the sums has none)
        return state.get("sums", {})
    return _full_guardrail_sums(state)


def _full_guardrail_sums(state: VersionState) -> dict[str, Any]:
    sums: dict[str, Any] = {}
    lab = state["lab"]
    if state["n"]:
        sums["label_coverage"] = [state["n"], float(lab), float(lab)]
    predicted = sum(state["pc"].values())
    for key, count in state["pc"].items():  # each class's share of the class predictions
        sums[f"prediction_share.{key.strip(chr(34))}"] = [predicted, float(count), float(count)]
    if state["pm"][0]:
        sums["prediction_mean"] = list(state["pm"])
    for kpi, running in state["oc"].items():  # a KPI's mean is over every labelled request
        sums[f"outcome.{kpi}"] = [lab, running[1], squares(running)]
    ag = state["ag"]
    if ag["n"]:
        sums["agreement"] = [ag["n"], float(ag["eq"]), float(ag["eq"])]
    if ag["mad"][0]:
        sums["agreement_mad"] = list(ag["mad"])
    if ag["ro"][0]:
        sums[f"rank_overlap@{RANK_OVERLAP_K}"] = list(ag["ro"])
    cls = state["cls"]
    if cls is not None and "ll" in cls:
        sums["log_loss"], sums["brier"] = list(cls["ll"]), list(cls["br"])
        if all(len(b) > 3 or not b[0] for b in cls["ece"]):
            sums["ece"] = [x for b in cls["ece"] for x in (b if len(b) > 3 else (0, 0.0, 0, 0.0, 0.0))]
        sums["roc_auc"] = classification.score_bins(cls)
    reg = state["reg"]
    if reg is not None:
        sums["mae"], sums["mape"], sums["rmse"] = list(reg["ae"]), list(reg["ape"]), list(reg["se"])
        if "mom" in reg:
            sums["r2"] = [*reg["se"], *reg["mom"]]
    rk = state["rk"]
    if rk is not None:
        sums["mrr"] = list(rk["mrr"])
        for k, at_k in rk["at"].items():
            for metric, running in ranking.by_metric(at_k).items():
                sums[f"{metric}@{k}"] = list(running)
    return sums


def _add_flat(total: list[float], values: list[float]) -> None:
    """Add part by part (a shorter, older list gains the missing parts as 0)."""
    if len(total) < len(values):
        total.extend([0] * (len(values) - len(total)))
    for i, value in enumerate(values):
        total[i] += value


def _add_guardrail_sums(total: dict[str, Any], sums: dict[str, Any]) -> None:
    for name, values in sums.items():
        if isinstance(values, dict):
            per_class = total.setdefault(name, {})
            for cls, counts in values.items():
                _add_flat(per_class.setdefault(cls, []), counts)
        else:
            _add_flat(total.setdefault(name, []), values)


def add_slim(total: SlimState, state: VersionState | SlimState) -> SlimState:
    """Add the guardrails' part of ``state`` (a full or slim metric state) into the slim ``total``:
    far cheaper than merging whole states, whose score maps can be large."""
    total["n"] += state["n"]
    total["err"] += state["err"]
    total["lab"] += state["lab"]
    sketch.merge(total["lat"], state["lat"])
    if "delay" in state:
        sketch.merge(total.setdefault("delay", sketch.new_sketch()), state["delay"])
    cls = state.get("cls")
    if cls:
        slim_cls = total["cls"]
        if slim_cls is None:
            slim_cls = total["cls"] = {"cm": {}}
        merge_counts(slim_cls["cm"], cls["cm"])
    if "pc" in state:  # the predictions' classes and float count: their shape (schema_compatible)
        merge_counts(total.setdefault("pc", {}), state["pc"])
        merge_sum(total.setdefault("pm", new_sum()), state["pm"])
    _add_guardrail_sums(total.setdefault("sums", {}), guardrail_sums(state))
    if "seg" in state:
        segments = total.setdefault("seg", {})
        for segment, part in state["seg"].items():
            mine = segments.get(segment)
            add_slim(mine if mine is not None else segments.setdefault(segment, slim(None)), part)
    return total


def is_behind(now: SlimState, then: SlimState) -> bool:
    """Whether some count of the slim state ``now`` is below ``then``'s: ``now`` is an older view
    of the stream than ``then`` (say, a new merging owner still reading partials), so differences
    between the two are not samples.

    >>> earlier = slim(None)
    >>> later = slim(None); later["n"] = 1
    >>> is_behind(earlier, later), is_behind(later, earlier)
    (True, False)
    """
    now_cm = now["cls"]["cm"] if now["cls"] else {}
    then_cm = then["cls"]["cm"] if then["cls"] else {}
    return (now["n"] < then["n"] or now["err"] < then["err"] or now["lab"] < then["lab"]
            or sketch.is_behind(now["lat"], then["lat"]) or counts_below(now_cm, then_cm))


def compute(state: VersionState, model: str, config: MetricsConfig) -> dict[str, float]:
    """Every metric the state can give, by the names of :mod:`schemas.metric_names`."""
    values: dict[str, float] = {}
    if state["n"]:
        values["error_rate"] = state["err"] / state["n"]
        values["label_coverage"] = state["lab"] / state["n"]
    for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        value = sketch.quantile(state["lat"], q)
        if value is not None:
            values[name] = value
    for q, name in ((0.5, "label_delay_p50_s"), (0.95, "label_delay_p95_s")):
        value = sketch.quantile(state["delay"], q)
        if value is not None:
            values[name] = value
    predicted = sum(state["pc"].values())
    for key, count in state["pc"].items():
        values[f"prediction_share.{key.strip(chr(34))}"] = count / predicted
    if state["pm"][0]:
        values["prediction_mean"] = mean_of(state["pm"])
    ag = state["ag"]
    if ag["n"]:
        values["agreement"] = ag["eq"] / ag["n"]
    if ag["mad"][0]:
        values["agreement_mad"] = mean_of(ag["mad"])
    if ag["ro"][0]:
        values[f"rank_overlap@{RANK_OVERLAP_K}"] = mean_of(ag["ro"])
    for kpi, running in state["oc"].items():
        values[f"outcome.{kpi}.count"] = float(running[0])
        values[f"outcome.{kpi}.sum"] = running[1]
        if state["lab"]:
            values[f"outcome.{kpi}"] = running[1] / state["lab"]
    if state["cls"] is not None:
        task = config.tasks.get(model)
        if task not in ("binary", "multiclass"):
            task = "binary" if classification.is_binary(state["cls"]) else "multiclass"
        values.update(classification.compute(state["cls"], task))
    if state["reg"] is not None:
        values.update(regression.compute(state["reg"]))
    if state["rk"] is not None:
        values.update(ranking.compute(state["rk"]))
    return values

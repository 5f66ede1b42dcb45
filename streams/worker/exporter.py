"""The worker's Prometheus endpoint: live per-version metrics, counts, latency, labels, lag.

Names follow Prometheus conventions: the ``shadowcanary_`` prefix, base units (seconds, ratios),
``_total`` for counters, model/version/role as labels and never a request id. Per-version numbers
come from the merging owner (the worker that holds the partials partition); other workers export
their own counters (ingested records, dead letters, lag) only, so a sum over workers never counts a
version twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from evaluators.drift.monitor import split_score_name
from evaluators.metrics import sketch
from evaluators.metrics import version as version_metrics
from evaluators.metrics.version import MetricsConfig, VersionState
from evaluators.policy.engine import RolloutEngine
from evaluators.segments import MIN_GAP_LABELS, gaps

VERSION_LABELS = ["model", "version", "role"]
#: Values of compute() exported as their own gauges (name, help, scale to base units).
_LATENCY = (("latency_p50_ms", "0.5"), ("latency_p95_ms", "0.95"), ("latency_p99_ms", "0.99"))
_DELAY = (("label_delay_p50_s", "0.5"), ("label_delay_p95_s", "0.95"))
_NOT_QUALITY = {name for name, _ in _LATENCY + _DELAY} | {"error_rate", "label_coverage"}
#: The join's event kinds and the contract topics they come from (the ``topic`` label).
_SKEW_TOPICS = (("request", "inference.requests"), ("response", "inference.responses"),
                ("label", "inference.labels"))


class EvaluatorCollector(Collector):
    """Reads the merger's totals and the join worker's lag on every scrape."""

    def __init__(self, totals: Callable[[], tuple[dict, dict[str, int]]],
                 lag: Callable[[], dict[tuple[str, int], int]], is_owner: Callable[[], bool],
                 config: MetricsConfig,
                 drift: Callable[[], tuple[dict[str, dict[str, float]], set]] = lambda: ({}, set()),
                 model_counts: Callable[[], dict[str, dict[str, int]]] = dict,
                 segments: Callable[[], dict[tuple[str, str, str], dict[str, VersionState]]] = dict) -> None:
        self.totals = totals
        self.segments = segments
        self.model_counts = model_counts
        self.lag = lag
        self.is_owner = is_owner
        self.config = config
        self.drift = drift

    def collect(self) -> Iterable:
        versions, requests = self.totals()
        owner = GaugeMetricFamily("shadowcanary_merger_owner",
                                  "1 on the worker that merges partitions and publishes windows.")
        owner.add_metric([], 1.0 if self.is_owner() else 0.0)
        yield owner
        lag = GaugeMetricFamily("shadowcanary_consumer_lag_records",
                                "Records not yet processed, per input topic partition of this worker.",
                                labels=["topic", "partition"])
        for (topic, partition), records in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], float(records))
        yield lag
        req = CounterMetricFamily("shadowcanary_requests", "Inference requests seen, per model.",
                                  labels=["model"])
        for model, n in sorted(requests.items()):
            req.add_metric([model], float(n))
        yield req
        families = {
            "responses": CounterMetricFamily("shadowcanary_responses", "Responses per version.",
                                             labels=VERSION_LABELS),
            "errors": CounterMetricFamily("shadowcanary_response_errors",
                                          "Responses that carried an error.", labels=VERSION_LABELS),
            "labelled": CounterMetricFamily("shadowcanary_labelled_responses",
                                            "Responses joined with their label in time.", labels=VERSION_LABELS),
            "expired": CounterMetricFamily("shadowcanary_expired_responses",
                                           "Responses never labelled within label_timeout.",
                                           labels=VERSION_LABELS),
        }
        error_rate = GaugeMetricFamily("shadowcanary_error_ratio", "Share of responses with an error.",
                                       labels=VERSION_LABELS)
        coverage = GaugeMetricFamily("shadowcanary_label_coverage_ratio",
                                     "Share of responses joined with a label so far.", labels=VERSION_LABELS)
        latency = Metric("shadowcanary_latency_seconds",
                         "Response latency quantiles (DDSketch, 1% relative error).", "summary")
        delay = Metric("shadowcanary_label_delay_seconds", "Delay from response to label (DDSketch).",
                       "summary")
        quality = GaugeMetricFamily("shadowcanary_version_metric",
                                    "A metric of a version since it was first seen (name in 'metric'; "
                                    "see the metric catalog).", labels=VERSION_LABELS + ["metric"])
        for (model, version, role), state in sorted(versions.items()):
            labels = [model, version, role]
            counts = version_metrics.counts(state)
            families["responses"].add_metric(labels, float(counts.responses))
            families["errors"].add_metric(labels, float(counts.errors))
            families["labelled"].add_metric(labels, float(counts.labelled))
            families["expired"].add_metric(labels, float(counts.expired))
            values = version_metrics.compute(state, model, self.config)
            if "error_rate" in values:
                error_rate.add_metric(labels, values["error_rate"])
                coverage.add_metric(labels, values["label_coverage"])
            _summary(latency, labels, values, _LATENCY, version_metrics.latency_sketch(state), 0.001)
            _summary(delay, labels, values, _DELAY, version_metrics.label_delay_sketch(state), 1.0)
            for name, value in sorted(values.items()):
                if name not in _NOT_QUALITY:
                    quality.add_metric(labels + [name], value)
        yield from families.values()
        yield from (error_rate, coverage, latency, delay, quality)
        yield from self._segments()
        yield from self._clock_skew()
        yield from self._drift()

    def _segments(self) -> Iterable[Metric]:
        """Each sliced version's metrics per segment since it was first seen, and the fairness gap: per
        attribute and metric, the best segment's value minus the worst's (see :func:`evaluators.segments.gaps`)."""
        labels = VERSION_LABELS + ["segment"]
        labelled = CounterMetricFamily("shadowcanary_segment_labelled_responses",
                                       "Responses joined with their label, per segment of a version (segment: "
                                       "attribute=value).", labels=labels)
        metric = GaugeMetricFamily("shadowcanary_segment_metric",
                                   "A metric of a version's labelled requests in one segment since it was first "
                                   "seen (name in 'metric').", labels=labels + ["metric"])
        gap = GaugeMetricFamily("shadowcanary_segment_gap",
                                "Best minus worst segment of an attribute for a metric of a version (segments "
                                f"with at least {MIN_GAP_LABELS} labels; 'best' and 'worst' name them).",
                                labels=VERSION_LABELS + ["attribute", "metric", "best", "worst"])
        for (model, version, role), segments in sorted(self.segments().items()):
            values = {segment: version_metrics.compute(state, model, self.config)
                      for segment, state in segments.items()}
            counts = {segment: version_metrics.counts(state).labelled for segment, state in segments.items()}
            for segment in sorted(segments):
                names = [model, version, role, segment]
                labelled.add_metric(names, float(counts[segment]))
                for name, value in sorted(values[segment].items()):
                    if name not in _NOT_QUALITY:
                        metric.add_metric(names + [name], value)
            for (attribute, name), found in gaps(values, counts).items():
                if name not in _NOT_QUALITY:
                    gap.add_metric([model, version, role, attribute, name, found.best, found.worst], found.gap)
        yield from (labelled, metric, gap)

    def _clock_skew(self) -> Iterable[Metric]:
        """Events stamped far from their partition's time, per input topic and model (exact, merged)."""
        help_text = {
            "future": "Events stamped more than the tolerance ahead of the worker's clock (they did not "
                      "move time past it), per input topic and model.",
            "past": "Events stamped so far behind their partition's time that they were due to expire on "
                    "arrival (a client clock running behind), per input topic and model.",
        }
        counts = self.model_counts()
        for direction, text in help_text.items():
            family = CounterMetricFamily(f"shadowcanary_{direction}_events", text, labels=["topic", "model"])
            for model, values in sorted(counts.items()):
                for kind, topic in _SKEW_TOPICS:
                    family.add_metric([topic, model], float(values.get(f"{direction}_{kind}s", 0)))
            yield family

    def _drift(self) -> Iterable[Metric]:
        """The last closed window's drift scores per version, and which drift conditions fire."""
        scores, firing = self.drift()
        score = GaugeMetricFamily(
            "shadowcanary_drift_score",
            "Drift of a feature ('@prediction': the predictions) in a version's last closed window, against "
            "the version's pinned reference or the baseline's same window ('against'); measure: ks, ks_p, psi, "
            "wasserstein, chi2, chi2_p, js, unseen_rate, missing_rate, or for feature '@errors' error_rate "
            "and adwin (1 when ADWIN saw a change).",
            labels=["model", "version", "feature", "measure", "against"])
        for key, values in sorted(scores.items()):
            model, version = key.split("\x1f")
            for name, value in sorted(values.items()):
                feature, measure, against = split_score_name(name)
                score.add_metric([model, version, feature, measure, against], value)
        yield score
        alerting = GaugeMetricFamily("shadowcanary_drift_firing",
                                     "1 while a drift alert of a version's feature is firing.",
                                     labels=["model", "version", "feature"])
        for model, version, feature in sorted(firing):
            alerting.add_metric([model, version, feature], 1.0)
        yield alerting


def _summary(family: Metric, labels: list[str], values: dict[str, float], quantiles: tuple,
             sketch_state: dict, scale: float) -> None:
    """Quantiles of a sketch as a Prometheus summary (with its count and sum), in base units."""
    if not sketch.count(sketch_state):
        return
    names = dict(zip(VERSION_LABELS, labels))
    for name, q in quantiles:
        if name in values:
            family.samples.append(Sample(family.name, {**names, "quantile": q}, values[name] * scale))
    family.samples.append(Sample(family.name + "_count", names, float(sketch.count(sketch_state))))
    family.samples.append(Sample(family.name + "_sum", names, sketch.total(sketch_state) * scale))


def serve(collectors: Iterable[Collector], port: int, host: str = "0.0.0.0") -> None:
    """Register the collectors and serve ``/metrics`` (with the process's other metrics) on ``port``."""
    for collector in collectors:
        REGISTRY.register(collector)
    start_http_server(port, addr=host)


#: A decision's reason as a label is cut here (one series per model: the last decision only).
REASON_CHARS = 200


class PolicyCollector(Collector):
    """The rollouts the policy engine judges (on the worker that owns it): each version's share of
    traffic, the stage, the status, and every guardrail's last evidence with its confidence bounds."""

    STATUSES = ("running", "held", "paused", "completed", "rolled_back", "aborted")

    def __init__(self, engine: Callable[[], RolloutEngine | None]) -> None:
        self.engine = engine

    def collect(self) -> Iterable:
        engine = self.engine()
        rollouts = dict(engine.rollouts) if engine is not None else {}
        evidence = dict(engine.evidence) if engine is not None else {}
        traffic = GaugeMetricFamily("shadowcanary_rollout_traffic_percent",
                                    "Percent of a model's served traffic routed to a version (shadow: mirrored, "
                                    "served 0).", labels=["model", "version", "shadow"])
        stage = GaugeMetricFamily("shadowcanary_rollout_stage", "Index of the rollout's current step.",
                                  labels=["model", "candidate"])
        status = GaugeMetricFamily("shadowcanary_rollout_status", "1 for the rollout's current status.",
                                   labels=["model", "candidate", "baseline", "status"])
        bound = GaugeMetricFamily(
            "shadowcanary_guardrail_value",
            "A guardrail's metric at the last look since the rollout started, per side, with its anytime-valid "
            "confidence bounds ('estimate': value, lower, upper); 'segment' names the segment a per_segment "
            "guardrail judged (empty: all traffic).", labels=["model", "guardrail", "segment", "side", "estimate"])
        samples = GaugeMetricFamily("shadowcanary_guardrail_samples", "Samples behind a guardrail's value.",
                                    labels=["model", "guardrail", "segment", "side"])
        failing = GaugeMetricFamily("shadowcanary_guardrail_failing", "1 while a guardrail's verdict is fail.",
                                    labels=["model", "guardrail", "segment", "critical"])
        last = GaugeMetricFamily(
            "shadowcanary_rollout_last_decision_info",
            "1, labelled with a rollout's versions and its last decision (action, reason: at most "
            f"{REASON_CHARS} characters), for alert notifications to quote.",
            labels=["model", "rollout_id", "baseline", "candidate", "action", "reason"])
        decided = GaugeMetricFamily("shadowcanary_rollout_last_decision_timestamp_seconds",
                                    "When a rollout's last decision was taken (Unix seconds).", labels=["model"])
        for model, rollout in sorted(rollouts.items()):
            spec = rollout["spec"]
            for version, percent in (rollout.get("routes") or {}).items():
                traffic.add_metric([model, version, "false"], float(percent))
            for version in rollout.get("shadow") or []:
                traffic.add_metric([model, version, "true"], 0.0)
            stage.add_metric([model, spec["candidate"]], float(rollout["stage"]))
            decision = rollout.get("last_decision")
            if decision is not None:
                last.add_metric([model, rollout["id"], spec["baseline"], spec["candidate"], decision["action"],
                                 decision["reason"][:REASON_CHARS]], 1.0)
                decided.add_metric([model], decision["ts"] / 1000)
            for name in self.STATUSES:
                status.add_metric([model, spec["candidate"], spec["baseline"], name],
                                  1.0 if rollout["status"] == name else 0.0)
            for e in evidence.get(model, []):
                segment = e.segment or ""
                for side, b in (("candidate", e.candidate), ("baseline", e.baseline)):
                    if b is None or b.value is None:
                        continue
                    for name, value in (("value", b.value), ("lower", b.lower), ("upper", b.upper)):
                        if value is not None:
                            bound.add_metric([model, e.guardrail, segment, side, name], float(value))
                    samples.add_metric([model, e.guardrail, segment, side], float(b.samples))
                failing.add_metric([model, e.guardrail, segment, str(e.critical).lower()],
                                   1.0 if e.verdict == "fail" else 0.0)
        yield from (traffic, stage, status, bound, samples, failing, last, decided)

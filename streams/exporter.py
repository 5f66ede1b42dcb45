"""The worker's Prometheus endpoint: live per-version metrics, counts, latency, labels, lag.

Names follow Prometheus conventions: the ``shadowcanary_`` prefix, base units (seconds, ratios),
``_total`` for counters, model/version/role as labels and never a request id. Per-version numbers
come from the merging owner (the worker that holds the partials partition); other workers export
their own counters (ingested records, dead letters, lag) only, so a sum over workers never counts a
version twice.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.registry import Collector

from evaluators.metrics import version as version_metrics
from evaluators.metrics.version import MetricsConfig

VERSION_LABELS = ["model", "version", "role"]
#: Values of compute() exported as their own gauges (name, help, scale to base units).
_LATENCY = (("latency_p50_ms", "0.5"), ("latency_p95_ms", "0.95"), ("latency_p99_ms", "0.99"))
_DELAY = (("label_delay_p50_s", "0.5"), ("label_delay_p95_s", "0.95"))
_NOT_QUALITY = {name for name, _ in _LATENCY + _DELAY} | {"error_rate", "label_coverage"}


class EvaluatorCollector(Collector):
    """Reads the merger's totals and the join worker's lag on every scrape."""

    def __init__(self, totals: Callable[[], tuple[dict, dict[str, int]]],
                 lag: Callable[[], dict[tuple[str, int], int]], is_owner: Callable[[], bool],
                 config: MetricsConfig) -> None:
        self.totals = totals
        self.lag = lag
        self.is_owner = is_owner
        self.config = config

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
            families["responses"].add_metric(labels, float(state["n"]))
            families["errors"].add_metric(labels, float(state["err"]))
            families["labelled"].add_metric(labels, float(state["lab"]))
            families["expired"].add_metric(labels, float(state["exp"]))
            values = version_metrics.compute(state, model, self.config)
            if "error_rate" in values:
                error_rate.add_metric(labels, values["error_rate"])
                coverage.add_metric(labels, values["label_coverage"])
            _summary(latency, labels, values, _LATENCY, state["lat"], 0.001)
            _summary(delay, labels, values, _DELAY, state["delay"], 1.0)
            for name, value in sorted(values.items()):
                if name not in _NOT_QUALITY:
                    quality.add_metric(labels + [name], value)
        yield from families.values()
        yield from (error_rate, coverage, latency, delay, quality)


def _summary(family: Metric, labels: list[str], values: dict[str, float], quantiles: tuple,
             sketch_state: dict, scale: float) -> None:
    """Quantiles of a sketch as a Prometheus summary (with its count and sum), in base units."""
    if not sketch_state["n"]:
        return
    names = dict(zip(VERSION_LABELS, labels))
    for name, q in quantiles:
        if name in values:
            family.samples.append(Sample(family.name, {**names, "quantile": q}, values[name] * scale))
    family.samples.append(Sample(family.name + "_count", names, float(sketch_state["n"])))
    family.samples.append(Sample(family.name + "_sum", names, sketch_state["sum"] * scale))


def serve(collector: EvaluatorCollector, port: int, host: str = "0.0.0.0") -> None:
    """Register the collector and serve ``/metrics`` (with the process's other metrics) on ``port``."""
    REGISTRY.register(collector)
    start_http_server(port, addr=host)

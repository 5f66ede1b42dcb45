"""The rollout report: one self-contained HTML file with the traffic split over time, each guardrail
per version with its confidence band, and every decision marked on the timeline.

Built from the messages ShadowCanary publishes (commands, decisions, metric snapshots, alerts), so
the demo, ``replay`` and anyone holding a copy of the topics produce the same report. Plots are
drawn by matplotlib and inlined as SVG: the file opens anywhere, offline.

Every guardrail of a decision gets a panel. Bands: per window, a Wilson 95% interval for
proportions (accuracy, error rate) from the window's counts; at each decision, the anytime-valid
bounds the engine judged with (drawn as error bars).
"""

from __future__ import annotations

import html
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from evaluators.integration_checks import VersionShape  # noqa: E402
from evaluators.segments import gaps  # noqa: E402
from schemas.control import Decision, RoutingCommand  # noqa: E402
from schemas.monitoring import Alert, MetricsSnapshot  # noqa: E402

COLORS = {"rollback": "#d62728", "promote": "#2ca02c", "complete": "#1f77b4", "hold": "#7f7f7f"}
#: Guardrail metrics drawn per window: (title, how to read it off a snapshot, its count for a band).
PANELS = {
    "accuracy": ("accuracy", lambda s: s.metrics.get("accuracy"), lambda s: s.labelled),
    "error_rate": ("error rate", lambda s: s.errors / s.responses if s.responses else None, lambda s: s.responses),
    "latency_p99_ms": ("latency p99 (ms)", lambda s: s.latency_ms.p99, lambda s: 0),
}


def panel(
    metric: str,
) -> tuple[str, Callable[[MetricsSnapshot], float | None], Callable[[MetricsSnapshot], int] | None]:
    """(title, value per window, its count for a Wilson band or None) of a guardrail's panel: the
    proportions and latency have their own; every other metric is read off the snapshot's metrics
    (drawn without a per-window band: the decisions' bounds are its bands)."""
    if metric in PANELS:
        return PANELS[metric]
    return metric, lambda s: s.metrics.get(metric), None


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` out of ``n``.

    >>> [round(v, 3) for v in wilson(0.9, 100)]
    [0.826, 0.945]
    """
    if n <= 0:
        return (math.nan, math.nan)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _ms(ts: datetime) -> float:
    return ts.timestamp() * 1000


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _mark_decisions(axes, decisions: list[Decision], t0: float) -> None:
    for d in decisions:
        x = (_ms(d.ts) - t0) / 1000
        axes.axvline(x, color=COLORS.get(d.action, "black"), linestyle="--", linewidth=1, alpha=0.8)
        axes.annotate(f"{d.action} (step {d.step})", (x, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                      va="top", ha="right", fontsize=7, color=COLORS.get(d.action, "black"))


def traffic_split_svg(commands: list[RoutingCommand], decisions: list[Decision], t0: float, t1: float) -> str:
    versions = sorted({v for c in commands for v in (*c.routes, *c.shadow)})
    figure, axes = plt.subplots(figsize=(10, 3))
    for version in versions:
        xs, ys = [], []
        for c in commands:
            xs.append((_ms(c.issued_at) - t0) / 1000)
            ys.append(c.routes.get(version, 0.0))
        if xs:
            xs.append((t1 - t0) / 1000)
            ys.append(ys[-1])
            axes.step(xs, ys, where="post", label=version, linewidth=2)
    _mark_decisions(axes, decisions, t0)
    axes.set_ylim(-2, 105)
    axes.set_ylabel("% of served traffic")
    axes.set_xlabel("seconds since the first command")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.set_title("Traffic split (from rollout.control)")
    return _svg(figure)


def guardrail_svg(metric: str, snapshots: list[MetricsSnapshot], decisions: list[Decision], t0: float) -> str:
    title, value_of, count_of = panel(metric)
    figure, axes = plt.subplots(figsize=(10, 3))
    by_version: dict[str, list[MetricsSnapshot]] = {}
    for s in snapshots:
        by_version.setdefault(s.version, []).append(s)
    for version, series in sorted(by_version.items()):
        points = sorted(((_ms(s.window.end) - t0) / 1000, value_of(s), count_of(s) if count_of else 0) for s in series)
        points = [p for p in points if p[1] is not None]
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        line, = axes.plot(xs, ys, marker="o", markersize=3, label=f"{version} (per window)")
        if count_of is not None and metric != "latency_p99_ms":
            bands = [wilson(y, n) for _, y, n in points]
            axes.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=line.get_color(), alpha=0.15)
    for d in decisions:  # the bounds each decision was taken on
        for e in d.evidence:
            if e.metric != metric:
                continue
            x = (_ms(d.ts) - t0) / 1000
            for _side, bounds, marker in (("baseline", e.baseline, "s"), ("candidate", e.candidate, "D")):
                if bounds is None or bounds.value is None or bounds.lower is None or bounds.upper is None:
                    continue
                axes.errorbar([x], [bounds.value], yerr=[[bounds.value - bounds.lower], [bounds.upper - bounds.value]],
                              fmt=marker, color="black", markersize=4, capsize=3, alpha=0.7)
    _mark_decisions(axes, decisions, t0)
    bands = "per-window values with 95% bands" if count_of is not None else "per-window values"
    axes.set_title(f"{title}: {bands}; error bars: the bounds at each decision")
    axes.set_xlabel("seconds since the first command")
    handles, _ = axes.get_legend_handles_labels()
    if handles:
        axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _svg(figure)


def _decision_rows(decisions: Iterable[Decision], t0: float) -> str:
    rows = []
    for d in decisions:
        evidence = "; ".join(f"{e.guardrail}{f' in {e.segment}' if e.segment else ''}: {e.verdict} "
                             f"(candidate {e.candidate.describe()}, n={e.candidate.samples})"
                             for e in d.evidence if e.segment is None or e.verdict == "fail")
        rows.append(f"<tr><td>{(_ms(d.ts) - t0) / 1000:.1f}s</td><td>{html.escape(d.model)}</td><td>{d.step}</td>"
                    f"<td style='color:{COLORS.get(d.action, 'black')}'><b>{d.action}</b></td>"
                    f"<td>{html.escape(d.reason)}</td><td>{html.escape(evidence)}</td></tr>")
    return "\n".join(rows)


def _segment_rows(decisions: list[Decision]) -> str:
    """The last look at each segment: per judged segment, each per-segment guardrail's verdict and
    both versions' bounds since the rollout started."""
    last = next((d for d in reversed(decisions) if any(e.segment for e in d.evidence)), None)
    if last is None:
        return ""
    rows = []
    for e in sorted((e for e in last.evidence if e.segment), key=lambda e: (e.segment or "", e.guardrail)):
        cells = [e.segment or "", e.guardrail, e.verdict, e.candidate.describe(), f"{e.candidate.samples:,}",
                 e.baseline.describe() if e.baseline else "", f"{e.baseline.samples:,}" if e.baseline else "",
                 e.detail or ""]
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    return ("<h3>Segments (per_segment guardrails at the last decision)</h3><table><tr><th>segment</th>"
            "<th>guardrail</th><th>verdict</th><th>candidate</th><th>n</th><th>baseline</th><th>n</th><th></th></tr>"
            + "\n".join(rows) + "</table>")


def _fairness_rows(snapshots: list[MetricsSnapshot]) -> str:
    """Per version, each metric's spread over its segments (their windows' values weighted by labels):
    the best and worst segment and the gap (see :func:`evaluators.segments.gaps`)."""
    totals: dict[str, dict[str, dict[str, list[float]]]] = {}  # version -> segment -> metric -> [sum, weight]
    labelled: dict[str, Counter[str]] = {}  # version -> segment -> labelled requests
    for s in snapshots:
        if s.segment is None or not s.labelled:
            continue
        labelled.setdefault(s.version, Counter())[s.segment] += s.labelled
        by_metric = totals.setdefault(s.version, {}).setdefault(s.segment, {})
        for name, value in s.metrics.items():
            running = by_metric.setdefault(name, [0.0, 0.0])
            running[0] += value * s.labelled
            running[1] += s.labelled
    rows = []
    for version, segments in sorted(totals.items()):
        values = {segment: {name: total / weight for name, (total, weight) in metrics.items() if weight}
                  for segment, metrics in segments.items()}
        for (attribute, name), gap in gaps(values, labelled[version]).items():
            cells = [version, attribute, name, f"{values[gap.best][name]:.4g} ({gap.best})",
                     f"{values[gap.worst][name]:.4g} ({gap.worst})", f"{gap.gap:.4g}"]
            rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    if not rows:
        return ""
    return ("<h3>Fairness: best and worst segment per version (windows weighted by labels)</h3><table><tr>"
            "<th>version</th><th>attribute</th><th>metric</th><th>best</th><th>worst</th><th>gap</th></tr>"
            + "\n".join(rows) + "</table>")


def _shape_rows(shapes: dict[str, VersionShape]) -> str:
    """One row per version: what it answered, what it was labelled with, what its requests carried."""
    rows = []
    for version, shape in sorted(shapes.items()):
        classes = ", ".join(f"{text} ({count:,})" for text, count in sorted(shape["classes"].items())[:10])
        labels = f"{'/'.join(shape['label_types'])}: {', '.join(sorted(shape['label_values'])[:10])}"
        features = ", ".join(f"{name} ({'/'.join(f['kinds'])}, {f['seen'] / f['requests']:.0%})"
                             for name, f in sorted(shape["features"].items())[:20] if f["requests"])
        cells = [version, shape["role"], f"{shape['responses']:,}", "/".join(shape["prediction_types"]), classes,
                 "/".join(shape["score_forms"]), labels if shape["labelled"] else "", features]
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    return "\n".join(rows)


def write_report(path: Path, title: str, commands: list[RoutingCommand], decisions: list[Decision],
                 snapshots: list[MetricsSnapshot], alerts: list[Alert] = (),
                 shapes: Callable[[str], dict[str, VersionShape]] | None = None) -> Path:
    """Write the HTML report for every model in the messages; returns ``path``. ``shapes``: what
    flowed per version of a model (:mod:`evaluators.integration_checks`), shown side by side."""
    document = render_report(title, commands, decisions, snapshots, alerts, shapes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def render_report(title: str, commands: list[RoutingCommand], decisions: list[Decision],
                  snapshots: list[MetricsSnapshot], alerts: list[Alert] = (),
                  shapes: Callable[[str], dict[str, VersionShape]] | None = None) -> str:
    """The HTML report (see :func:`write_report`), as text."""
    sections = []
    for model in sorted({c.model for c in commands}):
        cmds = sorted((c for c in commands if c.model == model), key=lambda c: c.epoch)
        decs = sorted((d for d in decisions if d.model == model), key=lambda d: d.ts)
        snaps = [s for s in snapshots if s.model == model and s.segment is None]
        segment_snaps = [s for s in snapshots if s.model == model and s.segment is not None]
        times = [_ms(c.issued_at) for c in cmds] + [_ms(d.ts) for d in decs] + [_ms(s.window.end) for s in snaps]
        t0, t1 = min(times), max(times)
        metrics = sorted({e.metric for d in decs for e in d.evidence if e.metric != "schema_compatible"}
                         | {"accuracy"})
        plots = [traffic_split_svg(cmds, decs, t0, t1)]
        plots += [guardrail_svg(m, snaps, decs, t0) for m in metrics if snaps or decs]
        model_alerts = "".join(f"<li>{html.escape(a.severity)} {html.escape(a.kind)}: {html.escape(a.message)}</li>"
                               for a in alerts if a.model == model)
        sections.append(
            f"<h2>{html.escape(model)}</h2>" + "".join(f"<div class='plot'>{p}</div>" for p in plots)
            + "<h3>Decisions (rollout.decisions)</h3><table><tr><th>t</th><th>model</th><th>step</th><th>action</th>"
            + f"<th>reason</th><th>evidence</th></tr>{_decision_rows(decs, t0)}</table>"
            + _segment_rows(decs) + _fairness_rows(segment_snaps)
            + (f"<h3>Alerts</h3><ul>{model_alerts}</ul>" if model_alerts else "")
            + (f"<h3>What flows (learned shapes)</h3><table><tr><th>version</th><th>role</th><th>answers</th>"
               f"<th>prediction types</th><th>classes</th><th>scores</th><th>labels</th>"
               f"<th>request features (kind, present)</th></tr>{_shape_rows(shapes(model))}</table>"
               if shapes is not None and shapes(model) else ""))
    document = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}} .plot svg{{max-width:100%;height:auto}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(commands)} routing commands, {len(decisions)} decisions, {len(snapshots)} metric snapshots,
{len(alerts)} alerts.</p>
{''.join(sections) or '<p>No rollout commands were published.</p>'}
</body></html>
"""
    return document

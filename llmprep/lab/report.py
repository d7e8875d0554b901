"""The lab's outputs: timeseries.csv, report.json, report.md, lab.png, and the printed summary.

The summary answers what a user tunes for: peak replicas, time from the surge to the scale-up
decision and to the new replica being ready, time back to the minimum after the load falls,
failed requests, and the reaction-time budget (issue 14 item 6): the configured terms taken
from the rendered chart and the adapter file, and the terms the lab measured.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmprep.lab.recorder import hpa_column, signal_column


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is as readable as any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Timeline:
    """What happened when, in seconds since the load started (None: did not happen)."""

    surge_at: float | None = None
    decline_at: float | None = None
    signal_over_target_at: float | None = None
    scale_up_decision_at: float | None = None
    new_replica_ready_at: float | None = None
    first_request_on_new_at: float | None = None
    scale_down_decision_at: float | None = None
    back_to_min_at: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 2) if v is not None else None) for k, v in vars(self).items()}


@dataclass
class LabReport:
    """Everything the lab writes, as data (report.json is this, plus the timeseries rows)."""

    scenario: dict[str, Any]
    configuration: dict[str, Any]
    rows: list[dict[str, Any]]
    columns: list[str]
    decisions: list[dict[str, Any]]
    events: list[dict[str, Any]]
    requests: dict[str, Any]
    timeline: Timeline
    budget: list[dict[str, Any]]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "configuration": self.configuration,
            "summary": self.summary,
            "timeline": self.timeline.as_dict(),
            "reaction_time_budget": self.budget,
            "requests": self.requests,
            "decisions": self.decisions,
            "events": self.events,
            "verification": self.verification,
            "notes": self.notes,
            "timeseries": self.rows,
        }


# --------------------------------------------------------------------------- analysis


def surge_and_decline(stages: Sequence[Any]) -> tuple[float | None, float | None]:
    """When the load first rises above its starting level, and when it first falls after its peak."""
    if not stages:
        return None, None
    base = stages[0].start
    peak = max(max(s.start, s.end) for s in stages)
    t, surge, decline, reached = 0.0, None, None, False
    for stage in stages:
        if surge is None and max(stage.start, stage.end) > base:
            surge = t
        if reached and decline is None and stage.end < peak:
            decline = t
        reached = reached or max(stage.start, stage.end) >= peak
        t += stage.duration
    return surge, decline


def analyse(
    rows: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    replicas: Sequence[Mapping[str, Any]],
    *,
    surge_at: float | None,
    decline_at: float | None,
    min_replicas: int,
    metrics: Sequence[tuple[str, float]],
    tolerance: float = 0.1,
) -> Timeline:
    """The timeline of one surge: detection, decision, readiness, first request, back to minimum."""
    tl = Timeline(surge_at=surge_at, decline_at=decline_at)
    if surge_at is not None:
        for row in rows:
            if row["t"] < surge_at:
                continue
            if any((row.get(signal_column(name)) or 0) > target * (1 + tolerance) for name, target in metrics):
                tl.signal_over_target_at = row["t"]
                break
        up = next((d for d in decisions if d["t"] >= surge_at and d["desired"] > d["current"]), None)
        if up is not None:
            tl.scale_up_decision_at = up["t"]
            new = [r for r in replicas if r["created_t"] is not None and r["created_t"] >= up["t"] - 1e-6]
            ready = sorted(r["ready_t"] for r in new if r["ready_t"] is not None)
            if ready:
                tl.new_replica_ready_at = ready[0]
            first = sorted(r["first_connection_t"] for r in new if r["first_connection_t"] is not None)
            if first:
                tl.first_request_on_new_at = first[0]
    if decline_at is not None:
        down = next((d for d in decisions if d["t"] >= decline_at and d["desired"] < d["current"]), None)
        if down is not None:
            tl.scale_down_decision_at = down["t"]
        peak_seen = False
        for row in rows:
            if row["t"] < decline_at:
                continue
            n_current, n_ready = row.get("replicas_current") or 0, row.get("replicas_ready") or 0
            if n_current > min_replicas:
                peak_seen = True
            if peak_seen and n_current == n_ready == min_replicas and not row.get("replicas_draining"):
                tl.back_to_min_at = row["t"]
                break
    return tl


def _gap(a: float | None, b: float | None) -> float | None:
    return round(b - a, 2) if a is not None and b is not None else None


def budget_terms(config: Mapping[str, Any], tl: Timeline, speed: float) -> list[dict[str, Any]]:
    """Issue 14 item 6: a surge's time to relief, term by term (lab seconds and cluster seconds)."""

    def term(name: str, lab: float | None, source: str, kind: str, moved_by: str) -> dict[str, Any]:
        cluster = round(lab * speed, 2) if lab is not None and kind == "configured" else None
        return {"term": name, "lab_s": None if lab is None else round(lab, 3), "cluster_s": cluster, "kind": kind,
                "source": source, "moved_by": moved_by}

    c = config
    return [
        term("scrape interval", c["scrape_interval_s"], "PodMonitor interval", "configured",
             "monitoring.podMonitor.interval"),
        term("rule evaluation", c["rule_interval_s"], "PrometheusRule group interval", "configured",
             "monitoring.prometheusRule.interval"),
        term("rate window (half, mean lag of a step)", c["rate_window_s"] / 2 if c.get("rate_window_s") else None,
             "PrometheusRule rate window", "configured", "monitoring.prometheusRule.window"),
        term("adapter relist", c["adapter_relist_s"], "prometheus-adapter metricsRelistInterval", "configured",
             "metricsRelistInterval (adapter values); only delays a new metric name"),
        term("HPA sync period", c["sync_period_s"], "kube-controller-manager --horizontal-pod-autoscaler-sync-period",
             "configured", "--sync-period (controller flag)"),
        term("scale-up stabilization", c["scale_up_stabilization_s"], "HPA behavior.scaleUp", "configured",
             "autoscaling.behavior.scaleUp.stabilizationWindowSeconds"),
        term("scale-down stabilization", c["scale_down_stabilization_s"], "HPA behavior.scaleDown (or the flag)",
             "configured", "autoscaling.behavior.scaleDown.stabilizationWindowSeconds"),
        term("readiness probe period", c["readiness_period_s"], "Deployment readinessProbe", "configured",
             "triton.probes.readinessPeriodSeconds"),
        term("detection: surge to signal over target", _gap(tl.surge_at, tl.signal_over_target_at), "measured",
             "measured", "scrape, evaluation, window, the signal's own response"),
        term("decision: signal over target to scale-up", _gap(tl.signal_over_target_at, tl.scale_up_decision_at),
             "measured", "measured", "sync period, tolerance, scale-up stabilization"),
        term("replica start to ready (warm repository)", _gap(tl.scale_up_decision_at, tl.new_replica_ready_at),
             "measured", "measured", "model load time, startup and readiness probes"),
        term("ready to first request served", _gap(tl.new_replica_ready_at, tl.first_request_on_new_at), "measured",
             "measured", "Endpoints update, client connection reuse (reconnectEvery)"),
        term("total: surge to first request on the new replica", _gap(tl.surge_at, tl.first_request_on_new_at),
             "measured", "measured", "all of the above"),
    ]


# --------------------------------------------------------------------------- files


def timeseries_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return out.getvalue()


def _fmt(value: Any, unit: str = "s") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f} {unit}".strip()
    return f"{value} {unit}".strip()


def markdown(report: LabReport, plot_name: str = "lab.png") -> str:
    s, tl = report.summary, report.timeline
    lines = [
        f"# llmprep lab: {report.scenario.get('name')}",
        "",
        f"{report.scenario.get('description') or ''}".strip(),
        "",
        f"![load, signal, replicas and latency]({plot_name})",
        "",
        "## Summary",
        "",
        "| | |",
        "| --- | --- |",
        f"| peak replicas (ready) | {s['peak_replicas']} of max {s['max_replicas']} |",
        f"| surge → scale-up decision | {_fmt(s['surge_to_decision_s'])} |",
        f"| surge → new replica ready | {_fmt(s['surge_to_ready_s'])} |",
        f"| load falls → back to minimum ({s['min_replicas']}) | {_fmt(s['decline_to_min_s'])} |",
        f"| requests (failed) | {s['requests']} ({s['failed_requests']}) |",
        f"| p95 latency overall | {_fmt(s['e2e_p95_s'])} |",
        f"| seconds with p95 above the SLO ({_fmt(s['slo_p95_s'])}) | {_fmt(s['seconds_over_slo'], '')} |",
        f"| replica-seconds | {_fmt(s['replica_seconds'], '')} |",
        f"| time compression (speed) | {report.configuration['speed']:g}× |",
        "",
        "## HPA",
        "",
        f"{report.configuration['hpa']['source']} `{report.configuration['hpa']['name']}`: "
        f"min {report.configuration['hpa']['min']}, max {report.configuration['hpa']['max']}, "
        f"behavior: {report.configuration['hpa']['behavior']}.",
        "",
        "| metric | target |",
        "| --- | --- |",
    ]
    for m in report.configuration["hpa"]["metrics"]:
        lines.append(f"| `{m['name']}` ({m['type']}) | {m['target']:g} |")
    lines += [
        "",
        "## Reaction-time budget",
        "",
        "Configured terms come from the rendered chart (cluster seconds; the lab ran them divided by the speed);",
        "measured terms are lab seconds.",
        "",
        "| term | lab s | cluster s | source | moved by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in report.budget:
        lines.append(
            f"| {b['term']} | {_fmt(b['lab_s'], '')} | {_fmt(b['cluster_s'], '')} | {b['source']} | {b['moved_by']} |"
        )
    lines += ["", "## Timeline (seconds after the load started)", "", "| event | t |", "| --- | --- |"]
    for key, value in tl.as_dict().items():
        lines.append(f"| {key.replace('_', ' ')} | {_fmt(value)} |")
    lines += ["", "## Scaling decisions", "", "| t | current → desired | reason |", "| --- | --- | --- |"]
    for d in report.decisions:
        if d["desired"] != d["current"]:
            lines.append(f"| {d['t']:.1f} | {d['current']} → {d['desired']} | {d['reason']} |")
    if report.verification:
        lines += ["", "## Checks", "", "```json", json.dumps(report.verification, indent=2, sort_keys=True), "```"]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    lines += ["", "Files: `timeseries.csv` (one row a second), `report.json` (everything above, as data).", ""]
    return "\n".join(lines)


def plot(report: LabReport, path: Path) -> None:
    """lab.png: load, signal vs target, replicas and p95 latency on shared time axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows
    t = [r["t"] for r in rows]

    def series(key: str) -> list[float]:
        return [math.nan if r.get(key) is None else float(r[key]) for r in rows]

    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True, constrained_layout=True)
    ax = axes[0]
    ax.plot(t, series("load_level"), label=f"offered load ({report.scenario.get('unit', 'clients')})", color="tab:blue")
    ax.plot(t, series("ok_per_s"), label="completed requests/s", color="tab:gray", alpha=0.7)
    ax.set_ylabel("load")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[1]
    colors = ["tab:orange", "tab:green", "tab:purple", "tab:brown"]
    for i, metric in enumerate(report.configuration["hpa"]["metrics"]):
        color = colors[i % len(colors)]
        name = metric["name"]
        values = series(signal_column(name))
        if all(math.isnan(v) for v in values):
            values = series(hpa_column(name))
        ax.plot(t, [v / metric["target"] for v in values], color=color, label=f"{name} / target {metric['target']:g}")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="target")
    ax.axhspan(0.9, 1.1, color="gray", alpha=0.15, label="±10 % tolerance")
    ax.set_ylabel("signal ÷ target")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[2]
    ax.step(t, series("replicas_desired"), where="post", label="desired (HPA)", color="tab:red")
    ax.step(t, series("replicas_current"), where="post", label="current", color="tab:blue", linestyle="--")
    ax.step(t, series("replicas_ready"), where="post", label="ready", color="tab:green")
    ax.set_ylabel("replicas")
    ax.set_ylim(0, report.configuration["hpa"]["max"] + 0.5)
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[3]
    ax.plot(t, series("e2e_p95_s"), label="p95 end-to-end latency (5 s window)", color="tab:purple")
    ax.plot(t, series("ttft_p95_s"), label="p95 time to first token", color="tab:pink", alpha=0.7)
    slo = report.summary.get("slo_p95_s")
    if slo:
        ax.axhline(slo, color="black", linestyle="--", linewidth=1, label=f"SLO p95 {slo:g} s")
    ax.set_ylabel("seconds")
    ax.set_xlabel("seconds since the load started (lab time)")
    ax.legend(loc="upper right", fontsize=8)

    tl = report.timeline
    for ax in axes:
        for when, color in ((tl.surge_at, "tab:blue"), (tl.scale_up_decision_at, "tab:red"),
                            (tl.new_replica_ready_at, "tab:green"), (tl.decline_at, "tab:gray")):
            if when is not None:
                ax.axvline(when, color=color, alpha=0.35, linewidth=1)
    fig.suptitle(f"llmprep lab: {report.scenario.get('name')} (speed {report.configuration['speed']:g}×; stand-in engine)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def write_all(report: LabReport, out_dir: Path) -> dict[str, Path]:
    """Write the four files into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "timeseries": out_dir / "timeseries.csv",
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "plot": out_dir / "lab.png",
    }
    write_atomic(paths["timeseries"], timeseries_csv(report.rows, report.columns))
    write_atomic(paths["json"], json.dumps(report.to_json(), indent=2, sort_keys=True, default=str) + "\n")
    write_atomic(paths["markdown"], markdown(report))
    plot(report, paths["plot"])
    return paths


def summary_lines(report: LabReport) -> list[str]:
    """The printed summary (plain text, one fact a line)."""
    s = report.summary
    return [
        f"peak replicas: {s['peak_replicas']} (max {s['max_replicas']})",
        f"surge → scale-up decision: {_fmt(s['surge_to_decision_s'])}; → new replica ready: {_fmt(s['surge_to_ready_s'])}",
        f"load falls → back to {s['min_replicas']} replica(s): {_fmt(s['decline_to_min_s'])}",
        f"requests: {s['requests']}, failed: {s['failed_requests']}, p95 latency {_fmt(s['e2e_p95_s'])}",
    ]

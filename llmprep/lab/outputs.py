"""The lab's files: timeseries.csv, report.json, report.md, lab.png, and the printed summary.

Everything here writes a `LabReport` (llmprep.lab.report builds it) and computes nothing new;
each file is written atomically, so an interrupted run leaves whole files or none.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmprep.files import write_bytes_atomic, write_text_atomic
from llmprep.lab.recorder import hpa_column, signal_column
from llmprep.lab.report import LabReport


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
    ]
    cold = s.get("from_zero") or {}
    if cold.get("requests"):
        ttft = max(cold["ttft_s"], default=None)
        lines.append(
            f"| requests at zero replicas (failed), slowest first token | {cold['requests']} "
            f"({cold['failed']}), {_fmt(ttft)} |"
        )
    lines += [
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
        "Configured terms come from the rendered chart (cluster seconds) beside the lab seconds the run used:",
        "divided by the speed, and raised to the lab's floor where marked *clamped* (llmprep/lab/timing.py);",
        "measured terms are lab seconds.",
        "",
        "| term | lab s | cluster s | source | moved by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in report.budget:
        lines.append(
            f"| {b['term']} | {_fmt(b['lab_s'], '')}{' (clamped)' if b.get('clamped') else ''} | "
            f"{_fmt(b['cluster_s'], '')} | {b['source']} | {b['moved_by']} |"
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
        for when, color in (
            (tl.surge_at, "tab:blue"),
            (tl.scale_up_decision_at, "tab:red"),
            (tl.new_replica_ready_at, "tab:green"),
            (tl.decline_at, "tab:gray"),
        ):
            if when is not None:
                ax.axvline(when, color=color, alpha=0.35, linewidth=1)
    fig.suptitle(
        f"llmprep lab: {report.scenario.get('name')} (speed {report.configuration['speed']:g}×; stand-in engine)"
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def write_all(report: LabReport, out_dir: Path) -> dict[str, Path]:
    """Write the four files into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "timeseries": out_dir / "timeseries.csv",
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "plot": out_dir / "lab.png",
    }
    write_text_atomic(paths["timeseries"], timeseries_csv(report.rows, report.columns))
    write_text_atomic(paths["json"], json.dumps(report.to_json(), indent=2, sort_keys=True, default=str) + "\n")
    write_text_atomic(paths["markdown"], markdown(report))
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


def status_line(row: Mapping[str, Any], metrics: Sequence[tuple[str, float]]) -> str:
    """The progress bar's one-line status of a recorded row."""

    def num(v: Any, fmt: str = "{:.2f}") -> str:
        return "–" if v is None else fmt.format(v)

    signals = " ".join(
        f"{name.split(':')[-2] if name.count(':') >= 2 else name} {num(row.get(f'signal {name}'))}/{target:g}"
        for name, target in metrics
    )
    return (
        f"load {num(row.get('load_level'), '{:g}')} | replicas {row.get('replicas_ready')}/"
        f"{row.get('replicas_current')} ready, want {row.get('replicas_desired')} | {signals} | "
        f"p95 {num(row.get('e2e_p95_s'))} s | errors {row.get('errors')}"
    )

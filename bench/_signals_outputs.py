"""The signals proof's helpers (bench/signals_proof.py): the cost model's capacity, whether a run can be judged,
the tables, plots and the measured block of docs/signals.md."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmprep.files import write_bytes_atomic

BATCH_BOUND = "batch-bound"
KV_BOUND = "kv-bound"


def capacity_clients(standin: Mapping[str, Any], input_tokens: int) -> int:
    """Closed-loop clients one replica serves at once: the batcher's maximum, or fewer when the KV
    pool (`kv_cache_blocks`, 0 = ample) holds fewer whole sequences (prompt + generated tokens)."""
    active = int(standin["max_in_flight"])
    blocks = int(standin.get("kv_cache_blocks") or 0)
    if not blocks:
        return active
    per_sequence = max(1, math.ceil((input_tokens + int(standin["output_tokens"])) / int(standin["tokens_per_block"])))
    return max(1, min(active, blocks // per_sequence))


def service_ms(standin: Mapping[str, Any], input_tokens: int) -> float:
    """One request's time in the cost model: its prompt's prefill plus outputTokens decode steps."""
    return input_tokens * float(standin["prefill_ms_per_token"]) + int(standin["output_tokens"]) * float(
        standin["decode_ms_per_step"]
    )


FAILED_MAX = 0.01  # a run with more failed requests than this share is not judged


def run_invalid(report: Mapping[str, Any]) -> str:
    """Why a lab run cannot be judged ("" when it can): failed requests or a replica that exited."""
    summary = report.get("summary", {})
    failed, total = int(summary.get("failed_requests") or 0), int(summary.get("requests") or 0)
    exits = [e for e in report.get("events", []) if e.get("kind") == "failed"]
    reasons = []
    if total and failed > FAILED_MAX * total:
        reasons.append(f"{failed} of {total} requests failed")
    if exits:
        reasons.append(f"{len(exits)} replica exit(s): {exits[0].get('detail', '').split(';')[0]}")
    return "; ".join(reasons)


def label(case: Mapping[str, Any]) -> str:
    """`runtime / layout`, with the opposite assumption marked."""
    return f"{case['runtime']} / {case['layout']}" + (
        " (queueInTriton)" if case["standin"].get("queueInTriton") else ""
    )


def num(v: float | None) -> str:
    if v is None:
        return "–"
    if v == 0:
        return "0"
    return f"{v:.3g}"


# Where each recorded signal's source family comes from outside the stand-in, per runtime: a signal
# the lab proves is a default input only where a real deployment exports it (docs/monitoring.md,
# docs/repository.md: the C++ backend exports no executor queue; our llmapi model publishes
# numQueuedRequests from LLM.get_stats(); only the stand-in llmapi model counts requests in flight).
STANDIN_ONLY: dict[str, frozenset[str]] = {
    "engine": frozenset({"trtllm:requests_queued", "llmprep:requests_in_flight"}),
    "pytorch": frozenset({"llmprep:requests_in_flight"}),
}
DOC_BEGIN = "<!-- signals_proof: begin (written by bench/signals_proof.py --doc; do not edit by hand) -->"
DOC_END = "<!-- signals_proof: end -->"


def table_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    shown = sorted({lv["level"] for res in results for lv in res["levels"] if lv["level"] > 0})
    lines = [
        "| runtime / layout | regime | signal | target | "
        + " | ".join(f"median at {x:g}×" for x in shown)
        + " | ρ (1×–4×) | at target from | p95 > SLO from | verdict |",
        "| --- | --- | --- | --- | " + "--- | " * len(shown) + "--- | --- | --- | --- |",
    ]
    for res in results:
        case = res["case"]
        levels = [lv["level"] for lv in res["levels"]]
        for v in res["verdicts"]:

            def at(x: float, v: Mapping[str, Any] = v, levels: list[float] = levels) -> str:
                return num(v["medians"][levels.index(x)]) if x in levels else "–"

            cross = "–" if v["crossed_at_level"] is None else f"{v['crossed_at_level']:g}× ({v['crossed_at_s']:.0f} s)"
            breach = "never" if v["slo_breach_at_s"] is None else f"{v['slo_breach_at_s']:.0f} s"
            mark = "**proven**" if v["verdict"] == "proven" else f"not proven: {v['reason']}"
            if all(m is None for m in v["medians"]):
                mark += " (no series: not exported in this layout)"
            if v.get("quiet_under_capacity") is False:
                mark += " (over its target already at 0.5×: scales up without need)"
            lines.append(
                f"| {label(case)} | {case.get('regime', BATCH_BOUND)} | `{v['signal']}` | {num(v['target'])} | "
                + " | ".join(at(x) for x in shown)
                + f" | {v['spearman']:.2f} | {cross} | {breach} | {mark} |"
            )
    return "\n".join(lines) + "\n"


def summary_markdown(results: Sequence[Mapping[str, Any]], signals: Sequence[str]) -> str:
    """Per runtime / layout: what passes the batch-bound proof (the rule), what also passes KV-bound,
    and which of those a real deployment exports (the candidates for a default input)."""
    by_layout: dict[str, dict[str, set[str]]] = {}
    runtimes: dict[str, str] = {}
    for res in results:
        case = res["case"]
        entry = by_layout.setdefault(label(case), {})
        runtimes[label(case)] = case["runtime"]
        entry[case.get("regime", BATCH_BOUND)] = {v["signal"] for v in res["verdicts"] if v["verdict"] == "proven"}
    lines = [
        "| runtime / layout | proven (batch-bound: the rule) | also passes KV-bound | "
        "of those, exported outside the stand-in | passes KV-bound only (not proven by the rule) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, regimes in by_layout.items():
        batch = regimes.get(BATCH_BOUND)
        kv = regimes.get(KV_BOUND)
        order = [s for s in signals if batch and s in batch]
        both = [s for s in order if kv is not None and s in kv]
        real = [s for s in (both if kv is not None else order) if s not in STANDIN_ONLY.get(runtimes[name], ())]

        def cell(items: Sequence[str], ran: bool) -> str:
            return ", ".join(f"`{s}`" for s in items) or ("none" if ran else "not run")

        kv_only = [s for s in signals if kv and s in kv and not (batch and s in batch)]
        lines.append(
            f"| {name} | {cell(order, batch is not None)} | {cell(both, kv is not None)} | "
            f"{cell(real, batch is not None)} | {cell(kv_only, kv is not None)} |"
        )
    return "\n".join(lines) + "\n"


def levels_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| runtime / layout | regime | load (× capacity) | clients | completions/s | p95 (s) | SLO (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results:
        case = res["case"]
        for lv in res["levels"]:
            lines.append(
                f"| {label(case)} | {case.get('regime', BATCH_BOUND)} | {lv['level']:g} | "
                f"{int(round(lv['level'] * res['capacity_clients']))} | "
                f"{num(lv['ok_per_s'])} | {num(lv['e2e_p95_s'])} | {res['slo_ms'] / 1000:g} |"
            )
    return "\n".join(lines) + "\n"


def plot_name(runtime: str, regime: str) -> str:
    return f"signals-{runtime}-{regime}.png"


def plot_runtime(runtime: str, regime: str, results: Sequence[Mapping[str, Any]], path: Path) -> None:
    """One figure per runtime × regime, one panel per layout run in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [r for r in results if r["case"]["runtime"] == runtime and r["case"].get("regime", BATCH_BOUND) == regime]
    fig, axes = plt.subplots(1, len(cases), figsize=(6.2 * len(cases), 4.6), squeeze=False, sharey=True)
    for ax, res in zip(axes[0], cases, strict=True):
        x = [lv["level"] for lv in res["levels"]]
        for v in res["verdicts"]:
            y = [None if m is None else min(m / v["target"], 4.0) for m in v["medians"]]
            style = "-" if v["verdict"] == "proven" else "--"
            ax.plot(
                x,
                [float("nan") if val is None else val for val in y],
                style,
                marker="o",
                markersize=3,
                label=v["signal"],
            )
        p95 = [lv["e2e_p95_s"] for lv in res["levels"]]
        ax.plot(
            x,
            [float("nan") if p is None else min(p / (res["slo_ms"] / 1000), 4.0) for p in p95],
            "k:",
            linewidth=2,
            label="p95 latency ÷ SLO",
        )
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{label(res['case'])}, {regime} (capacity {res['capacity_clients']} clients)")
        ax.set_xlabel("offered load (× one replica's capacity)")
        ax.set_ylim(0, 4.1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("signal ÷ target (clipped at 4)")
    fig.suptitle(f"{runtime} runtime, {regime}: per-level medians; solid = proven, dashed = not", fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue(), mode=0o644)


def doc_block(doc: Mapping[str, Any], plots: Sequence[str], signals: Sequence[str]) -> str:
    """The measured part of docs/signals.md: how it was run, the summary, the table, the levels, the plots."""
    results = doc["results"]
    minutes = doc.get("elapsed_s", 0) / 60
    head = (
        f"Run on {doc['started_utc']} – {doc['finished_utc']} ({minutes:.1f} min for {len(results)} lab runs) "
        f"on {doc['machine']}: `{doc.get('command') or 'python bench/signals_proof.py'}`; levels "
        f"{', '.join(f'{x:g}×' for x in doc['levels'])} one replica's capacity, {doc['hold_s']:g} s each, "
        f"speed {doc['speed']:g}. Lab runs started (UTC): "
        + ", ".join(f"{r['case']['name']} {str(r.get('lab_run_started_utc') or '?')[11:19]}" for r in results)
        + ".\n"
    )
    figures = "".join(f"\n![{Path(p).stem}](img/{Path(p).name})\n" for p in plots)
    return (
        "\n".join([head, summary_markdown(results, signals), table_markdown(results), levels_markdown(results)])
        + figures
    )


def replace_block(text: str, block: str) -> str:
    """`text` with the part between DOC_BEGIN and DOC_END replaced by `block` (both markers kept)."""
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the document has no {DOC_BEGIN!r} … {DOC_END!r} block")
    return text[: begin + len(DOC_BEGIN)] + "\n" + block.strip("\n") + "\n" + text[end:]

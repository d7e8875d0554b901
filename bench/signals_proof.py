#!/usr/bin/env python3
"""Prove which autoscaling signals work, per runtime, layout and regime, with the local autoscaling lab.

Each case runs one `llmprep lab` scenario with autoscaling pinned to one replica (minimum =
maximum = 1), so every candidate signal is observed against the load rather than against the HPA's
reaction. The default cases are engine/ensemble and pytorch/llmapi, each in two regimes:
*batch-bound* (the KV cache ample: the batch fills and the excess waits in the executor's queue)
and *KV-bound* (longer prompts on a KV pool of 4 sequences under a batcher of 8: admitted requests
wait for blocks, then the rest in the executor's queue); engine/BLS and the opposite assumption
`model.standin.queueInTriton=true` run with --case. The load steps from idle to 4× one replica's
capacity (full: 0.25×, 0.5×, 1×, 1.5×, 2×, 3×, 4×; --short: 1×, 1.5×, 2×, 4×). Capacity comes from the
stand-in's cost model: the batcher's `maxInFlight`, or the whole sequences the KV pool holds if
fewer; the table also shows the measured completions per second per level, which stop growing there.

A signal is **proven** for a case when both hold:

1. *monotone past saturation*: the Spearman rank correlation between the offered load and the
   signal's per-level median, over the levels from 1× to 4×, is at least 0.9, and the median at 4×
   exceeds the median at 1× by at least half the signal's target;
2. *crosses in time*: the signal (the recorded series, as Prometheus serves it) is at or above its
   target for two consecutive seconds before the end-to-end p95 latency is above the scenario's SLO
   for two consecutive seconds, or within the same load step (or it crosses at all, if p95 never
   passes the SLO). Within one step the order is a race between a scrape plus an evaluation and
   one request's time, not a property of the signal (see `judge`).

Targets come from the rendered HorizontalPodAutoscaler where the chart sets one (the tutorials'
`triton:queue_compute:ratio` at 1, `trtllm:requests_waiting` at 2); for the others the chart
README's suggested targets (SUGGESTED_TARGETS below). The SLO is twice one request's service time
in the cost model (prefill + outputTokens decode steps): latency the user sees once requests wait
as long as they run.

    python bench/signals_proof.py --short --doc docs/signals.md   # the four default cases
    python bench/signals_proof.py --case engine-ensemble --short --out /tmp/proof
    python bench/signals_proof.py --rejudge --short --out DIR --doc docs/signals.md  # judge again, run nothing

A signal is proven for a layout when it passes in the batch-bound regime (issue 19); the summary
also says whether it passes KV-bound and whether a real deployment exports it.
Writes OUT/signals.json, OUT/signals.md (summary and tables), one plot per runtime × regime
(PLOTS/signals-<runtime>-<regime>.png) and, with --doc, the measured block of that page; each
case's lab report lies in OUT/<case>/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from bench._common import spearman  # noqa: E402  (after the sys.path line above)
from bench._lab import INPUT_TOKENS, KV_INPUT_TOKENS, KV_STANDIN  # noqa: E402
from bench._signals_outputs import (  # noqa: E402
    BATCH_BOUND,
    KV_BOUND,
    capacity_clients,
    doc_block,
    levels_markdown,
    num,
    plot_name,
    plot_runtime,
    replace_block,
    run_invalid,
    service_ms,
    summary_markdown,
    table_markdown,
)
from llmprep.files import write_bytes_atomic  # noqa: E402

SIGNALS = (
    "triton:queue_compute:ratio",
    "triton:pending_requests",
    "trtllm:requests_waiting",
    "trtllm:kv_cache:utilization",
    "triton:request_duration:average",
    "triton:compute_duration:average",
    # Issue 19: inputs that see the executor's queue (triton:first_response_ms:p95 is left out:
    # Triton 2.51, which the lab runs, has no first-response histogram; docs/monitoring.md).
    "trtllm:batch:fullness",
    "trtllm:requests_queued",
    "llmprep:requests_in_flight",
)
# Targets for signals the chart renders no HPA metric for by default (chart README, "Signals").
# Durations are in microseconds: half the SLO (set per run), so a duration average says "requests
# take half the budget" before users see the whole budget spent.
SUGGESTED_TARGETS: dict[str, float | str] = {
    "triton:queue_compute:ratio": 1.0,
    "triton:pending_requests": 2.0,
    "trtllm:requests_waiting": 2.0,
    "trtllm:kv_cache:utilization": 0.8,
    "triton:request_duration:average": "slo/2",
    "triton:compute_duration:average": "slo/2",
    # Not chart defaults: full batch; two requests queued; maxInFlight (4) + 2 in flight.
    "trtllm:batch:fullness": 0.9,
    "trtllm:requests_queued": 2.0,
    "llmprep:requests_in_flight": 6.0,
}
FULL_LEVELS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # × one replica's capacity
# Short: the least that shows saturation and separates "crosses its target" from "p95 passes the
# SLO" (at 1.5× a queue of 2 forms while p95 is still under the SLO of 2× one request's time;
# without it both happen within a second of the step to 2×, measured 2026-12-04).
SHORT_LEVELS = (0.0, 1.0, 1.5, 2.0, 4.0)
SPEARMAN_MIN = 0.9
MARGIN_OF_TARGET = 0.5
CONSECUTIVE_S = 2
SLO_TIMES_SERVICE = 2.0
# The lab profile's 25 ms decode step leaves the ensemble's per-chunk Python work a large share of
# each request on 2 CPU cores (measured: 6 requests/s at 4 clients instead of the model's 9.9);
# 60 ms steps keep the engine, not the host, the bottleneck (as tests/e2e/test_standin_queueing.py does).
DECODE_MS_PER_STEP = 60.0


# Batch-bound prompts are INPUT_TOKENS; KV-bound ones KV_INPUT_TOKENS on KV_STANDIN (bench/_lab.py).


@dataclass(frozen=True)
class Case:
    name: str
    runtime: str
    layout: str
    model: str | None  # the load's entry model; None: the layout's (ensemble / tensorrt_llm)
    sets: tuple[str, ...] = ()
    standin: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    regime: str = BATCH_BOUND
    input_tokens: int = INPUT_TOKENS


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("engine-ensemble", "engine", "ensemble", "ensemble", ("model.tensorrtLlm.runtime=engine",)),
        # Upstream's BLS model serves its requests one after another inside execute(): with one
        # instance a replica's capacity would be one request, so give it maxInFlight instances.
        Case(
            "engine-bls",
            "engine",
            "BLS",
            "tensorrt_llm_bls",
            ("model.tensorrtLlm.runtime=engine", "model.repository.instances.bls=4"),
            note="model.repository.instances.bls=4 (= maxInFlight)",
        ),
        # The proof streams; since issue 18 the llmapi model is unary unless asked (upstream's default).
        Case(
            "pytorch-llmapi",
            "pytorch",
            "llmapi",
            None,
            ("model.tensorrtLlm.runtime=pytorch", "model.repository.llmapiDecoupled=true"),
            note="model.repository.llmapiDecoupled=true (streaming)",
        ),
        Case(
            "engine-ensemble-queueInTriton",
            "engine",
            "ensemble",
            "ensemble",
            ("model.tensorrtLlm.runtime=engine",),
            {"queueInTriton": True},
            note="opposite assumption: model.standin.queueInTriton=true",
        ),
        Case(
            "engine-ensemble-kv",
            "engine",
            "ensemble",
            "ensemble",
            ("model.tensorrtLlm.runtime=engine",),
            KV_STANDIN,
            note="KV pool of 4 sequences, batcher of 8",
            regime=KV_BOUND,
            input_tokens=KV_INPUT_TOKENS,
        ),
        Case(
            "pytorch-llmapi-kv",
            "pytorch",
            "llmapi",
            None,
            ("model.tensorrtLlm.runtime=pytorch", "model.repository.llmapiDecoupled=true"),
            KV_STANDIN,
            note="KV pool of 4 sequences, batcher of 8; streaming",
            regime=KV_BOUND,
            input_tokens=KV_INPUT_TOKENS,
        ),
    )
}
# Issue 19: both regimes for both runtimes the stand-in serves (BLS and queueInTriton: --case).
DEFAULT_CASES = ("engine-ensemble", "pytorch-llmapi", "engine-ensemble-kv", "pytorch-llmapi-kv")


# --------------------------------------------------------------------------- the verdict


def first_sustained(
    rows: Sequence[Mapping[str, Any]], key: str, threshold: float, start: float, consecutive: int = CONSECUTIVE_S
) -> float | None:
    """The time of the first of `consecutive` rows after `start` whose `key` is at or above `threshold`."""
    run: list[float] = []
    for row in rows:
        if row["t"] < start:
            continue
        value = row.get(key)
        if value is not None and value >= threshold:
            run.append(float(row["t"]))
            if len(run) >= consecutive:
                return run[0]
        else:
            run = []
    return None


@dataclass
class SignalVerdict:
    case: str
    runtime: str
    layout: str
    signal: str
    target: float
    target_source: str
    medians: list[float | None]  # per level, in FULL order of `levels`
    spearman: float
    rise_1x_to_4x: float | None
    monotone: bool
    crossed_at_s: float | None
    crossed_at_level: float | None
    slo_breach_at_s: float | None
    crosses_before_slo: bool
    quiet_under_capacity: bool | None  # below target at half capacity (informational: no scale-up while idle)
    verdict: str  # "proven" or "not proven"
    reason: str


def judge(
    case: Case,
    rows: Sequence[Mapping[str, Any]],
    windows: Sequence[tuple[float, float, float, float]],  # (level × capacity, level start, steady from, end)
    targets: Mapping[str, tuple[float, str]],
    slo_s: float,
) -> tuple[list[SignalVerdict], list[dict[str, Any]]]:
    """Per-level medians of every signal, p95 and throughput; the verdict of each signal."""

    def median(key: str, lo: float, hi: float) -> float | None:
        values = [float(r[key]) for r in rows if lo <= r["t"] < hi and r.get(key) is not None]
        return statistics.median(values) if values else None

    levels = []
    for level, _, lo, hi in windows:
        entry: dict[str, Any] = {
            "level": level,
            "from_s": lo,
            "to_s": hi,
            "e2e_p95_s": median("e2e_p95_s", lo, hi),
            "ok_per_s": median("ok_per_s", lo, hi),
        }
        for name in SIGNALS:
            entry[name] = median(f"signal {name}", lo, hi)
        levels.append(entry)
    first_loaded = next((start for level, start, _, _ in windows if level > 0), 0.0)
    breach = first_sustained(rows, "e2e_p95_s", slo_s + 1e-9, first_loaded)
    level_of = [(start, level) for level, start, _, _ in windows]

    def level_at(t: float) -> float:
        return max((lvl for lo, lvl in level_of if lo <= t), default=0.0)

    levels_x = [lv["level"] for lv in levels]

    verdicts = []
    for name in SIGNALS:
        target, source = targets[name]
        meds = [lv[name] for lv in levels]
        past = [(lv["level"], lv[name]) for lv in levels if lv["level"] >= 1.0]
        xs = [x for x, v in past if v is not None]
        ys = [float(v) for _, v in past if v is not None]
        rho = spearman(xs, ys) if len(ys) == len(past) else 0.0
        at1 = next((v for x, v in past if x == 1.0), None)
        at4 = next((v for x, v in past if x == max(x for x, _ in past)), None) if past else None
        rise = (at4 - at1) if at1 is not None and at4 is not None else None
        monotone = rho >= SPEARMAN_MIN and rise is not None and rise >= MARGIN_OF_TARGET * target
        crossed = first_sustained(rows, f"signal {name}", target, first_loaded)
        crossed_level = None
        if crossed is not None:
            crossed_level = level_at(crossed)
        # In time: before the breach, or during the load step in which p95 passes the SLO. At a step
        # past capacity the first waiting requests pass the SLO within about one request's time
        # (~2 s here), as long as a scrape plus a rule evaluation (2.4 lab s at speed 5, 12 s on a
        # cluster), so the order of the two inside one step is a coin toss (measured: ±1 s, flipping
        # between two runs of the same case); a signal that crosses only at a later step is late.
        in_time = crossed is not None and (
            breach is None or crossed < breach or (crossed_level is not None and crossed_level <= level_at(breach))
        )
        reasons = []
        if not monotone:
            reasons.append(
                f"not monotone past saturation (ρ={rho:.2f}, rise {num(rise)} < {MARGIN_OF_TARGET:g}×target)"
                if rho >= SPEARMAN_MIN
                else f"not monotone past saturation (ρ={rho:.2f})"
            )
        if crossed is None:
            reasons.append("never reaches its target")
        elif not in_time:
            reasons.append(
                f"reaches its target {crossed - breach:.0f} s after p95 passed the SLO, at a later load step"
                if breach
                else ""
            )
        half = next((v for x, v in zip(levels_x, meds, strict=True) if x == 0.5), None)
        quiet = None if half is None else half < target
        proven = monotone and in_time
        verdicts.append(
            SignalVerdict(
                case=case.name,
                runtime=case.runtime,
                layout=case.layout,
                signal=name,
                target=target,
                target_source=source,
                medians=meds,
                spearman=round(rho, 3),
                rise_1x_to_4x=None if rise is None else round(rise, 4),
                monotone=monotone,
                crossed_at_s=crossed,
                crossed_at_level=crossed_level,
                slo_breach_at_s=breach,
                crosses_before_slo=in_time,
                quiet_under_capacity=quiet,
                verdict="proven" if proven else "not proven",
                reason="; ".join(r for r in reasons if r) or "rises past saturation and crosses before the SLO",
            )
        )
    return verdicts, levels


# --------------------------------------------------------------------------- one case


def scenario_doc(
    case: Case, levels: Sequence[float], hold_s: float, speed: float, capacity: int, slo_ms: float
) -> dict[str, Any]:
    stages = [{"step": {"to": int(round(level * capacity)), "for": f"{hold_s:g}s"}} for level in levels]
    return {
        "name": f"signals-{case.name}",
        "description": f"Signals proof, {case.runtime}/{case.layout} {case.regime}: idle to 4× one replica's "
        "capacity, pinned to 1.",
        "values": ["cpu-standin.values.yaml"],
        "set": [*case.sets, "autoscaling.replicas.minimum=1", "autoscaling.replicas.maximum=1"],
        "speed": speed,
        "syncPeriod": "15s",
        "load": {
            "protocol": "grpc",
            "unit": "clients",
            "stages": stages,
            "inputTokens": case.input_tokens,
            "connections": 8,
            "reconnectEvery": "2s",
            "timeout": "60s",
            **({"model": case.model} if case.model else {}),
        },
        "standin": {"decodeMsPerStep": DECODE_MS_PER_STEP, **case.standin},
        "slo": {"p95LatencyMs": slo_ms},
        "settle": "30s",
    }


def run_case(case: Case, *, out_dir: Path, levels: Sequence[float], hold_s: float, speed: float) -> dict[str, Any]:
    """Run one case in the lab (report in out_dir/<case>/) and judge its signals."""
    from rich.console import Console

    from llmprep.lab.rendered import prepare
    from llmprep.lab.run import run_lab
    from llmprep.lab.scenario import data_dir, parse_scenario

    # The cost model the scenario will run: read it off the rendered chart, not restated here.
    probe = parse_scenario(scenario_doc(case, levels, hold_s, speed, 1, 1000.0), base_dir=data_dir())
    st = vars(prepare(probe, None).spec.standin)
    slo_ms = round(SLO_TIMES_SERVICE * service_ms(st, case.input_tokens), 1)
    capacity = capacity_clients(st, case.input_tokens)
    scenario = parse_scenario(scenario_doc(case, levels, hold_s, speed, capacity, slo_ms), base_dir=data_dir())
    result = run_lab(scenario, out_dir=out_dir / case.name, console=Console(stderr=True))
    report = json.loads(Path(result.paths["json"]).read_text())
    return analyse(case, report, levels=levels, hold_s=hold_s, report_path=result.paths.get("markdown"))


def analyse(
    case: Case, report: Mapping[str, Any], *, levels: Sequence[float], hold_s: float, report_path: Path | None = None
) -> dict[str, Any]:
    """The verdicts of one lab run, from its report.json."""
    rows = report["timeseries"]
    configuration = report["configuration"]
    standin = configuration["model"]["standin"]
    capacity = capacity_clients(standin, case.input_tokens)
    service = service_ms(standin, case.input_tokens)
    slo_ms = float(report["scenario"]["slo_p95_ms"])
    # Level windows: the load's own stage boundaries; the median is taken over the second half of
    # each hold, once the rate window (compressed by `speed`) holds only that level.
    windows = [(level, i * hold_s, i * hold_s + hold_s / 2, (i + 1) * hold_s) for i, level in enumerate(levels)]
    rendered = {m["name"]: float(m["target"]) for m in configuration["hpa"]["metrics"]}
    targets: dict[str, tuple[float, str]] = {}
    for name in SIGNALS:
        suggested = SUGGESTED_TARGETS[name]
        if name in rendered:
            targets[name] = (rendered[name], "rendered HPA")
        elif suggested == "slo/2":
            targets[name] = (slo_ms * 1000 / 2, "chart README: half the SLO, µs")
        else:
            targets[name] = (float(suggested), "chart README")
    verdicts, per_level = judge(case, rows, windows, targets, slo_ms / 1000)
    invalid = run_invalid(report)
    if invalid:  # a replica that died or requests that failed say nothing about a signal: no verdict
        for v in verdicts:
            v.verdict, v.reason = "not proven", f"run invalid ({invalid}): run the case again"
    return {
        "case": asdict(case) | {"standin": dict(case.standin)},
        "capacity_clients": capacity,
        "service_ms": service,
        "slo_ms": slo_ms,
        "cost_model": dict(standin),
        "levels": per_level,
        "verdicts": [asdict(v) for v in verdicts],
        "budget": report.get("reaction_time_budget", []),
        "hpa_metrics": configuration["hpa"]["metrics"],
        "lab_summary": {
            k: report["summary"].get(k) for k in ("requests", "failed_requests", "e2e_p95_s", "duration_s")
        },
        "invalid": invalid,
        "verification": {
            k: report.get("verification", {}).get(k) for k in ("recording_rules_checked", "recording_rules_matched")
        },
        "notes": report.get("notes", []),
        "report": str(report_path or ""),
        "lab_run_started_utc": datetime.fromtimestamp(rows[0]["time"], timezone.utc).isoformat(timespec="seconds")
        if rows
        else None,
    }


# --------------------------------------------------------------------------- outputs


def run_proof(
    cases: Sequence[str] = DEFAULT_CASES,
    *,
    out_dir: Path,
    plots_dir: Path | None,
    short: bool = False,
    hold_s: float | None = None,
    speed: float = 5.0,
    rejudge: bool = False,
    doc_path: Path | None = None,
) -> dict[str, Any]:
    """Run every case; write signals.json, signals.md, the plots (and the block of `doc_path`); return the JSON."""
    if doc_path is not None:  # before any run: a page without the block fails now, not after the runs
        replace_block(doc_path.read_text(), "")
    levels = SHORT_LEVELS if short else FULL_LEVELS
    hold = hold_s if hold_s is not None else (20.0 if short else 24.0)
    started = datetime.now(timezone.utc)
    results = []
    for name in cases:
        if rejudge:  # judge the lab runs already in out_dir again (after changing the test, not the runs)
            report = json.loads((out_dir / name / "report.json").read_text())
            results.append(
                analyse(CASES[name], report, levels=levels, hold_s=hold, report_path=out_dir / name / "report.md")
            )
        else:
            results.append(run_case(CASES[name], out_dir=out_dir, levels=levels, hold_s=hold, speed=speed))
    doc = {
        "command": " ".join(["python", "bench/signals_proof.py", *sys.argv[1:]])
        if sys.argv[0].endswith("signals_proof.py")
        else None,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "levels": list(levels),
        "hold_s": hold,
        "speed": speed,
        "test": {
            "spearman_min": SPEARMAN_MIN,
            "margin_of_target": MARGIN_OF_TARGET,
            "consecutive_s": CONSECUTIVE_S,
            "slo_times_service": SLO_TIMES_SERVICE,
        },
        "results": results,
    }
    doc["elapsed_s"] = round((datetime.now(timezone.utc) - started).total_seconds())
    previous = out_dir / "signals.json"
    if rejudge and previous.exists():  # the runs' own times and command, not the rejudging's
        old = json.loads(previous.read_text())
        doc.update({k: old[k] for k in ("command", "started_utc", "finished_utc", "machine", "elapsed_s") if k in old})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / "signals.json", json.dumps(doc, indent=2, default=str).encode(), mode=0o644)
    write_bytes_atomic(
        out_dir / "signals.md",
        "\n".join([summary_markdown(results, SIGNALS), table_markdown(results), levels_markdown(results)]).encode(),
        mode=0o644,
    )
    plots: list[str] = []
    if plots_dir is not None:
        for runtime, regime in sorted({(r["case"]["runtime"], r["case"].get("regime", BATCH_BOUND)) for r in results}):
            plot_runtime(runtime, regime, results, plots_dir / plot_name(runtime, regime))
            plots.append(plot_name(runtime, regime))
    if doc_path is not None:
        text = replace_block(doc_path.read_text(), doc_block(doc, plots, SIGNALS))
        write_bytes_atomic(doc_path, text.encode(), mode=0o644)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    parser.add_argument(
        "--short", action="store_true", help="levels 0, 1×, 1.5×, 2×, 4× and 20 s holds (the test's mode)"
    )
    parser.add_argument("--hold", type=float, default=None, help="seconds at each load level")
    parser.add_argument("--speed", type=float, default=5.0, help="the lab's time compression of the control loop")
    parser.add_argument(
        "--out", type=Path, default=Path("signals-out"), help="folder for signals.json/.md and lab runs"
    )
    parser.add_argument(
        "--plots", type=Path, default=ROOT / "docs" / "img", help="folder for signals-<runtime>-<regime>.png"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--rejudge", action="store_true", help="judge the lab runs already in --out again, run nothing")
    parser.add_argument(
        "--doc", type=Path, default=None, help="rewrite the measured block of this page (docs/signals.md) from the runs"
    )
    args = parser.parse_args(argv)
    from llmprep.errors import LlmprepError

    try:
        doc = run_proof(
            args.case or DEFAULT_CASES,
            out_dir=args.out,
            plots_dir=None if args.no_plots else args.plots,
            short=args.short,
            hold_s=args.hold,
            speed=args.speed,
            rejudge=args.rejudge,
            doc_path=args.doc,
        )
    except LlmprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # --doc names a page without the measured block
        print(f"error: --doc: {exc}; add the two marker lines", file=sys.stderr)
        return 2
    sys.stdout.write(table_markdown(doc["results"]))
    print(args.out / "signals.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Surge detection lag: a 4× load step, and the time until each signal and each autoscaler reacts.

Runs the lab (real tritonserver replica, real Prometheus with the chart's recording rules, the
chart's HPA or KEDA's ScaledObject) with one replica (minimum = maximum = 1, so no scale-out
changes what a pod sees) and a closed-loop load that steps 3 → 12 streaming clients and back,
`--steps` times. The stand-in runs 4 requests at once (~0.4 s each), so 3 clients wait for
nothing and 12 leave 8 waiting. Two lags per step:

- *signal lag*: from the step to the first per-second lab row in which a recorded signal is at or
  above its target (resolution 1 s, the lab's row period). Its floor is one scrape interval + one
  evaluation interval: a signal cannot move before the next scrape and the next rule evaluation
  (issue 19's goal: the default inputs within 1.5× that floor);
- *decision lag*: from the step to the first HPA sync whose recommendation (before the replica
  limits: `metric_desired` in llmprep/lab/hpa.py) is above one replica, i.e. when the autoscaler
  would scale out. It adds up to one HPA sync period to the signal lag. Under KEDA the generated
  HPA syncs the same way and asks KEDA's metrics server for the trigger's value at each sync
  (tests/data/keda_rules.py), so HPA and KEDA should differ only by the phase of their syncs.

Per regime (bench/_lab.py REGIMES: *batch-bound*, the batch of 4 limits a replica with the KV
cache ample; *KV-bound*, the batcher admits 8 but the KV pool holds 4 sequences of the longer
prompts), three runs side by side (issue 19 item 7):
- `tutorials'`: the engine runtime (ensemble) with the tutorials' monitoring and HPA input
  (`triton:queue_compute:ratio` ≥ 1000m). The engine runtime's chart defaults are still the
  previous defaults (`trtllm:requests_waiting` ≥ 2, `triton:pending_requests` ≥ 2), measured in the
  same run;
- `new defaults, HPA`: the PyTorch runtime's llmapi model, streaming, with the chart's defaults as
  shipped (`autoscaling.metrics: []`: `trtllm:requests_queued` ≥ 2, `trtllm:requests_waiting` ≥ 2);
  the previous defaults' rows are measured in the same run;
- `new defaults, KEDA`: the same through the chart's ScaledObject (`autoscaling.engine: keda`).
Every run records every signal. A composite row (`new defaults`, `previous defaults`) is, per
step, the first of its inputs to cross, since Kubernetes acts on the largest recommendation.

Time compression: `--speed S` divides every control-loop interval by S (the lab's own
mechanism); lags are reported in lab seconds, as a ratio to the floor (which compression does
not change), and in cluster seconds (× S).

    python -m bench.surge_lag                 # speed 3, 2 steps per run, both regimes (~25 min on 2 cores)
    python -m bench.surge_lag --quick         # speed 6, one step, batch-bound, the tutorials' run (smoke test)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import DOCS, command_line, fmt, median, section_header, table, write_section
from bench._lab import (
    PYTORCH_STREAMING,
    REGIMES,
    SEED_METRIC,
    SEED_MONITORING,
    LabConfig,
    LabRun,
    Regime,
    default_metrics,
    run_config,
    workdir,
)

NAME = "surge_lag"
BASE, PEAK = 3, 12
# Signal -> target the lag is measured against: the tutorials' for the ratio, 2 (a queue depth)
# for the queue gauges, which is also the chart's default target for each of them. KV-cache
# utilization has no target anywhere: 0.6 (see BATCH_BOUND_STANDIN).
SIGNALS = {
    "triton:queue_compute:ratio": 1.0,
    "trtllm:requests_queued": 2.0,
    "trtllm:requests_waiting": 2.0,
    "triton:pending_requests": 2.0,
    "trtllm:kv_cache:utilization": 0.6,
}
# Batch-bound: the prompts are ~105 tiny-tokenizer tokens + 16 out, 2-3 blocks of 64 each. 12
# blocks hold 4 worst-case sequences, so the KV cache never limits admission (the batch of 4
# does) and its utilization reads ~0.5 with 3 clients and ~0.7 with the batch full. (With the
# stand-in's default 256 blocks it would stay under 4 % at any load.)
BATCH_BOUND_STANDIN = {"kvCacheBlocks": 12}
TUTORIALS, NEW_HPA, NEW_KEDA = "tutorials'", "new defaults, HPA", "new defaults, KEDA"
NEW, PREVIOUS = "new defaults", "previous defaults"
FLOOR_GOAL = 1.5  # issue 19 item 7: surge detection ≤ 1.5× one scrape + one evaluation


def stages(steps: int, window_lab_s: float, floor_lab_s: float) -> tuple[list[dict[str, Any]], list[float]]:
    """3 clients, then `steps` × (12 clients, 3 clients); holds long enough for a rate window to refill and drain."""
    high = max(20.0, window_lab_s * 1.2 + 2 * floor_lab_s)
    low = max(20.0, window_lab_s * 1.2 + 2 * floor_lab_s)
    out: list[dict[str, Any]] = [{"step": {"to": BASE, "for": f"{low:g}s"}}]
    at, t = [], low
    # Scrapes and evaluations tick every floor/2 s: shift each step by a different fraction of that
    # period, so the steps sample the whole range of phases instead of hitting the same one.
    period = floor_lab_s / 2
    for index in range(steps):
        out.append({"step": {"to": PEAK, "for": f"{high:g}s"}})
        at.append(t)
        t += high
        hold = round(low + period / steps, 2) if index + 1 < steps else low
        out.append({"step": {"to": BASE, "for": f"{hold:g}s"}})
        t += hold
    return out, at


def _one_replica(extra: Mapping[str, Any], autoscaling: Mapping[str, Any]) -> dict[str, Any]:
    return {**extra, "autoscaling": {"replicas": {"minimum": 1, "maximum": 1}, **autoscaling}}


def configurations(regime: Regime) -> list[LabConfig]:
    """The three runs of one regime, named `<regime>: <run>`."""
    standin = dict(regime.standin) or BATCH_BOUND_STANDIN

    def config(run: str, values: dict[str, Any], note: str) -> LabConfig:
        return LabConfig(f"{regime.name}: {run}", values, standin, note, regime.input_tokens)

    # The lab's profile (cpu-standin.values.yaml) lists its own input; `metrics: []` restores the
    # chart's runtime defaults, `None` drops the list (the tutorials scale on `metric` alone).
    return [
        config(
            TUTORIALS,
            _one_replica(
                {"monitoring": SEED_MONITORING, "model": {"tensorrtLlm": {"runtime": "engine"}}},
                {"metric": dict(SEED_METRIC), "metrics": None},
            ),
            "engine runtime (ensemble), the tutorials' monitoring and HPA input",
        ),
        config(
            NEW_HPA,
            _one_replica(PYTORCH_STREAMING, {"metric": {"name": ""}, "metrics": []}),
            "pytorch runtime (llmapi, streaming), the chart's defaults as shipped, HPA",
        ),
        config(
            NEW_KEDA,
            _one_replica(PYTORCH_STREAMING, {"engine": "keda", "metric": {"name": ""}, "metrics": []}),
            "the same through KEDA's ScaledObject",
        ),
    ]


def composites() -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Per run, the composite rows measured in it: name -> [(signal, target)], as the chart renders them."""
    from llmprep.units import parse_quantity

    def inputs(runtime: str) -> list[tuple[str, float]]:
        return [(str(m["name"]), float(parse_quantity(m["value"], "value"))) for m in default_metrics(runtime)]

    previous, new = inputs("engine"), inputs("pytorch")
    return {TUTORIALS: {PREVIOUS: previous}, NEW_HPA: {NEW: new, PREVIOUS: previous}, NEW_KEDA: {NEW: new}}


@dataclass
class Lag:
    run: str
    parts: tuple[tuple[str, float], ...]  # (signal, target); several: the autoscaler acts on the first to cross
    lags: list[float | None]  # lab seconds per step; None: never crossed during the step
    label: str = ""

    @property
    def text(self) -> str:
        return self.label or " or ".join(f"`{signal}` ≥ {target:g}" for signal, target in self.parts)


def signal_lags(run: LabRun, steps_at: Sequence[float], high_s: float) -> list[Lag]:
    """Per signal of SIGNALS (and each composite's inputs at their chart targets), the lag per step."""
    wanted = dict(SIGNALS)
    short = run.config.name.split(": ", 1)[1]
    for parts in composites().get(short, {}).values():
        wanted.update(parts)
    out = []
    for signal, target in wanted.items():
        column = f"signal {signal}"
        per_step: list[float | None] = []
        for at in steps_at:
            hit = next(
                (
                    r["t"]
                    for r in run.rows
                    if at <= r["t"] <= at + high_s and r.get(column) is not None and r[column] >= target
                ),
                None,
            )
            per_step.append(None if hit is None else hit - at)
        out.append(Lag(run.config.name, ((signal, target),), per_step))
    return out


def composite_lag(lags: Sequence[Lag], run: str, label: str, parts: Sequence[tuple[str, float]]) -> Lag | None:
    """Per step, the first of `parts` to cross (Kubernetes takes the largest recommendation)."""
    mine = [x for x in lags if x.run == run and len(x.parts) == 1 and x.parts[0] in parts]
    if len(mine) < len(parts):
        return None
    per_step: list[float | None] = []
    for index in range(len(mine[0].lags)):
        got = [lag for x in mine if (lag := x.lags[index]) is not None]
        per_step.append(min(got) if got else None)
    text = f"{label}: first of " + ", ".join(f"`{n}` ≥ {t:g}" for n, t in parts)
    return Lag(run, tuple(parts), per_step, label=text)


def decision_lags(run: LabRun, steps_at: Sequence[float], high_s: float) -> list[float | None]:
    """Per step, lab seconds until an HPA sync recommends more than one replica (None: not in the step)."""
    out: list[float | None] = []
    for at in steps_at:
        hit = next(
            (d["t"] for d in run.decisions if at <= d["t"] <= at + high_s and (d.get("metric_desired") or 0) > 1),
            None,
        )
        out.append(None if hit is None else hit - at)
    return out


def _baseline_ok(run: LabRun, steps_at: Sequence[float], parts: Sequence[tuple[str, float]]) -> bool:
    """Was every signal below its target just before each step (else the 'lag' would be meaningless)?"""
    for signal, target in parts:
        column = f"signal {signal}"
        for at in steps_at:
            before = [r for r in run.rows if at - 3 <= r["t"] < at and r.get(column) is not None]
            if before and before[-1][column] >= target:
                return False
    return True


def _decision_baseline_ok(run: LabRun, steps_at: Sequence[float]) -> bool:
    """Did the HPA recommend one replica in the last sync before each step?"""
    for at in steps_at:
        before = [d for d in run.decisions if d["t"] < at and d.get("metric_desired") is not None]
        if before and (before[-1]["metric_desired"] or 0) > 1:
            return False
    return True


def _median_lag(lags: Sequence[float | None]) -> float:
    """The median lag, NaN when the signal missed more than half of the steps."""
    got = [x for x in lags if x is not None]
    return median(got) if got and not (len(lags) - len(got)) * 2 > len(lags) else float("nan")


def _status(lag: Lag, run: LabRun, steps_at: Sequence[float]) -> tuple[str, float]:
    """A sentence on one lag, and the median lag in lab seconds (NaN when there is none to give)."""
    floor = run.scrape_s + run.evaluation_s
    if not _baseline_ok(run, steps_at, lag.parts):
        return "already at or over its target at the base load, before the step: it cannot tell a surge", float("nan")
    got = [x for x in lag.lags if x is not None]
    if len(got) < len(lag.lags):
        return f"did not cross in {len(lag.lags) - len(got)} of {len(lag.lags)} steps: lag unbounded", float("nan")
    value = median(got)
    verdict = "met" if value <= FLOOR_GOAL * floor else "missed"
    return f"{value:.1f} s = {value / floor:.2f}× the floor — ≤ {FLOOR_GOAL:g}× floor {verdict}", value


def _steps_text(lags: Sequence[float | None]) -> str:
    return " ".join("never" if x is None else f"{x:.0f}" for x in lags)


@dataclass
class RegimeRuns:
    regime: Regime
    runs: list[LabRun]
    lags: list[Lag]


def render_regime(result: RegimeRuns, steps_at: Sequence[float], speed: float) -> list[str]:
    by_run = {r.config.name: r for r in result.runs}
    rows = []
    for lag in result.lags:
        run = by_run[lag.run]
        floor_run = run.scrape_s + run.evaluation_s
        if all(r.get(f"signal {signal}") is None for r in run.rows for signal, _ in lag.parts):
            rows.append([lag.run.split(": ", 1)[1], lag.text, "no series recorded", "–", "–", "–", "–"])
            continue
        med = _median_lag(lag.lags)
        rows.append(
            [
                lag.run.split(": ", 1)[1],
                lag.text,
                _steps_text(lag.lags),
                "never" if med != med else f"{med:.1f}",
                fmt(med / floor_run),
                "–" if med != med else f"{med * speed:.0f}",
                "yes" if _baseline_ok(run, steps_at, lag.parts) else "no: already over target before the step",
            ]
        )
    header = ["run", "signal ≥ target", "lag per step (lab s)", "median lab s", "× floor", "cluster s"]
    lines = [f"### {result.regime.name.capitalize()}: {result.regime.note}", "", "Signal lag:", ""]
    lines += [
        table([*header, "below target before each step"], rows),
        "",
        "Decision lag (an HPA sync recommends > 1 replica):",
        "",
    ]
    decision_rows = []
    for run in result.runs:
        lags = decision_lags(run, steps_at, float("inf"))
        med = _median_lag(lags)
        floor_run = run.scrape_s + run.evaluation_s
        decision_rows.append(
            [
                run.config.name.split(": ", 1)[1],
                run.hpa,
                _steps_text(lags),
                "never" if med != med else f"{med:.1f}",
                fmt(med / floor_run),
                "–" if med != med else f"{med * speed:.0f}",
                "yes" if _decision_baseline_ok(run, steps_at) else "no: already recommending more before the step",
            ]
        )
    lines += [table([*header[:1], "inputs", *header[2:], "one replica recommended before each step"], decision_rows)]
    lines += ["", f"Verdicts (issue 19: the default inputs ≤ {FLOOR_GOAL:g}× the floor):", ""]
    for lag in result.lags:
        if lag.label or lag.parts == (("triton:queue_compute:ratio", 1.0),):
            status, _ = _status(lag, by_run[lag.run], steps_at)
            name = lag.label.split(":", 1)[0] if lag.label else "the tutorials' input `triton:queue_compute:ratio` ≥ 1"
            lines.append(f"- {name}, run `{lag.run.split(': ', 1)[1]}`: {status}")
    return lines + [""]


def render(results: Sequence[RegimeRuns], steps_at: Sequence[float], command: str, speed: float) -> str:
    lines = section_header("Surge detection lag (issue 8 item 1, issue 19 item 7)", command)
    first = results[0].runs[0]
    floor = first.scrape_s + first.evaluation_s
    lines += [
        f"The lab (real tritonserver 2.51 replica, real Prometheus with the chart's recording rules) at speed "
        f"{speed:g}: lab intervals are scrape {first.scrape_s:g} s + evaluation {first.evaluation_s:g} s = floor "
        f"{floor:g} s (cluster: {floor * speed:g} s), rate window {fmt(first.window_s or float('nan'), 0)} s, HPA "
        f"sync {15 / speed:g} s. One replica; load {BASE} → {PEAK} streaming clients (4×), {len(steps_at)} step(s) "
        "per run; the stand-in serves 4 requests at once, 16 tokens × 25 ms. Lag = first per-second row at or above "
        "the target after the step (1 s resolution); *never* = not within the high phase. The chart's monitoring "
        "defaults are the tutorials' (6 s scrape and evaluation, 1 m window), so every run has the same floor.",
        "",
    ]
    for result in results:
        lines += render_regime(result, steps_at, speed)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.surge_lag", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="speed 6, one step, batch-bound, the tutorials' run only (smoke test)"
    )
    parser.add_argument("--speed", type=float, default=3.0, help="lab time compression (default 3)")
    parser.add_argument("--steps", type=int, default=2, help="steps up per run")
    parser.add_argument(
        "--regime", action="append", choices=[r.name for r in REGIMES], help="run only these regimes (default: both)"
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file whose section is written")
    parser.add_argument("--keep", type=Path, help="copy the lab reports (report.md, lab.png, CSV) here")
    args = parser.parse_args(argv)
    if args.regime and args.out == DOCS:
        parser.error("--regime: a partial run must not replace the docs' table; give --out")
    speed, steps = (6.0, 1) if args.quick else (args.speed, args.steps)
    chosen = args.regime or ([REGIMES[0].name] if args.quick else [r.name for r in REGIMES])
    floor_lab = (6.0 + 6.0) / speed
    window_lab = 60.0 / speed
    profile, steps_at = stages(steps, window_lab, floor_lab)
    high = float(profile[1]["step"]["for"].rstrip("s"))
    results: list[RegimeRuns] = []
    with workdir() as tmp:
        for regime in (r for r in REGIMES if r.name in chosen):
            configs = configurations(regime)[:1] if args.quick else configurations(regime)
            result = RegimeRuns(regime, [], [])
            for config in configs:
                print(f"lab run: {config.name} (speed {speed:g}, {steps} step(s))", flush=True)
                run = run_config(config, Path(tmp), stages=profile, speed=speed, slo_ms=None, settle="30s")
                result.runs.append(run)
                found = signal_lags(run, steps_at, high)
                for label, parts in composites()[config.name.split(": ", 1)[1]].items():
                    both = composite_lag(found, config.name, label, parts)
                    found += [both] if both is not None else []
                result.lags += found
                for lag in found:
                    print(f"  {lag.text}: {lag.lags}", flush=True)
                print(f"  decision: {decision_lags(run, steps_at, float('inf'))}", flush=True)
                if args.keep:
                    import shutil

                    shutil.copytree(run.out_dir, args.keep / run.out_dir.parent.name, dirs_exist_ok=True)
            results.append(result)
    body = render(results, steps_at, command_line("bench.surge_lag", argv), speed)
    write_section(NAME, body, args.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Surge detection lag: a 4× load step, and the time until each recorded signal crosses its target.

Runs the lab (real tritonserver replica, real Prometheus with the chart's recording rules, the
chart's HPA) with one replica (minimum = maximum = 1, so no scale-out changes what a pod sees)
and a closed-loop load that steps 3 → 12 streaming clients and back, `--steps` times. The
stand-in runs 4 requests at once (~0.4 s each), so 3 clients wait for nothing and 12 leave 8
waiting. For every step up and every signal, the lag is the time from the step to the first
per-second lab row in which the recorded signal is at or above its target (resolution: 1 s,
the lab's row period). The physical floor is one scrape interval + one evaluation interval:
a signal cannot move before the next scrape and the next rule evaluation.

Configurations, each its own lab run (their monitoring intervals differ or the stand-in does):
- `seed`: the tutorial's monitoring (6 s scrape and evaluation, `rate(...[1m])`) and HPA
  input (`triton:queue_compute:ratio` ≥ 1000m); the stand-in hands requests to its batcher as
  TensorRT-LLM does (Triton's queue stays empty);
- `seed, queue in Triton`: the same with the stand-in queueing in Triton's scheduler instead
  (what the tutorial's signal assumes), to show the ratio's own lag;
- `chart defaults`: run only when the chart's monitoring defaults differ from the seed's
  (otherwise it is the `seed` run, and the table says so).
Every run records every signal, so the TRT-LLM-native signals (`trtllm:requests_waiting`,
`trtllm:kv_cache:utilization`) are measured in the same runs, side by side. The chart's default
HPA inputs (`autoscaling.metric` if it names one, then `autoscaling.metrics`) get one more row:
per step, the first of them to cross its target, since Kubernetes acts on the largest
recommendation; the verdict on "our default" is that row's.

Time compression: `--speed S` divides every control-loop interval by S (the lab's own
mechanism); lags are reported in lab seconds, as a ratio to the floor (which compression does
not change), and in cluster seconds (× S).

    python -m bench.surge_lag                 # speed 2, 3 steps per run (~12 min on 2 cores)
    python -m bench.surge_lag --quick         # speed 6, one step, one run (smoke test)
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
    SEED_METRIC,
    SEED_MONITORING,
    LabConfig,
    LabRun,
    chart_defaults,
    default_metrics,
    lab_values,
    run_config,
    workdir,
)

NAME = "surge_lag"
BASE, PEAK = 3, 12
# Signal -> target the lag is measured against: the seed's for the ratio, 2 (a queue depth) for the
# two queue gauges; where the chart's default HPA scales on a signal, its target replaces this one
# (`signals()`). kv-cache utilization has no target anywhere yet: 0.6 (see STANDIN).
SIGNALS = {
    "triton:queue_compute:ratio": 1.0,
    "trtllm:requests_waiting": 2.0,
    "trtllm:kv_cache:utilization": 0.6,
    "triton:pending_requests": 2.0,
}
# The prompts are ~105 tiny-tokenizer tokens + 16 out: 2-3 blocks of 64 each. 12 blocks hold 4
# worst-case sequences, so the KV cache never limits admission (the batch of 4 does) and its
# utilization reads ~0.5 with 3 clients and ~0.7 with the batch full. (With the stand-in's
# default 256 blocks it would stay under 4 % at any load.)
STANDIN = {"kvCacheBlocks": 12}


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


def _one_replica(monitoring: Mapping[str, Any], metric: Mapping[str, Any], metrics: Sequence[Any]) -> dict[str, Any]:
    return {
        "monitoring": dict(monitoring),
        # No list: null, not [] (which stands for the chart's runtime defaults).
        "autoscaling": {
            "replicas": {"minimum": 1, "maximum": 1},
            "metric": dict(metric),
            "metrics": list(metrics) or None,
        },
    }


def _listed(metrics: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join("`{}` ≥ {}".format(m.get("name"), m.get("value")) for m in metrics)


def configurations() -> tuple[list[LabConfig], str]:
    """The runs, and a sentence on how the chart's defaults relate to the seed's."""
    defaults = chart_defaults()
    mon = defaults.get("monitoring", {})
    chart_monitoring = {
        "podMonitor": {"interval": mon.get("podMonitor", {}).get("interval")},
        "prometheusRule": {
            "interval": mon.get("prometheusRule", {}).get("interval"),
            "window": mon.get("prometheusRule", {}).get("window"),
        },
    }
    chart_metrics = default_hpa_inputs()
    lab_metrics = list(lab_values().get("autoscaling", {}).get("metrics") or [])
    runs = [
        LabConfig(
            "seed",
            _one_replica(SEED_MONITORING, SEED_METRIC, []),
            STANDIN,
            "tutorial monitoring; stand-in hands requests to its batcher (as TensorRT-LLM does)",
        ),
        LabConfig(
            "seed, queue in Triton",
            _one_replica(SEED_MONITORING, SEED_METRIC, []),
            {**STANDIN, "queueInTriton": True},
            "tutorial monitoring; stand-in queues in Triton's scheduler",
        ),
    ]
    same = chart_monitoring == SEED_MONITORING
    if not same:
        runs.append(
            LabConfig(
                "chart defaults",
                _one_replica(chart_monitoring, {"name": ""}, lab_metrics or chart_metrics),
                STANDIN,
                "the chart's monitoring defaults",
            )
        )
    how = (
        f"The chart's defaults (chart/values.yaml) are scrape {chart_monitoring['podMonitor']['interval']}, evaluation "
        f"{chart_monitoring['prometheusRule']['interval']}, window {chart_monitoring['prometheusRule']['window']}, HPA "
        f"inputs {_listed(chart_metrics)} (the HPA acts on whichever crosses first)"
        + (
            "; the lab's profile (llmprep/data/lab/cpu-standin.values.yaml) replaces them with " + _listed(lab_metrics)
            if lab_metrics
            else ""
        )
        + ". "
        + (
            "The monitoring is the seed's, so the `seed` run measures the defaults' signals too; the row `chart "
            "default` is, per step, the first of them to cross."
            if same
            else ""
        )
    )
    return runs, how


@dataclass
class Lag:
    run: str
    parts: tuple[tuple[str, float], ...]  # (signal, target); several: the HPA acts on the first to cross
    lags: list[float | None]  # lab seconds per step; None: never crossed during the step
    label: str = ""

    @property
    def text(self) -> str:
        return self.label or " or ".join(f"`{signal}` ≥ {target:g}" for signal, target in self.parts)


DEFAULT = "chart default"


def default_hpa_inputs() -> list[dict[str, Any]]:
    """The chart's default HPA inputs (engine runtime, the stand-in's), as the chart renders them."""
    return [dict(m) for m in default_metrics("engine")]


def signals() -> dict[str, float]:
    """Every signal measured, at the chart's default target where the chart scales on it, else SIGNALS'."""
    from llmprep.lab.hpa import parse_quantity

    return {**SIGNALS, **{str(m["name"]): parse_quantity(m["value"]) for m in default_hpa_inputs()}}


def default_lag(lags: Sequence[Lag], run: str) -> Lag | None:
    """The default HPA's lag in `run`: per step, the first of its inputs to cross its target (Kubernetes
    takes the largest recommendation, so the first input over its target scales up)."""
    wanted = [str(m["name"]) for m in default_hpa_inputs()]
    mine = [x for x in lags if x.run == run and len(x.parts) == 1 and x.parts[0][0] in wanted]
    if not mine or len(mine) < len(wanted):
        return None
    per_step: list[float | None] = []
    for index in range(len(mine[0].lags)):
        got = [lag for x in mine if (lag := x.lags[index]) is not None]
        per_step.append(min(got) if got else None)
    parts = tuple(p for x in mine for p in x.parts)
    return Lag(run, parts, per_step, label=f"{DEFAULT}: first of " + ", ".join(f"`{n}` ≥ {t:g}" for n, t in parts))


def lags_of(run: LabRun, steps_at: Sequence[float], high_s: float) -> list[Lag]:
    out = []
    for signal, target in signals().items():
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


def _baseline_ok(run: LabRun, steps_at: Sequence[float], parts: Sequence[tuple[str, float]]) -> bool:
    """Was every signal below its target just before each step (else the 'lag' would be meaningless)?"""
    for signal, target in parts:
        column = f"signal {signal}"
        for at in steps_at:
            before = [r for r in run.rows if at - 3 <= r["t"] < at and r.get(column) is not None]
            if before and before[-1][column] >= target:
                return False
    return True


def _status(lag: Lag, run: LabRun, steps_at: Sequence[float]) -> tuple[str, float]:
    """A sentence on one lag, and the median lag in lab seconds (NaN when there is none to give)."""
    floor = run.scrape_s + run.evaluation_s
    if not _baseline_ok(run, steps_at, lag.parts):
        return "already at or over its target at the base load, before the step: it cannot tell a surge", float("nan")
    got = [x for x in lag.lags if x is not None]
    if len(got) < len(lag.lags):
        return f"did not cross in {len(lag.lags) - len(got)} of {len(lag.lags)} steps: lag unbounded", float("nan")
    value = median(got)
    return f"{value:.1f} s = {value / floor:.2f}× the floor", value


def render(
    runs: Sequence[LabRun], lags: Sequence[Lag], steps_at: Sequence[float], how: str, command: str, speed: float
) -> str:
    lines = section_header("Surge detection lag (issue 8, item 1)", command)
    first = runs[0]
    floor = first.scrape_s + first.evaluation_s
    lines += [
        f"The lab (real tritonserver 2.51 replica, real Prometheus 2.42 with the chart's recording rules) at speed "
        f"{speed:g}: lab intervals are scrape {first.scrape_s:g} s + evaluation {first.evaluation_s:g} s = floor "
        f"{floor:g} s (cluster: {floor * speed:g} s), rate window {fmt(first.window_s or float('nan'), 0)} s. One "
        f"replica; load {BASE} → {PEAK} streaming clients (4×), {len(steps_at)} step(s) per run; the stand-in serves "
        "4 requests at once, 16 tokens × 25 ms. Lag = first per-second row at or above the target after the step "
        "(1 s resolution); *never* = not within the high phase. " + how,
        "",
    ]
    rows = []
    by_run = {r.config.name: r for r in runs}
    for lag in lags:
        run = by_run[lag.run]
        floor_run = run.scrape_s + run.evaluation_s
        got = [x for x in lag.lags if x is not None]
        never = sum(1 for x in lag.lags if x is None)
        med = median(got) if got and not never * 2 > len(lag.lags) else float("nan")
        valid = _baseline_ok(run, steps_at, lag.parts)
        if all(r.get(f"signal {signal}") is None for r in run.rows for signal, _ in lag.parts):
            rows.append([lag.run, lag.text, "no series recorded", "–", "–", "–", "–"])
            continue
        rows.append(
            [
                lag.run,
                lag.text,
                " ".join("never" if x is None else f"{x:.0f}" for x in lag.lags),
                "never" if med != med else f"{med:.1f}",
                "–" if med != med else f"{med / floor_run:.2f}",
                "–" if med != med else f"{med * speed:.0f}",
                "yes" if valid else "no: already over target before the step",
            ]
        )
    lines.append(
        table(
            [
                "run",
                "signal ≥ target",
                "lag per step (lab s)",
                "median lab s",
                "× floor",
                "cluster s",
                "below target before each step",
            ],
            rows,
        )
    )
    lines += ["", "Verdicts (issue 8: our default ≤ 1.5× the floor and ≤ 0.5× the seed's lag):", ""]
    seed_lag = float("nan")
    for run_name in ("seed", "seed, queue in Triton"):
        seed = next((x for x in lags if x.run == run_name and x.parts == (("triton:queue_compute:ratio", 1.0),)), None)
        if seed is None:
            continue
        status, value = _status(seed, by_run[run_name], steps_at)
        lines.append(f"- `triton:queue_compute:ratio` ≥ 1 (the seed's input), run `{run_name}`: {status}")
        if value == value and seed_lag != seed_lag:
            seed_lag = value
    ours = next((x for x in lags if x.label.startswith(DEFAULT)), None)
    if ours is not None:
        status, value = _status(ours, by_run[ours.run], steps_at)
        ok_floor = value == value and value <= 1.5 * floor
        versus = (
            "the seed's input has no lag to halve: it cannot tell a surge"
            if seed_lag != seed_lag
            else f"≤ 0.5× the seed's {seed_lag:.1f} s {'met' if value <= 0.5 * seed_lag else 'missed'}"
        )
        lines.append(
            f"- {ours.text} (the HPA inputs the chart ships, run `{ours.run}`): {status} — "
            f"≤ 1.5× floor {'met' if ok_floor else 'missed'}; {versus}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.surge_lag", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="speed 6, one step, the seed run only (smoke test)")
    parser.add_argument("--speed", type=float, default=2.0, help="lab time compression (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="steps up per run")
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file whose section is written")
    parser.add_argument("--keep", type=Path, help="copy the lab reports (report.md, lab.png, CSV) here")
    args = parser.parse_args(argv)
    speed, steps = (6.0, 1) if args.quick else (args.speed, args.steps)
    configs, how = configurations()
    if args.quick:
        configs = configs[:1]
    floor_lab = (6.0 + 6.0) / speed
    window_lab = 60.0 / speed
    profile, steps_at = stages(steps, window_lab, floor_lab)
    high = float(profile[1]["step"]["for"].rstrip("s"))
    # The chart's default HPA inputs are judged in the run with the chart's monitoring.
    ours_run = "chart defaults" if any(c.name == "chart defaults" for c in configs) else "seed"
    runs: list[LabRun] = []
    lags: list[Lag] = []
    with workdir() as tmp:
        for config in configs:
            print(f"lab run: {config.name} (speed {speed:g}, {steps} step(s))", flush=True)
            run = run_config(config, Path(tmp), stages=profile, speed=speed, slo_ms=None, settle="30s")
            runs.append(run)
            found = lags_of(run, steps_at, high)
            if config.name == ours_run:
                ours = default_lag(found, config.name)
                found += [ours] if ours is not None else []
            lags += found
            for lag in found:
                print(f"  {lag.text}: {lag.lags}", flush=True)
            if args.keep:
                import shutil

                shutil.copytree(run.out_dir, args.keep / run.out_dir.parent.name, dirs_exist_ok=True)
    body = render(runs, lags, steps_at, how, command_line("bench.surge_lag", argv), speed)
    write_section(NAME, body, args.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

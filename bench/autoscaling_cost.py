"""Autoscaling cost: a burst + diurnal load through the lab; replica-seconds and SLO misses vs an oracle.

All through the lab (real tritonserver replicas, real Prometheus with the chart's rules, the
Kubernetes HPA algorithm on the chart's HPA spec or KEDA's on its ScaledObject), in one command,
on the PyTorch runtime's llmapi model (streaming; the tutorials' configuration on the engine runtime's
ensemble, as their users run it), once per regime (bench/_lab.py REGIMES):
*batch-bound* (the batch of 4 limits a replica, the KV cache ample) and *KV-bound* (the batcher
admits 8, the KV pool holds 4 sequences of the longer prompts). Per regime:

1. Capacity: one replica (minimum = maximum = 1) under a staircase of closed-loop clients; the
   single-replica capacity is the most clients whose p95 end-to-end latency stays within the SLO.
2. The profile: clients rise from a night level to a day level and fall back (diurnal), with a
   burst on top in the middle. Run once per configuration (issue 19 item 7):
   - `tutorials'`: the tutorials' HPA input (`triton:queue_compute:ratio` ≥ 1000m) and no behavior
     (Kubernetes' defaults: 5-minute scale-down stabilization, default policies);
   - `previous defaults`: the chart's inputs before issue 19 (`trtllm:requests_waiting` ≥ 2,
     `triton:pending_requests` ≥ 2; the engine runtime's defaults still) with the chart's behavior
     (scale-down one pod a minute after a 120 s window);
   - `new defaults`: the chart as shipped for the pytorch runtime (`autoscaling.metrics: []`:
     `trtllm:requests_queued` ≥ 2, `trtllm:requests_waiting` ≥ 2) and its behavior;
   - `new defaults, KEDA`: the same with `autoscaling.engine: keda` (the lab runs the
     ScaledObject as KEDA does: its generated HPA, `pollingInterval`; docs/lab.md);
   - with `--variants`, the new inputs with Kubernetes' behavior and with a 120 s window only.
3. The oracle: each second, the fewest replicas (within min..max) whose measured capacity covers
   the profile's clients at that second; its replica-seconds over the load.

Replica-seconds count every replica that exists (starting, ready or draining; a starting GPU pod
costs the same) each second of the load profile. *Requests over SLO* are requests whose
end-to-end latency exceeded the scenario's p95 target latency (`--slo-ms`, default 2000: about 4×
a lone request's ~0.5 s on a 2-core machine, so one replica holds several clients and the maximum
of 4 is not binding all day). Goals (issue 19): ≤ 1.3× the oracle's replica-seconds with < 1 % of
requests over the SLO; ≥ 30 % fewer replica-seconds than the tutorials' configuration at no more
SLO misses.

    python -m bench.autoscaling_cost            # speed 3, both regimes (~60 min on 2 cores)
    python -m bench.autoscaling_cost --quick    # speed 10, short profile, batch-bound, tutorials' only
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import DOCS, command_line, fmt, percentile, section_header, table, write_section
from bench._lab import (
    PREVIOUS_DEFAULTS,
    PYTORCH_STREAMING,
    REGIMES,
    SEED_METRIC,
    LabConfig,
    LabRun,
    Regime,
    default_metrics,
    profile_duration,
    run_config,
    workdir,
)
from llmprep.errors import LabError

NAME = "autoscaling_cost"
MIN_REPLICAS, MAX_REPLICAS = 1, 4
TUTORIALS, PREVIOUS, NEW, NEW_KEDA = "tutorials'", "previous defaults", "new defaults", "new defaults, KEDA"


def diurnal_stages(scale: float = 1.0) -> list[dict[str, Any]]:
    """Night 4 clients → day 20 → a burst of 36 → day → night; lab seconds scaled by `scale`."""

    def s(x: float) -> str:
        return f"{max(1.0, x * scale):g}s"

    return [
        {"step": {"to": 4, "for": s(30)}},
        {"ramp": {"from": 4, "to": 20, "over": s(60)}},
        {"hold": s(30)},
        {"step": {"to": 36, "for": s(15)}},
        {"step": {"to": 20, "for": s(20)}},
        {"ramp": {"from": 20, "to": 4, "over": s(60)}},
        {"hold": s(40)},
    ]


def staircase(levels: Sequence[int], hold_s: float) -> list[dict[str, Any]]:
    return [{"step": {"to": n, "for": f"{hold_s:g}s"}} for n in levels]


def _runtime_values(runtime: str) -> dict[str, Any]:
    """The values that pick the replicas' runtime (pytorch: the llmapi model, streaming)."""
    return dict(PYTORCH_STREAMING) if runtime == "pytorch" else {"model": {"tensorrtLlm": {"runtime": runtime}}}


def _autoscaling(
    regime: Regime, name: str, autoscaling: dict[str, Any], note: str, runtime: str = "pytorch"
) -> LabConfig:
    """One compared configuration in `regime`; keys left out keep the chart's defaults."""
    body = {"replicas": {"minimum": MIN_REPLICAS, "maximum": MAX_REPLICAS}, **autoscaling}
    model = _runtime_values(runtime)
    return LabConfig(
        f"{regime.name}: {name}",
        {**model, "autoscaling": body},
        regime.standin,
        note,
        regime.input_tokens,
    )


def configurations(regime: Regime, variants: bool = False, runtime: str = "pytorch") -> list[LabConfig]:
    """Issue 19's comparison in one regime: the tutorials' HPA, the previous and the new defaults, HPA vs KEDA.

    `runtime` engine runs every configuration on the engine stand-in (ensemble), the new defaults as
    the pytorch runtime's inputs written out (`trtllm:requests_queued`, which the engine stand-in
    exports too): the same policies on one replica model (see `--runtime`)."""
    previous = [dict(m) for m in PREVIOUS_DEFAULTS]
    # `metrics: []`: the chart's inputs for the runtime (pytorch: requests queued + waiting).
    new = {"metrics": []} if runtime == "pytorch" else {"metrics": default_metrics("pytorch")}
    configs = [
        _autoscaling(
            regime,
            TUTORIALS,
            # `behavior: None` removes the chart's default (Helm drops a key set to null): Kubernetes' own.
            {"metric": dict(SEED_METRIC), "metrics": None, "behavior": None},
            "the tutorials' deployment: the engine runtime's ensemble, their HPA input "
            "(`triton:queue_compute:ratio` ≥ 1000m) and Kubernetes' default behavior",
            runtime="engine",
        ),
        _autoscaling(
            regime,
            PREVIOUS,
            {"metrics": previous},
            "the chart's inputs before issue 19 (the engine runtime's still), the chart's behavior",
            runtime=runtime,
        ),
        _autoscaling(
            regime, NEW, dict(new), "the chart's defaults as shipped for the pytorch runtime", runtime=runtime
        ),
        _autoscaling(
            regime,
            NEW_KEDA,
            {"engine": "keda", **new},
            "the same through KEDA's ScaledObject (its generated HPA, pollingInterval; docs/lab.md)",
            runtime=runtime,
        ),
    ]
    if variants:
        configs += [
            _autoscaling(
                regime,
                "new defaults, Kubernetes' behavior",
                {"metrics": [], "behavior": None},
                "the new inputs with behavior: null (a 300 s scale-down window, any number of pods)",
            ),
            _autoscaling(
                regime,
                "new defaults, 120 s window only",
                {"metrics": [], "behavior": _window_only(120)},
                "the new inputs with the chart's 120 s window but Kubernetes' scale-down policy",
            ),
        ]
    return configs


def _window_only(seconds: int) -> dict[str, Any]:
    """A scale-down window with Kubernetes' scale-down policy (`policies: null` drops the chart's)."""
    return {"scaleDown": {"stabilizationWindowSeconds": seconds, "policies": None}}


def capacity_config(regime: Regime, runtime: str = "pytorch") -> LabConfig:
    # `metrics: None`: only the seed metric ([] would add the runtime defaults; one replica either way).
    one = {"replicas": {"minimum": 1, "maximum": 1}, "metric": dict(SEED_METRIC), "metrics": None}
    model = _runtime_values(runtime)
    return LabConfig(f"{regime.name}: capacity", {**model, "autoscaling": one}, regime.standin, "", regime.input_tokens)


def capacity(
    run: LabRun, levels: Sequence[int], hold_s: float, slo_s: float, skip_s: float
) -> tuple[int, list[list[Any]]]:
    """Most clients one replica serves within the SLO, and the staircase's table rows."""
    t0_unix = run.rows[0]["time"] - run.rows[0]["t"] if run.rows else 0.0
    rows, best, all_ok = [], 0, True
    for index, level in enumerate(levels):
        start, end = index * hold_s + skip_s, (index + 1) * hold_s
        e2e = [
            f.e2e for f in run.requests if f.error is None and start <= f.at - t0_unix - f.e2e and f.at - t0_unix <= end
        ]
        p95 = percentile(e2e, 95)
        ok = bool(e2e) and p95 <= slo_s
        all_ok = all_ok and ok
        if all_ok:
            best = level
        rows.append([level, len(e2e), fmt(percentile(e2e, 50), 2), fmt(p95, 2), "yes" if ok else "no"])
    return best, rows


def oracle_replica_seconds(stages: Sequence[Any], per_replica: int, duration: float) -> tuple[float, int]:
    """Σ over each second of the fewest replicas covering the clients; and its peak."""
    from bench._lab import clients_at

    total, peak = 0.0, 0
    for second in range(int(math.ceil(duration))):
        need = math.ceil(clients_at(stages, second + 0.5) / per_replica) if per_replica else MAX_REPLICAS
        need = min(MAX_REPLICAS, max(MIN_REPLICAS, need))
        total += need
        peak = max(peak, need)
    return total, peak


def cost_of(run: LabRun, duration: float, slo_s: float) -> dict[str, Any]:
    during = [r for r in run.rows if r["t"] <= duration]
    replica_s = sum((r.get("replicas_current") or 0) + (r.get("replicas_draining") or 0) for r in during)
    at_max = sum(1 for r in during if (r.get("replicas_current") or 0) >= MAX_REPLICAS)
    ok = [f for f in run.requests if f.error is None]
    over = sum(1 for f in ok if f.e2e > slo_s)
    failed = sum(1 for f in run.requests if f.error is not None)
    seconds_over = sum(1 for r in during if r.get("e2e_p95_s") is not None and r["e2e_p95_s"] > slo_s)
    return {
        "replica_s": replica_s,
        "at_max_s": at_max,
        "requests": len(run.requests),
        "over": over,
        "failed": failed,
        "over_pct": 100.0 * (over + failed) / max(1, len(run.requests)),
        "seconds_over": seconds_over,
        "peak": max((r.get("replicas_current") or 0 for r in during), default=0),
        "p95": percentile([f.e2e for f in ok], 95),
        "crashes": replica_crashes(run),
    }


def replica_crashes(run: LabRun) -> int:
    """Replicas that exited on their own during the run (the lab's `failed` events; the ReplicaSet replaced them)."""
    return sum(1 for e in run.events if e.get("kind") == "failed")


@dataclass
class RegimeResult:
    regime: Regime
    capacity: int
    capacity_rows: list[list[Any]]
    oracle: tuple[float, int]
    costs: list[tuple[LabRun, dict[str, Any]]] = field(default_factory=list)
    aborted: list[tuple[LabConfig, str]] = field(default_factory=list)  # runs the lab gave up on, and why


ORACLE_GOAL, SAVING_GOAL, SLO_GOAL_PCT = 1.3, 0.30, 1.0  # issue 19 item 7


def verdicts(result: RegimeResult) -> list[list[str]]:
    """Per configuration: × oracle, % over SLO, saving vs the tutorials' config, and the two goals."""
    oracle_s = result.oracle[0]
    tutorials = next((c for run, c in result.costs if run.config.name.endswith(f": {TUTORIALS}")), None)
    rows = []
    for run, c in result.costs:
        ratio = c["replica_s"] / oracle_s
        cheap = ratio <= ORACLE_GOAL and c["over_pct"] < SLO_GOAL_PCT
        if tutorials is None or run.config.name.endswith(f": {TUTORIALS}"):
            saving, versus = "–", "–"
        else:
            fraction = 1.0 - c["replica_s"] / tutorials["replica_s"]
            saving = f"{100 * fraction:+.0f} %"
            no_worse = c["over_pct"] <= tutorials["over_pct"]
            versus = (
                "met"
                if fraction >= SAVING_GOAL and no_worse
                else "missed"
                + ("" if no_worse else f" (more SLO misses: {c['over_pct']:.2f} % vs {tutorials['over_pct']:.2f} %)")
            )
        rows.append(
            [
                run.config.name.split(": ", 1)[1],
                f"{ratio:.2f}",
                f"{c['over_pct']:.2f} %",
                "met" if cheap else "missed",
                saving,
                versus,
            ]
        )
    return rows


def render(
    results: Sequence[RegimeResult],
    duration: float,
    slo_s: float,
    speed: float,
    stages: Sequence[Any],
    command: str,
    runtime: str = "pytorch",
) -> str:
    lines = section_header("Autoscaling cost (issue 8 item 2, issue 19 item 7)", command)
    where = (
        "Every configuration but the tutorials' runs the PyTorch runtime's llmapi model, streaming (the runtime whose "
        "defaults issue 19 changed; on the engine runtime the new defaults are the previous ones); the tutorials' runs "
        "the engine runtime's ensemble, as their users do (the same stand-in cost model behind it)."
        if runtime == "pytorch"
        else "Every configuration runs the engine runtime's ensemble on the stand-in (one cost model behind both "
        "runtimes); `new defaults` are the pytorch runtime's inputs written out (`trtllm:requests_queued` ≥ 2, "
        "`trtllm:requests_waiting` ≥ 2: the stand-in exports the executor's queue on both runtimes, a real engine "
        "does not). The llmapi stand-in's replicas crash under this profile in Triton 2.51's Python backend "
        "(SIGSEGV, `boost::interprocess::lock_exception`; the lab gives up at the fourth), hence this runtime."
    )
    lines += [
        f"The lab at speed {speed:g} (HPA sync, stabilization windows, policy periods, KEDA's polling, scrape/evaluation "
        f"intervals and rate window divided by {speed:g}; the stand-in's timing and replica start-up are not), "
        f"replicas {MIN_REPLICAS}–{MAX_REPLICAS}, SLO: p95 end-to-end ≤ {slo_s * 1000:.0f} ms. "
        + where
        + f" Load (closed-loop streaming clients, {duration:g} lab s): "
        + "; ".join(_stage_text(s) for s in stages)
        + ".",
        "",
    ]
    for result in results:
        lines += [f"### {result.regime.name.capitalize()}: {result.regime.note}", ""]
        lines += [
            f"Single-replica capacity (staircase, one replica, {result.regime.input_tokens}-word prompts):",
            "",
            table(["clients", "requests", "p50 s", "p95 s", f"p95 ≤ {slo_s:g} s"], result.capacity_rows),
            "",
            f"Measured capacity: **{result.capacity} clients per replica** within the SLO.",
            "",
        ]
        lines += _profile_table(result, slo_s)
        lines += ["", "- " + "\n- ".join(f"{run.config.name}: {run.config.note}." for run, _ in result.costs), ""]
        lines.append(
            table(
                [
                    "configuration",
                    "× oracle",
                    "over SLO or failed",
                    f"≤ {ORACLE_GOAL:g}× oracle, < {SLO_GOAL_PCT:g} % over SLO",
                    "replica-s saved vs the tutorials'",
                    f"≥ {100 * SAVING_GOAL:.0f} % fewer at no more misses",
                ],
                verdicts(result),
            )
        )
        lines.append("")
    notes = sorted(
        {
            n
            for result in results
            for run, _ in result.costs
            for n in run.notes
            if not n.startswith("The engine is llmprep's stand-in")
        }
    )
    if notes:
        lines += ["Lab notes: " + " ".join(notes)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _profile_table(result: RegimeResult, slo_s: float) -> list[str]:
    oracle_s, oracle_peak = result.oracle
    rows = [
        ["oracle (measured capacity, per second)", f"{oracle_s:.0f}", "1.00", "–", "–", "–", str(oracle_peak), "–", "–"]
    ]
    for run, c in result.costs:
        rows.append(
            [
                f"{run.config.name.split(': ', 1)[1]}: {run.hpa}",
                f"{c['replica_s']:.0f}",
                f"{c['replica_s'] / oracle_s:.2f}",
                f"{c['over'] + c['failed']} / {c['requests']} ({c['over_pct']:.2f} %)",
                str(c["seconds_over"]),
                str(c["at_max_s"]),
                str(c["peak"]),
                fmt(c["p95"], 2),
                str(c.get("crashes", 0)),
            ]
        )
    for config, why in result.aborted:
        rows.append([f"{config.name.split(': ', 1)[1]}: run aborted ({why.split(';')[0]})", *["–"] * 8])
    header = [
        "configuration",
        "replica-seconds (lab)",
        "× oracle",
        "requests over SLO (or failed)",
        f"seconds with trailing-5 s p95 over {slo_s:g} s",
        "seconds at max replicas",
        "peak replicas",
        "p95 e2e s",
        "replica crashes",
    ]
    return [table(header, rows)]


def _stage_text(stage: dict[str, Any]) -> str:
    kind, body = next(iter(stage.items()))
    if kind == "step":
        return f"{body['to']} for {body['for']}"
    if kind == "ramp":
        return f"{body['from']}→{body['to']} over {body['over']}"
    return f"hold {body}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscaling_cost", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="speed 10, a short profile, batch-bound, the tutorials' HPA only"
    )
    parser.add_argument("--speed", type=float, default=3.0)
    parser.add_argument("--slo-ms", type=float, default=2000.0, help="p95 end-to-end latency target (ms)")
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file whose section is written")
    parser.add_argument("--keep", type=Path, help="copy the lab reports (report.md, lab.png, CSV) here")
    parser.add_argument(
        "--regime", action="append", choices=[r.name for r in REGIMES], help="run only these regimes (default: both)"
    )
    parser.add_argument(
        "--runtime",
        choices=["pytorch", "engine"],
        default="pytorch",
        help="the replicas' runtime; engine runs the new defaults' inputs on the ensemble stand-in (the llmapi "
        "stand-in's replicas crash in Triton 2.51's Python backend under this profile: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--variants", action="store_true", help="also the new inputs with Kubernetes' behavior and a window only"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these configurations, e.g. 'new defaults' (exploring; give --out elsewhere than the docs)",
    )
    args = parser.parse_args(argv)
    speed = 10.0 if args.quick else args.speed
    slo_s = args.slo_ms / 1000.0
    levels = [2, 8] if args.quick else [4, 6, 8, 10, 12, 14, 16]
    hold = 6.0 if args.quick else 15.0
    skip = 3.0
    stages = diurnal_stages(0.15 if args.quick else 1.0)
    duration = profile_duration(stages)
    chosen = args.regime or ([REGIMES[0].name] if args.quick else [r.name for r in REGIMES])
    regimes = [r for r in REGIMES if r.name in chosen]
    names = {c.name.split(": ", 1)[1] for c in configurations(REGIMES[0], variants=True)}
    if args.only:
        unknown = set(args.only) - names
        if unknown:
            parser.error(f"--only: no configuration named {', '.join(sorted(unknown))}; there are {sorted(names)}")
    if (args.only or args.regime or args.variants) and args.out == DOCS and not args.quick:
        parser.error("--only/--regime/--variants: a partial run must not replace the docs' table; give --out")
    results: list[RegimeResult] = []
    with workdir() as tmp:
        for regime in regimes:
            configs = configurations(regime, variants=args.variants, runtime=args.runtime)
            configs = configs[:1] if args.quick else configs
            if args.only:
                configs = [c for c in configs if c.name.split(": ", 1)[1] in args.only]
            print(f"{regime.name}: capacity, one replica, clients {levels}", flush=True)
            cap_run = run_config(
                capacity_config(regime, args.runtime),
                Path(tmp),
                stages=staircase(levels, hold),
                speed=speed,
                slo_ms=args.slo_ms,
                settle="30s",
            )
            cap, cap_rows = capacity(cap_run, levels, hold, slo_s, skip)
            print(f"  capacity {cap} clients per replica", flush=True)
            result = RegimeResult(regime, cap, cap_rows, oracle_replica_seconds(stages, cap, duration))
            for config in configs:
                print(f"profile: {config.name}", flush=True)
                try:
                    run = run_config(
                        config,
                        Path(tmp),
                        stages=stages,
                        speed=speed,
                        slo_ms=args.slo_ms,
                        settle="20s" if args.quick else "120s",
                    )
                except LabError as exc:  # e.g. a replica that kept crashing: reported, the others still run
                    print(f"  aborted: {exc}", flush=True)
                    result.aborted.append((config, str(exc)))
                    continue
                cost = cost_of(run, duration, slo_s)
                print(f"  {cost}", flush=True)
                result.costs.append((run, cost))
                if args.keep:
                    import shutil

                    shutil.copytree(run.out_dir, args.keep / run.out_dir.parent.name, dirs_exist_ok=True)
            results.append(result)
    body = render(results, duration, slo_s, speed, stages, command_line("bench.autoscaling_cost", argv), args.runtime)
    write_section(NAME, body, args.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

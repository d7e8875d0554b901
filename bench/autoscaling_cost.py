"""Autoscaling cost: a burst + diurnal load through the lab; replica-seconds and SLO misses vs an oracle.

Three parts, all through the lab (real tritonserver replicas, real Prometheus with the chart's
rules, the Kubernetes HPA algorithm on the chart's HPA spec), in one command:

1. Capacity: one replica (minimum = maximum = 1) under a staircase of closed-loop clients; the
   single-replica capacity is the most clients whose p95 end-to-end latency stays within the SLO.
2. The profile: clients rise from a night level to a day level and fall back (diurnal), with a
   burst on top in the middle. Run once per HPA configuration:
   - `seed`: the tutorial's HPA input (`triton:queue_compute:ratio` ≥ 1000m) and no behavior
     (Kubernetes' defaults: 5-minute scale-down stabilization, default policies);
   - `chart defaults`: the chart's default HPA inputs and behavior with the lab's values profile,
     as shipped (`trtllm:requests_waiting` ≥ 2, `triton:pending_requests` ≥ 2; scale-down one
     pod a minute after a 120 s window);
   - `chart defaults, KEDA`: the same inputs and behavior with `autoscaling.engine: keda` (the lab
     runs the ScaledObject as KEDA does: its generated HPA, `pollingInterval`; docs/lab.md);
   - `chart inputs, Kubernetes' behavior`: the same inputs with `behavior: null` (300 s);
   - `chart inputs, 120 s window only`: the same inputs with the chart's window but Kubernetes'
     scale-down policy (any number of pods at once);
   - `waiting target 5` and `waiting target 5, 60 s window only`: `trtllm:requests_waiting` at a
     target tuned for this scenario's SLO (one replica holds ~12 clients within it: 4 running, up
     to ~8 waiting; 5 leaves headroom), with the chart's behavior, and with a 60 s window and
     Kubernetes' scale-down policy;
   - `in-engine target 10` and `in-engine target 10, 60 s window only`: a load-proportional input,
     `trtllm:requests_in_engine` (active + waiting) ≥ 10 per pod in place of the waiting count —
     the HPA's rule `ceil(replicas × value / target)` sizes replicas in proportion to the load
     only when the value is proportional to it; the waiting count is 0 until a replica is full —
     with the chart's behavior, and with a 60 s window and Kubernetes' scale-down policy.
3. The oracle: each second, the fewest replicas (within min..max) whose measured capacity covers
   the profile's clients at that second; its replica-seconds over the load.

Replica-seconds count every replica that exists (starting or ready; a starting GPU pod costs the
same) each second of the load profile. *Requests over SLO* are requests whose end-to-end latency
exceeded the scenario's p95 target latency (`--slo-ms`, default 2000: about 4× a lone request's
~0.5 s on a 2-core machine, so one replica holds several clients and the maximum of 4 is not
binding all day).

    python -m bench.autoscaling_cost            # speed 3 (~55 min on 2 cores)
    python -m bench.autoscaling_cost --quick    # speed 10, short profile, seed only (smoke test)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import DOCS, command_line, fmt, percentile, section_header, table, write_section
from bench._lab import (
    SEED_METRIC,
    LabConfig,
    LabRun,
    chart_defaults,
    default_metrics,
    lab_values,
    profile_duration,
    run_config,
    workdir,
)

NAME = "autoscaling_cost"
IN_ENGINE = ("trtllm:requests_in_engine", "10")
MIN_REPLICAS, MAX_REPLICAS = 1, 4


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


def chart_autoscaling() -> dict[str, Any]:
    """The HPA settings a user gets from the chart's defaults and the lab's values profile, as shipped."""
    auto = chart_defaults().get("autoscaling", {})
    lab = lab_values().get("autoscaling", {})
    return {
        "metric": dict(lab.get("metric") or auto.get("metric") or {}),
        "metrics": list(lab.get("metrics") or default_metrics("engine")),
        "behavior": dict(lab.get("behavior") or auto.get("behavior") or {}),
    }


def _hpa(
    metrics: Sequence[tuple[str, str]],
    behavior: dict[str, Any] | None,
    metric: dict[str, Any] | None = None,
    engine: str = "hpa",
) -> dict[str, Any]:
    # `behavior: None` removes the chart's default (Helm drops a key set to null): Kubernetes' own defaults.
    return {
        "autoscaling": {
            "engine": engine,
            "replicas": {"minimum": MIN_REPLICAS, "maximum": MAX_REPLICAS},
            "metric": metric or {"name": ""},
            # No list: null, not [] (which stands for the chart's runtime defaults).
            "metrics": [{"name": n, "value": v} for n, v in metrics] or None,
            "behavior": behavior,
        }
    }


def configurations() -> list[LabConfig]:
    chart = chart_autoscaling()
    chart_metrics = [(str(m["name"]), str(m["value"])) for m in chart["metrics"]]
    metric, behavior = chart["metric"] or None, chart["behavior"] or None
    waiting_5 = _replace(chart_metrics, "trtllm:requests_waiting", ("trtllm:requests_waiting", "5"))
    in_engine = _replace(chart_metrics, "trtllm:requests_waiting", IN_ENGINE)
    return [
        LabConfig("seed", _hpa([], None, dict(SEED_METRIC)), note="tutorial HPA input, Kubernetes' default behavior"),
        LabConfig(
            "chart defaults",
            _hpa(chart_metrics, behavior, metric),
            note="the chart's default HPA inputs and behavior, as shipped",
        ),
        LabConfig(
            "chart defaults, KEDA",
            _hpa(chart_metrics, behavior, metric, engine="keda"),
            note="the same inputs and behavior through KEDA's ScaledObject (its generated HPA, pollingInterval)",
        ),
        LabConfig(
            "chart inputs, Kubernetes' behavior",
            _hpa(chart_metrics, None, metric),
            note="the chart's HPA inputs with behavior: null (a 300 s scale-down window, any number of pods)",
        ),
        LabConfig(
            "chart inputs, 120 s window only",
            _hpa(chart_metrics, _window_only(120), metric),
            note="the chart's HPA inputs with the 120 s window but Kubernetes' scale-down policy",
        ),
        LabConfig(
            "waiting target 5",
            _hpa(waiting_5, behavior, metric),
            note="a target for this scenario's SLO, the chart's behavior",
        ),
        LabConfig(
            "waiting target 5, 60 s window only",
            _hpa(waiting_5, _window_only(60), metric),
            note="a target for this scenario's SLO, a 60 s scale-down window and Kubernetes' scale-down policy",
        ),
        LabConfig(
            "in-engine target 10",
            _hpa(in_engine, behavior, metric),
            note="a load-proportional input, requests in the engine (active + waiting) ≥ 10 per pod "
            "(one replica holds 12 clients within the SLO), with the chart's behavior",
        ),
        LabConfig(
            "in-engine target 10, 60 s window only",
            _hpa(in_engine, _window_only(60), metric),
            note="the same input, a 60 s scale-down window and Kubernetes' scale-down policy",
        ),
    ]


def _window_only(seconds: int) -> dict[str, Any]:
    """A scale-down window with Kubernetes' scale-down policy (`policies: null` drops the chart's)."""
    return {"scaleDown": {"stabilizationWindowSeconds": seconds, "policies": None}}


def _replace(metrics: Sequence[tuple[str, str]], name: str, new: tuple[str, str]) -> list[tuple[str, str]]:
    return [new if n == name else (n, v) for n, v in metrics]


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
    }


def render(
    cap: int,
    cap_rows: Sequence[Sequence[Any]],
    costs: Sequence[tuple[LabRun, dict[str, Any]]],
    oracle: tuple[float, int],
    duration: float,
    slo_s: float,
    speed: float,
    stages: Sequence[Any],
    command: str,
) -> str:
    lines = section_header("Autoscaling cost (issue 8, item 2)", command)
    lines += [
        f"The lab at speed {speed:g} (HPA sync, stabilization windows, policy periods, scrape/evaluation intervals "
        f"and rate window divided by {speed:g}; the stand-in's timing and replica start-up are not), replicas "
        f"{MIN_REPLICAS}–{MAX_REPLICAS}, SLO: p95 end-to-end ≤ {slo_s * 1000:.0f} ms. Load (closed-loop streaming "
        f"clients, {duration:g} lab s): " + "; ".join(_stage_text(s) for s in stages) + ".",
        "",
        "### Single-replica capacity (staircase, one replica)",
        "",
        table(["clients", "requests", "p50 s", "p95 s", f"p95 ≤ {slo_s:g} s"], cap_rows),
        "",
        f"Measured capacity: **{cap} clients per replica** within the SLO.",
        "",
        "### Burst + diurnal profile",
        "",
    ]
    oracle_s, oracle_peak = oracle
    rows = [["oracle (measured capacity, per second)", f"{oracle_s:.0f}", "1.00", "–", "–", "–", str(oracle_peak), "–"]]
    for run, c in costs:
        rows.append(
            [
                f"{run.config.name}: {run.hpa}",
                f"{c['replica_s']:.0f}",
                f"{c['replica_s'] / oracle_s:.2f}",
                f"{c['over'] + c['failed']} / {c['requests']} ({c['over_pct']:.2f} %)",
                str(c["seconds_over"]),
                str(c["at_max_s"]),
                str(c["peak"]),
                fmt(c["p95"], 2),
            ]
        )
    lines.append(
        table(
            [
                "configuration",
                "replica-seconds (lab)",
                "× oracle",
                "requests over SLO (or failed)",
                "seconds with trailing-5 s p95 over SLO",
                "seconds at max replicas",
                "peak replicas",
                "p95 e2e s",
            ],
            rows,
        )
    )
    lines += [""] + [f"- {run.config.name}: {run.config.note}." for run, _ in costs if run.config.note]
    lines += ["", "Goal (issue 8): ≤ 1.2× oracle replica-seconds with < 1 % SLO misses.", ""]
    for run, c in costs:
        ok = c["replica_s"] / oracle_s <= 1.2 and c["over_pct"] < 1.0
        lines.append(
            f"- {run.config.name}: {c['replica_s'] / oracle_s:.2f}× oracle, {c['over_pct']:.2f} % over SLO — "
            f"{'met' if ok else 'missed'}"
        )
    notes = sorted({n for run, _ in costs for n in run.notes if not n.startswith("The engine is llmprep's stand-in")})
    if notes:
        lines += ["", "Lab notes: " + " ".join(notes)]
    return "\n".join(lines) + "\n"


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
        "--quick", action="store_true", help="speed 10, a short profile, the seed HPA only (smoke test)"
    )
    parser.add_argument("--speed", type=float, default=3.0)
    parser.add_argument("--slo-ms", type=float, default=2000.0, help="p95 end-to-end latency target (ms)")
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file whose section is written")
    parser.add_argument("--keep", type=Path, help="copy the lab reports (report.md, lab.png, CSV) here")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these configurations (exploring; give --out elsewhere than the docs)",
    )
    args = parser.parse_args(argv)
    speed = 10.0 if args.quick else args.speed
    slo_s = args.slo_ms / 1000.0
    levels = [2, 8] if args.quick else [4, 6, 8, 10, 12, 14, 16]
    hold = 6.0 if args.quick else 15.0
    skip = 3.0
    stages = diurnal_stages(0.15 if args.quick else 1.0)
    duration = profile_duration(stages)
    configs = configurations()[:1] if args.quick else configurations()
    if args.only:
        unknown = set(args.only) - {c.name for c in configs}
        if unknown:
            parser.error(f"--only: no configuration named {', '.join(sorted(unknown))}")
        if args.out == DOCS:
            parser.error("--only: a partial run must not replace the docs' table; give --out")
        configs = [c for c in configs if c.name in args.only]
    capacity_config = LabConfig(
        "capacity",
        # `metrics: None`: only the seed metric ([] would add the runtime defaults; one replica either way).
        {"autoscaling": {"replicas": {"minimum": 1, "maximum": 1}, "metric": dict(SEED_METRIC), "metrics": None}},
    )
    costs: list[tuple[LabRun, dict[str, Any]]] = []
    with workdir() as tmp:
        print(f"capacity: one replica, clients {levels}", flush=True)
        cap_run = run_config(
            capacity_config, Path(tmp), stages=staircase(levels, hold), speed=speed, slo_ms=args.slo_ms, settle="30s"
        )
        cap, cap_rows = capacity(cap_run, levels, hold, slo_s, skip)
        print(f"  capacity {cap} clients per replica", flush=True)
        oracle = oracle_replica_seconds(stages, cap, duration)
        for config in configs:
            print(f"profile: {config.name}", flush=True)
            run = run_config(
                config,
                Path(tmp),
                stages=stages,
                speed=speed,
                slo_ms=args.slo_ms,
                settle="20s" if args.quick else "120s",
            )
            cost = cost_of(run, duration, slo_s)
            print(f"  {cost}", flush=True)
            costs.append((run, cost))
            if args.keep:
                import shutil

                shutil.copytree(run.out_dir, args.keep / run.out_dir.parent.name, dirs_exist_ok=True)
    body = render(
        cap, cap_rows, costs, oracle, duration, slo_s, speed, stages, command_line("bench.autoscaling_cost", argv)
    )
    write_section(NAME, body, args.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

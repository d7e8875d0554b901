"""`llmprep lab`: the chart's rules and HPA, run for real on one machine.

1. Render the chart with the scenario's values (llmprep.lab.rendered).
2. Write a stand-in model repository with a tiny offline tokenizer (llmprep.repo).
3. Start Prometheus on loopback with the chart's rule groups and the PodMonitor's interval.
4. Start the minimum replicas (`llmprep serve`) behind a round-robin front (the Service).
5. Drive the load profile through the front (llmprep.load, in-process) while the HPA
   controller syncs on the adapter-served metrics and scales the replicas.
6. Record every second; verify the recorded signals against the chart's rule expressions;
   write timeseries.csv, report.json, report.md and lab.png.
Every process started is stopped on the way out, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llmprep.errors import UsageError
from llmprep.lab import report as reporting
from llmprep.lab.cluster import Cluster, ClusterConfig, Event, Replica, kill_everything, track, untrack
from llmprep.lab.front import Front
from llmprep.lab.hpa import DEFAULT_DOWNSCALE_STABILIZATION_S, Decision, HorizontalController
from llmprep.lab.keda import KedaOperator
from llmprep.lab.metrics import MetricsSource
from llmprep.lab.recorder import Finished, Recorder, signal_column
from llmprep.lab.rendered import LabSetup, prepare
from llmprep.lab.scenario import Scenario

ENTRY_MODELS = {"inflight_batcher_llm": "ensemble", "llmapi": "tensorrt_llm"}
START_TIMEOUT_S = 180.0
METRICS_WARMUP_S = 60.0


@dataclass
class LabResult:
    report: reporting.LabReport
    paths: dict[str, Path]
    out_dir: Path
    interrupted: bool = False
    requests: list[Finished] = field(default_factory=list)  # every finished request (time, e2e, TTFT, error)


# --------------------------------------------------------------------------- signals and clean-up


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C / SIGTERM: stop the run gracefully (clean-up, partial report); second: abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


atexit.register(kill_everything)


# --------------------------------------------------------------------------- verification


def verify_recording_rules(
    prometheus: Any,
    groups: Sequence[Mapping[str, Any]],
    namespace: str,
    start: float,
    end: float,
    *,
    points: int = 8,
    margin_s: float = 0.1,
) -> dict[str, Any]:
    """Re-evaluate each recording rule's expression at stored sample times and compare.

    A recorded sample is the rule applied to the raw counters Prometheus held at its
    evaluation time; evaluating the chart's expression at that same timestamp over the same
    raw samples gives the same value per pod (up to float rounding). One race is excluded: a
    scrape's samples carry the time it began but are stored when it ends, so an evaluation
    that ran while a scrape of that pod was in flight (from its start to its end, read from
    `scrape_duration_seconds`, plus `margin_s`) saw less than a later re-evaluation does.
    Those evaluation times are skipped and counted.
    """
    span = max(1, int(math.ceil(end - start)))
    scrapes: dict[str, list[tuple[float, float]]] = {}
    durations = prometheus.api(
        "query", {"query": f'scrape_duration_seconds{{namespace="{namespace}"}}[{span}s]', "time": end}
    )["result"]
    for series in durations:
        scrapes.setdefault(series["metric"].get("pod", ""), []).extend(
            (float(ts), float(d)) for ts, d in series["values"]
        )

    def clear_of_scrapes(pod: str, ts: float) -> bool:
        return not any(begin - 0.001 <= ts <= begin + took + margin_s for begin, took in scrapes.get(pod, ()))

    checked = matched = skipped = 0
    worst = 0.0
    mismatches: list[dict[str, Any]] = []
    per_rule: dict[str, dict[str, int]] = {}
    for group in groups:
        for rule in group.get("rules", []):
            name, expr = rule.get("record"), rule.get("expr")
            if not name or not expr:
                continue
            stats = per_rule.setdefault(name, {"checked": 0, "matched": 0})
            stored = prometheus.api("query", {"query": f'{name}{{namespace="{namespace}"}}[{span}s]', "time": end})
            samples: list[tuple[float, str, float]] = []
            for series in stored.get("result", []):
                pod = series["metric"].get("pod", "")
                samples += [(float(ts), pod, float(v)) for ts, v in series.get("values", [])]
            clear = sorted(x for x in samples if clear_of_scrapes(x[1], x[0]))
            skipped += len(samples) - len(clear)
            if not clear:
                continue
            step = max(1, len(clear) // points)
            for ts, pod, value in clear[::step][:points]:
                again = {s.labels.get("pod", ""): s.value for s in prometheus.query(str(expr), at=ts)}
                if pod not in again:
                    continue
                checked += 1
                stats["checked"] += 1
                diff = abs(again[pod] - value)
                scale = max(abs(value), abs(again[pod]), 1e-12)
                worst = max(worst, diff / scale if diff else 0.0)
                if diff <= 1e-9 * scale or diff < 1e-12:
                    matched += 1
                    stats["matched"] += 1
                elif len(mismatches) < 10:
                    mismatches.append({"rule": name, "pod": pod, "time": ts, "recorded": value, "recomputed": again[pod]})
    return {
        "recording_rules_checked": checked,
        "recording_rules_matched": matched,
        "skipped_near_a_scrape": skipped,
        "worst_relative_difference": worst,
        "per_rule": per_rule,
        "mismatches": mismatches,
    }


# --------------------------------------------------------------------------- the run


def _entry_model(repository: Path) -> str:
    from llmprep import repo

    layout = repo.describe(repository).get("layout", "inflight_batcher_llm")
    return ENTRY_MODELS.get(layout, "ensemble")


def _group_interval(groups: Sequence[Mapping[str, Any]], default: float) -> float:
    from llmprep.load.profile import parse_duration

    for group in groups:
        if any("record" in r for r in group.get("rules", [])) and group.get("interval"):
            return parse_duration(group["interval"], "PrometheusRule group interval")
    return default


def _status_line(row: Mapping[str, Any], metrics: Sequence[tuple[str, float]]) -> str:
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


def run_lab(
    scenario: Scenario,
    *,
    out_dir: Path,
    chart_dir: Path | None = None,
    adapter_values: Path | None = None,
    console: Console | None = None,
    on_row: Callable[[Mapping[str, Any]], None] | None = None,
    setup: LabSetup | None = None,
) -> LabResult:
    """Run one scenario end to end and write its report into `out_dir`.

    `setup` is the chart's output for this scenario (`rendered.prepare`), when it was rendered
    elsewhere: on a machine without Helm's SDK, say, such as a GPU host with no package registry.
    """
    from llmprep.lab.prometheus import PrometheusServer, ScrapeTarget, check_rules, locate_prometheus
    from llmprep.repo import write_repository

    console = console or Console(stderr=True)
    out_dir = Path(out_dir).expanduser().resolve()
    install = locate_prometheus()  # a missing binary fails here, in one line, before any work
    setup = setup or prepare(scenario, chart_dir)
    speed = scenario.speed
    hpa_spec = setup.hpa.time_scaled(speed)
    work = Path(tempfile.mkdtemp(prefix="llmprep-lab-"))
    logs = out_dir / "logs"
    stop = threading.Event()
    front: Front | None = None
    prom: PrometheusServer | None = None
    cluster: Cluster | None = None
    notes: list[str] = [
        "The engine is llmprep's stand-in (a cost model, not a real LLM); Triton, Prometheus, the rules and "
        "the HPA algorithm are real.",
    ]
    notes += [f"spec warning: {w}" for w in setup.spec.warnings]
    decisions: list[Decision] = []
    verification: dict[str, Any] = {}
    load_box: dict[str, Any] = {}
    t0 = time.time()
    interrupted = False
    load_end: float | None = None
    returned_to_min = False

    with _stop_on_signals(stop):
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            spec_file = work / "model.yaml"
            spec_file.write_text(setup.model_yaml)
            rules_file = work / "rules.yaml"
            rules_file.write_text(yaml.safe_dump({"groups": setup.rule_groups}, sort_keys=False))
            check_rules(rules_file, install)
            console.print(f"[bold]lab[/] {scenario.name}: chart rendered; {len(setup.recorded)} recorded signals, "
                          f"{setup.hpa.source} on {', '.join(m.name for m in setup.hpa.metrics)}; speed {speed:g}×",
                          highlight=False)
            repository = write_repository(setup.spec, out_dir=work / "repository", engine="standin")
            model = scenario.load.model or _entry_model(repository)

            front = Front(health_interval_s=max(setup.readiness_period_s / speed, 0.2)).start()
            prom = PrometheusServer(
                rule_files=[rules_file], scrape_interval_s=setup.scrape_interval_s,
                evaluation_interval_s=setup.scrape_interval_s, workdir=work / "prometheus", install=install,
            ).start()
            if prom.proc is not None:
                track(prom.proc)
            targets_lock = threading.Lock()
            job = f"{setup.namespace}/{setup.podmonitor}"

            def scrape(replicas: Sequence[Replica]) -> None:
                # What the operator's PodMonitor discovery gives each target: namespace, pod, container, endpoint, job.
                assert prom is not None
                with targets_lock:
                    prom.set_targets(
                        [ScrapeTarget(r.metrics_address, job=f"podMonitor/{job}/0",
                                      labels={"namespace": setup.namespace, "pod": r.name, "container": "triton",
                                              "endpoint": "metrics", "job": job})
                         for r in replicas],
                        wait_s=0,
                    )

            cluster = Cluster(
                ClusterConfig(
                    repository=repository, spec_file=spec_file, deployment=setup.deployment,
                    namespace=setup.namespace, pod_labels=setup.pod_labels, podmonitor=setup.podmonitor,
                    workdir=out_dir / "logs", protocol=scenario.load.protocol,
                    readiness_period_s=max(setup.readiness_period_s / speed, 0.1),
                    pre_stop_s=setup.pre_stop_s / speed, exit_timeout_s=setup.exit_timeout_s,
                    drain_timeout_s=None if setup.drain_timeout_s is None else setup.drain_timeout_s / speed,
                    start_timeout_s=START_TIMEOUT_S,
                ),
                front=front, set_scrape_targets=scrape,
            )
            with console.status(f"starting {hpa_spec.min_replicas} replica(s) and Prometheus"):
                cluster.scale(hpa_spec.min_replicas)
                cluster.wait_ready(hpa_spec.min_replicas, START_TIMEOUT_S, stop)
            source = MetricsSource(prom, namespace=setup.namespace, adapter_values=adapter_values, speed=speed)
            with console.status("waiting for the adapter to serve the HPA's metrics"):
                warm_deadline = time.monotonic() + METRICS_WARMUP_S
                while not stop.is_set():
                    cluster.tick()
                    readings = source.readings(hpa_spec, [p.name for p in cluster.pods()])
                    if all(r.error is None for r in readings):
                        break
                    if time.monotonic() > warm_deadline:
                        missing = "; ".join(r.error or "" for r in readings if r.error)
                        notes.append(f"not every HPA metric was served before the load started: {missing}")
                        break
                    time.sleep(0.2)

            controller = HorizontalController(
                hpa_spec, downscale_stabilization_s=DEFAULT_DOWNSCALE_STABILIZATION_S / speed
            )
            # A ScaledObject: KEDA's operator (llmprep/lab/keda.py) polls beside the HPA it generates.
            keda = None
            if setup.keda is not None:
                keda = KedaOperator(dataclasses.replace(
                    setup.keda, polling_interval_s=setup.keda.polling_interval_s / speed,
                    cooldown_period_s=setup.keda.cooldown_period_s / speed))
            next_poll = time.time()
            recorder = Recorder(prometheus=prom, namespace=setup.namespace, recorded=setup.recorded,
                                hpa=hpa_spec, t0=time.time())
            generator = _load_generator(scenario, setup, front.address, model)
            stop_load = threading.Event()

            def drive() -> None:
                try:
                    load_box["result"] = generator.run_sync(on_sample=recorder.on_sample, stop_event=stop_load)
                except BaseException as exc:  # reported after the run
                    load_box["error"] = exc

            t0 = recorder.t0
            load_thread = threading.Thread(target=drive, name="lab-load", daemon=True)
            load_thread.start()
            sync_s = scenario.sync_period_s / speed
            next_sync, next_row = t0, t0 + 1.0
            profile = scenario.load.profile
            metric_targets = [(m.name, m.target) for m in hpa_spec.metrics]
            decision: Decision | None = None
            progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                console=console, transient=False)
            with progress:
                task = progress.add_task("load", total=profile.duration)
                while not stop.is_set():
                    now = time.time()
                    cluster.tick()
                    if now >= next_sync:
                        pods = cluster.pods()
                        readings = source.readings(hpa_spec, [p.name for p in pods])
                        decision = controller.sync(now, cluster.desired, pods, readings)
                        decisions.append(decision)
                        if decision.rescale:
                            cluster.scale(decision.desired)
                        next_sync = max(next_sync + sync_s, now + sync_s / 2)
                    if keda is not None and now >= next_poll:
                        polled = source.readings(hpa_spec, [p.name for p in cluster.pods()])
                        values = [sum(r.values) if r.error is None and r.values else None for r in polled]
                        activation = keda.poll(now, cluster.desired, values)
                        if activation.desired != cluster.desired:
                            cluster.scale(activation.desired)
                        poll_s = keda.spec.polling_interval_s
                        next_poll = max(next_poll + poll_s, now + poll_s / 2)
                    if now >= next_row:
                        snap = generator.snapshot()
                        row = recorder.record(
                            now, level=profile.level_at(now - t0) if load_end is None else 0.0,
                            in_flight=generator.in_flight, started=snap.started if snap else 0,
                            counts=cluster.counts(), decision=decision,
                        )
                        progress.update(task, completed=min(now - t0, profile.duration),
                                        description=_status_line(row, metric_targets))
                        if on_row is not None:
                            on_row(row)
                        next_row += 1.0
                    if load_end is None and not load_thread.is_alive():
                        load_end = now
                        progress.update(task, description="load finished; waiting for the minimum replicas")
                    if load_end is not None:
                        counts = cluster.counts()
                        at_min = counts["current"] == counts["ready"] == hpa_spec.min_replicas
                        if at_min and not counts["draining"]:
                            returned_to_min = True
                            break
                        if now - load_end > scenario.settle_s:
                            notes.append(f"replicas did not return to the minimum within settle ({scenario.settle_s:g} s)")
                            break
                    time.sleep(0.05)
                if recorder.rows:  # the state the run ended in, even if the last row is a moment old
                    snap = generator.snapshot()
                    recorder.record(time.time(), level=0.0 if load_end is not None else None,
                                    in_flight=generator.in_flight, started=snap.started if snap else 0,
                                    counts=cluster.counts(), decision=decision)
            if stop.is_set():
                interrupted = True
                notes.append("interrupted: the report covers the run up to the interruption")
            stop_load.set()
            load_thread.join(scenario.load.timeout_s + 5)
            end = time.time()
            try:
                verification = verify_recording_rules(prom, setup.rule_groups, setup.namespace, t0, end)
            except Exception as exc:  # the report still gets written
                notes.append(f"could not verify the recording rules: {exc}")
            if "error" in load_box:
                notes.append(f"the load generator failed: {load_box['error']}")
        finally:
            if cluster is not None:
                with console.status("stopping replicas"):
                    cluster.shutdown()
            if prom is not None:
                logs.mkdir(parents=True, exist_ok=True)
                if prom.log_path.exists():
                    shutil.copy2(prom.log_path, logs / "prometheus.log")
                prom.stop()
                if prom.proc is not None:
                    untrack(prom.proc)
            if front is not None:
                front.stop()
            shutil.rmtree(work, ignore_errors=True)

    assert cluster is not None
    report = _build_report(
        scenario, setup, hpa_spec, recorder.rows, recorder.columns(), decisions, cluster, recorder,
        load_box.get("result"), verification, notes, t0, returned_to_min,
    )
    paths = reporting.write_all(report, out_dir)
    return LabResult(report=report, paths=paths, out_dir=out_dir, interrupted=interrupted,
                     requests=recorder.all_finished())


def _load_generator(scenario: Scenario, setup: LabSetup, address: str, model: str) -> Any:
    from llmprep.load import LoadConfig, LoadGenerator

    plan = scenario.load
    config = LoadConfig(
        targets=[address],
        profile=plan.profile,
        protocol=plan.protocol,
        model=model,
        input_tokens=plan.input_tokens,
        output_tokens=plan.output_tokens or setup.spec.standin.output_tokens,
        timeout=plan.timeout_s,
        connections=plan.connections,
        reconnect_every=plan.reconnect_every_s,
        wait_ready=30.0,
        max_error_rate=1.0,  # the lab reports errors; it does not fail the run on them
    )
    return LoadGenerator(config)


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 3)


def _build_report(
    scenario: Scenario,
    setup: LabSetup,
    hpa_spec: Any,
    rows: list[dict[str, Any]],
    columns: list[str],
    decisions: list[Decision],
    cluster: Cluster,
    recorder: Recorder,
    load_result: Any,
    verification: dict[str, Any],
    notes: list[str],
    t0: float,
    returned_to_min: bool,
) -> reporting.LabReport:
    from llmprep.load.stats import percentile

    speed = scenario.speed
    behavior = hpa_spec.behavior
    decision_rows = [
        {
            "t": round(d.time - t0, 3), "current": d.current, "desired": d.desired,
            "metric_desired": d.metric_desired, "stabilized": d.stabilized, "reason": d.reason,
            "proposals": [vars(p) for p in d.proposals],
        }
        for d in decisions
    ]
    events = [_event_row(e, t0) for e in cluster.events]
    replicas = [
        {
            "name": r.name, "created_t": _rel(r.created_at, t0), "ready_t": _rel(r.ready_at, t0),
            "first_connection_t": _rel(r.first_connection_at, t0), "deleting_t": _rel(r.deleting_at, t0),
            "sigterm_t": _rel(r.sigterm_at, t0), "stopped_t": _rel(r.stopped_at, t0), "exit_code": r.exit_code,
            "log": str(r.log_path),
        }
        for r in cluster.replicas
    ]
    surge, decline = reporting.surge_and_decline(scenario.load.profile.stages)
    metric_targets = [(m.name, m.target) for m in hpa_spec.metrics]
    timeline = reporting.analyse(
        rows, decision_rows, events, replicas, surge_at=surge, decline_at=decline,
        min_replicas=hpa_spec.min_replicas, metrics=metric_targets,
    )
    scale_up_window = behavior.scale_up.stabilization_window_s if behavior else 0.0
    scale_down_window = (behavior.scale_down.stabilization_window_s if behavior
                         else DEFAULT_DOWNSCALE_STABILIZATION_S / speed)
    configuration: dict[str, Any] = {
        "speed": speed,
        "release": setup.deployment,
        "namespace": setup.namespace,
        "scrape_interval_s": setup.scrape_interval_s,
        "rule_interval_s": _group_interval(setup.rule_groups, setup.scrape_interval_s),
        "rate_window_s": setup.rate_window_s,
        "adapter_relist_s": None,
        "sync_period_s": scenario.sync_period_s / speed,
        "scale_up_stabilization_s": scale_up_window,
        "scale_down_stabilization_s": scale_down_window,
        "readiness_period_s": setup.readiness_period_s / speed,
        "pre_stop_s": setup.pre_stop_s / speed,
        "drain_timeout_s": None if setup.drain_timeout_s is None else setup.drain_timeout_s / speed,
        "exit_timeout_s": setup.exit_timeout_s,
        "compressed_values": {k: {"cluster": v[0], "lab": v[1]} for k, v in setup.compressed.items()},
        "hpa": {
            "source": setup.hpa.source, "name": setup.hpa.name, "min": setup.hpa.min_replicas,
            "max": setup.hpa.max_replicas,
            "behavior": "set (API defaults filled in)" if setup.hpa.behavior else
                        "none (controller defaults: 5 min scale-down stabilization, scale-up ≤ max(2×, 4))",
            "metrics": [{"name": m.name, "type": m.type, "target_type": m.target_type, "target": m.target,
                         "query": m.query} for m in setup.hpa.metrics],
        },
        "model": {"name": setup.spec.name, "runtime": setup.spec.runtime, "standin": vars(setup.spec.standin)},
        "replicas": replicas,
    }
    try:
        from llmprep.lab import adapter
        from llmprep.lab.metrics import relist_interval_s

        configuration["adapter_relist_s"] = relist_interval_s(adapter.ADAPTER_VALUES) / speed
    except Exception:
        pass
    budget = reporting.budget_terms(configuration, timeline, speed)
    finished = recorder.all_finished()
    ok = [f for f in finished if f.error is None]
    requests: dict[str, Any] = load_result.summary() if load_result is not None else {}
    requests = {k: v for k, v in requests.items() if k not in ("tokens_in", "tokens_out", "itl_s")}
    failed = requests.get("errors", sum(1 for f in finished if f.error is not None))
    slo_s = scenario.slo_p95_ms / 1000.0 if scenario.slo_p95_ms else None
    over = sum(1 for r in rows if slo_s is not None and r.get("e2e_p95_s") is not None and r["e2e_p95_s"] > slo_s)
    replica_seconds = sum((r.get("replicas_ready") or 0) for r in rows)
    summary = {
        "peak_replicas": max((r.get("replicas_ready") or 0 for r in rows), default=0),
        "peak_desired": max((r.get("replicas_desired") or 0 for r in rows), default=0),
        "max_replicas": setup.hpa.max_replicas,
        "min_replicas": setup.hpa.min_replicas,
        "surge_to_decision_s": _gap(timeline.surge_at, timeline.scale_up_decision_at),
        "surge_to_ready_s": _gap(timeline.surge_at, timeline.new_replica_ready_at),
        "decline_to_min_s": _gap(timeline.decline_at, timeline.back_to_min_at),
        "returned_to_min": returned_to_min,
        "requests": requests.get("requests", len(finished)),
        "failed_requests": failed,
        "e2e_p95_s": percentile([f.e2e for f in ok], 95),
        "slo_p95_s": slo_s,
        "seconds_over_slo": over if slo_s is not None else None,
        "replica_seconds": replica_seconds,
        "seconds_at_max": sum(1 for r in rows if (r.get("replicas_ready") or 0) >= setup.hpa.max_replicas),
        # When each HPA input (averaged over pods) first left the tolerance band above its target after the
        # surge, and the physical floor of that lag: one scrape plus one rule evaluation (issue 8 item 1).
        "signal_crossings_s": {
            name: _gap(timeline.surge_at, _first_crossing(rows, name, target, timeline.surge_at))
            for name, target in metric_targets
        },
        "detection_floor_s": round(configuration["scrape_interval_s"] + configuration["rule_interval_s"], 3),
        "duration_s": rows[-1]["t"] if rows else 0.0,
    }
    scenario_info = {
        "name": scenario.name, "description": scenario.description,
        "source": str(scenario.source) if scenario.source else None,
        "values": [str(p) for p in scenario.values_files], "set": list(scenario.sets),
        "speed": speed, "sync_period_s": scenario.sync_period_s, "unit": scenario.load.profile.unit,
        "stages": [vars(s) for s in scenario.load.profile.stages], "protocol": scenario.load.protocol,
        "slo_p95_ms": scenario.slo_p95_ms,
    }
    return reporting.LabReport(
        scenario=scenario_info, configuration=configuration, rows=rows, columns=columns, decisions=decision_rows,
        events=events, requests=requests, timeline=timeline, budget=budget, summary=summary, notes=notes,
        verification=verification,
    )


def _gap(a: float | None, b: float | None) -> float | None:
    return round(b - a, 2) if a is not None and b is not None else None


def _first_crossing(rows: Sequence[Mapping[str, Any]], name: str, target: float, after: float | None) -> float | None:
    if after is None:
        return None
    for row in rows:
        value = row.get(signal_column(name))
        if row["t"] >= after and value is not None and value > target * 1.1:
            return float(row["t"])
    return None


def _event_row(event: Event, t0: float) -> dict[str, Any]:
    return {"t": round(event.time - t0, 3), "kind": event.kind, "replica": event.replica, "detail": event.detail}


def run_command(
    *,
    scenario_file: Path | None,
    values_files: Sequence[Path],
    sets: Sequence[str],
    out_dir: Path,
    sync_period: str | None,
    speed: float | None,
    chart_dir: Path | None,
    console: Console,
) -> LabResult:
    """`llmprep lab`: load the scenario, apply the command line, run, print the summary."""
    from llmprep.lab.scenario import load_scenario
    from llmprep.load.profile import parse_duration

    for path in values_files:
        if not Path(path).is_file():
            raise UsageError(f"--values {path}: no such file")
    sync_s = parse_duration(sync_period, "--sync-period") if sync_period is not None else None
    scenario = load_scenario(scenario_file).with_overrides(
        values_files=tuple(Path(p) for p in values_files), sets=tuple(sets), speed=speed, sync_period_s=sync_s,
    )
    result = run_lab(scenario, out_dir=out_dir, chart_dir=chart_dir, console=console)
    for line in reporting.summary_lines(result.report):
        console.print(line, highlight=False)
    for term in result.report.budget:
        if term["kind"] == "measured" and term["lab_s"] is not None:
            console.print(f"  {term['term']}: {term['lab_s']:.2f} s", highlight=False)
    console.print(f"report: {result.paths['markdown']}", highlight=False)
    return result

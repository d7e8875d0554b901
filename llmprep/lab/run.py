"""`llmprep lab`: the chart's rules and HPA, run for real on one machine.

1. Render the chart with the scenario's values (llmprep.lab.rendered) and compute every period
   the run uses, compressed by `speed` and clamped once (llmprep.lab.timing).
2. Write a stand-in model repository with a tiny offline tokenizer (llmprep.repo).
3. Start Prometheus on loopback with the chart's rule groups and the PodMonitor's interval.
4. Start the minimum replicas (`llmprep serve`) behind a round-robin front (the Service).
5. Drive the load profile through the front (llmprep.load, in-process) while the HPA
   controller syncs on the adapter-served metrics and scales the replicas.
6. Record every second; check the recorded signals against the chart's rule expressions
   (llmprep.lab.verify); build the report (llmprep.lab.report) and write its files
   (llmprep.lab.outputs).
Every process started is stopped on the way out, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llmprep.errors import UsageError
from llmprep.lab import outputs
from llmprep.lab import report as reporting
from llmprep.lab.cluster import Cluster, ClusterConfig, Replica, kill_everything, track, untrack
from llmprep.lab.control import ControlPlane
from llmprep.lab.front import Front
from llmprep.lab.hpa import Decision
from llmprep.lab.metrics import MetricsSource
from llmprep.lab.recorder import Finished, Recorder
from llmprep.lab.rendered import LabSetup, prepare
from llmprep.lab.scenario import Scenario
from llmprep.lab.timing import LOOP_TICK_S, Timing
from llmprep.lab.verify import verify_recording_rules

ENTRY_MODELS = {"inflight_batcher_llm": "ensemble", "llmapi": "tensorrt_llm"}
START_TIMEOUT_S = 180.0
METRICS_WARMUP_S = 60.0
STANDIN_NOTE = (
    "The engine is llmprep's stand-in (a cost model, not a real LLM); Triton, Prometheus, the rules and "
    "the HPA algorithm are real."
)


@dataclass
class LabResult:
    report: reporting.LabReport
    paths: dict[str, Path]
    out_dir: Path
    interrupted: bool = False
    requests: list[Finished] = field(default_factory=list)  # every finished request (time, e2e, TTFT, error)


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


def _entry_model(repository: Path) -> str:
    from llmprep import repo

    layout = repo.describe(repository).get("layout", "inflight_batcher_llm")
    return ENTRY_MODELS.get(layout, "ensemble")


class _Run:
    """One run's moving parts (front, Prometheus, cluster, controllers) and what it collected."""

    def __init__(self, scenario: Scenario, setup: LabSetup, timing: Timing, console: Console) -> None:
        self.scenario, self.setup, self.timing, self.console = scenario, setup, timing, console
        self.stop = threading.Event()
        self.notes = [STANDIN_NOTE] + [f"spec warning: {w}" for w in setup.spec.warnings]
        self.decisions: list[Decision] = []
        self.control: ControlPlane | None = None
        self.verification: dict[str, Any] = {}
        self.load_box: dict[str, Any] = {}
        self.returned_to_min = False
        self.interrupted = False
        self.front: Front | None = None
        self.prom: Any = None  # llmprep.lab.prometheus.PrometheusServer
        self.cluster: Cluster | None = None
        self._targets_lock = threading.Lock()

    # -- start-up: each piece registers its own clean-up, run in reverse on the way out ----------
    def start(self, cleanup: ExitStack, work: Path, out_dir: Path, install: Any) -> str:
        """Start the front, Prometheus and the minimum replicas; return the model the load calls."""
        from llmprep.lab.prometheus import PrometheusServer, check_rules
        from llmprep.repo import write_repository

        setup, timing = self.setup, self.timing
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        spec_file = work / "model.yaml"
        spec_file.write_text(setup.model_yaml)
        rules_file = work / "rules.yaml"
        rules_file.write_text(yaml.safe_dump({"groups": setup.rule_groups}, sort_keys=False))
        check_rules(rules_file, install)
        self.console.print(
            f"[bold]lab[/] {self.scenario.name}: chart rendered; {len(setup.recorded)} recorded signals, "
            f"{setup.hpa.source} on {', '.join(m.name for m in setup.hpa.metrics)}; speed {timing.speed:g}×",
            highlight=False,
        )
        repository = write_repository(setup.spec, out_dir=work / "repository", engine="standin")
        model = self.scenario.load.model or _entry_model(repository)

        # Scale to zero: the front holds what arrives at zero replicas, as the KEDA HTTP add-on's
        # interceptor does (llmprep/lab/control.py), until a replica is ready or the client gives up.
        hold_s = self.scenario.load.timeout_s if self.scales_to_zero else 0.0
        self.front = front = Front(health_interval_s=timing.readiness_period.lab_s, hold_s=hold_s).start()
        cleanup.callback(front.stop)
        self.prom = PrometheusServer(
            rule_files=[rules_file],
            scrape_interval_s=timing.scrape_interval.lab_s,
            evaluation_interval_s=timing.scrape_interval.lab_s,
            workdir=work / "prometheus",
            install=install,
        ).start()
        cleanup.callback(self._stop_prometheus, out_dir / "logs")
        if self.prom.proc is not None:
            track(self.prom.proc)
        self.cluster = Cluster(
            ClusterConfig(
                repository=repository,
                spec_file=spec_file,
                deployment=setup.deployment,
                namespace=setup.namespace,
                pod_labels=setup.pod_labels,
                podmonitor=setup.podmonitor,
                workdir=out_dir / "logs",
                protocol=self.scenario.load.protocol,
                readiness_period_s=timing.readiness_period.lab_s,
                pre_stop_s=timing.pre_stop.lab_s,
                exit_timeout_s=setup.exit_timeout_s,
                start_timeout_s=START_TIMEOUT_S,
                drain_timeout_s=None if timing.drain_timeout is None else timing.drain_timeout.lab_s,
            ),
            front=front,
            set_scrape_targets=self._scrape,
        )
        cleanup.callback(self._stop_cluster)
        with self.console.status(f"starting {timing.hpa.min_replicas} replica(s) and Prometheus"):
            self.cluster.scale(timing.hpa.min_replicas)
            self.cluster.wait_ready(timing.hpa.min_replicas, START_TIMEOUT_S, self.stop)
        return model

    @property
    def scales_to_zero(self) -> bool:
        return self.timing.keda is not None and self.timing.keda.min_replica_count == 0

    def _scrape(self, replicas: Sequence[Replica]) -> None:
        """What the operator's PodMonitor discovery gives each target: namespace, pod, container, endpoint, job."""
        from llmprep.lab.prometheus import ScrapeTarget

        setup = self.setup
        job = f"{setup.namespace}/{setup.podmonitor}"
        with self._targets_lock:
            self.prom.set_targets(
                [
                    ScrapeTarget(
                        r.metrics_address,
                        job=f"podMonitor/{job}/0",
                        labels={
                            "namespace": setup.namespace,
                            "pod": r.name,
                            "container": "triton",
                            "endpoint": "metrics",
                            "job": job,
                        },
                    )
                    for r in replicas
                ],
                wait_s=0,
            )

    def _stop_cluster(self) -> None:
        assert self.cluster is not None
        with self.console.status("stopping replicas"):
            self.cluster.shutdown()

    def _stop_prometheus(self, logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        if self.prom.log_path.exists():
            shutil.copy2(self.prom.log_path, logs / "prometheus.log")
        self.prom.stop()
        if self.prom.proc is not None:
            untrack(self.prom.proc)

    # -- the run ----------------------------------------------------------------------------------
    def drive(
        self, source: MetricsSource, recorder: Recorder, model: str, on_row: Callable[[Mapping[str, Any]], None] | None
    ) -> None:
        """Run the load while the controllers sync, one row a second, until back at the minimum or settled."""
        assert self.cluster is not None and self.front is not None
        scenario, timing, cluster = self.scenario, self.timing, self.cluster
        hpa_spec = timing.hpa
        self.control = control = ControlPlane(timing, source, time.time(), interceptor=self.front)
        generator = scenario.load.generator(self.front.address, model, self.setup.spec.standin.output_tokens)
        stop_load = threading.Event()

        def load() -> None:
            try:
                self.load_box["result"] = generator.run_sync(on_sample=recorder.on_sample, stop_event=stop_load)
            except BaseException as exc:  # reported after the run
                self.load_box["error"] = exc

        t0 = recorder.t0
        load_thread = threading.Thread(target=load, name="lab-load", daemon=True)
        load_thread.start()
        next_row = t0 + 1.0
        profile = scenario.load.profile
        metric_targets = [(m.name, m.target) for m in hpa_spec.metrics]
        load_end: float | None = None

        def row(now: float, level: float | None) -> dict[str, Any]:
            snap = generator.snapshot()
            return recorder.record(
                now,
                level=level,
                in_flight=generator.in_flight,
                started=snap.started if snap else 0,
                counts=cluster.counts(),
                decision=control.decision,
            )

        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        with progress:
            task = progress.add_task("load", total=profile.duration)
            while not self.stop.is_set():
                now = time.time()
                cluster.tick()
                control.step(now, cluster)
                if now >= next_row:
                    recorded = row(now, profile.level_at(now - t0) if load_end is None else 0.0)
                    progress.update(
                        task,
                        completed=min(now - t0, profile.duration),
                        description=outputs.status_line(recorded, metric_targets),
                    )
                    if on_row is not None:
                        on_row(recorded)
                    next_row += 1.0
                if load_end is None and not load_thread.is_alive():
                    load_end = now
                    progress.update(task, description="load finished; waiting for the minimum replicas")
                if load_end is not None:
                    counts = cluster.counts()
                    if counts["current"] == counts["ready"] == control.minimum and not counts["draining"]:
                        self.returned_to_min = True
                        break
                    if now - load_end > scenario.settle_s:
                        self.notes.append(
                            f"replicas did not return to the minimum within settle ({scenario.settle_s:g} s)"
                        )
                        break
                time.sleep(LOOP_TICK_S)
            if recorder.rows:  # the state the run ended in, even if the last row is a moment old
                row(time.time(), 0.0 if load_end is not None else None)
        if self.stop.is_set():
            self.interrupted = True
            self.notes.append("interrupted: the report covers the run up to the interruption")
        stop_load.set()
        load_thread.join(scenario.load.timeout_s + 5)
        self.decisions = control.decisions

    def check(self, t0: float) -> None:
        """The rule check over the run (a failure is a note: the report still gets written)."""
        try:
            self.verification = verify_recording_rules(
                self.prom, self.setup.rule_groups, self.setup.namespace, t0, time.time()
            )
        except Exception as exc:
            self.notes.append(f"could not verify the recording rules: {exc}")
        if "error" in self.load_box:
            self.notes.append(f"the load generator failed: {self.load_box['error']}")


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
    from llmprep.lab.prometheus import locate_prometheus

    console = console or Console(stderr=True)
    out_dir = Path(out_dir).expanduser().resolve()
    install = locate_prometheus()  # a missing binary fails here, in one line, before any work
    setup = setup or prepare(scenario, chart_dir)
    timing = Timing.of(setup, scenario, adapter_values)
    run = _Run(scenario, setup, timing, console)
    work = Path(tempfile.mkdtemp(prefix="llmprep-lab-"))
    with _stop_on_signals(run.stop), ExitStack() as cleanup:
        model = run.start(cleanup, work, out_dir, install)
        assert run.cluster is not None
        source = MetricsSource(
            run.prom, namespace=setup.namespace, adapter_values=adapter_values, relist_s=timing.adapter_relist.lab_s
        )
        with console.status("waiting for the adapter to serve the HPA's metrics"):
            missing = source.wait_served(timing.hpa, run.cluster, METRICS_WARMUP_S, run.stop)
        if missing:
            run.notes.append(f"not every HPA metric was served before the load started: {missing}")
        recorder = Recorder(
            prometheus=run.prom, namespace=setup.namespace, recorded=setup.recorded, hpa=timing.hpa, t0=time.time()
        )
        run.drive(source, recorder, model, on_row)
        run.check(recorder.t0)
    report = reporting.build_report(
        scenario,
        setup,
        timing,
        recorder=recorder,
        decisions=run.decisions,
        cluster=run.cluster,
        load_result=run.load_box.get("result"),
        verification=run.verification,
        notes=run.notes,
        t0=recorder.t0,
        returned_to_min=run.returned_to_min,
        activations=run.control.as_rows(recorder.t0) if run.control is not None else (),
        minimum=run.control.minimum if run.control is not None else None,
        front={"held": run.front.held, "refused": run.front.refused} if run.front is not None else None,
    )
    paths = outputs.write_all(report, out_dir)
    return LabResult(
        report=report, paths=paths, out_dir=out_dir, interrupted=run.interrupted, requests=recorder.all_finished()
    )


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
    from llmprep.units import parse_duration

    for path in values_files:
        if not Path(path).is_file():
            raise UsageError(
                f"--values {path}: {'not a regular file (a FIFO, device or directory); give a YAML file' if Path(path).exists() else 'no such file'}"
            )
    sync_s = parse_duration(sync_period, "--sync-period") if sync_period is not None else None
    scenario = load_scenario(scenario_file).with_overrides(
        values_files=tuple(Path(p) for p in values_files), sets=tuple(sets), speed=speed, sync_period_s=sync_s
    )
    result = run_lab(scenario, out_dir=out_dir, chart_dir=chart_dir, console=console)
    for line in outputs.summary_lines(result.report):
        console.print(line, highlight=False)
    for term in result.report.budget:
        if term["kind"] == "measured" and term["lab_s"] is not None:
            console.print(f"  {term['term']}: {term['lab_s']:.2f} s", highlight=False)
    console.print(f"report: {result.paths['markdown']}", highlight=False)
    return result

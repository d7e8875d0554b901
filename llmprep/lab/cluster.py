"""Replicas as real `llmprep serve` processes on loopback: the lab's Deployment.

`scale(n)` sets the Deployment's `spec.replicas`. A new replica is a process on free ports;
it counts as ready only once `/v2/health/ready` answers (polled every readiness period, as
the kubelet's probe), and only then enters the front's rotation. A removed replica is taken
out of the front first (the Endpoints update), then runs the chart's preStop hook (`llmprep
drain`: the pause, then until its clients have left), then gets SIGTERM so Triton drains its
in-flight requests, then is stopped and no longer scraped. Which replica
goes follows the ReplicaSet's choice: not-ready ones first, then the newest.

Every process runs in its own process group; `shutdown()` stops them all, and
`kill_everything()` (for atexit and signal handlers) kills any group still alive.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llmprep.errors import LabError
from llmprep.lab.front import Front
from llmprep.lab.replicas import Pod
from llmprep.proc import free_port, send_signal, stop, wait_or_kill
from llmprep.serve.triton import http_ok

State = Literal["starting", "ready", "draining", "stopped", "failed"]

# Every process group the lab started and has not seen exit (for atexit / signal clean-up).
_LIVE_GROUPS: set[int] = set()
_LIVE_LOCK = threading.Lock()


def kill_everything(signum: int = signal.SIGKILL) -> None:
    """Signal every process group the lab started that may still run."""
    with _LIVE_LOCK:
        groups = list(_LIVE_GROUPS)
    for pgid in groups:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            with _LIVE_LOCK:
                _LIVE_GROUPS.discard(pgid)


def track(proc: subprocess.Popen[bytes]) -> None:
    """Remember a process started with `start_new_session=True` for clean-up."""
    with _LIVE_LOCK:
        _LIVE_GROUPS.add(proc.pid)


def untrack(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE_GROUPS.discard(proc.pid)


def _suffix(rng: random.Random, n: int) -> str:
    # Kubernetes' name suffix alphabet (no vowels, no look-alikes).
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


@dataclass
class Replica:
    """One pod: its ports, process and the times it changed state (Unix seconds)."""

    name: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    state: State = "starting"
    created_at: float = 0.0
    ready_at: float | None = None
    deleting_at: float | None = None
    sigterm_at: float | None = None
    stopped_at: float | None = None
    exit_code: int | None = None
    first_connection_at: float | None = None  # first client connection the front sent here
    next_probe: float = 0.0

    def port(self, protocol: str) -> int:
        return self.grpc_port if protocol == "grpc" else self.http_port

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/health/ready"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def as_pod(self) -> Pod:
        """How the HPA sees this replica (see docs/lab.md: starting maps to Pending)."""
        if self.state == "starting":
            return Pod(self.name, phase="Pending", ready=False)
        if self.state == "failed":
            return Pod(self.name, phase="Failed", ready=False)
        return Pod(
            self.name, phase="Running", ready=self.state == "ready", deleting=self.state in ("draining", "stopped")
        )


@dataclass(frozen=True)
class Event:
    """Something the cluster did, for the report's timeline."""

    time: float
    kind: str  # created, ready, removed-from-front, drained, sigterm, stopped, failed
    replica: str
    detail: str = ""


@dataclass
class ClusterConfig:
    repository: Path
    spec_file: Path
    deployment: str
    namespace: str
    pod_labels: Mapping[str, str]
    podmonitor: str
    workdir: Path
    protocol: str = "grpc"
    readiness_period_s: float = 1.0  # lab seconds
    pre_stop_s: float = 0.0  # lab seconds
    # The chart's preStop hook is `llmprep drain`: after the pause, wait up to this long (lab seconds)
    # for clients to close their connections to the replica. None: the hook only sleeps the pause.
    drain_timeout_s: float | None = None
    exit_timeout_s: int = 10
    start_timeout_s: float = 180.0
    command: Callable[[ClusterConfig, Replica], list[str]] | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def serve_command(config: ClusterConfig, replica: Replica) -> list[str]:
    """`llmprep serve` for one replica (the pod's main container), bound to loopback."""
    # fmt: off
    return [
        sys.executable, "-m", "llmprep.cli", "serve",
        "--spec", str(config.spec_file),
        "--repository", str(config.repository),
        "--http-port", str(replica.http_port),
        "--grpc-port", str(replica.grpc_port),
        "--metrics-port", str(replica.metrics_port),
        "--address", "127.0.0.1",
        "--exit-timeout-secs", str(config.exit_timeout_s),
    ]
    # fmt: on


class Cluster:
    """The lab's Deployment + ReplicaSet + Endpoints + PodMonitor discovery, on one machine."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        front: Front,
        set_scrape_targets: Callable[[Sequence[Replica]], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.front = front
        self._set_targets = set_scrape_targets
        self._on_event = on_event
        self._clock = clock
        self.replicas: list[Replica] = []
        self.desired = 0
        self.events: list[Event] = []
        self.restarts = 0
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._rng = random.Random(0)
        self._hash = "".join(self._rng.choice(string.digits + "abcdef") for _ in range(9))
        self._serial = itertools.count(1)

    # -- what the HPA and the recorder read -------------------------------------------------------
    def pods(self) -> list[Pod]:
        """Pods matching the selector (stopped ones are gone)."""
        with self._lock:
            return [r.as_pod() for r in self.replicas if r.state != "stopped"]

    def counts(self) -> dict[str, int]:
        """desired (spec.replicas), current (pods not being deleted), ready, draining."""
        with self._lock:
            live = [r for r in self.replicas if r.state in ("starting", "ready")]
            return {
                "desired": self.desired,
                "current": len(live),
                "ready": sum(1 for r in live if r.state == "ready"),
                "draining": sum(1 for r in self.replicas if r.state == "draining"),
            }

    def ready_replicas(self) -> list[Replica]:
        with self._lock:
            return [r for r in self.replicas if r.state == "ready"]

    def scraped(self) -> list[Replica]:
        """Replicas Prometheus scrapes: every pod that exists (starting, ready or draining)."""
        with self._lock:
            return [r for r in self.replicas if r.state in ("starting", "ready", "draining")]

    # -- events -----------------------------------------------------------------------------------
    def _event(self, kind: str, replica: Replica, detail: str = "") -> None:
        event = Event(self._clock(), kind, replica.name, detail)
        with self._lock:
            self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _targets_changed(self) -> None:
        if self._set_targets is not None:
            self._set_targets(self.scraped())

    # -- scaling ----------------------------------------------------------------------------------
    def scale(self, replicas: int) -> None:
        """Set spec.replicas: start new pods or delete surplus ones (not-ready first, then newest)."""
        with self._lock:
            self.desired = replicas
            live = [r for r in self.replicas if r.state in ("starting", "ready")]
            if len(live) < replicas:
                for _ in range(replicas - len(live)):
                    self._start()
                self._targets_changed()
            elif len(live) > replicas:
                ranked = sorted(live, key=lambda r: (r.state == "ready", -r.created_at))
                for replica in ranked[: len(live) - replicas]:
                    self._delete(replica)

    def _start(self) -> Replica:
        config = self.config
        name = f"{config.deployment}-{self._hash}-{_suffix(self._rng, 5)}"
        replica = Replica(
            name=name,
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            log_path=config.workdir / "replicas" / f"{name}.log",
            created_at=self._clock(),
        )
        replica.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = (config.command or serve_command)(config, replica)
        with replica.log_path.open("ab") as log:
            try:
                replica.proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **config.env},
                    start_new_session=True,
                )
            except OSError as exc:
                raise LabError(f"cannot start replica {name}: {exc}") from None
        track(replica.proc)
        replica.next_probe = time.monotonic()
        self.replicas.append(replica)
        self._event("created", replica, " ".join(argv[-12:]))
        return replica

    def _delete(self, replica: Replica) -> None:
        replica.state = "draining"
        replica.deleting_at = self._clock()
        # The Endpoints controller drops a terminating pod at once: no new connections.
        self.front.remove(f"127.0.0.1:{replica.port(self.config.protocol)}")
        self._event("removed-from-front", replica)
        thread = threading.Thread(target=self._terminate, args=(replica,), name=f"drain-{replica.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _pre_stop(self, replica: Replica) -> None:
        """The chart's preStop hook: the real `llmprep drain` on the replica's ports, or the pause alone."""
        config = self.config
        if config.drain_timeout_s is None:
            if config.pre_stop_s > 0:
                time.sleep(config.pre_stop_s)
            return
        # fmt: off
        argv = [sys.executable, "-m", "llmprep.cli", "drain", "--port", str(replica.http_port),
                "--port", str(replica.grpc_port), "--pause", f"{config.pre_stop_s:g}",
                "--timeout", f"{config.drain_timeout_s:g}"]
        # fmt: on
        limit = config.pre_stop_s + config.drain_timeout_s + 30  # the kubelet's grace period guards a hook too
        try:
            with replica.log_path.open("ab") as log:
                done = subprocess.run(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=limit, check=False
                )
            detail = f"exit code {done.returncode}"
        except subprocess.TimeoutExpired:
            detail = f"hook killed after {limit:g} s"
        self._event("drained", replica, detail)

    def _terminate(self, replica: Replica) -> None:
        """preStop hook, SIGTERM (Triton drains in-flight requests), wait, SIGKILL past the grace period."""
        config = self.config
        self._pre_stop(replica)
        proc = replica.proc
        if proc is not None and proc.poll() is None:
            replica.sigterm_at = self._clock()
            self._event("sigterm", replica)
            # The kubelet signals the container's main process only (`llmprep serve` execs
            # tritonserver); Triton stops its Python backend stubs itself.
            stop(proc, config.exit_timeout_s + 15, group=False)
        self._reap_group(proc)
        with self._lock:
            replica.state = "stopped"
            replica.stopped_at = self._clock()
            replica.exit_code = proc.returncode if proc is not None else None
        self.front.forget(f"127.0.0.1:{replica.port(config.protocol)}")
        self._event("stopped", replica, f"exit code {replica.exit_code}")
        self._targets_changed()

    @staticmethod
    def _reap_group(proc: subprocess.Popen[bytes] | None) -> None:
        """Kill what is left of the group (the Python backend's stubs) once the server exited."""
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        untrack(proc)

    # -- the kubelet's part -----------------------------------------------------------------------
    def tick(self) -> None:
        """Probe starting replicas, notice crashes; call often (every ~0.1 s)."""
        now = time.monotonic()
        with self._lock:
            candidates = [r for r in self.replicas if r.state in ("starting", "ready")]
        for replica in candidates:
            if replica.state == "ready" and replica.first_connection_at is None:
                replica.first_connection_at = self.front.first_connection(
                    f"127.0.0.1:{replica.port(self.config.protocol)}"
                )
            proc = replica.proc
            if proc is not None and proc.poll() is not None:
                self._failed(replica, f"exited with code {proc.returncode}")
                continue
            if replica.state != "starting" or now < replica.next_probe:
                continue
            replica.next_probe = now + self.config.readiness_period_s
            if http_ok(replica.ready_url, timeout=0.5):
                with self._lock:
                    if replica.state != "starting":
                        continue
                    replica.state = "ready"
                    replica.ready_at = self._clock()
                self.front.add(f"127.0.0.1:{replica.port(self.config.protocol)}", health_url=replica.ready_url)
                self._event("ready", replica)
            elif self._clock() - replica.created_at > self.config.start_timeout_s:
                self._failed(replica, f"not ready after {self.config.start_timeout_s:g} s")

    def _failed(self, replica: Replica, why: str) -> None:
        with self._lock:
            if replica.state in ("failed", "stopped", "draining"):
                return
            replica.state = "failed"
            replica.stopped_at = self._clock()
        self.front.forget(f"127.0.0.1:{replica.port(self.config.protocol)}")
        if replica.proc is not None and replica.proc.poll() is None:
            try:
                os.killpg(replica.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            replica.proc.wait()
        self._reap_group(replica.proc)
        self._event("failed", replica, f"{why}; log: {replica.log_path}")
        with self._lock:
            self.restarts += 1
            if self.restarts > 3:
                raise LabError(f"replica {replica.name} {why} (the fourth failure); see {replica.log_path}")
            self.scale(self.desired)  # the ReplicaSet replaces it

    def wait_ready(self, count: int, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until `count` replicas are ready (start-up of the first replica) or `stop` is set."""
        deadline = time.monotonic() + timeout
        while len(self.ready_replicas()) < count and not (stop is not None and stop.is_set()):
            if time.monotonic() > deadline:
                logs = ", ".join(str(r.log_path) for r in self.replicas)
                raise LabError(f"{count} replica(s) not ready after {timeout:g} s; logs: {logs}")
            self.tick()
            time.sleep(0.1)

    # -- the end ----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every replica: SIGTERM all at once, wait for the drains, SIGKILL what is left."""
        with self._lock:
            self.desired = 0
            live = [r for r in self.replicas if r.state in ("starting", "ready")]
            for replica in live:
                replica.state = "draining"
                replica.deleting_at = self._clock()
                self.front.remove(f"127.0.0.1:{replica.port(self.config.protocol)}")
        for replica in live:
            if replica.proc is not None and replica.proc.poll() is None:
                send_signal(replica.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.config.exit_timeout_s + 15
        for replica in live:
            proc = replica.proc
            if proc is None:
                continue
            wait_or_kill(proc, max(0.1, deadline - time.monotonic()))
            self._reap_group(proc)
            replica.state = "stopped"
            replica.stopped_at = self._clock()
            replica.exit_code = proc.returncode
        for thread in self._threads:
            thread.join(timeout=self.config.exit_timeout_s + 20)

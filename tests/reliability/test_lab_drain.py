"""Requests lost (or not) while replicas come and go, in the lab's cluster of real `llmprep serve`
processes behind its kube-proxy-like front (llmprep.lab.cluster, llmprep.lab.front), under steady
streaming load from llmprep.load. Every request is counted; the drain is what the chart does
(out of the Endpoints first, the preStop pause, then SIGTERM with Triton's exit timeout)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmprep.lab.cluster import Cluster, ClusterConfig, Replica
from llmprep.lab.front import Front
from llmprep.load import LoadConfig, LoadGenerator, Sample, constant
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

REPO = ROOT / "tests" / "load" / "data" / "repo"  # llm_stream: a decoupled model streaming 2 ms a token
MODEL = "llm_stream"
HEALTH_INTERVAL_S = 1.0
CLIENTS = 4
RECONNECT_S = 0.5  # clients re-open connections this often (llmprep load --reconnect-every), as pods should


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # a guard against hanging, not a measurement
    while not predicate():
        assert time.monotonic() < deadline, f"not reached within {timeout} s: {what}"
        time.sleep(0.05)


@dataclass
class Lab:
    cluster: Cluster
    front: Front
    samples: list[Sample] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop_load: threading.Event = field(default_factory=threading.Event)
    _load: threading.Thread | None = None

    def start_load(self, timeout: float = 20) -> None:
        config = LoadConfig(targets=[self.front.address], profile=constant("clients", CLIENTS, 0), protocol="grpc",
                            model=MODEL, input_tokens=16, output_tokens=8, timeout=timeout, connections=CLIENTS,
                            reconnect_every=RECONNECT_S, max_error_rate=1.0)
        generator = LoadGenerator(config)

        def run() -> None:
            try:
                generator.run_sync(on_sample=self.samples.append, stop_event=self._stop_load)
            except BaseException as exc:  # reported by stop_load
                self.errors.append(exc)

        self._load = threading.Thread(target=run, name="load", daemon=True)
        self._load.start()
        wait_until(lambda: sum(s.ok for s in self.samples) >= 20, "the first 20 answered requests")

    def stop_load(self) -> list[Sample]:
        self._stop_load.set()
        assert self._load is not None
        self._load.join(60)
        assert not self._load.is_alive() and self.errors == []
        return list(self.samples)

    def ready(self) -> list[Replica]:
        return self.cluster.ready_replicas()

    def settled(self, n: int) -> bool:
        counts = self.cluster.counts()
        return counts["ready"] == n and counts["current"] == n and counts["draining"] == 0


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    made: list[tuple[Cluster, Front, threading.Event, threading.Thread]] = []

    def make(*, pre_stop_s: float, exit_timeout_s: int) -> Lab:
        spec = tmp_path / "model.yaml"
        spec.write_text("model:\n  name: gpt2\n")
        front = Front(health_interval_s=HEALTH_INTERVAL_S).start()
        config = ClusterConfig(repository=REPO, spec_file=spec, deployment="llm", namespace="lab",
                               pod_labels={"app": "llm"}, podmonitor="llm", workdir=tmp_path / f"lab{len(made)}",
                               readiness_period_s=0.5, pre_stop_s=pre_stop_s, exit_timeout_s=exit_timeout_s)
        cluster = Cluster(config, front=front)
        stop = threading.Event()

        def kubelet() -> None:
            while not stop.is_set():
                cluster.tick()
                time.sleep(0.05)

        ticker = threading.Thread(target=kubelet, name="kubelet", daemon=True)
        ticker.start()
        made.append((cluster, front, stop, ticker))
        return Lab(cluster, front)

    yield make
    for cluster, front, stop, ticker in made:
        stop.set()
        ticker.join(10)
        cluster.shutdown()
        front.stop()


def scale_and_settle(lab: Lab, n: int) -> None:
    lab.cluster.scale(n)
    wait_until(lambda: lab.settled(n), f"{n} replicas ready and none draining")


def up_and_down(lab: Lab) -> None:
    """1 -> 3 (each new replica must get connections, so it really serves) -> 1."""
    scale_and_settle(lab, 3)
    added = lab.ready()
    wait_until(lambda: all(r.first_connection_at is not None for r in added), "every new replica gets connections")
    scale_and_settle(lab, 1)


def by_error(samples: list[Sample]) -> dict[str, int]:
    return dict(Counter(s.error or "ok" for s in samples))


CYCLES = 3


def test_scaling_1_to_3_to_1_under_steady_load_loses_no_request(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(pre_stop_s=2.0, exit_timeout_s=10)  # preStop > one reconnect + one request
    scale_and_settle(lab, 1)
    lab.start_load()
    for _cycle in range(CYCLES):
        up_and_down(lab)
    samples = lab.stop_load()
    stopped = [r for r in lab.cluster.replicas if r.state == "stopped"]
    print(f"\ndrain: {CYCLES} cycles 1->3->1, {len(stopped)} replicas drained, {len(samples)} requests: {by_error(samples)}")
    assert len(stopped) == 2 * CYCLES and all(r.exit_code == 0 for r in stopped)
    assert len(samples) > 100
    assert [s for s in samples if not s.ok] == []


def test_without_the_drain_scale_down_fails_the_requests_in_flight_and_says_so(make_lab: Callable[..., Lab]) -> None:
    # No preStop pause and no exit timeout: SIGTERM reaches Triton while clients still hold connections to it.
    lab = make_lab(pre_stop_s=0.0, exit_timeout_s=0)
    scale_and_settle(lab, 1)
    lab.start_load()
    for _cycle in range(CYCLES):
        up_and_down(lab)
    samples = lab.stop_load()
    failed = [s for s in samples if not s.ok]
    print(f"\nno drain: {CYCLES} cycles 1->3->1, {len(samples)} requests: {by_error(samples)}")
    assert len(samples) > 100
    assert all(s.error and s.detail for s in failed)  # every loss is classified and explained, none silent


def test_a_replica_killed_under_load_leaves_the_rotation_and_is_replaced_with_bounded_failures(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(pre_stop_s=2.0, exit_timeout_s=10)
    scale_and_settle(lab, 3)
    lab.start_load()
    wait_until(lambda: all(r.first_connection_at is not None for r in lab.ready()), "every replica gets connections")
    victim = lab.ready()[1]
    address = f"127.0.0.1:{victim.grpc_port}"
    before = len(lab.samples)
    killed_at = time.monotonic()
    assert victim.proc is not None
    os.killpg(victim.proc.pid, signal.SIGKILL)
    wait_until(lambda: address not in lab.front.in_rotation(), "the killed replica leaves the rotation")
    out_after = time.monotonic() - killed_at
    wait_until(lambda: victim.state == "failed", "the cluster notices the crash")
    wait_until(lambda: lab.settled(3) and victim not in lab.ready(), "a replacement is ready")
    replacement = [r for r in lab.ready() if r.created_at > (victim.stopped_at or 0) - 1e-6]
    wait_until(lambda: all(r.first_connection_at is not None for r in replacement), "the replacement gets connections")
    samples = lab.stop_load()
    after_kill = samples[before:]
    failed = [s for s in after_kill if not s.ok]
    events = [(e.kind, e.replica) for e in lab.cluster.events]
    print(f"\nkill -9 of 1 of 3 replicas: out of rotation after {out_after:.2f} s (health interval {HEALTH_INTERVAL_S} s); "
          f"requests after the kill {len(after_kill)}: {by_error(after_kill)}; replacement {replacement[0].name}")
    assert ("failed", victim.name) in events and len(replacement) == 1
    # Bounded: at most the requests that were on the dead replica's connections when it died, one per client.
    assert len(failed) <= CLIENTS, by_error(after_kill)
    assert all(s.error and s.detail for s in failed)


def test_a_replica_that_hangs_is_taken_out_by_the_fronts_health_check(make_lab: Callable[..., Lab]) -> None:
    # SIGSTOP: the process lives and its sockets accept, but nothing answers (a wedged server). Only the
    # front's readiness check can see it; the requests already sent to it run into the client's timeout.
    lab = make_lab(pre_stop_s=2.0, exit_timeout_s=10)
    scale_and_settle(lab, 3)
    lab.start_load(timeout=3)
    wait_until(lambda: all(r.first_connection_at is not None for r in lab.ready()), "every replica gets connections")
    victim = lab.ready()[1]
    address = f"127.0.0.1:{victim.grpc_port}"
    assert victim.proc is not None
    before = len(lab.samples)
    hung_at = time.monotonic()
    os.killpg(victim.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: address not in lab.front.in_rotation(), "the hung replica leaves the rotation")
        out_after = time.monotonic() - hung_at
        wait_until(lambda: len(lab.samples) > before + 200, "200 more requests answered by the others")
    finally:
        os.killpg(victim.proc.pid, signal.SIGCONT)
    samples = lab.stop_load()
    after = samples[before:]
    failed = [s for s in after if not s.ok]
    print(f"\nSIGSTOP of 1 of 3 replicas: out of rotation after {out_after:.2f} s (health interval "
          f"{HEALTH_INTERVAL_S} s, probe timeout 1 s); requests after: {len(after)}: {by_error(after)}")
    # Bounded: each client loses at most the requests it sent there before the check took it out
    # (one request in flight per client, each held for the 3 s timeout).
    assert len(failed) <= 2 * CLIENTS, by_error(after)
    assert {s.error for s in failed} <= {"timeout"}

"""The preStop drain: keep serving until no client holds a connection to this pod, then let Triton stop.

Why not just SIGTERM: a stopping Triton refuses every new request, and an ensemble's next step
(preprocessing -> tensorrt_llm -> postprocessing) is a new request inside the server. Measured
with tritonserver 2.51 on the stand-in ensemble: after SIGTERM every step request goes
PENDING -> FAILED_ENQUEUE, and each streaming request in flight stops mid-stream and hangs until
the exit timeout kills the server (8 of 8 streams lost). So the pod must be idle before SIGTERM.

The Endpoints controller drops a terminating pod at once, but clients keep the connections they
already have (kube-proxy's conntrack), and every request arrives on one. So "idle" here is: no
established TCP connection to the inference ports (HTTP, gRPC) in this network namespace; the
metrics port is not counted, Prometheus keeps scraping to the end. The kubelet runs this as the
container's preStop hook, in the pod's network namespace, before it sends SIGTERM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmprep.errors import UsageError

PROC_NET = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
# `llmprep drain`'s defaults, also what the lab assumes for a hook that leaves a flag out.
DEFAULT_PAUSE_S = 15.0
DEFAULT_TIMEOUT_S = 60.0
ESTABLISHED = "01"  # include/net/tcp_states.h


def established(ports: Iterable[int], tables: Sequence[Path] = PROC_NET) -> int:
    """Established TCP connections whose local port is one of `ports` (server side of clients' connections)."""
    wanted = set(ports)
    count = 0
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this namespace
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != ESTABLISHED:
                continue
            port = int(fields[1].rpartition(":")[2], 16)
            count += port in wanted
    return count


@dataclass(frozen=True)
class DrainResult:
    idle: bool  # no client connection was left when the drain ended
    waited_s: float  # after the pause
    open_connections: int  # at the end


def drain(
    ports: Sequence[int],
    *,
    pause_s: float,
    timeout_s: float,
    interval_s: float = 0.2,
    log: Callable[[str], None] = print,
    count: Callable[[Sequence[int]], int] = established,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainResult:
    """Serve for `pause_s` (Endpoints and load balancers drop the pod), then wait up to `timeout_s` for idle."""
    if not ports:
        raise UsageError("--port: give the inference ports to watch (e.g. --port 8000 --port 8001)")
    for name, value in (("--pause", pause_s), ("--timeout", timeout_s)):
        if value < 0:
            raise UsageError(f"{name}: {value} is negative; give seconds ≥ 0")
    if interval_s <= 0:
        raise UsageError(f"--interval: {interval_s} must be > 0")
    where = ", ".join(str(p) for p in ports)
    log(f"drain: serving {pause_s:g} s more while endpoints drop this pod")
    sleep(pause_s)
    start = clock()
    deadline, next_note = start + timeout_s, start
    while True:
        now = clock()
        left = count(ports)
        if left == 0:
            log(f"drain: no client connection to port(s) {where} after {now - start:.1f} s; Triton may stop")
            return DrainResult(True, now - start, 0)
        if now >= deadline:
            log(
                f"drain: {left} client connection(s) still open to port(s) {where} after {timeout_s:g} s; "
                "stopping anyway: requests in flight on them may fail (clients should re-open connections)"
            )
            return DrainResult(False, now - start, left)
        if now >= next_note:
            log(f"drain: {left} client connection(s) open to port(s) {where}; waiting up to {deadline - now:.0f} s")
            next_note = now + 5.0
        sleep(min(interval_s, max(0.0, deadline - now)))

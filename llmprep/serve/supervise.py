"""Run a serving plan: exec a single server in place, or stay as mpirun's draining supervisor.

Draining: a single server gets SIGTERM itself (it is exec'd). `mpirun` would instead
SIGCONT, then only after `odls_base_sigkill_timeout` SIGTERM, then SIGKILL its ranks (measured
with OpenMPI 4.1: no drain), so for multi-rank plans `exec_plan` stays as a small supervisor:
SIGTERM goes to the serving rank's `tritonserver` first, which fails readiness and finishes
its in-flight requests, then to the other ranks, then to `mpirun`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from llmprep.errors import ServeError
from llmprep.files import write_text_atomic
from llmprep.serve.compose import ServePlan
from llmprep.serve.group import wait_for_workers

# After the serving rank has drained, how long the others and mpirun get before SIGKILL.
TEARDOWN_GRACE_S = 15.0


def exec_plan(
    plan: ServePlan, *, base_env: Mapping[str, str] | None = None, log: Callable[[str], None] | None = None
) -> int:
    """Run the plan: exec a single server in place; supervise mpirun so that SIGTERM drains.

    Returns the exit code (only for supervised plans; an exec never returns).
    """
    env = {**(os.environ if base_env is None else base_env), **plan.env}
    missing = [str(f) for f in plan.needs_files if not f.is_file()]
    if missing:
        raise ServeError(
            f"cannot start {Path(plan.argv[0]).name}: missing {', '.join(missing)} (mount the group's ssh Secret)"
        )
    for folder in plan.make_dirs:
        folder.mkdir(parents=True, exist_ok=True)
    if plan.hostfile is not None and plan.hostfile_path is not None:
        write_text_atomic(plan.hostfile_path, plan.hostfile)
    if plan.wait_for:
        wait_for_workers(plan.wait_for, plan.wait_timeout, log=log)
    if not plan.supervise:
        try:
            os.execvpe(plan.argv[0], plan.argv, env)
        except OSError as exc:
            raise ServeError(f"cannot start {plan.argv[0]}: {exc.strerror}") from None
    return supervise(plan.argv, env, exit_timeout_secs=plan.exit_timeout_secs, log=log)


def supervise(
    argv: Sequence[str], env: Mapping[str, str], *, exit_timeout_secs: int, log: Callable[[str], None] | None = None
) -> int:
    """Run mpirun as a child; on SIGTERM/SIGINT drain the serving rank first, then stop the rest."""
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    # Handlers first: a SIGTERM right after the start must not kill us and orphan mpirun.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            child = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise ServeError(f"cannot start {argv[0]}: {exc.strerror}") from None
        while child.poll() is None and not stopping:
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if child.returncode is not None:
            return child.returncode
        if log:
            log(f"signal {stopping[0]}: draining the serving tritonserver (up to {exit_timeout_secs} s)")
        return _drain(child, exit_timeout_secs, log)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _drain(child: subprocess.Popen[bytes], exit_timeout_secs: int, log: Callable[[str], None] | None) -> int:
    """SIGTERM the serving rank, wait for it, then stop the rest; 0 when the serving rank drained."""
    servers = [pid for pid in tritonserver_pids(child.pid) if _serves(pid)]
    for pid in servers:
        _kill(pid, signal.SIGTERM)
    drained = _wait_gone(servers, child, exit_timeout_secs + TEARDOWN_GRACE_S)
    # The serving rank is done: the compute ranks have nothing left to finish.
    local = tritonserver_pids(child.pid)
    for pid in local:
        _kill(pid, signal.SIGTERM)
    _wait_gone(local, child, TEARDOWN_GRACE_S)
    if child.poll() is None:
        child.terminate()  # mpirun stops the ranks on other pods through their orted
        try:
            child.wait(timeout=TEARDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if log:
        log("serving rank drained; all ranks stopped" if drained else "serving rank did not drain in time")
    # mpirun's own status after we stopped it says nothing about the requests: report the drain.
    return 0 if drained else (child.returncode or 1)


def _wait_gone(pids: Sequence[int], child: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def tritonserver_pids(root: int) -> list[int]:
    """tritonserver processes below `root` (Linux /proc), in start order."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop(0)
        for child in _children(pid):
            todo.append(child)
            argv = _cmdline(child)
            if argv and Path(argv[0]).name == "tritonserver":
                found.append(child)
    return sorted(found)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return kids


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _serves(pid: int) -> bool:
    """The rank that serves requests: the one whose endpoints are not switched off."""
    return "--allow-http=false" not in _cmdline(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass

"""The one way llmprep runs subprocesses: logged (secrets redacted), streamed, timed out.

`run` runs a command to its end. `ManagedProcess` is the base of the long-lived servers we start
on loopback (Triton, Prometheus): start with output appended to a log file, wait until ready
(failing with the log's tail if it exits or never gets ready), signal its process group, stop
with SIGTERM then SIGKILL (`stop`, which the lab's replicas use too). `free_port` picks a
loopback port for them.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmprep.errors import LlmprepError, ProcessError

TAIL_LINES = 30


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every non-empty secret in `text` with `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def format_command(cmd: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """A copy-pasteable shell rendering of `cmd` with secrets redacted."""
    return redact(shlex.join([str(c) for c in cmd]), list(secrets))


def run(
    cmd: Sequence[str | Path],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    secrets: Iterable[str] = (),
    on_line: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Run `cmd`, stream each output line to `on_line`, return the last lines.

    Raises ProcessError with the tail of the output when the command fails, is missing
    or runs past `timeout` seconds. Secrets never reach `log`, `on_line` or the error.
    """
    secrets = [s for s in secrets if s]
    argv = [str(c) for c in cmd]
    if log:
        log(f"$ {format_command(argv, secrets)}")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ProcessError(f"command not found: {argv[0]} ({exc.strerror})") from None

    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.rstrip("\n"), secrets)
            tail.append(line)
            if on_line:
                on_line(line)
        code = proc.wait()
    finally:
        if timer:
            timer.cancel()
    name = Path(argv[0]).name
    if timed_out.is_set():
        raise ProcessError(_with_tail(f"{name} ran past its {timeout:g} s timeout and was killed", tail))
    if code != 0:
        raise ProcessError(_with_tail(f"{name} failed with exit code {code}", tail))
    return list(tail)


def _with_tail(message: str, tail: Iterable[str]) -> str:
    lines = [line for line in tail if line.strip()]
    if not lines:
        return message
    return message + "; last output:\n  " + "\n  ".join(lines[-10:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when `port` on 127.0.0.1 can be bound now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def send_signal(proc: subprocess.Popen[Any], signum: int, *, group: bool = True) -> None:
    """`signum` to `proc`'s process group (`group` False: to the process alone); one already gone is no error."""
    try:
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
    except ProcessLookupError:
        pass


def wait_or_kill(proc: subprocess.Popen[Any], grace: float) -> int:
    """Wait `grace` seconds for `proc` to exit, then SIGKILL its process group and wait; the exit code."""
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        send_signal(proc, signal.SIGKILL)
        return proc.wait()


def stop(proc: subprocess.Popen[Any], grace: float, *, group: bool = True) -> int:
    """SIGTERM to `proc`'s process group (`group` False: to the process alone), SIGKILL to the group after
    `grace` seconds; the exit code."""
    send_signal(proc, signal.SIGTERM, group=group)
    return wait_or_kill(proc, grace)


class ManagedProcess:
    """A server process in its own session, its output appended to `log_path`.

    Subclasses set `name` (for messages), `error` (the exception they raise), `poll_s` and
    `tail_lines`, and define `ready()`.
    """

    name = "process"
    error: type[LlmprepError] = ProcessError
    poll_s = 0.1
    tail_lines = 8

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Start `argv` with stdout and stderr appended to the log (stdin closed)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )

    def ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        """Poll `ready()`; raise `error` with the log's tail if the process exits or never gets ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise self.error(f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(self.poll_s)
        raise self.error(f"{self.name} not ready after {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int | None = None) -> str:
        """The last non-empty lines of the log joined by ` | ` (`(no log)` if it cannot be read)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text[-(lines or self.tail_lines) :] if line.strip())

    def signal(self, signum: int) -> None:
        """Send `signum` to the process group while the process runs."""
        if self.proc is not None and self.proc.poll() is None:
            send_signal(self.proc, signum)

    def terminate(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            stop(self.proc, grace)
        return self.proc.returncode

"""The one way llmprep runs subprocesses: logged (secrets redacted), streamed, timed out."""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from llmprep.errors import ProcessError

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

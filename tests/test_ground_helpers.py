"""The ground helpers every layer shares: atomic writers (files), quantities and durations (units), processes (proc)."""

from __future__ import annotations

import math
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from llmprep import files, proc, units
from llmprep.errors import ServeError, UsageError

# --------------------------------------------------------------------------- files


def test_a_text_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "report.md"
    files.write_text_atomic(target, "one\n")
    files.write_text_atomic(target, "two\r\n")
    assert target.read_bytes() == b"two\r\n"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_a_written_file_gets_the_mode_an_ordinary_write_would(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        files.write_bytes_atomic(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o640
    files.write_bytes_atomic(tmp_path / "b", b"x", mode=0o600)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600


def test_json_is_written_sorted_indented_and_newline_terminated(tmp_path: Path) -> None:
    files.write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        files.write_text_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_published_folder_replaces_an_older_one_whole_and_leaves_nothing_aside(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    (final / "stale").mkdir(parents=True)
    staging = tmp_path / "entry.partial-1"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    files.publish_dir(staging, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_a_failed_publish_puts_the_older_folder_back(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(OSError):
        files.publish_dir(tmp_path / "no-such-staging", final)
    assert (final / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, r"m\.json: gone$"), ("{not json", r"m\.json: unreadable \(Expecting property name"), ("[1]", None)],
)
def test_a_json_file_reads_or_fails_in_one_line(tmp_path: Path, content: str | None, message: str | None) -> None:
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    if message is None:
        assert files.read_json(path, UsageError, missing="gone", unreadable="unreadable") == [1]
        return
    with pytest.raises(UsageError, match=message) as caught:
        files.read_json(path, UsageError, missing="gone", unreadable="unreadable")
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("1500m", 1.5),
        ("2", 2.0),
        (".5", 0.5),
        ("250u", 0.00025),
        ("5n", 5e-9),
        ("4Ki", 4096.0),
        ("1.5G", 1.5e9),
        ("1e3", 1000.0),
        ("1E", 1e18),
        ("2E-2", 0.02),
        ("+3k", 3000.0),
        (" 7 ", 7.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_kubernetes_quantities_read_as_apimachinery_writes_them(value: object, number: float) -> None:
    assert units.parse_quantity(value) == pytest.approx(number)


@pytest.mark.parametrize("value", ["ten", "1.5Gb", "1e", "--1", "", "nan", True, "1 k"])
def test_what_is_not_a_quantity_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(units.QuantityError, match=r"^target\.averageValue: ") as caught:
        units.parse_quantity(value, "target.averageValue")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UsageError)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("1.5m", 90.0), ("250ms", 0.25), ("2h", 7200.0), ("forever", math.inf)],
)
def test_durations_read_in_seconds(value: object, seconds: float) -> None:
    assert units.parse_duration(value, "--duration") == seconds


@pytest.mark.parametrize("value", ["-1s", "soon", False, "1d"])
def test_a_bad_duration_names_its_field(value: object) -> None:
    with pytest.raises(UsageError, match=r"^--duration: "):
        units.parse_duration(value, "--duration")


@pytest.mark.parametrize(("seconds", "text"), [(1.0, "1s"), (0.5, "500ms"), (90, "90s")])
def test_durations_format_as_prometheus_writes_them(seconds: float, text: str) -> None:
    assert units.format_duration(seconds) == text


# --------------------------------------------------------------------------- proc


def test_a_free_port_can_be_bound_and_a_bound_one_is_not_free() -> None:
    port = proc.free_port()
    assert proc.port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        assert not proc.port_is_free(port)


class _Script(proc.ManagedProcess):
    name = "script"
    error = ServeError
    poll_s = 0.01

    def __init__(self, log: Path, ready_file: Path) -> None:
        super().__init__(log)
        self.ready_file = ready_file

    def ready(self) -> bool:
        return self.ready_file.exists()


def test_a_process_that_exits_before_ready_fails_with_its_log_tail(tmp_path: Path) -> None:
    server = _Script(tmp_path / "logs" / "s.log", tmp_path / "ready")
    server.spawn([sys.executable, "-c", "print('bind: address already in use'); raise SystemExit(3)"])
    with pytest.raises(ServeError, match=r"script exited with code 3: bind: address already in use"):
        server.wait_ready(60)
    assert server.terminate(1) == 3


def test_a_ready_process_is_stopped_with_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    server = _Script(tmp_path / "s.log", ready)
    server.spawn([sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(600)"])
    server.wait_ready(60)
    assert server.terminate(30) == -15
    server.signal(15)  # after exit: nothing to signal, and no error


def test_stop_kills_the_group_of_a_process_that_ignores_sigterm_after_the_grace_period() -> None:
    ignoring = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout is not None and child.stdout.readline()  # the handler is in place
    assert proc.stop(child, 0.2) == -9


def test_stop_with_group_false_signals_the_process_alone() -> None:
    # The leader starts a sleeper in its group and prints its pid; only the leader is stopped.
    leader = (
        "import subprocess, sys, time; "
        "s = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print(s.pid, flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", leader], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout is not None
    sleeper = int(child.stdout.readline())
    try:
        assert proc.stop(child, 30, group=False) == -15
        os.kill(sleeper, 0)  # still there: the group was not signalled
    finally:
        os.killpg(child.pid, 9)

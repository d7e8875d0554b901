"""Cache paths that cannot be written: every command that writes the cache ends in one line naming the path,
the uid and the fix, exit 1, no traceback, and leaves nothing behind."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from llmprep import cli
from llmprep.artifacts import cache
from llmprep.errors import CacheError


def _file_in_place(tmp: Path) -> Path:
    (tmp / "cache").write_text("not a directory\n")
    return tmp / "cache"


def _file_as_parent(tmp: Path) -> Path:
    (tmp / "blocker").write_text("x")
    return tmp / "blocker" / "cache"


# (id, the --cache path made for the test)
BAD_PATHS: list[tuple[str, Callable[[Path], Path]]] = [
    ("a file where the directory should be", _file_in_place),
    ("a file as a parent directory", _file_as_parent),
    ("a path under /proc", lambda tmp: Path("/proc/llmprep-cache")),
    ("a path under /proc/sys", lambda tmp: Path("/proc/sys/llmprep-cache")),
    ("a path under a device", lambda tmp: Path("/dev/null/llmprep-cache")),
]


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["llmprep", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return int(exited.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("command", ["download", "prepare"])
@pytest.mark.parametrize(("case", "make"), BAD_PATHS, ids=[c[0] for c in BAD_PATHS])
def test_an_unwritable_cache_path_is_one_line_naming_path_and_uid_exit_1(
    command: str, case: str, make: Callable[[Path], Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path)
    code, err = call([command, "--set", "model.name=gpt2", "--cache", str(path), "--offline"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # progress lines may precede it
    assert code == 1, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0] or str(path.parent) in lines[0]
    assert f"uid {os.getuid()}" in lines[0]


# Faults the test machine cannot make for real (it runs as root, with no read-only mount): the errno
# each would raise, injected at the two places the check touches the file system.
ERRNOS = [
    (errno.EROFS, "read-only"),
    (errno.EACCES, "not writable"),
    (errno.EPERM, "chattr -i"),  # an immutable directory
    (errno.ENOSPC, "full"),
    (errno.EDQUOT, "full"),
    (errno.ENOTDIR, "a file stands"),
    (errno.EIO, "cannot be created"),
]


@pytest.mark.parametrize("where", ["mkdir", "probe"])
@pytest.mark.parametrize(("code", "word"), ERRNOS)
def test_each_write_fault_names_its_cause_and_fix(
    where: str, code: int, word: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "c"

    def fail(*_a: object, **_k: object) -> None:
        raise OSError(code, os.strerror(code))

    if where == "mkdir":
        monkeypatch.setattr(Path, "mkdir", fail)
    else:
        monkeypatch.setattr(tempfile, "mkstemp", fail)
    with pytest.raises(CacheError) as info:
        cache.ensure_dir(target)
    message = str(info.value)
    assert word in message
    assert str(target) in message
    assert f"uid {os.getuid()}" in message
    assert "\n" not in message


def test_a_full_volume_is_refused_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda _p: type("U", (), {"free": 0})())
    with pytest.raises(CacheError, match="full"):
        cache.ensure_dir(tmp_path / "c")


def test_a_writable_cache_directory_passes_and_keeps_no_probe(tmp_path: Path) -> None:
    cache.ensure_dir(tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_a_locked_entry_in_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "engines").write_text("x")
    with pytest.raises(CacheError, match="a file stands"), cache.locked(tmp_path / "engines" / "k.lock"):
        pass

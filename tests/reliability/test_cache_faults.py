"""Cache paths that cannot be a cache: every command that takes --cache ends in one line naming the path,
the uid and the fix, exit 1, no traceback, and leaves nothing behind. A read-only cache is served from by
the commands that only read it, and refused in one line by those that must write it."""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from llmprep import cli
from llmprep.artifacts import cache
from llmprep.errors import CacheError
from tests.conftest import ROOT
from tests.reliability.conftest import REPO, Bench


def _file_in_place(tmp: Path) -> Path:
    (tmp / "cache").write_text("not a directory\n")
    return tmp / "cache"


def _file_as_parent(tmp: Path) -> Path:
    (tmp / "blocker").write_text("x")
    return tmp / "blocker" / "cache"


# (id, the --cache path made for the test, the words its one line must hold)
BAD_PATHS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("a file where the directory should be", _file_in_place, "a file stands"),
    ("a file as a parent directory", _file_as_parent, "a file stands"),
    ("a path under /proc", lambda tmp: Path("/proc/llmprep-cache"), "kernel file system"),
    ("a path under /proc/sys", lambda tmp: Path("/proc/sys/llmprep-cache"), "kernel file system"),
    ("a path under /sys", lambda tmp: Path("/sys/llmprep-cache"), "kernel file system"),
    ("a path under a device", lambda tmp: Path("/dev/null/llmprep-cache"), ""),  # devtmpfs, or a file in the way
    ("a path under a link to /proc", lambda tmp: _link_to(tmp, "/proc"), "kernel file system"),
]


def _link_to(tmp: Path, target: str) -> Path:
    (tmp / "link").symlink_to(target)
    return tmp / "link" / "llmprep-cache"


# Every command that takes --cache (llmprep/cli/*.py), as argv after `llmprep` without the --cache option.
COMMANDS: dict[str, Callable[[Bench], list[str]]] = {
    "download": lambda b: ["download", "--set", f"model.name={REPO}", "--hub-cache", str(b.hub_root), "--offline"],
    "build": lambda b: ["build", "--set", f"model.name={REPO}"],
    "prepare": lambda b: ["prepare", "--set", f"model.name={REPO}", "--hub-cache", str(b.hub_root), "--offline"],
    "cache ls": lambda b: ["cache", "ls"],
    "cache rm": lambda b: ["cache", "rm", "--all"],
    "plan": lambda b: ["plan", "--set", f"model.name={REPO}", "--gpu", "NVIDIA-H100-80GB-HBM3"],
    "serve": lambda b: ["serve", "--set", f"model.name={REPO}", "--dry-run"],
}
# Commands that create a missing cache (they write it); the others need one that exists.
CREATORS = {"download", "prepare"}
FIX = re.compile(r"; (give|remove|run|make|mount|free) ")


def test_the_command_table_holds_every_command_that_takes_a_cache_option() -> None:
    import typer.main

    from llmprep.cli.app import app

    def walk(group: object, prefix: str) -> set[str]:
        found: set[str] = set()
        for name, command in getattr(group, "commands", {}).items():
            if getattr(command, "commands", None):
                found |= walk(command, f"{prefix}{name} ")
            elif any("--cache" in getattr(p, "opts", []) for p in command.params):
                found.add(f"{prefix}{name}")
        return found

    assert walk(typer.main.get_command(app), "") == set(COMMANDS)


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["llmprep", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return int(exited.value.code or 0), capsys.readouterr().err


def _state(path: Path) -> object:
    """What lies at `path` (nothing, a file's bytes, a folder's names): a refused command must not change it."""
    if path.is_symlink() or path.is_file():
        return path.read_bytes() if path.is_file() else os.readlink(path)
    if path.is_dir():
        return sorted(os.listdir(path))
    return None


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("case", "make", "words"), BAD_PATHS, ids=[c[0] for c in BAD_PATHS])
def test_a_cache_path_that_cannot_be_a_cache_is_one_line_naming_path_uid_and_fix_exit_1(
    command: str,
    case: str,
    make: Callable[[Path], Path],
    words: str,
    bench: Bench,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path)
    before = (_state(path), _state(path.parent))
    code, err = call([*COMMANDS[command](bench), "--cache", str(path)], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # progress lines may precede it
    assert code == 1, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0]
    assert words in lines[0]
    assert f"uid {os.getuid()}" in lines[0]
    assert FIX.search(lines[0]), lines[0]
    if tmp_path in path.parents:  # /proc's own listing changes by itself
        assert (_state(path), _state(path.parent)) == before


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - CREATORS))
def test_a_missing_cache_is_one_line_for_every_command_that_only_uses_one(
    command: str, bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no-such" / "cache"
    code, err = call([*COMMANDS[command](bench), "--cache", str(path)], monkeypatch, capsys)
    assert code == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: does not exist" in err and f"uid {os.getuid()}" in err
    assert FIX.search(err), err
    assert not (tmp_path / "no-such").exists()  # nothing made on the way


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
    where: str, code: int, word: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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


# --------------------------------------------------------------------------- a real read-only volume


def _can_mount_read_only(tmp: Path) -> bool:
    """A private mount namespace where this user may bind a folder read-only (root, or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    (tmp / "probe").mkdir()
    script = f"mount --bind {tmp}/probe {tmp}/probe && mount -o remount,bind,ro {tmp}/probe && ! touch {tmp}/probe/x"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, timeout=30)
    return done.returncode == 0


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))}


NEW_ENGINE = ["--set", "model.tensorrtLlm.maxBatchSize=8"]  # a key not in the cache: the command must build it
# (command, extra argv, exit code, words on stderr) on a prepared cache mounted read-only
READ_ONLY: list[tuple[str, list[str], int, str]] = [
    ("download", [], 0, ""),
    ("build", [], 0, ""),
    ("prepare", [], 0, ""),
    ("cache ls", [], 0, ""),
    ("plan", [], 0, ""),
    ("serve", [], 0, ""),
    ("cache rm", [], 1, "read-only file system"),
    ("build", NEW_ENGINE, 1, "read-only file system"),
    ("prepare", NEW_ENGINE, 1, "read-only file system"),
]


@pytest.mark.slow
def test_a_read_only_cache_serves_the_readers_and_refuses_each_writer_in_one_line(bench: Bench, tmp_path: Path) -> None:
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no private mount namespace here (unshare -rm and a read-only bind mount are refused)")
    made = bench.run()
    assert made.returncode == 0, made.stderr
    before = _tree(bench.cache_dir)
    out = tmp_path / "out"
    out.mkdir()
    lines = [
        f"mount --bind {bench.cache_dir} {bench.cache_dir} || exit 3",
        f"mount -o remount,bind,ro {bench.cache_dir} || exit 3",
    ]
    for i, (command, extra, _code, _words) in enumerate(READ_ONLY):
        argv = [sys.executable, "-m", "llmprep.cli", *COMMANDS[command](bench), *extra, "--cache", str(bench.cache_dir)]
        lines.append(f"{' '.join(map(shlex.quote, argv))} >{out}/{i}.out 2>{out}/{i}.err; echo $? >{out}/{i}.rc")
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "\n".join(lines)], cwd=ROOT, env={**os.environ, **bench.release.env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for i, (command, extra, code, words) in enumerate(READ_ONLY):
        err = (out / f"{i}.err").read_text()
        case = f"{command} {' '.join(extra)}: {err}"
        assert int((out / f"{i}.rc").read_text()) == code, case
        assert "Traceback" not in err, case
        if code:
            assert len(err.strip().splitlines()) == 1, case
            assert words in err and str(bench.cache_dir) in err and "mount the volume read-write" in err, case
    assert _tree(bench.cache_dir) == before  # nothing written, nothing removed

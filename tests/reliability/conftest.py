"""Fixtures for the reliability tests: a cache with the TensorRT-LLM double, `llmprep prepare` processes
started as a pod would start them, and a way to kill such a process and everything it started."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmprep.artifacts import cache, hub, inventory
from tests.conftest import ROOT
from tests.doubles import Release, install_release, make_hub_cache, tiny_checkpoint_files

REPO = "acme/tiny-llama"
CANARY = "hf_CANARYrel1abi1ity5ecretT0ken0123456789"  # a token nothing may ever print, pass or store
MARKER = "LLMPREP_RELIABILITY_RUN"  # inherited by every process a started `llmprep` runs


@dataclass
class Bench:
    """One cache directory, a Hub cache with a tiny model and the engine-release double."""

    root: Path
    cache_dir: Path
    hub_root: Path
    release: Release

    def argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llmprep.cli",
            "prepare",
            "--set",
            f"model.name={REPO}",
            "--cache",
            str(self.cache_dir),
            "--hub-cache",
            str(self.hub_root),
            "--json",
            *extra,
        ]

    def start(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
    ) -> tuple[subprocess.Popen[str], str]:
        """Start `llmprep prepare` in its own session; returns it and the marker its whole process tree carries."""
        run_id = uuid.uuid4().hex
        proc = subprocess.Popen(
            self.argv(*extra),
            cwd=ROOT,
            env={**os.environ, **self.release.env, **(env or {}), MARKER: run_id},
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        return proc, run_id

    def run(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc, _run_id = self.start(*extra, env=env, preexec_fn=preexec_fn)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def builds(self) -> int:
        return len(self.release.calls("trtllm-build"))


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:
    """The double is visible to this process too, so a test can run the next prepare in-process."""
    hub_root = tmp_path / "hub"
    make_hub_cache(hub_root, REPO, tiny_checkpoint_files())
    release = install_release(tmp_path, "engine")
    release.apply(monkeypatch)
    return Bench(tmp_path, tmp_path / "cache", hub_root, release)


# --------------------------------------------------------------------------- processes


def pids_with_marker(run_id: str) -> list[int]:
    """Every live process whose environment carries MARKER=run_id (a started command and its descendants)."""
    needle = f"{MARKER}={run_id}".encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_tree(run_id: str, deadline_s: float = 10.0) -> int:
    """SIGKILL every process of one started command, as a node kills a pod: no cleanup runs. Returns how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids_with_marker(run_id) if _is_running(pid)]
        if not alive:
            return len(killed)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"processes of run {run_id} survived SIGKILL for {deadline_s} s")


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie is dead, only not yet reaped by its parent


def command_lines(pids: Sequence[int]) -> list[str]:
    """The argument vectors of live processes, as `ps -o args` shows them to every user."""
    lines: list[str] = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


# --------------------------------------------------------------------------- cache invariants


def entry_dirs(cache_dir: Path) -> list[tuple[Path, str]]:
    """Every directory that a reader would take for a finished entry (named by its key), with its manifest name."""
    found: list[tuple[Path, str]] = []
    for sub, manifest in ((cache.ENGINES, cache.MANIFEST), (cache.REPOS, cache.REPO_MANIFEST)):
        root = cache_dir / sub
        if root.is_dir():
            found += [(p, manifest) for p in sorted(root.iterdir()) if p.is_dir() and "." not in p.name]
    return found


def broken_looking_valid(cache_dir: Path) -> list[str]:
    """Entries named like a finished one that do not verify deeply, and checkpoints whose record lies."""
    bad = [
        str(path)
        for path, manifest in entry_dirs(cache_dir)
        if not cache.verify_entry(path, deep=True, manifest_name=manifest)
    ]
    for info in inventory.list_checkpoints(cache_dir):
        if info.state == "ok":
            meta = json.loads((info.path / hub.META).read_text())
            if any((info.path / rel).stat().st_size != size for rel, size in meta["files"].items()):
                bad.append(str(info.path))
    return bad


def leftovers(cache_dir: Path) -> list[str]:
    """Partial and trash directories anywhere in the cache."""
    return sorted(str(p) for p in cache_dir.rglob("*") if p.is_dir() and (".partial-" in p.name or ".trash-" in p.name))


@pytest.fixture
def no_stray_processes() -> Iterator[list[str]]:
    """Run ids a test started; any of their processes still alive afterwards is killed and fails the test."""
    run_ids: list[str] = []
    yield run_ids
    stray = [pid for run_id in run_ids for pid in pids_with_marker(run_id) if _is_running(pid)]
    for run_id in run_ids:
        kill_tree(run_id)
    assert stray == [], f"processes left running: {stray}"


# --------------------------------------------------------------------------- a Hugging Face Hub on loopback


@dataclass
class FakeHub:
    """A Hub API on 127.0.0.1 serving one repository (or failing every call), recording what it was sent."""

    url: str
    requests: list[tuple[str, str, str | None]]  # method, path, Authorization header
    # "fail": None | (status, error code, body); "delay": seconds per file download; "info": the model info body
    mode: dict[str, Any]


def _hub_handler(files: dict[str, bytes], commit: str, hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
        ) -> None:
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
            fail = hub.mode.get("fail")
            path = self.path.split("?")[0]
            if fail is not None:
                status, code, body = fail
                self._send(status, body.encode(), {"X-Error-Code": code, "Content-Type": "application/json"}, head)
            elif path.startswith("/api/models/") and "/tree/" in path:
                tree = [
                    {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in files.items()
                ]
                self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
            elif path.startswith("/api/models/") and "info" in hub.mode:  # a garbled answer, status 200
                self._send(200, hub.mode["info"].encode(), {"Content-Type": "application/json"}, head)
            elif path.startswith("/api/models/"):
                info = {"id": REPO, "sha": commit, "siblings": [{"rfilename": name} for name in files]}
                self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
            elif path.startswith(f"/{REPO}/resolve/"):
                name = path.split("/", 5)[5]
                data = files.get(name)
                if data is None:
                    self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
                    return
                if not head:
                    time.sleep(hub.mode.get("delay", 0.0))
                etag = hashlib.sha256(data).hexdigest()
                self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}, head)
            else:
                self._send(404, b"{}", {}, head)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._serve(head=False)

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self._serve(head=True)

    return Handler


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    files = {name: data for name, data in tiny_checkpoint_files().items()}
    commit = hashlib.sha1(b"fake hub commit").hexdigest()
    hub_state = FakeHub("", [], {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _hub_handler(files, commit, hub_state))
    hub_state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

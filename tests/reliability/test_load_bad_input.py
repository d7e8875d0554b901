"""`llmprep load` against bad input and bad servers: it reports and never hangs.

The hang detector is the subprocess timeout of each run (far above what the run should need);
servers here are started by the test on 127.0.0.1: a black hole that accepts connections and
never answers, one that answers garbage, and a real tritonserver killed mid-run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmprep.errors import UsageError
from llmprep.load.profile import Profile, parse_profile
from llmprep.serve.triton import TritonProcess
from tests.conftest import ROOT, free_port, run_cli

LOAD_REPO = ROOT / "tests" / "load" / "data" / "repo"
MODEL = "llm_stream"
PROTOCOLS = ["grpc", "http"]


# --------------------------------------------------------------------------- malformed profiles

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**3), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["60s", "1.5m", "250ms", "forever", "inf", "-5s", "soon", "", "8", "2.5", "nan", "1e999", "ramp"]),
    st.text(max_size=12),
)
stage_words = st.sampled_from(["ramp", "hold", "step", "for", "to", "from", "over", "unit", "stages", "jump"])
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(stage_words, st.text(max_size=5)), inner, max_size=3)
    ),
    max_leaves=12,
)
stage_lines = st.builds(
    lambda kind, a, b, c: f"{kind} {a} {b} {c}".strip(),
    st.sampled_from(["ramp", "hold", "step", "ramp to", "step to"]),
    st.sampled_from(["1", "8", "-1", "x", "1e999", "->", "to", ""]),
    st.sampled_from(["->", "to", "over", "for", "", "8"]),
    st.sampled_from(["60s", "forever", "over 10s", "for 1s", "", "soon"]),
)


def check(profile: Profile) -> None:
    assert profile.unit in ("clients", "rate") and profile.stages
    assert profile.duration > 0
    for stage in profile.stages:
        assert stage.start >= 0 and stage.end >= 0 and not math.isnan(stage.duration) and stage.duration >= 0


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        documents,
        st.fixed_dictionaries({"unit": scalars, "stages": st.lists(st.one_of(stage_lines, documents), max_size=4)}),
    )
)
def test_any_profile_document_parses_or_is_refused_naming_a_field(doc: Any) -> None:
    try:
        profile = parse_profile(doc, source="ramp.yaml")
    except UsageError as exc:
        assert str(exc).startswith("ramp.yaml"), str(exc)
    else:
        check(profile)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("stages: [{step: {to: 4, for: 10s}}, {ramp: {to: 1, over: forever}}]", "ramp.yaml.stages[1].ramp.over"),
        ("stages: ['hold 10s']", "ramp.yaml.stages[0].hold"),
        ("unit: users\nstages: ['step to 2 for 1s']", "ramp.yaml.unit"),
        ("stages: [{step: {to: 2.5, for: 1s}}]", "ramp.yaml.stages[0].step.to"),
        ("stages: ['step to 2 for forever', 'step to 3 for 1s']", "ramp.yaml.stages[1]"),
        ("stages: [{step: {to: 2, for: 1s}, hold: 1s}]", "ramp.yaml.stages[0]"),
        ("- step to 2 for 1s\n- ramp 2 -> x over 5s", "ramp.yaml.stages[1].ramp"),
        ("stages: [{step: {to: 2, for: 1s}}]\nextra: 1", "ramp.yaml.extra"),
        ("stages: [{step: {to: 2, for: 1s}}", "--profile"),
    ],
)
def test_a_malformed_profile_file_exits_2_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    profile = tmp_path / "ramp.yaml"
    profile.write_text(text)
    done = run_cli("load", "--url", f"127.0.0.1:{free_port()}", "--profile", str(profile), timeout=60)
    assert done.returncode == 2, done.stderr
    assert field in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- bad prompts files


def _prompts(data: str | bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "junk.jsonl"
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        return path

    return make


def _prompts_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "prompts.fifo")
    return tmp / "prompts.fifo"


def _prompts_dir(tmp: Path) -> Path:
    (tmp / "prompts.d").mkdir()
    return tmp / "prompts.d"


BIG = "x" * 10_000_000

# (id, file maker, words the one-line error must contain): each names the file and says what to give.
BAD_PROMPTS: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("binary junk", _prompts(bytes(range(256)) * 4), ("junk.jsonl", "UTF-8")),
    ("utf-16", _prompts('{"text": "hello"}\n'.encode("utf-16")), ("junk.jsonl", "UTF-16")),
    ("latin-1", _prompts('{"text": "caf\xe9"}\n'.encode("latin-1")), ("junk.jsonl", "UTF-8")),
    ("NUL bytes", _prompts('{"text": "a\x00b"}\n'), ("junk.jsonl", "NUL")),
    ("100000 [ on a line", _prompts("[" * 100_000 + "\n"), ("junk.jsonl line 1", "nested")),
    ("100000 nested objects", _prompts('{"a": ' * 100_000 + "\n"), ("junk.jsonl line 1", "nested")),
    ("deep nesting on line 2", _prompts('{"text": "ok"}\n' + "[" * 50_000 + "]" * 50_000 + "\n"), ("line 2",)),
    ("an integer of 5000 digits", _prompts('{"text": "a", "output_tokens": ' + "9" * 5000 + "}\n"), ("line 1",)),
    ("a 10 MB output_tokens", _prompts(f'{{"text": "a", "output_tokens": "{BIG}"}}\n'), ("line 1.output_tokens",)),
    ("a 10 MB input_tokens", _prompts(f'{{"text": "a", "input_tokens": "{BIG}"}}\n'), ("line 1.input_tokens",)),
    ("NaN output_tokens", _prompts('{"text": "a", "output_tokens": NaN}\n'), ("line 1.output_tokens",)),
    ("a FIFO", _prompts_fifo, ("prompts.fifo", "not a regular file", "JSONL")),
    ("a directory", _prompts_dir, ("prompts.d", "not a regular file", "JSONL")),
    ("no such file", lambda tmp: tmp / "missing.jsonl", ("missing.jsonl", "no such file")),
]


@pytest.mark.parametrize(("case", "make", "words"), BAD_PROMPTS, ids=[c[0] for c in BAD_PROMPTS])
def test_a_bad_prompts_file_is_one_line_naming_it_exit_2_and_never_hangs(
    case: str, make: Callable[[Path], Path], words: tuple[str, ...], tmp_path: Path
) -> None:
    profile = tmp_path / "ok.yaml"
    profile.write_text('stages: ["step to 1 for 1s"]\n')
    path = make(tmp_path)
    # A FIFO nobody writes to would block a reader forever: the subprocess timeout is the hang detector.
    done = run_cli("load", "--url", "http://127.0.0.1:1", "--profile", str(profile), "--prompts", str(path), timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines[0]) < 400, lines[0][:400]
    assert all(word in lines[0] for word in words), lines[0]
    assert "YAML" not in lines[0]  # a prompts file is JSON Lines: the fix must say so


# --------------------------------------------------------------------------- servers that misbehave


class RawServer:
    """A TCP server on 127.0.0.1 that accepts connections and then either says nothing or garbage."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _addr = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(conn)
            if self.reply is not None:
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                    conn.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture(
    params=[None, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n", b"\x00\xffgarbage\r\n\r\n"],
    ids=["silent", "http-500", "garbage"],
)
def bad_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_never_answers_or_answers_garbage_is_reported_not_waited_on(
    bad_server: RawServer, protocol: str, tmp_path: Path
) -> None:
    report = tmp_path / "run.json"
    started = time.monotonic()
    done = run_cli(
        "load",
        "--url",
        f"127.0.0.1:{bad_server.port}",
        "--protocol",
        protocol,
        "--model",
        MODEL,
        "--duration",
        "2s",
        "--timeout",
        "3",
        "--report",
        str(report),
        timeout=90,
    )
    took = time.monotonic() - started
    print(
        f"\n{protocol} vs {bad_server.reply!r:.20}: exit {done.returncode} after {took:.1f} s: "
        f"{done.stderr.strip().splitlines()[-1][:160] if done.stderr.strip() else ''}"
    )
    assert done.returncode == 1, done.stderr
    assert "error:" in done.stderr and "Traceback" not in done.stderr
    assert bad_server.connections  # it really talked to this server


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    server = TritonProcess(
        LOAD_REPO,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp_path_factory.mktemp("triton") / "triton.log",
        exit_timeout_secs=2,
    )
    with server:
        server.wait_ready(90)
        yield server


def target(server: TritonProcess, protocol: str) -> str:
    return f"127.0.0.1:{server.grpc_port if protocol == 'grpc' else server.http_port}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_model_that_does_not_exist_exits_1_naming_it(triton: TritonProcess, protocol: str) -> None:
    done = run_cli(
        "load",
        "--url",
        target(triton, protocol),
        "--protocol",
        protocol,
        "--model",
        "no-such-model",
        "--duration",
        "1s",
        "--timeout",
        "5",
        timeout=60,
    )
    assert done.returncode == 1 and "no-such-model" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_triton_that_fails_every_request_is_reported_with_its_error(
    triton: TritonProcess, protocol: str, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "please FAIL now", "output_tokens": 4}\n')
    report = tmp_path / "run.json"
    done = run_cli(
        "load",
        "--url",
        target(triton, protocol),
        "--protocol",
        protocol,
        "--model",
        MODEL,
        "--concurrency",
        "2",
        "--duration",
        "1s",
        "--prompts",
        str(prompts),
        "--report",
        str(report),
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    summary = json.loads(report.read_text())["summary"]
    assert summary["errors"] == summary["requests"] > 0
    assert "asked to fail" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_triton_killed_mid_run_ends_the_run_with_the_failures_counted(tmp_path: Path) -> None:
    server = TritonProcess(
        LOAD_REPO,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp_path / "triton.log",
        exit_timeout_secs=2,
    )
    report = tmp_path / "run.json"
    with server:
        server.wait_ready(90)
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmprep.cli",
                "load",
                "--url",
                target(server, "grpc"),
                "--model",
                MODEL,
                "--concurrency",
                "4",
                "--duration",
                "6s",
                "--timeout",
                "5",
                "--output-tokens",
                "8",
                "--report",
                str(report),
            ],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(2)
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGKILL)
            out, err = load.communicate(timeout=90)
        finally:
            load.kill()
    data = json.loads(report.read_text())["summary"]
    print(
        f"\ntriton killed after 2 s of a 6 s run: {data['requests']} requests, {data['errors']} failed "
        f"({data['errors_by_class']}); exit {load.returncode}"
    )
    assert load.returncode == 1 and "error rate" in err and "Traceback" not in err
    assert 0 < data["errors"] < data["requests"]

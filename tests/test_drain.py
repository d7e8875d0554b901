"""`llmprep drain`, the preStop hook: it counts real sockets in /proc/net/tcp and waits for clients to leave."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.timed_tests import record
from llmprep.errors import UsageError
from llmprep.serve.drain import DrainResult, drain, established
from tests.conftest import ROOT, FakeClock, run_cli


@contextmanager
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server
    finally:
        server.close()


def connect(server: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    return client, accepted


def test_established_counts_the_connections_accepted_on_a_port_and_nothing_else() -> None:
    with listener() as server, listener() as other:
        port = server.getsockname()[1]
        assert established([port]) == 0  # a listening socket is not a client
        pairs = [connect(server) for _ in range(3)]
        side = connect(other)
        assert established([port]) == 3
        for client, accepted in pairs[:2]:
            client.close()
            accepted.close()
        assert established([port]) == 1
        for s in (*pairs[2], *side):
            s.close()


def test_established_reads_the_kernels_table_format(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1\n"  # listen
        "   1: 0100007F:1F41 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 2\n"  # client
        "   2: 0100007F:1F41 0100007F:9C41 08 00000000:00000000 00:00000000 00000000  1000        0 3\n"  # close wait
        "   3: 0100007F:1F42 0100007F:9C42 01 00000000:00000000 00:00000000 00000000  1000        0 4\n"  # metrics
    )
    assert established([8001], tables=[table, tmp_path / "missing-tcp6"]) == 1
    assert established([8001, 8002], tables=[table]) == 2


def test_established_counts_ipv6_connections_from_the_second_table(tmp_path: Path) -> None:
    # Clients on an IPv6 Service (or a dual-stack pod) appear only in /proc/net/tcp6.
    ipv4, ipv6 = tmp_path / "tcp", tmp_path / "tcp6"
    ipv4.write_text("  sl  local_address rem_address   st\n")
    ipv6.write_text(
        "  sl  local_address                         remote_address                        st tx_queue\n"
        "   0: 00000000000000000000000001000000:1F41 00000000000000000000000001000000:A2C4 01 00000000:00000000\n"
        "   1: 00000000000000000000000001000000:1F40 00000000000000000000000001000000:A2C5 01 00000000:00000000\n"
        "   2: 00000000000000000000000000000000:1F41 00000000000000000000000000000000:0000 0A 00000000:00000000\n"
    )
    assert established([8001], tables=[ipv4, ipv6]) == 1
    assert established([8000, 8001], tables=[ipv4, ipv6]) == 2


def test_established_sees_a_real_ipv6_client_by_default() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = socket.socket(socket.AF_INET6)
    try:
        server.bind(("::1", 0))
    except OSError:
        server.close()
        pytest.skip("no IPv6 loopback in this network namespace")
    server.listen(2)
    port = server.getsockname()[1]
    client = socket.create_connection(("::1", port))
    accepted, _ = server.accept()
    try:
        assert established([port]) == 1
    finally:
        for s in (client, accepted, server):
            s.close()


def run_drain(counts: Sequence[int], *, pause: float = 5, timeout: float = 10) -> tuple[DrainResult, list[str], float]:
    clock, lines, seen = FakeClock(), [], iter(counts)
    last = [counts[-1]]

    def count(_ports: Sequence[int]) -> int:
        last[0] = next(seen, last[0])
        return last[0]

    result = drain(
        [8000, 8001],
        pause_s=pause,
        timeout_s=timeout,
        interval_s=1,
        log=lines.append,
        count=count,
        clock=clock,
        sleep=clock.sleep,
    )
    return result, lines, clock.now


def test_the_drain_serves_through_the_pause_then_ends_once_the_last_client_left() -> None:
    result, lines, ended = run_drain([3, 2, 2, 0])
    assert result.idle and result.open_connections == 0
    assert ended == 5 + 3  # the pause, then three polls a second apart
    assert lines[-1] == "drain: no client connection to port(s) 8000, 8001 after 3.0 s; Triton may stop"


def test_the_drain_gives_up_at_its_timeout_and_says_what_is_left() -> None:
    result, lines, ended = run_drain([4], pause=2, timeout=10)
    assert not result.idle and result.open_connections == 4
    assert ended == 2 + 10
    assert "4 client connection(s) still open to port(s) 8000, 8001 after 10 s; stopping anyway" in lines[-1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ports": []}, "--port"),
        ({"pause_s": -1}, "--pause"),
        ({"timeout_s": -1}, "--timeout"),
        ({"interval_s": 0}, "--interval"),
    ],
)
def test_bad_drain_arguments_name_their_option(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"ports": [8000], "pause_s": 0, "timeout_s": 0, **kwargs}
    ports = args.pop("ports")
    with pytest.raises(UsageError, match=f"^{field}: "):
        drain(ports, **args)  # type: ignore[arg-type]


def test_the_command_waits_for_a_real_client_to_close_its_connection() -> None:
    with listener() as server:
        port = server.getsockname()[1]
        client, accepted = connect(server)
        drain_cmd = subprocess.Popen(
            [sys.executable, "-m", "llmprep.cli", "drain", "--port", str(port), "--pause", "0.2", "--timeout", "60"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert drain_cmd.stderr is not None
        lines = []
        for line in drain_cmd.stderr:  # progress goes to stderr, like every status line
            lines.append(line.rstrip())
            if "1 client connection(s) open" in line:
                break  # it has seen the client; now the client leaves
        closed_at = time.monotonic()
        client.close()
        accepted.close()
        _, rest = drain_cmd.communicate(timeout=90)
        record("drain_exit", after_close_s=time.monotonic() - closed_at)  # measured by bench.timed_tests only
    lines += rest.splitlines()
    assert drain_cmd.returncode == 0, lines
    assert any("1 client connection(s) open" in line for line in lines)
    # Ended because the client left (the idle message), not at its 60 s timeout ("stopping anyway").
    assert "no client connection" in lines[-1]
    assert not any("stopping anyway" in line for line in lines)


@pytest.mark.parametrize(
    "args",
    [
        ["drain"],
        ["drain", "--port", "0"],
        ["drain", "--port", "80", "--pause", "-1"],
        ["serve", "--http-port", "0"],
        ["no-such-command"],
    ],
)
def test_usage_errors_are_one_message_and_exit_2_without_a_traceback(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Error:" in result.stderr

"""The lab's round-robin front, against small TCP servers that answer with their own name."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from llmprep.lab.front import Front


class _Named(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _server(name: str) -> tuple[_Named, str]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:  # one answer per line, on the same connection
                self.wfile.write(name.encode() + b":" + line)

    server = _Named(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def backends() -> Iterator[dict[str, str]]:
    servers = {name: _server(name) for name in ("a", "b", "c")}
    yield {name: address for name, (_, address) in servers.items()}
    for server, _ in servers.values():
        server.shutdown()
        server.server_close()


def _ask(conn: socket.socket, text: str = "hi") -> str:
    conn.sendall(text.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def _one_shot(front: Front) -> str:
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as conn:
        return _ask(conn).split(":")[0]


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_new_connections_go_round_robin_over_the_backends(backends: dict[str, str]) -> None:
    with Front(health_interval_s=60) as front:
        front.add(backends["a"])
        front.add(backends["b"])
        answers = [_one_shot(front) for _ in range(6)]
    assert sorted(answers) == ["a", "a", "a", "b", "b", "b"]
    assert all(x != y for x, y in zip(answers, answers[1:], strict=False))


def test_a_connection_stays_on_its_backend_for_every_request(backends: dict[str, str]) -> None:
    with Front(health_interval_s=60) as front:
        front.add(backends["a"])
        front.add(backends["b"])
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as conn:
            names = {_ask(conn, str(i)).split(":")[0] for i in range(5)}
    assert len(names) == 1


def test_a_removed_backend_gets_no_new_connections_but_keeps_open_ones(backends: dict[str, str]) -> None:
    with Front(health_interval_s=60) as front:
        front.add(backends["a"])
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as kept:
            assert _ask(kept).startswith("a:")
            front.add(backends["b"])
            front.remove(backends["a"])
            assert {_one_shot(front) for _ in range(4)} == {"b"}
            assert _ask(kept, "still").startswith("a:still")


def test_without_backends_a_connection_is_refused_at_once(backends: dict[str, str]) -> None:
    with Front(health_interval_s=60) as front, socket.create_connection(("127.0.0.1", front.port), timeout=5) as conn:
        try:
            conn.sendall(b"hi\n")
            answer = conn.recv(1024)
        except ConnectionResetError:
            answer = b""
        assert answer == b""
    assert front.refused == 1


def test_a_backend_failing_its_health_check_leaves_the_rotation_until_it_recovers(backends: dict[str, str]) -> None:
    sick: set[str] = set()
    with Front(health_interval_s=0.05, probe=lambda url: url not in sick) as front:
        front.add(backends["a"], health_url="a")
        front.add(backends["b"], health_url="b")
        sick.add("a")
        _wait(lambda: front.in_rotation() == [backends["b"]])
        assert {_one_shot(front) for _ in range(4)} == {"b"}
        sick.clear()
        _wait(lambda: len(front.in_rotation()) == 2)


def test_forgetting_a_backend_closes_its_open_connections(backends: dict[str, str]) -> None:
    with Front(health_interval_s=60) as front:
        front.add(backends["c"])
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as conn:
            assert _ask(conn).startswith("c:")
            front.forget(backends["c"])
            _wait(lambda: front.connections().get(backends["c"], 0) == 0)
            assert conn.recv(1024) == b""


def test_a_holding_front_forwards_a_connection_made_at_zero_backends_once_one_is_ready(
    backends: dict[str, str],
) -> None:
    with (
        Front(health_interval_s=60, hold_s=10) as front,
        socket.create_connection(("127.0.0.1", front.port), timeout=5) as conn,
    ):
        conn.sendall(b"early\n")
        _wait(lambda: front.waiting == 1)
        front.add(backends["a"])
        assert _ask(conn, "").startswith("a:early")
    assert (front.held, front.waiting, front.refused) == (1, 0, 0)


def test_a_held_connection_that_finds_no_backend_in_time_is_closed(backends: dict[str, str]) -> None:
    with (
        Front(health_interval_s=60, hold_s=0.2) as front,
        socket.create_connection(("127.0.0.1", front.port), timeout=5) as conn,
    ):
        conn.sendall(b"hi\n")
        try:
            answer = conn.recv(1024)
        except ConnectionResetError:
            answer = b""
        assert answer == b""
    assert (front.held, front.refused) == (1, 1)

"""A round-robin TCP front on one loopback port: the lab's Service (kube-proxy).

Like kube-proxy it balances connections, not requests: each new client connection goes to
the next backend in rotation and stays there until either side closes it. A backend enters
the rotation when the cluster adds it (once its replica is ready, as an Endpoints object
lists only ready pods) and leaves it first on scale-down; connections already open to it are
kept, as conntrack keeps them, until the replica closes them. A health check every
`health_interval_s` (the readiness probe's period) takes a backend that stops answering out of
rotation and puts it back when it answers again. With no backend in rotation a connection is
refused at once (kube-proxy rejects traffic to a Service without endpoints), unless the front
holds (`hold_s` > 0): then it waits up to `hold_s` for a backend to enter the rotation and
forwards the connection to it, as the KEDA HTTP add-on's interceptor holds a request while its
Deployment scales from zero (kedacore/http-add-on interceptor/config/timeouts.go,
`KEDA_CONDITION_WAIT_TIMEOUT`); `waiting` counts the connections held now, which is what the
add-on's scaler reports to KEDA as pending. A held connection that finds no backend in time is
closed (counted in `refused`).

The front runs its own asyncio loop on a background thread; its methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmprep.errors import LabError

CHUNK = 64 * 1024


@dataclass
class Backend:
    """One endpoint: where to forward, and the URL whose 200 answer means ready (None: TCP connect)."""

    address: str  # host:port
    health_url: str | None = None
    healthy: bool = True
    connections: int = 0
    total_connections: int = 0
    first_connection_at: float | None = None  # Unix time of the first connection sent here
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host, int(port)


def _http_ok(url: str) -> bool:
    from llmprep.serve.triton import http_ok

    return http_ok(url, timeout=1.0)


class Front:
    """A TCP proxy on 127.0.0.1:`port` (0: any free port) spreading connections round-robin."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        health_interval_s: float = 1.0,
        probe: Callable[[str], bool] = _http_ok,
        hold_s: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.health_interval_s = health_interval_s
        self.hold_s = hold_s
        self._probe = probe
        self._backends: dict[str, Backend] = {}
        self._order: list[str] = []
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.refused = 0
        self.held = 0  # connections that waited for a backend (hold_s > 0)
        self._waiting = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Front:
        self._thread = threading.Thread(target=self._run, name="lab-front", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise LabError(f"the front cannot listen on {self.host}:{self.port}: {self._error}")
        if not self._started.is_set():
            raise LabError("the front did not start within 10 s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
            self.port = int(self._server.sockets[0].getsockname()[1])
        except OSError as exc:
            self._error = exc
            self._started.set()
            loop.close()
            return
        health = loop.create_task(self._health_loop())
        self._started.set()
        try:
            loop.run_forever()
        finally:
            health.cancel()
            self._server.close()
            for backend in list(self._backends.values()):
                for writer in list(backend.writers):
                    writer.close()
            loop.run_until_complete(asyncio.sleep(0))
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._server.wait_closed())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Front:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- rotation -----------------------------------------------------------------------------
    def add(self, address: str, health_url: str | None = None) -> None:
        """Put a backend into the rotation (call once its replica is ready)."""
        with self._lock:
            if address not in self._backends:
                self._backends[address] = Backend(address, health_url)
                self._order.append(address)

    def remove(self, address: str) -> None:
        """Take a backend out of the rotation; its open connections stay until closed."""
        with self._lock:
            if address in self._order:
                self._order.remove(address)

    def forget(self, address: str) -> None:
        """Out of the rotation and its remaining connections closed (the replica is gone)."""
        self.remove(address)
        with self._lock:
            backend = self._backends.pop(address, None)
        if backend is not None and self._loop is not None:
            for writer in list(backend.writers):
                self._loop.call_soon_threadsafe(writer.close)

    def in_rotation(self) -> list[str]:
        """Backends new connections may go to: added, not removed, and passing their health check."""
        with self._lock:
            return [a for a in self._order if self._backends[a].healthy]

    def connections(self) -> dict[str, int]:
        """Open connections per backend."""
        with self._lock:
            return {a: b.connections for a, b in self._backends.items()}

    def first_connection(self, address: str) -> float | None:
        """When the first client connection went to `address` (None: never, or forgotten)."""
        with self._lock:
            backend = self._backends.get(address)
            return backend.first_connection_at if backend is not None else None

    @property
    def waiting(self) -> int:
        """Connections held now for want of a backend in rotation."""
        with self._lock:
            return self._waiting

    async def _hold(self) -> Backend | None:
        """Wait up to `hold_s` for a backend to enter the rotation (polled at 20 ms)."""
        with self._lock:
            self._waiting += 1
            self.held += 1
        try:
            deadline = time.monotonic() + self.hold_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                backend = self._pick()
                if backend is not None:
                    return backend
            return None
        finally:
            with self._lock:
                self._waiting -= 1

    def _pick(self) -> Backend | None:
        with self._lock:
            live = [self._backends[a] for a in self._order if self._backends[a].healthy]
            if not live:
                return None
            return live[next(self._counter) % len(live)]

    # -- proxying -----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self._pick()
        if backend is None and self.hold_s > 0:
            backend = await self._hold()
        if backend is None:
            self.refused += 1
            writer.close()
            return
        host, port = backend.host_port
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            self.refused += 1
            writer.close()
            return
        backend.connections += 1
        backend.total_connections += 1
        if backend.first_connection_at is None:
            backend.first_connection_at = time.time()
        backend.writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            backend.connections -= 1
            backend.writers.discard(writer)
            backend.writers.discard(up_writer)
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            # Half-close toward the other side so a request/response in flight can finish.
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            with self._lock:
                backends = [b for b in self._backends.values() if b.address in self._order]
            for backend in backends:
                ok = await self._check(backend)
                backend.healthy = ok

    async def _check(self, backend: Backend) -> bool:
        if backend.health_url is not None:
            return await asyncio.to_thread(self._probe, backend.health_url)
        host, port = backend.host_port
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

"""The load generator's engine: closed loop (N clients) or open loop (Poisson arrivals), stages switching live.

`run_load(config)` runs a whole profile and returns a LoadResult; another program (the local
autoscaling lab) calls it in-process with `on_sample` / `on_second` callbacks and a
`stop_event`, or reads `LoadGenerator.snapshot()` from another thread once a second.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmprep.errors import LoadError, UsageError
from llmprep.load.clients import Client, RequestPlan, build_plan, fetch_schema, make_client
from llmprep.load.profile import Profile
from llmprep.load.prompts import Prompt, synthetic_prompts
from llmprep.load.stats import Sample, SecondStats, Window, error_rate, summarize

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
SYNTHETIC_POOL = 512  # distinct synthetic prompts, cycled
TIMELINE_SECONDS = 7 * 24 * 3600  # per-second snapshots kept: a week
UNAVAILABLE_BACKOFF = 0.1  # seconds a closed-loop client waits after a refused connection


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class LoadConfig:
    """Everything one run needs. `targets`: `host:port` (a Service name works), round-robin."""

    targets: list[str]
    profile: Profile
    protocol: str = "grpc"
    model: str = "ensemble"
    prompts: Sequence[Prompt] | None = None  # None: synthetic, from the four fields below
    input_tokens: float = 128
    input_stddev: float = 0
    output_tokens: float = 64
    output_stddev: float = 0
    seed: int = 0
    timeout: float = 60.0  # seconds, per request (and for reading the model config)
    max_error_rate: float = 0.01
    fixed_output: bool = True
    extra_inputs: dict[str, str] = field(default_factory=dict)
    connections: int = 1  # gRPC channels / HTTP sessions per target
    reconnect_every: float = 0.0  # seconds; re-open connections so new pods behind a Service get load
    wait_ready: float = 0.0  # seconds to keep retrying the model config at start
    max_in_flight: int = 10_000  # open loop: arrivals beyond this are dropped and counted
    drain: float | None = None  # seconds to let in-flight requests finish at the end (default: timeout + 1 s)
    max_samples: int | None = None  # keep only the latest N samples (a run without end); None: all

    def validate(self) -> None:
        if not self.targets:
            raise UsageError("--url: give at least one target, e.g. --url my-release:8001")
        if self.protocol not in DEFAULT_PORTS:
            raise UsageError(f"--protocol: expected grpc or http, got {self.protocol!r}")
        checks = (
            ("--timeout", self.timeout > 0),
            ("--max-error-rate", 0 <= self.max_error_rate <= 1),
            ("--connections", self.connections >= 1),
            ("--reconnect-every", self.reconnect_every >= 0),
            ("--wait-ready", self.wait_ready >= 0),
            ("--max-in-flight", self.max_in_flight >= 1),
            ("--max-samples", self.max_samples is None or self.max_samples >= 1),
        )
        for name, ok in checks:
            if not ok:
                raise UsageError(f"{name}: value out of range")

    def describe(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "protocol": self.protocol,
            "model": self.model,
            "unit": self.profile.unit,
            "duration_s": self.profile.duration if math.isfinite(self.profile.duration) else None,
            "stages": [
                {**vars(s), "duration": s.duration if math.isfinite(s.duration) else None} for s in self.profile.stages
            ],
            "timeout_s": self.timeout,
            "max_error_rate": self.max_error_rate,
            "fixed_output": self.fixed_output,
            "input_tokens": self.input_tokens,
            "input_stddev": self.input_stddev,
            "output_tokens": self.output_tokens,
            "output_stddev": self.output_stddev,
            "prompts": "file" if self.prompts is not None else "synthetic",
            "seed": self.seed,
            "extra_inputs": self.extra_inputs,
            "connections": self.connections,
        }


@dataclass
class LoadResult:
    """A finished run: every sample, the per-second timeline and the summary."""

    config: dict[str, Any]
    started_at: float  # Unix time of the run's start (samples' `start` counts from here)
    duration: float
    samples: list[Sample]
    timeline: list[SecondStats]
    dropped: int
    notes: list[str]
    max_error_rate: float

    @property
    def error_rate(self) -> float:
        return error_rate(self.samples)

    @property
    def passed(self) -> bool:
        return self.error_rate <= self.max_error_rate

    def summary(self) -> dict[str, Any]:
        return {**summarize(self.samples, self.duration), "dropped": self.dropped}


def normalize_target(target: str, protocol: str) -> str:
    """`host`, `host:port`, `grpc://host:port`, `http://host:port` or `dns:///name:port` for the client."""
    target = target.strip()
    if not target:
        raise UsageError("--url: empty target")
    if target.startswith("dns:") and protocol == "grpc":
        return target
    for scheme in ("grpc://", "http://", "https://"):
        if target.startswith(scheme):
            if scheme == "https://":
                raise UsageError(f"--url {target}: TLS is not supported; use the in-cluster Service address")
            target = target[len(scheme) :]
    target = target.rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep:
        host, port = target, ""
    elif not port.isdigit() or not host:
        raise UsageError(f"--url {target}: expected HOST:PORT with a numeric port")
    return f"{host}:{port or DEFAULT_PORTS[protocol]}"


class _Slot:
    __slots__ = ("client", "in_flight", "retired")

    def __init__(self, client: Client) -> None:
        self.client, self.in_flight, self.retired = client, 0, False


class ClientPool:
    """`connections` clients per target, picked round-robin; `rotate()` re-opens them gracefully."""

    def __init__(self, factory: Callable[[str], Client], targets: Sequence[str], connections: int) -> None:
        self._factory = factory
        self._slots = [_Slot(factory(t)) for t in targets for _ in range(connections)]
        self._next = 0
        self._closing: set[asyncio.Task[None]] = set()

    def pick(self) -> _Slot:
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        slot.in_flight += 1
        return slot

    def release(self, slot: _Slot) -> None:
        slot.in_flight -= 1
        if slot.retired and slot.in_flight == 0:
            self._close_later(slot)

    def _close_later(self, slot: _Slot) -> None:
        task = asyncio.get_running_loop().create_task(slot.client.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def rotate(self) -> None:
        for index, old in enumerate(self._slots):
            self._slots[index] = _Slot(self._factory(old.client.target))
            old.retired = True
            if old.in_flight == 0:
                self._close_later(old)

    async def close(self) -> None:
        for slot in self._slots:
            await slot.client.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class LoadGenerator:
    """One run. Construct, then `await run()` (or `run_load()` from synchronous code)."""

    def __init__(self, config: LoadConfig, *, clock: Callable[[], float] = time.perf_counter) -> None:
        """`clock`: the seconds every schedule here reads (arrivals, stages, ticks, the wait for a server).
        The real clients time requests with `time.perf_counter`, so only a test that runs the generator
        on an event loop with virtual time, with doubles of the clients, passes that loop's `time`."""
        config.validate()
        self.config = config
        self._clock = clock
        self.targets = [normalize_target(t, config.protocol) for t in config.targets]
        self.prompts: Sequence[Prompt] = (
            config.prompts
            if config.prompts is not None
            else synthetic_prompts(
                SYNTHETIC_POOL,
                input_tokens=config.input_tokens,
                input_stddev=config.input_stddev,
                output_tokens=config.output_tokens,
                output_stddev=config.output_stddev,
                seed=config.seed,
            )
        )
        if not self.prompts:
            raise UsageError("--prompts: no prompts to send")
        self._latest: SecondStats | None = None
        self._level = 0.0
        self._in_flight = 0
        self._stopping = False
        self._next_prompt = 0
        self._window = Window()
        self._samples: deque[Sample] = deque(maxlen=config.max_samples)
        self._timeline: deque[SecondStats] = deque(maxlen=TIMELINE_SECONDS)
        self._dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._alive: set[int] = set()
        self._target_clients = 0
        self._t0 = 0.0
        self._on_sample: Callable[[Sample], None] | None = None

    def snapshot(self) -> SecondStats | None:
        """The last completed second (safe to read from another thread)."""
        return self._latest

    @property
    def t0(self) -> float:
        """The clock's reading when the run began (0 before): every `Sample.start` counts from it."""
        return self._t0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def _plan(self, stop_event: StopFlag | None) -> RequestPlan:
        deadline = self._clock() + self.config.wait_ready
        probe_timeout = min(self.config.timeout, 10.0)
        while True:
            errors = []
            for target in self.targets:
                try:
                    schema = await fetch_schema(self.config.protocol, target, self.config.model, probe_timeout)
                except LoadError as exc:
                    errors.append(str(exc))
                    continue
                return build_plan(schema, fixed_output=self.config.fixed_output, extra_inputs=self.config.extra_inputs)
            if self._clock() + 1.0 > deadline or (stop_event is not None and stop_event.is_set()):
                more = f" (and {len(errors) - 1} more targets)" if len(errors) > 1 else ""
                raise LoadError(f"no target answered: {errors[0]}{more}")
            await asyncio.sleep(1.0)

    def _record(self, sample: Sample) -> None:
        self._samples.append(sample)
        self._window.add(sample)
        if self._on_sample is not None:
            self._on_sample(sample)

    async def _one(self, pool: ClientPool) -> str | None:
        index = self._next_prompt
        self._next_prompt = (index + 1) % len(self.prompts)
        prompt = self.prompts[index]
        slot = pool.pick()
        self._in_flight += 1
        self._window.started += 1
        start = self._clock()
        try:
            sample = await slot.client.request(index, prompt, self._t0)
        except asyncio.CancelledError:
            self._record(
                Sample(
                    start - self._t0,
                    slot.client.target,
                    self._clock() - start,
                    None,
                    None,
                    prompt.input_tokens,
                    0,
                    "cancelled",
                    "the run ended first",
                )
            )
            raise
        except Exception as exc:  # an unexpected failure is counted, never kills the run
            sample = Sample(
                start - self._t0,
                slot.client.target,
                self._clock() - start,
                None,
                None,
                prompt.input_tokens,
                0,
                "client",
                f"{type(exc).__name__}: {exc}"[:300],
            )
        finally:
            self._in_flight -= 1
            pool.release(slot)
        self._record(sample)
        return sample.error

    async def _worker(self, index: int, pool: ClientPool) -> None:
        try:
            while not self._stopping and index < self._target_clients:
                if await self._one(pool) == "unavailable":
                    await asyncio.sleep(UNAVAILABLE_BACKOFF)  # do not spin on a target that refuses
        finally:
            self._alive.discard(index)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _arrivals(self, pool: ClientPool) -> None:
        """Poisson arrivals at the current rate; redrawn when the rate changes (memoryless)."""
        rng = random.Random(self.config.seed + 1)
        while not self._stopping:
            rate = self._level
            if rate <= 0:
                await asyncio.sleep(0.05)
                continue
            due = self._clock() + rng.expovariate(rate)
            while not self._stopping and (left := due - self._clock()) > 0 and self._level == rate:
                await asyncio.sleep(min(left, 0.05))
            if self._stopping or due > self._clock():
                continue  # stopped, or the rate changed before this arrival was due: draw again
            if self._in_flight >= self.config.max_in_flight:
                self._dropped += 1
                continue
            self._spawn(self._one(pool))

    def _tick(self, t: float, span: float, on_second: Callable[[SecondStats], None] | None) -> None:
        snap = self._window.close(t, span, self._level, self._in_flight)
        self._timeline.append(snap)
        self._latest = snap
        if on_second is not None:
            on_second(snap)

    async def run(
        self,
        *,
        on_sample: Callable[[Sample], None] | None = None,
        on_second: Callable[[SecondStats], None] | None = None,
        stop_event: StopFlag | None = None,
    ) -> LoadResult:
        """Run the profile to its end (or until `stop_event` is set); callbacks run in the event loop."""
        config, profile = self.config, self.config.profile
        plan = await self._plan(stop_event)
        self._on_sample = on_sample
        pool = ClientPool(
            lambda target: make_client(config.protocol, target, plan, config.timeout), self.targets, config.connections
        )
        started_at = time.time()
        self._t0 = self._clock()
        next_tick, next_rotate = 1.0, config.reconnect_every or math.inf
        try:
            if profile.unit == "rate":
                self._spawn(self._arrivals(pool))
            while not (stop_event is not None and stop_event.is_set()):
                t = self._clock() - self._t0
                level = profile.level_at(t)
                if level is None:
                    break
                if profile.unit == "clients":
                    self._target_clients = int(level + 0.5)  # half up (round() would go to even)
                    level = float(self._target_clients)
                    for index in range(self._target_clients):
                        if index not in self._alive:
                            self._alive.add(index)
                            self._spawn(self._worker(index, pool))
                self._level = level
                if t >= next_tick:
                    self._tick(next_tick, 1.0, on_second)
                    next_tick += 1.0
                if t >= next_rotate:
                    pool.rotate()
                    next_rotate += config.reconnect_every
                await asyncio.sleep(max(0.0, min(0.05, next_tick - t)))
            self._stopping = True
            self._target_clients = 0
            # A request still running gets its own timeout plus a second to report it.
            drain = config.timeout + 1.0 if config.drain is None else config.drain
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=drain)
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            t = self._clock() - self._t0
            if t > next_tick - 1.0 + 1e-3:
                self._tick(t, t - (next_tick - 1.0), on_second)
        finally:
            await pool.close()
        return LoadResult(
            config=config.describe(),
            started_at=started_at,
            duration=self._clock() - self._t0,
            samples=list(self._samples),
            timeline=list(self._timeline),
            dropped=self._dropped,
            notes=list(plan.notes),
            max_error_rate=config.max_error_rate,
        )

    def run_sync(
        self,
        *,
        on_sample: Callable[[Sample], None] | None = None,
        on_second: Callable[[SecondStats], None] | None = None,
        stop_event: StopFlag | None = None,
    ) -> LoadResult:
        """`run()` in its own event loop, e.g. on a thread while another reads `snapshot()`."""
        return asyncio.run(self.run(on_sample=on_sample, on_second=on_second, stop_event=stop_event))


def run_load(
    config: LoadConfig,
    *,
    on_sample: Callable[[Sample], None] | None = None,
    on_second: Callable[[SecondStats], None] | None = None,
    stop_event: StopFlag | None = None,
) -> LoadResult:
    """Run a load test to completion from synchronous code (its own event loop)."""
    return LoadGenerator(config).run_sync(on_sample=on_sample, on_second=on_second, stop_event=stop_event)

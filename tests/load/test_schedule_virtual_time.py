"""The load generator's schedule, on an event loop with virtual time: no server, no wall clock.

`LoadGenerator(config, clock=loop.time)` reads every schedule (arrivals, stages, ticks) from the
loop's clock, and the loop here moves its clock to the next timer instead of waiting for it; the
clients are doubles that take a fixed service time of that clock. So what the generator sends, and
when, is exact and the same on any machine however loaded: the open loop sends each request at its
seeded exponential draw, the closed loop keeps its clients busy back to back, a stage switch takes
effect at its boundary. (tests/load/test_load_e2e.py runs the same generator against a real
tritonserver; the timing statistics of that run are measured by bench/timed_tests.py.)
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
import types
from collections.abc import Iterator
from typing import Any

import pytest

from llmprep.load import LoadConfig, LoadGenerator, LoadResult, Sample, SecondStats, constant, parse_profile, runner
from llmprep.load.profile import Profile
from llmprep.load.prompts import Prompt

EPS = 1e-9


class VirtualTimeSelector(selectors.DefaultSelector):
    """A selector that never waits: with nothing ready it moves the clock by the timeout it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout:
            self.now += timeout
        elif not ready and timeout is None:
            raise AssertionError("the event loop waits on nothing and no timer: a deadlock")
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.virtual = VirtualTimeSelector()
        super().__init__(self.virtual)

    def time(self) -> float:
        return self.virtual.now


class ClientDouble:
    """A load client whose every request takes `service_s` of the loop's clock and streams one token."""

    def __init__(self, target: str, clock: Any, service_s: float) -> None:
        self.target, self.clock, self.service_s = target, clock, service_s

    async def request(self, index: int, prompt: Prompt, t0: float) -> Sample:
        start = self.clock()
        await asyncio.sleep(self.service_s)
        e2e = self.clock() - start
        return Sample(start - t0, self.target, e2e, e2e, None, prompt.input_tokens, 1)

    async def close(self) -> None:
        pass


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualTimeLoop]:
    loop = VirtualTimeLoop()

    async def schema(protocol: str, target: str, model: str, timeout: float) -> object:
        return object()

    monkeypatch.setattr(runner, "fetch_schema", schema)
    monkeypatch.setattr(runner, "build_plan", lambda *_a, **_k: types.SimpleNamespace(notes=[]))
    try:
        yield loop
    finally:
        loop.close()


def run(
    loop: VirtualTimeLoop, monkeypatch: pytest.MonkeyPatch, profile: Profile, service_s: float, **fields: Any
) -> tuple[LoadResult, list[SecondStats]]:
    monkeypatch.setattr(
        runner, "make_client", lambda protocol, target, plan, timeout: ClientDouble(target, loop.time, service_s)
    )
    config = LoadConfig(targets=["127.0.0.1:1"], profile=profile, timeout=30.0, **fields)
    seconds: list[SecondStats] = []
    result = loop.run_until_complete(LoadGenerator(config, clock=loop.time).run(on_second=seconds.append))
    return result, seconds


def seeded_arrivals(rate: float, duration: float, seed: int) -> list[float]:
    """The send times the open loop must keep: the cumulative sum of Random(seed + 1)'s exponential draws."""
    draws = random.Random(seed + 1)
    times, t = [], 0.0
    while True:
        t += draws.expovariate(rate)
        if t >= duration:
            return times
        times.append(t)


def max_overlap(samples: list[Sample]) -> int:
    events = sorted([(s.start, 1) for s in samples] + [(s.start + s.e2e, -1) for s in samples])
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


@pytest.mark.parametrize(("rate", "seed"), [(40.0, 7), (40.0, 8), (5.0, 0), (200.0, 3)])
def test_an_open_loop_sends_each_request_at_its_seeded_draw(
    loop: VirtualTimeLoop, monkeypatch: pytest.MonkeyPatch, rate: float, seed: int
) -> None:
    duration = 2.0
    want = seeded_arrivals(rate, duration, seed)
    assert all(abs(t - duration) > 1e-6 for t in want)  # no arrival on the boundary: the count is exact
    result, seconds = run(loop, monkeypatch, constant("rate", rate, duration), service_s=0.25, seed=seed)
    starts = sorted(s.start for s in result.samples)
    assert len(starts) == len(want) and result.dropped == 0 and all(s.ok for s in result.samples)
    assert max(abs(a - b) for a, b in zip(starts, want, strict=True)) < EPS
    # The per-second snapshots count the same arrivals.
    assert [snap.started for snap in seconds] == [sum(1 for t in want if k <= t < k + 1) for k in range(2)]
    assert [snap.level for snap in seconds] == [rate, rate]


def test_another_seed_sends_at_other_times(loop: VirtualTimeLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = run(loop, monkeypatch, constant("rate", 40.0, 1.0), service_s=0.01, seed=1)
    second, _ = run(loop, monkeypatch, constant("rate", 40.0, 1.0), service_s=0.01, seed=2)
    assert [s.start for s in first.samples][:5] != [s.start for s in second.samples][:5]


def test_arrivals_over_the_in_flight_cap_are_dropped_and_counted(
    loop: VirtualTimeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate, duration, seed = 40.0, 2.0, 0
    want = seeded_arrivals(rate, duration, seed)
    # Each request outlasts the run: the first two fill the cap, every later arrival finds it full.
    result, _ = run(loop, monkeypatch, constant("rate", rate, duration), service_s=10.0, max_in_flight=2, seed=seed)
    assert sorted(s.start for s in result.samples) == pytest.approx(want[:2], abs=EPS)
    assert result.dropped == len(want) - 2 and result.summary()["dropped"] == result.dropped
    assert max_overlap(result.samples) == 2


def test_a_closed_loop_keeps_each_client_busy_back_to_back(
    loop: VirtualTimeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, duration, service = 3, 1.0, 0.12
    result, _ = run(loop, monkeypatch, constant("clients", clients, duration), service_s=service)
    per_client = math.ceil(duration / service)  # starts at 0, 0.12, …, 0.96: the next (1.08) is after the end
    starts = sorted(s.start for s in result.samples)
    assert len(starts) == clients * per_client and max_overlap(result.samples) == clients
    assert starts == pytest.approx(sorted(k * service for k in range(per_client) for _ in range(clients)), abs=EPS)


def test_a_stage_switch_starts_the_new_clients_at_its_boundary(
    loop: VirtualTimeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = parse_profile({"stages": ["step to 1 for 1s", "step to 4 for 1s"]})
    service = 0.12
    result, seconds = run(loop, monkeypatch, profile, service_s=service)
    first = [s for s in result.samples if s.start < 1.0 - EPS]
    second = [s for s in result.samples if s.start > 1.0 - EPS]
    # One client from 0 s; at 1 s three more join it (the first keeps its own rhythm).
    assert [s.start for s in first] == pytest.approx([k * service for k in range(9)], abs=EPS)
    want = sorted([k * service for k in range(9, 17)] + [1.0 + k * service for k in range(9) for _ in range(3)])
    assert sorted(s.start for s in second) == pytest.approx(want, abs=EPS)
    assert max_overlap(first) == 1 and max_overlap(second) == 4
    assert [snap.level for snap in seconds] == [4, 4]  # the level at each window's end: 1 s is the second stage's
    assert [snap.started for snap in seconds] == [9, 8 + 27]

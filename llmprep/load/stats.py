"""Per-request samples, percentiles, per-second windows and the run summary."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Error classes. `cancelled` (in flight when the run stopped) is reported but is not an error.
ERROR_CLASSES = ("timeout", "unavailable", "server", "protocol", "client", "cancelled")
PERCENTILES = (50, 90, 95, 99)


@dataclass(slots=True)
class Sample:
    """One request. Times in seconds; `start` is measured from the run's start.

    `ttft`: first streamed response; `itl`: mean gap between later responses (None with
    fewer than two); `e2e`: until the last response. `error` is None or an error class.
    """

    start: float
    target: str
    e2e: float
    ttft: float | None
    itl: float | None
    tokens_in: int
    tokens_out: int
    error: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """mean, min, max and the standard percentiles of `values`."""
    if not values:
        return {"mean": None, "min": None, "max": None, **{f"p{q}": None for q in PERCENTILES}}
    ordered = sorted(values)
    out: dict[str, float | None] = {"mean": sum(ordered) / len(ordered), "min": ordered[0], "max": ordered[-1]}
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(ordered, q)
    return out


def error_rate(samples: Iterable[Sample]) -> float:
    """Errors over finished requests (cancelled ones excluded); 0 when nothing finished."""
    total = errors = 0
    for sample in samples:
        if sample.error == "cancelled":
            continue
        total += 1
        errors += sample.error is not None
    return errors / total if total else 0.0


def summarize(samples: Sequence[Sample], duration: float) -> dict[str, Any]:
    """The run's numbers: counts, rates, error classes and latency distributions (seconds)."""
    done = [s for s in samples if s.error != "cancelled"]
    ok = [s for s in done if s.error is None]
    duration = max(duration, 1e-9)
    return {
        "requests": len(done),
        "ok": len(ok),
        "errors": len(done) - len(ok),
        "cancelled": len(samples) - len(done),
        "error_rate": error_rate(samples),
        "errors_by_class": dict(Counter(s.error for s in done if s.error is not None)),
        "duration_s": duration,
        "requests_per_s": len(ok) / duration,
        "output_tokens_per_s": sum(s.tokens_out for s in ok) / duration,
        "tokens_in": distribution([float(s.tokens_in) for s in ok]),
        "tokens_out": distribution([float(s.tokens_out) for s in ok]),
        "ttft_s": distribution([s.ttft for s in ok if s.ttft is not None]),
        "itl_s": distribution([s.itl for s in ok if s.itl is not None]),
        "e2e_s": distribution([s.e2e for s in ok]),
    }


@dataclass
class SecondStats:
    """What happened in one second of the run: the per-second snapshot other programs read."""

    t: float  # end of the window, seconds since the run started
    level: float  # target clients or req/s at that moment
    in_flight: int
    started: int
    completed: int
    errors: int
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50: float | None
    ttft_p95: float | None
    e2e_p50: float | None
    e2e_p95: float | None
    total_completed: int
    total_errors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Window:
    """Accumulates the current second's samples with O(1) work per sample."""

    started: int = 0
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    completed: int = 0
    errors: int = 0
    tokens_out: int = 0
    total_completed: int = 0
    total_errors: int = 0

    def add(self, sample: Sample) -> None:
        if sample.error == "cancelled":
            return
        self.completed += 1
        self.total_completed += 1
        if sample.error is not None:
            self.errors += 1
            self.total_errors += 1
            return
        self.tokens_out += sample.tokens_out
        self.e2e.append(sample.e2e)
        if sample.ttft is not None:
            self.ttft.append(sample.ttft)

    def close(self, t: float, span: float, level: float, in_flight: int) -> SecondStats:
        """The snapshot of this window; resets it for the next one."""
        span = max(span, 1e-9)
        ttft, e2e = sorted(self.ttft), sorted(self.e2e)
        snap = SecondStats(
            t=t,
            level=level,
            in_flight=in_flight,
            started=self.started,
            completed=self.completed,
            errors=self.errors,
            requests_per_s=(self.completed - self.errors) / span,
            output_tokens_per_s=self.tokens_out / span,
            ttft_p50=percentile(ttft, 50),
            ttft_p95=percentile(ttft, 95),
            e2e_p50=percentile(e2e, 50),
            e2e_p95=percentile(e2e, 95),
            total_completed=self.total_completed,
            total_errors=self.total_errors,
        )
        self.started = self.completed = self.errors = self.tokens_out = 0
        self.ttft, self.e2e = [], []
        return snap

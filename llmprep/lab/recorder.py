"""Once a second: offered load, every recorded signal, the HPA's view, replicas, latency, errors.

Latency percentiles are over the requests that finished in the trailing `window_s` seconds
(per-second windows hold too few requests at lab scale to give a readable p95).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmprep.lab.hpa import Decision, HpaSpec


def _percentile(values: Sequence[float], q: float) -> float | None:
    from llmprep.load.stats import percentile

    return percentile(list(values), q)


@dataclass(frozen=True)
class Finished:
    """A finished request as the recorder keeps it."""

    at: float  # Unix time it finished
    e2e: float
    ttft: float | None
    error: str | None


def signal_column(name: str) -> str:
    return f"signal {name}"


def hpa_column(name: str) -> str:
    return f"hpa {name}"


def target_column(name: str) -> str:
    return f"target {name}"


class Recorder:
    """Collects finished requests (from the load thread) and one row per second."""

    def __init__(
        self,
        *,
        prometheus: Any,
        namespace: str,
        recorded: Sequence[str],
        hpa: HpaSpec,
        t0: float,
        window_s: float = 5.0,
    ) -> None:
        self.prometheus = prometheus
        self.namespace = namespace
        self.recorded = tuple(recorded)
        self.hpa = hpa
        self.t0 = t0
        self.window_s = window_s
        self.rows: list[dict[str, Any]] = []
        self.finished: list[Finished] = []
        self._lock = threading.Lock()
        self._last = t0
        pattern = "|".join(re.escape(n) for n in self.recorded)
        self._signals_query = f'{{__name__=~"{pattern}",namespace="{namespace}"}}' if pattern else ""
        self.query_errors = 0

    def columns(self) -> list[str]:
        cols = [
            "t",
            "time",
            "load_level",
            "in_flight",
            "started",
            "completed",
            "errors",
            "ok_per_s",
            "e2e_p50_s",
            "e2e_p95_s",
            "ttft_p95_s",
            "replicas_desired",
            "replicas_current",
            "replicas_ready",
            "replicas_draining",
            "hpa_reason",
        ]
        for metric in self.hpa.metrics:
            cols += [hpa_column(metric.name), target_column(metric.name)]
        cols += [signal_column(n) for n in self.recorded]
        return cols

    # -- from the load thread ----------------------------------------------------------------------
    def on_sample(self, sample: Any) -> None:
        """llmprep.load's on_sample callback: runs in the load's event loop as each request ends."""
        if sample.error == "cancelled":
            return
        with self._lock:
            self.finished.append(Finished(time.time(), sample.e2e, sample.ttft, sample.error))

    # -- once a second ----------------------------------------------------------------------------
    def signals(self) -> dict[str, float]:
        """Each recorded signal averaged over the pods that have it (one query)."""
        if not self._signals_query:
            return {}
        try:
            samples = self.prometheus.query(self._signals_query)
        except Exception:
            self.query_errors += 1
            return {}
        sums: dict[str, list[float]] = {}
        for s in samples:
            sums.setdefault(s.labels.get("__name__", ""), []).append(s.value)
        return {name: sum(v) / len(v) for name, v in sums.items() if v}

    def record(
        self,
        now: float,
        *,
        level: float | None,
        in_flight: int,
        started: int,
        counts: Mapping[str, int],
        decision: Decision | None,
    ) -> dict[str, Any]:
        with self._lock:
            finished = list(self.finished)
        this_second = [f for f in finished if self._last < f.at <= now]
        window = [f for f in finished if now - self.window_s < f.at <= now and f.error is None]
        e2e = [f.e2e for f in window]
        ttft = [f.ttft for f in window if f.ttft is not None]
        span = max(now - self._last, 1e-9)
        row: dict[str, Any] = {
            "t": round(now - self.t0, 3),
            "time": round(now, 3),
            "load_level": level,
            "in_flight": in_flight,
            "started": started,
            "completed": len(this_second),
            "errors": sum(1 for f in this_second if f.error is not None),
            "ok_per_s": round(sum(1 for f in this_second if f.error is None) / span, 3),
            "e2e_p50_s": _percentile(e2e, 50),
            "e2e_p95_s": _percentile(e2e, 95),
            "ttft_p95_s": _percentile(ttft, 95),
            "replicas_desired": counts.get("desired"),
            "replicas_current": counts.get("current"),
            "replicas_ready": counts.get("ready"),
            "replicas_draining": counts.get("draining"),
            "hpa_reason": decision.reason if decision is not None else "",
        }
        usage = {p.metric: p.usage for p in decision.proposals} if decision is not None else {}
        for metric in self.hpa.metrics:
            row[hpa_column(metric.name)] = usage.get(metric.name)
            row[target_column(metric.name)] = metric.target
        signals = self.signals()
        for name in self.recorded:
            row[signal_column(name)] = signals.get(name)
        self._last = now
        self.rows.append(row)
        return row

    def all_finished(self) -> list[Finished]:
        with self._lock:
            return list(self.finished)

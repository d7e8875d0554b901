"""TensorRT-LLM iteration statistics as the engine backend's metric families (a common file of
llmprep's Triton Python models, copied beside each model that imports it by `llmprep repo`).

Imports nothing from llmprep: a model repository runs on its own inside tritonserver.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

# --------------------------------------------------------------------------- metrics

# The engine backend's metric families and the labels it sets (tensorrtllm_backend
# README "Triton Metrics" and its CI check ci/L0_backend_trtllm/test.sh, which greps
# nv_trt_llm_request_metrics{request_type="context|scheduled|max|active|waiting"},
# nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per|used|free|max|fraction"},
# nv_trt_llm_inflight_batcher_metrics{inflight_batcher_specific_metric=...},
# nv_trt_llm_general_metrics{general_type="iteration_counter|timestamp"}).
# Values come from one TensorRT-LLM IterationStats record: the executor's JSON form, the
# same keys `tensorrt_llm.LLM.get_stats()` returns (llmapi/llm.py, 1.2.1).
QUEUE_FAMILY = "llmprep_executor_queued_requests"
FAMILIES: dict[str, tuple[str, str, dict[str, Callable[[Mapping[str, Any]], float]]]] = {
    "nv_trt_llm_request_metrics": (
        "TRT LLM request metrics",
        "request_type",
        {
            "active": lambda s: s.get("numActiveRequests", 0),
            "max": lambda s: s.get("maxNumActiveRequests", 0),
            "scheduled": lambda s: s.get("inflightBatchingStats", {}).get("numScheduledRequests", 0),
            "context": lambda s: s.get("inflightBatchingStats", {}).get("numContextRequests", 0),
            # Upstream's "Waiting Requests" is active − scheduled: admitted, not run this
            # iteration (tensorrtllm_backend v0.19.0 inflight_batcher_llm/src/
            # model_instance_state.cc:1441-1442). It is not the executor's queue.
            "waiting": lambda s: max(
                0,
                s.get("numActiveRequests", 0) - s.get("inflightBatchingStats", {}).get("numScheduledRequests", 0),
            ),
        },
    ),
    # Our own family: the executor's queue (requests beyond maxNumActiveRequests, not yet
    # admitted: IterationStats.numQueuedRequests, TensorRT-LLM executorImpl.cpp
    # getCurrentIterationStats). No nv_trt_llm_* family exports it.
    QUEUE_FAMILY: (
        "llmprep: requests in the executor's queue, not yet admitted (IterationStats numQueuedRequests)",
        "request_type",
        {"queued": lambda s: s.get("numQueuedRequests", 0)},
    ),
    "nv_trt_llm_kv_cache_block_metrics": (
        "TRT LLM KV cache block metrics",
        "kv_cache_block_type",
        {
            "max": lambda s: s.get("kvCacheStats", {}).get("maxNumBlocks", 0),
            "free": lambda s: s.get("kvCacheStats", {}).get("freeNumBlocks", 0),
            "used": lambda s: s.get("kvCacheStats", {}).get("usedNumBlocks", 0),
            "tokens_per": lambda s: s.get("kvCacheStats", {}).get("tokensPerBlock", 0),
            "fraction": lambda s: _fraction(s.get("kvCacheStats", {})),
        },
    ),
    "nv_trt_llm_inflight_batcher_metrics": (
        "TRT LLM inflight_batcher-specific metrics",
        "inflight_batcher_specific_metric",
        {
            "paused_requests": lambda s: s.get("inflightBatchingStats", {}).get("numPausedRequests", 0),
            "micro_batch_id": lambda s: s.get("inflightBatchingStats", {}).get("microBatchId", 0),
            "generation_requests": lambda s: s.get("inflightBatchingStats", {}).get("numGenRequests", 0),
            "total_context_tokens": lambda s: s.get("inflightBatchingStats", {}).get("numCtxTokens", 0),
        },
    ),
    "nv_trt_llm_general_metrics": (
        "General TRT LLM metrics",
        "general_type",
        {
            "iteration_counter": lambda s: s.get("iter", 0),
            "timestamp": lambda s: _timestamp(s.get("timestamp")),
        },
    ),
}


def _fraction(kv: Mapping[str, Any]) -> float:
    # The backend reports used / max blocks.
    total = float(kv.get("maxNumBlocks", 0) or 0)
    return float(kv.get("usedNumBlocks", 0) or 0) / total if total > 0 else 0.0


def _timestamp(value: Any) -> float:
    """The record's timestamp in microseconds since the epoch (the backend's unit)."""
    if isinstance(value, (int, float)):
        return float(value)
    return time.time() * 1e6


def parse_stats(entries: Any) -> dict[str, Any] | None:
    """The newest IterationStats record out of what get_stats() returned (dicts or JSON strings)."""
    if entries is None:
        return None
    if isinstance(entries, (str, bytes, Mapping)):
        entries = [entries]
    latest: dict[str, Any] | None = None
    for entry in entries:
        record = json.loads(entry) if isinstance(entry, (str, bytes)) else entry
        if isinstance(record, Mapping) and (latest is None or record.get("iter", 0) >= latest.get("iter", 0)):
            latest = dict(record)
    return latest


def stats_to_gauges(stats: Mapping[str, Any]) -> dict[tuple[str, str, str], float]:
    """{(family, label key, label value): value} for one IterationStats record."""
    out: dict[tuple[str, str, str], float] = {}
    for family, (_, label, values) in FAMILIES.items():
        for name, get in values.items():
            out[(family, label, name)] = float(get(stats) or 0)
    return out


class MetricsExporter:
    """Publishes IterationStats through the Python backend's custom metrics API."""

    def __init__(self, pb_utils: Any, model: str, version: str, note: str = "") -> None:
        self.gauges: dict[tuple[str, str, str], Any] = {}
        # The families must outlive their metrics: Triton deletes a family's metrics with it.
        self.families: list[Any] = []
        self.last: dict[tuple[str, str, str], float] = {}
        for family, (description, label, values) in FAMILIES.items():
            metric_family = pb_utils.MetricFamily(
                name=family, description=description + note, kind=pb_utils.MetricFamily.GAUGE
            )
            self.families.append(metric_family)
            for name in values:
                self.gauges[(family, label, name)] = metric_family.Metric(
                    labels={"model": model, "version": version, label: name}
                )

    def publish(self, stats: Mapping[str, Any]) -> None:
        # Each set() is a round trip to the server: send only what changed, so the exporter
        # does not compete with request handling in this process.
        for key, value in stats_to_gauges(stats).items():
            if self.last.get(key) != value:
                self.gauges[key].set(value)
                self.last[key] = value


class StatsPoller:
    """Every `period` seconds, read `source()` (IterationStats records) and publish the newest."""

    def __init__(self, source: Callable[[], Any], publish: Callable[[Mapping[str, Any]], None], period: float) -> None:
        self.source, self.publish, self.period = source, publish, period
        self.stopped = threading.Event()
        self.last_error = ""
        self.thread = threading.Thread(target=self._run, name="llmprep-stats", daemon=True)

    def start(self) -> StatsPoller:
        self.thread.start()
        return self

    def poll_once(self) -> bool:
        stats = parse_stats(self.source())
        if stats is None:
            return False
        self.publish(stats)
        return True

    def _run(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                self.poll_once()
            except Exception as exc:  # a missing record must never stop the exporter
                self.last_error = repr(exc)

    def stop(self) -> None:
        self.stopped.set()


IN_FLIGHT_FAMILY = "llmprep_requests_in_flight"


class InFlight:
    """Requests in flight as this model counts them (our own gauge, llmprep_requests_in_flight).

    `enter()` where a request reaches the first of our models, `leave()` with its final response.
    The chart's llmprep:requests_in_flight sums the gauge over the pod's models, so an entry counted
    in one model and its exit in another add up.
    """

    def __init__(self, pb_utils: Any, model: str, version: str) -> None:
        # The family must outlive its metric: Triton deletes a family's metrics with it.
        self.family = pb_utils.MetricFamily(
            name=IN_FLIGHT_FAMILY,
            description="llmprep: requests this model has taken and not yet answered with their final response",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.gauge = self.family.Metric(labels={"model": model, "version": version})

    def enter(self) -> None:
        self.gauge.increment(1)

    def leave(self) -> None:
        self.gauge.increment(-1)


FIRST_RESPONSE_FAMILY = "llmprep_first_response_histogram_ms"
# Finer than Triton's default first-response buckets (100, 500, 2000, 5000 ms: src/metric_model_reporter.h,
# tests/data/triton_latency_metrics.csv): a p95 interpolated between 500 and 2000 cannot tell 0.6 s from 1.9 s.
FIRST_RESPONSE_BUCKETS_MS = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0)


class FirstResponse:
    """Time to a request's first response as this model sees it (our own histogram, ms).

    Triton core exports `nv_inference_first_response_histogram_ms` only from r24.11 with
    `--metrics-config histogram_latencies=true`; Triton 2.51 (r24.10), which the lab runs, has no
    such family. Our models observe the same interval (from when the request reached the model to
    its first response) under `llmprep_first_response_histogram_ms`, which the chart's
    `triton:first_response_ms:p95` reads where Triton's own family is absent.
    """

    def __init__(self, pb_utils: Any, model: str, version: str) -> None:
        # The family must outlive its metric: Triton deletes a family's metrics with it.
        self.family = pb_utils.MetricFamily(
            name=FIRST_RESPONSE_FAMILY,
            description="llmprep: milliseconds from a request reaching this model to its first response",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.histogram = self.family.Metric(
            labels={"model": model, "version": version}, buckets=list(FIRST_RESPONSE_BUCKETS_MS)
        )

    def observe(self, started_ns: int, now_ns: int | None = None) -> None:
        """Record one request whose first response goes out now (`started_ns`, `now_ns`: one clock, monotonic by default)."""
        end = time.monotonic_ns() if now_ns is None else now_ns
        self.histogram.observe(max(0.0, (end - started_ns) / 1e6))


class Passage:
    """One request through one of our models: in flight from creation to `finish()`, its first response timed once.

    `respond()` where a response carrying data leaves (the first call observes `first`), `finish()` on
    every way out (final response, error, cancellation): both are idempotent, so a model calls them on
    each path without counting twice. Either counter may be None (a model that counts only one).
    """

    def __init__(self, in_flight: InFlight | None, first: FirstResponse | None, started_ns: int | None = None) -> None:
        self.in_flight, self.first = in_flight, first
        self.started_ns = time.monotonic_ns() if started_ns is None else started_ns
        self.responded = self.finished = False
        self.lock = threading.Lock()
        if in_flight is not None:
            in_flight.enter()

    def respond(self) -> None:
        with self.lock:
            first, self.responded = not self.responded, True
        if first and self.first is not None:
            self.first.observe(self.started_ns)

    def finish(self) -> None:
        with self.lock:
            last, self.finished = not self.finished, True
        if last and self.in_flight is not None:
            self.in_flight.leave()

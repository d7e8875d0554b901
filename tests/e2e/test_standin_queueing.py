"""Where requests wait in the stand-in, per runtime, on a real tritonserver.

With hand-off (the real backends' behaviour) Triton's queue for `tensorrt_llm` stays flat
(nv_inference_pending_request_count) while requests wait inside the engine: beyond the maximum
active, in the executor's queue (our own llmprep_executor_queued_requests); admitted but short of
KV blocks, as upstream's nv_trt_llm_request_metrics{request_type="waiting"} (active − scheduled).
With `queueInTriton` they wait in Triton's queue. The tests count requests in each queue; the
share of time spent in Triton's queue is measured by bench.timed_tests (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from bench.timed_tests import record
from llmprep.tinytok import write_tiny_tokenizer
from tests.e2e.conftest import Server, grpc_stream, launch, metric, running, text_inputs

pytestmark = pytest.mark.slow

# An engine overloaded 4x: 8 clients, 2 in flight; slow steps so fixed per-request overheads stay small.
SLOW = {"decodeMsPerStep": 60, "prefillMsPerToken": 0, "maxInFlight": 2}
# The KV cache binds: one block per token and too few blocks for two sequences at once,
# while four may be active.
KV_BOUND = {"decodeMsPerStep": 60, "prefillMsPerToken": 0, "maxInFlight": 4, "tokensPerBlock": 1, "kvCacheBlocks": 12}
WATCHED = {
    "active": ("nv_trt_llm_request_metrics", {"request_type": "active"}),
    "waiting": ("nv_trt_llm_request_metrics", {"request_type": "waiting"}),
    "queued": ("llmprep_executor_queued_requests", {"request_type": "queued"}),
    "pending": ("nv_inference_pending_request_count", {"model": "tensorrt_llm"}),  # Triton's own queue
}


CLIENTS = 8


def overload(server: Server, clients: int = CLIENTS, max_tokens: int = 8) -> tuple[dict[str, float], float]:
    """N concurrent streaming requests; returns (largest value seen per WATCHED gauge, total client latency in µs).

    One request first, alone: a model's first execute() is slow (imports, first tensors), and
    requests that arrive meanwhile wait in Triton's queue whatever the model does later.
    """
    model, kind = ("ensemble", "ensemble") if server.runtime == "engine" else ("tensorrt_llm", "llmapi")
    assert len(grpc_stream(server, model, text_inputs(kind, max_tokens, stream=True))) == max_tokens
    latencies: list[float] = []
    seen = {name: 0.0 for name in WATCHED}
    done = threading.Event()

    def one() -> None:
        started = time.perf_counter()
        chunks = grpc_stream(server, model, text_inputs(kind, max_tokens, stream=True))
        assert len(chunks) == max_tokens
        latencies.append((time.perf_counter() - started) * 1e6)

    def watch() -> None:
        while not done.is_set():
            try:
                text = server.metrics()
                for name, (family, labels) in WATCHED.items():
                    seen[name] = max(seen[name], metric(text, family, **labels))
            except OSError:
                pass  # a scrape that failed under load counts as no sample
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    watcher.join()
    assert len(latencies) == clients
    return seen, sum(latencies)


def record_shares(server: Server, mode: str, before: str, latency_us: float) -> None:
    """Triton's queue and compute time for `tensorrt_llm` over this overload, as shares of what clients waited."""
    after = server.metrics()

    def spent(family: str) -> float:
        return metric(after, family, model="tensorrt_llm") - metric(before, family, model="tensorrt_llm")

    record(
        "standin_queue",
        runtime=server.runtime,
        mode=mode,
        queue_share=spent("nv_inference_queue_duration_us") / latency_us,
        compute_share=spent("nv_inference_compute_infer_duration_us") / latency_us,
    )


@pytest.fixture(scope="module")
def slow_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, bool | str], Server]]:
    tmp = tmp_path_factory.mktemp("queueing")
    tokenizer = write_tiny_tokenizer(tmp / "tokenizer")
    started: dict[tuple[str, bool | str], Server] = {
        (runtime, queue_in_triton): launch(tmp, tokenizer, runtime, **SLOW, queueInTriton=queue_in_triton)
        for runtime in ("engine", "pytorch")
        for queue_in_triton in (False, True)
    }
    started.update({(runtime, "kv"): launch(tmp, tokenizer, runtime, **KV_BOUND) for runtime in ("engine", "pytorch")})
    with running(started) as servers:
        yield servers


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_hand_off_keeps_tritons_queue_flat_while_requests_wait_in_the_engine(
    slow_servers: dict[tuple[str, bool | str], Server], runtime: str
) -> None:
    server = slow_servers[(runtime, False)]
    before = server.metrics()
    seen, latency_us = overload(server)
    record_shares(server, "hand-off", before, latency_us)
    backlog = CLIENTS - SLOW["maxInFlight"]
    # The backlog waits in the engine's queue; Triton's holds at most a request being handed over.
    assert seen["queued"] >= backlog // 2, seen
    assert seen["pending"] <= 1, seen


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_queue_in_triton_makes_requests_wait_in_tritons_queue_under_overload(
    slow_servers: dict[tuple[str, bool | str], Server], runtime: str
) -> None:
    server = slow_servers[(runtime, True)]
    before = server.metrics()
    seen, latency_us = overload(server)
    record_shares(server, "queueInTriton", before, latency_us)
    # execute() holds its requests until they finish: the later ones wait in Triton's own queue.
    assert seen["pending"] >= (CLIENTS - SLOW["maxInFlight"]) // 2, seen


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_far_above_the_batch_with_ample_kv_active_is_the_maximum_and_waiting_stays_zero(
    slow_servers: dict[tuple[str, bool | str], Server], runtime: str
) -> None:
    seen, _ = overload(slow_servers[(runtime, False)])
    assert seen["active"] == SLOW["maxInFlight"]
    assert seen["waiting"] == 0
    assert seen["queued"] >= 1  # the backlog shows only under our own name


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_when_the_kv_cache_binds_admitted_requests_show_as_waiting(
    slow_servers: dict[tuple[str, bool | str], Server], runtime: str
) -> None:
    seen, _ = overload(slow_servers[(runtime, "kv")])
    assert seen["active"] == KV_BOUND["maxInFlight"]
    assert seen["waiting"] >= 1

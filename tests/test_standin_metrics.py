"""The stand-in engine's counters mean what the real backend's do (tests/data/backend_metrics.csv)."""

from __future__ import annotations

import csv
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = list(csv.DictReader((ROOT / "tests" / "data" / "backend_metrics.csv").open()))


def load_common() -> types.ModuleType:
    """The common/ files (stats and stand-in engine), each importable by its own name, in one module."""
    combined = types.ModuleType("llmprep_common")
    for name in ("llmprep_models", "llmprep_stats", "llmprep_standin"):
        spec = importlib.util.spec_from_file_location(name, ROOT / "llmprep" / "templates" / "common" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        combined.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return combined


def lookup(stats: Mapping[str, Any], key: str) -> float:
    value: Any = stats
    for part in key.split("."):
        value = value[part]
    return float(value)


def expected(stats: Mapping[str, Any], stats_key: str) -> float:
    # A row's stats_key is one IterationStats key or "a - b" (as the backend computes waiting).
    if " - " in stats_key:
        left, right = stats_key.split(" - ")
        return lookup(stats, left) - lookup(stats, right)
    return lookup(stats, stats_key)


# Every value distinct, active != scheduled and queued != waiting, so a wrong mapping shows.
RECORD = {
    "iter": 7,
    "numActiveRequests": 8,
    "numQueuedRequests": 13,
    "maxNumActiveRequests": 8,
    "kvCacheStats": {"maxNumBlocks": 100, "freeNumBlocks": 30, "usedNumBlocks": 70, "tokensPerBlock": 16},
    "inflightBatchingStats": {
        "numScheduledRequests": 5,
        "numContextRequests": 2,
        "numGenRequests": 3,
        "numPausedRequests": 1,
        "numCtxTokens": 240,
        "microBatchId": 0,
    },
}


@pytest.mark.parametrize("row", TABLE, ids=[f"{r['family']}-{r['label']}" for r in TABLE])
def test_each_exported_gauge_counts_what_the_backend_table_says(row: dict[str, str]) -> None:
    common = load_common()
    family, label_key, _ = common.FAMILIES[row["family"]]
    gauges = common.stats_to_gauges(RECORD)
    assert gauges[(row["family"], label_key, row["label"])] == expected(RECORD, row["stats_key"])


def test_no_engine_backend_family_exports_the_executor_queue() -> None:
    common = load_common()
    gauges = common.stats_to_gauges({**RECORD, "numQueuedRequests": 999})
    nv = [v for (family, _, _), v in gauges.items() if family.startswith("nv_trt_llm_")]
    assert 999 not in nv and gauges[(common.QUEUE_FAMILY, "request_type", "queued")] == 999


def run_engine(common: types.ModuleType, cost: Any, jobs: int, prompt: int, max_tokens: int) -> dict[str, Any]:
    """Stats of the first iteration with every job submitted, the step held open."""
    ready = threading.Event()
    gate = threading.Event()

    def step(batch: list[Any], new: list[Any]) -> list[int]:
        ready.set()
        gate.wait(10)
        return [0] * len(batch)

    engine = common.StandinEngine(cost, step)
    submitted: Callable[[], Any] = lambda: common.Job(  # noqa: E731
        input_ids=list(range(1, prompt + 1)), max_tokens=max_tokens, end_id=None, emit=lambda *a: None
    )
    # Submit while the first iteration is held, so the next one sees every job.
    first = engine.submit(submitted())
    assert ready.wait(10)
    rest = [engine.submit(submitted()) for _ in range(jobs - 1)]
    ready.clear()
    gate.set()
    gate.clear()
    try:
        assert ready.wait(10)
        stats: dict[str, Any] = engine.stats()
    finally:
        gate.set()
        for job in [first, *rest]:
            job.done.wait(20)
        engine.stop()
    return stats


def test_far_above_the_batch_with_ample_kv_active_is_the_maximum_and_nothing_waits() -> None:
    common = load_common()
    cost = common.CostModel(max_in_flight=4, kv_cache_blocks=1000, tokens_per_block=16, decode_ms_per_step=0)
    stats = run_engine(common, cost, jobs=12, prompt=8, max_tokens=4)
    gauges = common.stats_to_gauges(stats)
    assert gauges[("nv_trt_llm_request_metrics", "request_type", "active")] == 4
    assert gauges[("nv_trt_llm_request_metrics", "request_type", "waiting")] == 0
    assert gauges[(common.QUEUE_FAMILY, "request_type", "queued")] == 8


def test_when_the_kv_cache_binds_admitted_requests_wait_unscheduled() -> None:
    common = load_common()
    # Each sequence needs 64 tokens = 4 blocks of 16; 8 blocks hold two of the four admitted.
    cost = common.CostModel(max_in_flight=4, kv_cache_blocks=8, tokens_per_block=16, decode_ms_per_step=0)
    stats = run_engine(common, cost, jobs=6, prompt=32, max_tokens=32)
    gauges = common.stats_to_gauges(stats)
    assert gauges[("nv_trt_llm_request_metrics", "request_type", "active")] == 4
    assert gauges[("nv_trt_llm_request_metrics", "request_type", "scheduled")] == 2
    assert gauges[("nv_trt_llm_request_metrics", "request_type", "waiting")] == 2
    assert gauges[(common.QUEUE_FAMILY, "request_type", "queued")] == 2


def test_when_the_token_budget_binds_new_contexts_wait_for_a_later_iteration() -> None:
    common = load_common()
    # One running request plus prompts of 40 tokens under a budget of 100: two new contexts fit.
    cost = common.CostModel(
        max_in_flight=8, kv_cache_blocks=1000, tokens_per_block=16, decode_ms_per_step=0, max_num_tokens=100
    )
    stats = run_engine(common, cost, jobs=5, prompt=40, max_tokens=50)
    ibs = stats["inflightBatchingStats"]
    assert (stats["numActiveRequests"], ibs["numScheduledRequests"], ibs["numContextRequests"]) == (5, 3, 2)
    assert ibs["numCtxTokens"] == 80


def test_with_chunked_context_a_context_over_the_budget_runs_the_part_that_fits_in_whole_blocks() -> None:
    common = load_common()
    # As the budget test above, chunking on: the third new prompt gets 16 of the 19 tokens left
    # (one block of 16), the fourth none (TensorRT-LLM microBatchScheduler.cpp, FCFS chunking).
    cost = common.CostModel(
        max_in_flight=8,
        kv_cache_blocks=1000,
        tokens_per_block=16,
        decode_ms_per_step=0,
        max_num_tokens=100,
        chunked_context=True,
    )
    stats = run_engine(common, cost, jobs=5, prompt=40, max_tokens=50)
    ibs = stats["inflightBatchingStats"]
    assert (stats["numActiveRequests"], ibs["numScheduledRequests"], ibs["numContextRequests"]) == (5, 4, 3)
    assert ibs["numCtxTokens"] == 96
    gauges = common.stats_to_gauges(stats)
    assert gauges[("nv_trt_llm_request_metrics", "request_type", "waiting")] == 1


def idle_engine(common: types.ModuleType, config: dict[str, Any]) -> Any:
    """An engine built from config.pbtxt parameters whose worker is stopped: schedule() is called by hand."""
    engine = common.standin_engine({"parameters": {k: {"string_value": v} for k, v in config.items()}}, lambda: 100)
    engine.stop()
    return engine


@pytest.mark.parametrize(("chunked", "chunks"), [("true", [96, 96, 96, 12]), ("false", [300])])
def test_a_lone_long_prompt_is_chunked_only_when_enable_chunked_context_is_set(chunked: str, chunks: list[int]) -> None:
    common = load_common()
    engine = idle_engine(
        common,
        {
            "enable_chunked_context": chunked,
            "standin_max_num_tokens": "100",
            "standin_tokens_per_block": "16",
            "standin_kv_cache_blocks": "100",
        },
    )
    job = common.Job(input_ids=list(range(300)), max_tokens=4, end_id=None, emit=lambda *a: None)
    engine.waiting.append(job)
    seen = []
    for _ in chunks:
        batch, new = engine.schedule()
        seen.append(engine.chunk_tokens)
        # Only the chunk that completes the prompt yields a token.
        assert (job in batch) == (job.context_pos == 300)
    assert seen == chunks and job.context_pos == 300


def test_without_chunked_context_a_second_prompt_over_the_budget_left_waits_whole() -> None:
    common = load_common()
    engine = idle_engine(
        common, {"standin_max_num_tokens": "100", "standin_tokens_per_block": "16", "standin_kv_cache_blocks": "100"}
    )
    jobs = [common.Job(input_ids=list(range(60)), max_tokens=4, end_id=None, emit=lambda *a: None) for _ in range(2)]
    engine.waiting.extend(jobs)
    batch, new = engine.schedule()
    assert [j.context_pos for j in jobs] == [60, 0] and engine.partial == [] and len(batch) == 1

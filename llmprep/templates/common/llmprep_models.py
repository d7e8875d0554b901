"""Helpers shared by llmprep's Triton Python models (copied beside each model.py by `llmprep repo`).

Holds: building output tensors that work with numpy 1.x and 2.x, streaming detokenisation,
the stand-in engine (a cost-model in-flight batcher) and the export of TensorRT-LLM
iteration statistics under the engine backend's metric families.

Imports nothing from llmprep: a model repository runs on its own inside tritonserver.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- tensors


def param(model_config: Mapping[str, Any], key: str, default: str = "") -> str:
    """A string parameter of config.pbtxt; unfilled `${...}` values count as unset (upstream habit)."""
    value = model_config.get("parameters", {}).get(key, {}).get("string_value", default)
    if value is None or value.startswith("${"):
        return default
    return str(value)


def flag(value: str, default: bool = False) -> bool:
    if value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def input_array(pb_utils: Any, request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def scalar(pb_utils: Any, request: Any, name: str, default: Any = None) -> Any:
    array = input_array(pb_utils, request, name)
    if array is None or array.size == 0:
        return default
    value = array.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value.item() if hasattr(value, "item") else value


def strings(pb_utils: Any, request: Any, name: str) -> list[str]:
    array = input_array(pb_utils, request, name)
    if array is None:
        return []
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def make_tensor(pb_utils: Any, name: str, array: np.ndarray) -> Any:
    """An output tensor that reads back intact under numpy 1.x and 2.x.

    `pb_utils.Tensor(name, ndarray)` works when the stub loads the numpy it was built
    against (llmprep.serve.triton puts the virtual environment first for that). With numpy 2.x
    on the GPU image it fails with "output tensor shape does not match size of output"
    (shared TOOLS.md); there, numeric arrays go through PyTorch's DLPack export, which
    works. Passing a numpy array to from_dlpack directly crashes the stub ("PyCapsule_
    GetPointer called with incorrect name", seen with Triton 2.51), so never do that.
    """
    array = np.ascontiguousarray(array)
    if _NUMPY_2 and array.dtype not in (np.object_, np.bool_) and array.size > 0:
        torch = _torch()
        if torch is not None:
            return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(torch.from_numpy(array)))
    return pb_utils.Tensor(name, array)


_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
_TORCH: list[Any] = []


def _torch() -> Any:
    if not _TORCH:
        try:
            import torch
        except ImportError:
            torch = None
        _TORCH.append(torch)
    return _TORCH[0]


def text_array(texts: Iterable[str], shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    return array.reshape(shape) if shape is not None else array


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(path: str) -> Any:
    """transformers.AutoTokenizer from a local folder (never the network)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class StreamingDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a character.

    Decoding one token at a time breaks multi-byte characters and loses the spaces some
    tokenizers add between tokens; so decode a short window of recent tokens and emit
    only what the new tokens added, holding back while the text ends in an incomplete
    UTF-8 sequence (U+FFFD). The same idea as the incremental detokenisers of Hugging
    Face text-generation-inference and vLLM.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.tokens: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=self.skip))

    def add(self, new_tokens: Iterable[int]) -> str:
        self.tokens.extend(int(t) for t in new_tokens)
        prefix = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        full = self._decode(self.tokens[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            delta = full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.tokens)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held back, at the end of the sequence."""
        prefix = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        full = self._decode(self.tokens[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.tokens)
        return full[len(prefix) :] if len(full) > len(prefix) else ""


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


# --------------------------------------------------------------------------- stand-in engine


@dataclass
class Job:
    """One request inside the stand-in engine."""

    input_ids: list[int]
    max_tokens: int
    end_id: int | None
    emit: Callable[[Job, list[int], bool], None]
    cancelled: Callable[[], bool] = lambda: False
    seed: int = 0
    generated: list[int] = field(default_factory=list)
    arrival_ns: int = field(default_factory=time.time_ns)
    first_scheduled_ns: int = 0
    first_token_ns: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def next_token(self) -> int:
        # Timing mode writes real text without a model: the prompt's own tokens, cycled
        # from an offset chosen by the seed.
        ids = self.input_ids or [0]
        return int(ids[(len(self.generated) + self.seed) % len(ids)])


@dataclass(frozen=True)
class CostModel:
    prefill_ms_per_token: float = 0.2
    decode_ms_per_step: float = 20.0
    max_in_flight: int = 4
    tokens_per_block: int = 64
    kv_cache_blocks: int = 256
    max_num_tokens: int = 8192  # per-iteration token budget: context tokens + one per generation request


class StandinEngine:
    """A cost-model in-flight batcher: the stand-in for TensorRT-LLM's executor.

    Behaviour, with sources:
    - Requests are enqueued and a worker thread serves them; the caller returns at once.
      The TensorRT-LLM backend's execute() enqueues into the executor and returns
      (tensorrtllm_backend inflight_batcher_llm/src/model_instance_state.cc; issues #49,
      #238, #284), and upstream's llmapi model schedules generate_async and returns
      (triton_backend/all_models/llmapi/tensorrt_llm/1/model.py).
    - At most `max_in_flight` requests are active (maxNumActiveRequests: max batch size ×
      micro-batches, 1 here); a queued request is admitted when active < max. The rest wait
      in the executor's queue: numQueuedRequests (TensorRT-LLM executorImpl.cpp
      getCurrentIterationStats), exported only as llmprep_executor_queued_requests.
    - Each iteration schedules active requests: those already running continue; a new one
      starts only when KV-cache blocks for its whole sequence (prompt + max tokens) are free
      (GUARANTEED_NO_EVICT capacity scheduler) and its prompt fits the token budget
      max_num_tokens with the generation requests (micro-batch scheduler). An active request
      not scheduled counts as waiting = active − scheduled (tensorrtllm_backend v0.19.0
      model_instance_state.cc:1441). Chunked context is not modelled.
    - Each iteration runs the context phase of newly admitted requests (cost per prompt
      token) and one generation step for every active request (one shared step cost):
      in-flight batching, where a step's cost is shared by the batch. The context phase
      yields the first token (TensorRT-LLM docs, "in-flight batching").
    """

    def __init__(self, cost: CostModel, step: Callable[[list[Job], list[Job]], list[int]] | None = None) -> None:
        self.cost = cost
        self.step_fn = step
        self.waiting: collections.deque[Job] = collections.deque()
        self.active: list[Job] = []
        self.lock = threading.Condition()
        self.iteration = 0
        self.last_scheduled = 0
        self.last_context = 0
        self.last_context_tokens = 0
        self.completed = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="llmprep-standin-engine", daemon=True)
        self.thread.start()

    # -- public

    def submit(self, job: Job) -> Job:
        with self.lock:
            self.waiting.append(job)
            self.lock.notify_all()
        return job

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self.lock.notify_all()
        self.thread.join(timeout=5)

    def blocks_for(self, tokens: int) -> int:
        return max(1, math.ceil(tokens / self.cost.tokens_per_block))

    def stats(self) -> dict[str, Any]:
        """An IterationStats record with the keys TensorRT-LLM's executor uses."""
        with self.lock:
            used = sum(self.blocks_for(len(j.input_ids) + len(j.generated)) for j in self.active if j.first_scheduled_ns)
            active = len(self.active)
            return {
                "iter": self.iteration,
                "timestamp": time.time() * 1e6,
                "numActiveRequests": active,
                "numQueuedRequests": len(self.waiting),  # executor queue, not admitted
                "numCompletedRequests": self.completed,
                "maxNumActiveRequests": self.cost.max_in_flight,
                "kvCacheStats": {
                    "maxNumBlocks": self.cost.kv_cache_blocks,
                    "freeNumBlocks": max(0, self.cost.kv_cache_blocks - used),
                    "usedNumBlocks": used,
                    "tokensPerBlock": self.cost.tokens_per_block,
                    "allocTotalBlocks": used,
                },
                "inflightBatchingStats": {
                    "numScheduledRequests": self.last_scheduled,
                    "numContextRequests": self.last_context,
                    "numGenRequests": max(0, self.last_scheduled - self.last_context),
                    "numPausedRequests": 0,
                    "numCtxTokens": self.last_context_tokens,
                    "microBatchId": 0,
                },
                "llmprepStandin": True,
            }

    # -- the loop

    def _reserved(self) -> int:
        return sum(self.blocks_for(len(j.input_ids) + j.max_tokens) for j in self.active if j.first_scheduled_ns)

    def _admit(self) -> None:
        # Admission: the executor moves queued requests into the active set while
        # active < maxNumActiveRequests; KV blocks are not checked here.
        while self.waiting and len(self.active) < self.cost.max_in_flight:
            job = self.waiting.popleft()
            if job.cancelled():
                job.done.set()
                continue
            self.active.append(job)

    def schedule(self) -> tuple[list[Job], list[Job]]:
        """(scheduled, newly started) for one iteration; call with the lock held."""
        self._admit()
        running = [j for j in self.active if j.first_scheduled_ns]
        budget = self.cost.max_num_tokens - len(running)  # one token per generation request
        reserved = self._reserved()
        new: list[Job] = []
        for job in self.active:
            if job.first_scheduled_ns:
                continue
            need = self.blocks_for(len(job.input_ids) + job.max_tokens)
            started = bool(running or new)
            # Capacity scheduler: blocks for the whole sequence must be free (a lone request
            # always runs, so an oversize one cannot stall the engine).
            if started and reserved + need > self.cost.kv_cache_blocks:
                break
            # Micro-batch scheduler: the context phase must fit the iteration's token budget.
            if started and len(job.input_ids) > budget:
                break
            reserved += need
            budget -= len(job.input_ids)
            job.first_scheduled_ns = time.time_ns()
            new.append(job)
        return running + new, new

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.stopped and not self.waiting and not self.active:
                    self.lock.wait()
                if self.stopped:
                    return
                batch, new = self.schedule()
                self.iteration += 1
                self.last_scheduled = len(batch)
                self.last_context = len(new)
                self.last_context_tokens = sum(len(j.input_ids) for j in new)
            started = time.perf_counter()
            if self.step_fn is not None:
                tokens = self.step_fn(batch, new)
            else:
                tokens = [job.next_token() for job in batch]
                cost_s = (self.cost.decode_ms_per_step + self.cost.prefill_ms_per_token * self.last_context_tokens) / 1e3
                remaining = cost_s - (time.perf_counter() - started)
                if remaining > 0:
                    time.sleep(remaining)
            finished: list[Job] = []
            now = time.time_ns()
            for job, token in zip(batch, tokens, strict=True):
                if job.cancelled():
                    finished.append(job)
                    continue
                job.generated.append(int(token))
                if not job.first_token_ns:
                    job.first_token_ns = now
                final = len(job.generated) >= job.max_tokens or (job.end_id is not None and token == job.end_id)
                try:
                    job.emit(job, [int(token)], final)
                except Exception:
                    final = True
                if final:
                    finished.append(job)
            with self.lock:
                for job in finished:
                    self.active.remove(job)
                    self.completed += 1
                    job.done.set()


def standin_engine(model_config: Mapping[str, Any], vocab_size: Callable[[], int]) -> StandinEngine:
    """The stand-in engine that a model's config.pbtxt parameters describe: its cost model and, with
    `standin_compute` torch, a real transformer of `standin_torch_width` × `standin_torch_layers`."""
    cost = CostModel(
        prefill_ms_per_token=float(param(model_config, "standin_prefill_ms_per_token", "0.2")),
        decode_ms_per_step=float(param(model_config, "standin_decode_ms_per_step", "20")),
        max_in_flight=int(param(model_config, "standin_max_in_flight", "4")),
        tokens_per_block=int(param(model_config, "standin_tokens_per_block", "64")),
        kv_cache_blocks=int(param(model_config, "standin_kv_cache_blocks", "256")),
        max_num_tokens=int(param(model_config, "standin_max_num_tokens", "8192")),
    )
    step = None
    if param(model_config, "standin_compute", "timing") == "torch":
        step = torch_step(
            vocab_size(),
            width=int(param(model_config, "standin_torch_width", "256")),
            layers=int(param(model_config, "standin_torch_layers", "4")),
        )
    return StandinEngine(cost, step)


def torch_step(
    vocab_size: int, width: int = 256, layers: int = 4, device: str | None = None
) -> Callable[[list[Job], list[Job]], list[int]]:
    """A step function that runs a real small transformer (random weights) with PyTorch.

    Imported lazily: PyTorch is optional. Each call runs one forward pass over the
    active requests' recent tokens and picks each next token greedily, so a GPU does
    real attention and matmul work per generated token.
    """
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise RuntimeError(
            "standin compute=torch needs PyTorch in the server's Python; install torch or use compute=timing"
        ) from None

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    window = 64
    heads = 4 if width % 4 == 0 else 1
    # Built on the device: initialising a large model on the CPU first would take longer than its start-up.
    embed = torch.nn.Embedding(vocab_size, width, device=dev)
    layer = torch.nn.TransformerEncoderLayer(
        width, nhead=heads, dim_feedforward=4 * width, batch_first=True, device=dev
    )
    body = torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).eval()
    head = torch.nn.Linear(width, vocab_size, device=dev)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(window).to(dev)

    @torch.no_grad()
    def step(batch: list[Job], new: list[Job]) -> list[int]:
        rows = []
        for job in batch:
            ids = (job.input_ids + job.generated)[-window:]
            rows.append([0] * (window - len(ids)) + [i % vocab_size for i in ids])
        x = torch.tensor(rows, device=dev)
        logits = head(body(embed(x), mask=mask, is_causal=True)[:, -1])
        out = logits.argmax(-1).tolist()
        if dev == "cuda":
            torch.cuda.synchronize()
        return [int(t) for t in out]

    return step

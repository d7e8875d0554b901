"""The stand-in engine: a cost-model in-flight batcher standing in for TensorRT-LLM's executor, and
`StandinModel`, the TritonPythonModel body both stand-in models share (a common file of llmprep's
Triton Python models, copied beside each stand-in model by `llmprep repo`).

Imports nothing from llmprep: a model repository runs on its own inside tritonserver.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmprep_models import flag, param

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
    context_pos: int = 0  # prompt tokens whose context phase has run (chunked context: in parts)
    first_token_ns: int = 0
    last_token_ns: int = 0
    context_blocks: int = 0  # KV blocks the context took when first scheduled (perf metrics' alloc counts)
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
    chunked_context: bool = False  # the backend's enable_chunked_context


class StandinEngine:
    """A cost-model in-flight batcher: the stand-in for TensorRT-LLM's executor.

    Behaviour, with sources:
    - Requests are enqueued and a worker thread serves them; the caller returns at once.
      The TensorRT-LLM backend's execute() enqueues into the executor and returns
      (tensorrtllm_backend inflight_batcher_llm/src/model_instance_state.cc; issues #49,
      #238, #284), and upstream's llmapi model schedules generate_async and returns
      (triton_backend/all_models/llmapi/tensorrt_llm/1/model.py).
    - At most `max_in_flight` requests are active: the executor caps its active set at
      maxNumActiveRequests = getMaxNumSequences() (TensorRT-LLM executorImpl.cpp:460, commit
      b35ac1b6), which is max batch size × pipeline-parallel size (trtGptModel.h:119, commit
      c8c6df08; 1 here), and dequeues at most max − active queued requests per iteration
      (executorImpl.cpp:1350-1351). The rest wait in the executor's queue: numQueuedRequests
      (executorImpl.cpp getCurrentIterationStats), exported only as llmprep_executor_queued_requests.
    - Each iteration schedules active requests: those already generating continue and keep the
      blocks they need to finish reserved; a new one starts only when the blocks for its whole
      sequence (prompt + max tokens) are free beyond those, and the first that does not fit stops
      the pass (GUARANTEED_NO_EVICT: TensorRT-LLM capacityScheduler.cpp:222-225, 250-253, 301,
      320-324 at commit cf6abc45; free minus remaining-to-completion in scheduledBlocksManager.h:36,
      40-44, 48-55 at 1ce9149b). Its prompt must also fit the token budget max_num_tokens with the
      generation requests (micro-batch scheduler). An active request not scheduled counts as
      waiting = active − scheduled (tensorrtllm_backend v0.19.0 model_instance_state.cc:1441).
    - Chunked context (`enable_chunked_context`), as TensorRT-LLM's micro-batch scheduler
      (cpp/tensorrt_llm/batch_manager/microBatchScheduler.cpp, MicroBatchScheduler::operator()
      and the first-come-first-served setCtxRequestsChunkSize; default chunkUnitSize is
      tokensPerBlock): off, a context longer than the token budget left waits for a later
      iteration; on, it is scheduled with the part that fits, cut to whole chunk units when cut,
      and continues next iteration; only its last chunk yields the first token.
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
        self.partial: list[Job] = []
        self.chunk_tokens = 0
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
            used = sum(self.blocks_for(j.context_pos + len(j.generated)) for j in self.active if j.first_scheduled_ns)
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
        # active < maxNumActiveRequests (executorImpl.cpp:1350-1351, b35ac1b6); KV blocks are not
        # checked here.
        while self.waiting and len(self.active) < self.cost.max_in_flight:
            job = self.waiting.popleft()
            if job.cancelled():
                job.done.set()
                continue
            self.active.append(job)

    def schedule(self) -> tuple[list[Job], list[Job]]:
        """(scheduled for a token, whose context completes now) for one iteration; call with the lock held.

        Context chunks that do not complete their prompt are in `self.partial` (scheduled, no token yet);
        `self.chunk_tokens` is the iteration's context tokens.
        """
        self._admit()
        running = [j for j in self.active if j.first_scheduled_ns and j.context_pos >= len(j.input_ids)]
        budget = self.cost.max_num_tokens - len(running)  # one token per generation request
        reserved = self._reserved()
        new: list[Job] = []
        self.partial, self.chunk_tokens = [], 0
        generating = {id(j) for j in running}
        for job in self.active:
            if id(job) in generating:
                continue
            started = bool(running or new or self.partial)
            if not job.first_scheduled_ns:
                need = self.blocks_for(len(job.input_ids) + job.max_tokens)
                # Capacity scheduler: blocks for the whole sequence must be free beyond those the
                # running requests keep (capacityScheduler.cpp:301, 320-324 at cf6abc45; a lone
                # request always runs, so an oversize one cannot stall the engine).
                if started and reserved + need > self.cost.kv_cache_blocks:
                    break
                reserved += need
            remaining = len(job.input_ids) - job.context_pos
            chunk = remaining
            if remaining > budget and self.cost.chunked_context:
                # The part that fits, cut to whole chunk units (tokensPerBlock).
                unit = self.cost.tokens_per_block
                chunk = max(0, budget) // unit * unit
                if chunk == 0:
                    if started:
                        break
                    chunk = min(remaining, max(1, budget))  # a lone request always progresses
            elif remaining > budget and started:
                break  # the micro-batch scheduler without chunking: the context waits whole
            budget -= chunk
            self.chunk_tokens += chunk
            job.context_pos += chunk
            if not job.first_scheduled_ns:
                job.first_scheduled_ns = time.time_ns()
                job.context_blocks = self.blocks_for(len(job.input_ids))  # KVCacheManager::addSequence
            (new if job.context_pos >= len(job.input_ids) else self.partial).append(job)
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
                self.last_scheduled = len(batch) + len(self.partial)
                self.last_context = len(new) + len(self.partial)
                self.last_context_tokens = self.chunk_tokens
            started = time.perf_counter()
            if self.step_fn is not None:
                tokens = self.step_fn(batch, new) if batch else []
            else:
                tokens = [job.next_token() for job in batch]
                cost_s = (
                    self.cost.decode_ms_per_step + self.cost.prefill_ms_per_token * self.last_context_tokens
                ) / 1e3
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
                job.last_token_ns = now
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
        chunked_context=param(model_config, "enable_chunked_context", "false").strip().lower() == "true",
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


# --------------------------------------------------------------------------- the models' shared body


class StandinModel:
    """The TritonPythonModel body of both stand-in models: the engine, its stats export, execute, finalize.

    A model sets `pb_utils` to Triton's `triton_python_backend_utils` (this file imports nothing of
    Triton's, so the engine above loads alone in tests) and defines `_job(request, sender)` (or
    `_jobs`, one job per batch row) and `vocab_size(config)`; it may extend `configure(config, args)` (its own parameters, before the
    engine starts) and `admit(job)` (a job about to be submitted).
    """

    pb_utils: Any

    def initialize(self, args: dict) -> None:
        # Imported here, not at the top: the engine alone loads without the exporter (tests,
        # bench/gpu_run.py load this file by itself).
        from llmprep_stats import MetricsExporter, StatsPoller

        pb = self.pb_utils
        config = json.loads(args["model_config"])
        self.decoupled = pb.using_decoupled_model_transaction_policy(config)
        self.queue_in_triton = flag(param(config, "standin_queue_in_triton"), False)
        self.configure(config, args)
        self.engine = standin_engine(config, lambda: self.vocab_size(config))
        exporter = MetricsExporter(pb, args["model_name"], args["model_version"], " (emulated: llmprep stand-in)")
        period = float(param(config, "stats_check_period_ms", "100")) / 1e3
        self.poller = StatsPoller(self.engine.stats, exporter.publish, period).start()

    def configure(self, config: Mapping[str, Any], args: dict) -> None:
        """The model's own parameters, read before the engine starts."""

    def vocab_size(self, config: Mapping[str, Any]) -> int:
        """The vocabulary the torch step draws from (`standin_compute=torch`)."""
        raise NotImplementedError

    def _job(self, request: Any, sender: Any) -> Job:
        """The engine's job for one request, answering through `sender`; raise to fail the request alone."""
        raise NotImplementedError

    def _jobs(self, request: Any, sender: Any) -> list[Job]:
        """The engine's jobs for one request (one per batch row where a model splits rows); raise to fail it."""
        return [self._job(request, sender)]

    def admit(self, job: Job) -> None:
        """Called with each job before the engine gets it."""

    def execute(self, requests: list) -> None:
        pb = self.pb_utils
        jobs = []
        for request in requests:
            sender = request.get_response_sender()
            try:
                for job in self._jobs(request, sender):
                    self.admit(job)
                    jobs.append(self.engine.submit(job))
            except Exception as exc:  # a malformed request fails alone
                sender.send(
                    pb.InferenceResponse(error=pb.TritonError(str(exc))),
                    flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
        if self.queue_in_triton:
            for job in jobs:
                job.done.wait()
        return None

    def finalize(self) -> None:
        self.poller.stop()
        self.engine.stop()

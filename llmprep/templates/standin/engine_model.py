"""STAND-IN for TensorRT-LLM's `tensorrt_llm` model (inflight_batcher_llm layout). Not a real LLM.

Written by `llmprep repo --engine standin` for the lab and tests. Same inputs and outputs
as the engine backend's model (input_ids, input_lengths, request_output_len, end_id,
streaming, ... -> output_ids, sequence_length, ...), decoupled streaming included. Tokens
are timed by a cost model (prefill per prompt token, one decode step shared by the
batch, a maximum in flight; the rest wait inside the engine) or, with
`standin_compute=torch`, produced by a small random-weight transformer on PyTorch.

Where a request waits follows the real backend: execute() hands requests to the engine
and returns, so Triton's queue and compute counters for this model stay near zero while
the backlog shows in llmprep_executor_queued_requests (our own name: no nv_trt_llm_* family
exports the executor's queue) and in time to first token (tensorrtllm_backend issues #49, #238,
#284). nv_trt_llm_request_metrics{request_type="waiting"} means what upstream's does: active −
scheduled (admitted, not run this iteration: short of KV blocks or token budget). `standin_queue_in_triton=true` runs the opposite assumption:
execute() holds the requests until they finish, so later requests queue in Triton.

Requests are read as the backend reads them (tensorrtllm_backend v0.19.0, inflight_batcher_llm/src):
a batch of B input_ids rows becomes B engine requests, each cut to its input_lengths
(utils.cc:158-217, splitBatchInputsTensors); B > 1 or streaming on a model that is not decoupled
is refused (utils.cc:900-903, 905-908); every response of a split request carries its row as
batch_index, and only the last row's last response is final (model_instance_state.cc:1211-1219,
1369-1371); return_perf_metrics adds the per-request KV-cache, timing and draft outputs
(model_instance_state.cc:1255-1305).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import triton_python_backend_utils as pb_utils
from llmprep_models import flag, input_array, make_tensor, param, scalar
from llmprep_standin import Job, StandinModel
from llmprep_stats import FirstResponse

# The backend's refusals for a model deployed without the decoupled transaction policy
# (utils.cc:900-903 and 905-908, v0.19.0), in our words.
BATCH_NEEDS_DECOUPLED = (
    "tensorrt_llm: a request with more than one input_ids row (batch size > 1) needs the model "
    "deployed with the decoupled transaction policy"
)
STREAMING_NEEDS_DECOUPLED = (
    "tensorrt_llm: streaming is only possible when the model is deployed in decoupled mode; "
    "send streaming=false or deploy it decoupled"
)
FLAGS = ("return_log_probs", "return_num_input_tokens", "return_num_output_tokens", "return_perf_metrics")


def perf_outputs(job: Job) -> list:
    """The backend's return_perf_metrics outputs, each [1, 1] with its type (model_instance_state.cc:
    1255-1305, v0.19.0), from the stand-in's bookkeeping. Block counts are those of the context, as
    TensorRT-LLM counts them when the sequence is added to the KV cache (KVCacheManager::addSequence);
    no block reuse or speculative decoding is emulated, so reused blocks, draft counts and
    acceptance_rate are 0. Times are wall-clock ns (the stand-in's clock)."""
    ints = {
        "kv_cache_alloc_new_blocks": job.context_blocks,
        "kv_cache_reused_blocks": 0,
        "kv_cache_alloc_total_blocks": job.context_blocks,
        "total_accepted_draft_tokens": 0,
        "total_draft_tokens": 0,
    }
    times = {
        "arrival_time_ns": job.arrival_ns,
        "first_scheduled_time_ns": job.first_scheduled_ns,
        "first_token_time_ns": job.first_token_ns,
        "last_token_time_ns": job.last_token_ns,
    }
    out = [make_tensor(pb_utils, name, np.array([[value]], dtype=np.int32)) for name, value in ints.items()]
    out += [make_tensor(pb_utils, name, np.array([[value]], dtype=np.int64)) for name, value in times.items()]
    out.append(make_tensor(pb_utils, "acceptance_rate", np.zeros((1, 1), dtype=np.float32)))
    return out


class TritonPythonModel(StandinModel):
    """execute(), finalize() and the engine's start are StandinModel's; this model reads and writes token ids."""

    pb_utils = pb_utils

    def configure(self, config: dict, args: dict) -> None:
        self.exclude_input = flag(param(config, "exclude_input_in_output"), False)
        self.first_response = FirstResponse(pb_utils, args["model_name"], args["model_version"])

    def vocab_size(self, config: dict) -> int:
        return int(param(config, "standin_vocab_size", "32000"))

    @staticmethod
    def _column(request: object, name: str, rows: int) -> list | None:
        """One value per row of an input reshaped to a scalar per request (or the one value for all)."""
        array = input_array(pb_utils, request, name)
        if array is None or array.size == 0:
            return None
        flat = array.reshape(-1)
        return [flat[i if flat.size == rows else 0].item() for i in range(rows)]

    def _jobs(self, request: object, sender: object) -> list[Job]:
        ids = input_array(pb_utils, request, "input_ids")
        rows = np.zeros((1, 0), np.int32) if ids is None else ids.reshape(ids.shape[0] if ids.ndim > 1 else 1, -1)
        batch = rows.shape[0]
        streaming = bool(scalar(pb_utils, request, "streaming", False))
        if batch > 1 and not self.decoupled:
            raise ValueError(BATCH_NEEDS_DECOUPLED)
        if streaming and not self.decoupled:
            raise ValueError(STREAMING_NEEDS_DECOUPLED)
        lengths = self._column(request, "input_lengths", batch)
        max_tokens = self._column(request, "request_output_len", batch)
        end_ids = self._column(request, "end_id", batch)
        excludes = self._column(request, "exclude_input_in_output", batch)
        # v0.12.0 clients send random_seed; 1.2.x renamed it seed (docs/repository.md).
        seeds = self._column(request, "seed", batch) or self._column(request, "random_seed", batch)
        wanted = {name: bool(scalar(pb_utils, request, name, False)) for name in FLAGS}
        left, lock = [batch], threading.Lock()

        def last_row_done() -> bool:
            with lock:
                left[0] -= 1
                return left[0] == 0

        jobs = []
        for row in range(batch):
            tokens = [int(t) for t in rows[row]]
            if batch > 1 and lengths is not None:
                tokens = tokens[: int(lengths[row])]  # the backend cuts padding only when it splits rows
            exclude = self.exclude_input if excludes is None else bool(excludes[row])
            index = row if batch > 1 else None  # batch_index only for a split request (:1211)
            jobs.append(
                Job(
                    input_ids=tokens,
                    max_tokens=max(1, int(max_tokens[row]) if max_tokens else 16),
                    end_id=None if end_ids is None else int(end_ids[row]),
                    emit=self._timed(
                        self._emitter(sender, streaming, exclude, wanted, index, last_row_done), streaming
                    ),
                    cancelled=getattr(sender, "is_cancelled", lambda: False),
                    seed=int(seeds[row]) if seeds else 0,
                )
            )
        return jobs

    def _timed(
        self, emit: Callable[[Job, list[int], bool], None], streaming: bool
    ) -> Callable[[Job, list[int], bool], None]:
        """`emit`, timing the request's first response: a stream's first chunk, else its one answer."""

        def timed(job: Job, new: list[int], final: bool) -> None:
            if len(job.generated) == len(new) if streaming else final:
                self.first_response.observe(job.arrival_ns, time.time_ns())
            emit(job, new, final)

        return timed

    @staticmethod
    def _emitter(
        sender: object,
        streaming: bool,
        exclude: bool,
        wanted: dict[str, bool],
        batch_index: int | None,
        last_row_done: Callable[[], bool],
    ) -> Callable[[Job, list[int], bool], None]:
        def outputs(job: Job, tokens: list[int]) -> list:
            out = [
                make_tensor(pb_utils, "output_ids", np.array([[tokens]], dtype=np.int32)),
                make_tensor(pb_utils, "sequence_length", np.array([[len(tokens)]], dtype=np.int32)),
            ]
            if wanted["return_log_probs"]:
                out.append(make_tensor(pb_utils, "cum_log_probs", np.zeros((1, 1), dtype=np.float32)))
                out.append(make_tensor(pb_utils, "output_log_probs", np.zeros((1, 1, len(tokens)), dtype=np.float32)))
            if wanted["return_num_input_tokens"]:
                out.append(make_tensor(pb_utils, "num_input_tokens", np.array([[len(job.input_ids)]], dtype=np.int32)))
            if wanted["return_num_output_tokens"]:
                out.append(make_tensor(pb_utils, "num_output_tokens", np.array([[len(job.generated)]], dtype=np.int32)))
            if wanted["return_perf_metrics"]:
                out.extend(perf_outputs(job))
            if batch_index is not None:
                out.append(make_tensor(pb_utils, "batch_index", np.array([[batch_index]], dtype=np.int32)))
            return out

        def emit(job: Job, new: list[int], final: bool) -> None:
            if streaming:
                # Streaming responses carry only the new tokens, as the backend's do.
                sender.send(pb_utils.InferenceResponse(outputs(job, new)))
                if final and last_row_done():
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            elif final:
                tokens = job.generated if exclude else job.input_ids + job.generated
                done = last_row_done()
                sender.send(
                    pb_utils.InferenceResponse(outputs(job, tokens)),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if done else 0,
                )

        return emit

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
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils
from llmprep_models import flag, input_array, make_tensor, param, scalar
from llmprep_standin import Job, StandinModel


class TritonPythonModel(StandinModel):
    """execute(), finalize() and the engine's start are StandinModel's; this model reads and writes token ids."""

    pb_utils = pb_utils

    def configure(self, config: dict, args: dict) -> None:
        self.exclude_input = flag(param(config, "exclude_input_in_output"), False)

    def vocab_size(self, config: dict) -> int:
        return int(param(config, "standin_vocab_size", "32000"))

    def _job(self, request: object, sender: object) -> Job:
        ids = input_array(pb_utils, request, "input_ids")
        ids_list = [] if ids is None else [int(t) for t in ids.reshape(-1)]
        length = scalar(pb_utils, request, "input_lengths", len(ids_list))
        ids_list = ids_list[: int(length)]
        streaming = bool(scalar(pb_utils, request, "streaming", False)) and self.decoupled
        exclude = scalar(pb_utils, request, "exclude_input_in_output", None)
        exclude = self.exclude_input if exclude is None else bool(exclude)
        end_id = scalar(pb_utils, request, "end_id", None)
        # v0.12.0 clients send random_seed; 1.2.x renamed it seed (docs/repository.md).
        seed = scalar(pb_utils, request, "seed", None)
        if seed is None:
            seed = scalar(pb_utils, request, "random_seed", 0)
        want_counts = bool(scalar(pb_utils, request, "return_num_output_tokens", False))
        want_input_count = bool(scalar(pb_utils, request, "return_num_input_tokens", False))
        want_log_probs = bool(scalar(pb_utils, request, "return_log_probs", False))

        def outputs(job: Job, tokens: list[int]) -> list:
            out = [
                make_tensor(pb_utils, "output_ids", np.array([[tokens]], dtype=np.int32)),
                make_tensor(pb_utils, "sequence_length", np.array([[len(tokens)]], dtype=np.int32)),
            ]
            if want_log_probs:
                out.append(make_tensor(pb_utils, "cum_log_probs", np.zeros((1, 1), dtype=np.float32)))
                out.append(make_tensor(pb_utils, "output_log_probs", np.zeros((1, 1, len(tokens)), dtype=np.float32)))
            if want_input_count:
                out.append(make_tensor(pb_utils, "num_input_tokens", np.array([[len(job.input_ids)]], dtype=np.int32)))
            if want_counts:
                out.append(make_tensor(pb_utils, "num_output_tokens", np.array([[len(job.generated)]], dtype=np.int32)))
            return out

        def emit(job: Job, new: list[int], final: bool) -> None:
            if streaming:
                # Streaming responses carry only the new tokens, as the backend's do.
                sender.send(pb_utils.InferenceResponse(outputs(job, new)))
                if final:
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            elif final:
                tokens = job.generated if exclude else job.input_ids + job.generated
                sender.send(
                    pb_utils.InferenceResponse(outputs(job, tokens)),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )

        max_tokens = int(scalar(pb_utils, request, "request_output_len", 16))
        return Job(
            input_ids=ids_list,
            max_tokens=max(1, max_tokens),
            end_id=None if end_id is None else int(end_id),
            emit=emit,
            cancelled=getattr(sender, "is_cancelled", lambda: False),
            seed=int(seed or 0),
        )

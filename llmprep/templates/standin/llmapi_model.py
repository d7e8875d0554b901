"""STAND-IN for the LLM API `tensorrt_llm` model (llmapi layout). Not a real LLM.

Written by `llmprep repo --engine standin --runtime pytorch` for the lab and tests. Same
inputs and outputs as upstream's llmapi model (text_input, streaming, sampling_param_* ->
text_output, finish_reason, ...). Tokenizes with the tokenizer named in model.yaml and
generates through llmprep's stand-in engine (cost model, or a random-weight transformer
with `standin_compute=torch`).

Where a request waits follows upstream's llmapi model, whose execute() schedules
generate_async() on an event loop and returns (TensorRT-LLM 1.2.x
triton_backend/all_models/llmapi/tensorrt_llm/1/model.py): Triton's queue and compute
counters say nothing about generation. Like llmprep's real llmapi model, it exports
IterationStats under the engine backend's nv_trt_llm_* families, and counts its requests
in flight and times their first response as the real one does (llmprep_requests_in_flight,
llmprep_first_response_histogram_ms).
`standin_queue_in_triton=true` runs the opposite assumption (requests queue in Triton).
"""

from __future__ import annotations

import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils
import yaml
from llmprep_models import StreamingDetokenizer, load_tokenizer, make_tensor, param, scalar, strings, text_array
from llmprep_standin import Job, StandinModel
from llmprep_stats import FirstResponse, InFlight, Passage

# Declared by upstream's config; the stand-in has no adapters and cannot cancel by input,
# so a request that uses them gets an error, never a silent answer.
UNSUPPORTED_INPUTS = ("lora_id", "lora_name", "lora_path", "lora_ckpt_source")


class TritonPythonModel(StandinModel):
    """execute(), finalize() and the engine's start are StandinModel's; this model reads and writes text."""

    pb_utils = pb_utils

    def initialize(self, args: dict) -> None:
        super().initialize(args)
        self.in_flight = InFlight(pb_utils, args["model_name"], args["model_version"])
        self.first_response = FirstResponse(pb_utils, args["model_name"], args["model_version"])

    def configure(self, config: dict, args: dict) -> None:
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "model.yaml")) as handle:
            llm_args = yaml.safe_load(handle)
        self.tokenizer = load_tokenizer(str(llm_args.get("tokenizer") or llm_args["model"]))
        self.default_max_tokens = int(param(config, "standin_output_tokens", "16"))
        self.tokens_per_block = int(param(config, "standin_tokens_per_block", "64"))

    def vocab_size(self, config: dict) -> int:
        return len(self.tokenizer)

    def _job(self, request: object, sender: object) -> Job:
        started = time.monotonic_ns()  # the request reaches this model: its time to first response starts
        texts = strings(pb_utils, request, "text_input")
        prompt = texts[0] if texts else ""
        ids = self.tokenizer.encode(prompt)
        streaming = bool(scalar(pb_utils, request, "streaming", False))
        if streaming and not self.decoupled:
            # Upstream answers an error here rather than one silent unary response.
            raise ValueError(
                "Streaming is only supported in decoupled mode (set model.repository.llmapiDecoupled: true)"
            )
        for name in UNSUPPORTED_INPUTS:
            if pb_utils.get_input_tensor_by_name(request, name) is not None:
                raise ValueError(f"input {name!r} is not supported by the llmprep stand-in (no LoRA, no stop)")
        if scalar(pb_utils, request, "stop", False):
            raise ValueError("input 'stop' is not supported by the llmprep stand-in")
        max_tokens = int(scalar(pb_utils, request, "sampling_param_max_tokens", self.default_max_tokens))
        # Upstream's default is False: the answer starts with the prompt.
        exclude = bool(scalar(pb_utils, request, "sampling_param_exclude_input_from_output", False))
        want_reason = bool(scalar(pb_utils, request, "return_finish_reason", False))
        detok = StreamingDetokenizer(self.tokenizer)
        eos = self.tokenizer.eos_token_id

        def response(text: str, final: bool, job: Job) -> object:
            out = [make_tensor(pb_utils, "text_output", text_array([text]))]
            if want_reason:
                reason = ("stop" if job.generated and job.generated[-1] == eos else "length") if final else ""
                out.append(make_tensor(pb_utils, "finish_reason", text_array([reason])))
            if final:
                for name, value in (
                    ("arrival_time_ns", job.arrival_ns),
                    ("first_scheduled_time_ns", job.first_scheduled_ns),
                    ("first_token_time_ns", job.first_token_ns),
                ):
                    out.append(make_tensor(pb_utils, name, np.array([value], dtype=np.int64)))
                out.extend(self._perf_extras(job))
            return pb_utils.InferenceResponse(out)

        def cancelled() -> bool:
            gone = bool(getattr(sender, "is_cancelled", lambda: False)())
            if gone:
                passage.finish()
            return gone

        def emit(job: Job, new: list[int], final: bool) -> None:
            if final:
                passage.finish()
            if streaming:
                text = detok.add(new) + (detok.flush() if final else "")
                if text or final:
                    passage.respond()
                    sender.send(response(text, final, job))
                if final:
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            elif final:
                text = self.tokenizer.decode(job.generated, skip_special_tokens=True)
                passage.respond()
                sender.send(
                    response(text if exclude else prompt + text, True, job),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )

        # Counted in flight from here (the request is valid and goes to the engine) to its final
        # response or its cancellation; its first response is timed from `started`.
        passage = Passage(self.in_flight, self.first_response, started)
        return Job(
            input_ids=ids,
            max_tokens=max(1, max_tokens),
            end_id=None,
            emit=emit,
            cancelled=cancelled,
            seed=int(scalar(pb_utils, request, "sampling_param_seed", 0) or 0),
        )

    def _perf_extras(self, job: Job) -> list:
        """The rest of upstream's perf-metrics outputs: no speculative decoding, no block reuse here."""
        blocks = max(1, -(-(len(job.input_ids) + len(job.generated)) // self.tokens_per_block))
        ints = {
            "kv_cache_reused_block": 0,
            "kv_cache_missed_block": blocks,
            "kv_cache_alloc_new_blocks": blocks,
            "kv_cache_alloc_total_blocks": blocks,
            "total_accepted_draft_tokens": 0,
            "total_draft_tokens": 0,
        }
        out = [make_tensor(pb_utils, k, np.array([v], dtype=np.int32)) for k, v in ints.items()]
        out.append(make_tensor(pb_utils, "last_token_time_ns", np.array([time.time_ns()], dtype=np.int64)))
        for name in ("kv_cache_hit_rate", "acceptance_rate"):
            out.append(make_tensor(pb_utils, name, np.array([0.0], dtype=np.float32)))
        return out

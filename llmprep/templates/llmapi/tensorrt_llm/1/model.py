"""`tensorrt_llm` (llmapi layout): TensorRT-LLM's LLM API on the PyTorch backend, served by Triton.

llmprep's own model with upstream's inputs and outputs (TensorRT-LLM 1.2.x
triton_backend/all_models/llmapi). It builds `tensorrt_llm.LLM` from 1/model.yaml,
hands each request to `LLM.generate_async` on an event-loop thread and returns, as
upstream's model does, and streams `text_diff` chunks back.

What upstream's model does not do: it exports the LLM API's iteration statistics
(`LLM.get_stats()`, enabled by `enable_iter_perf_stats` in model.yaml) under the engine
backend's metric families (nv_trt_llm_request_metrics, nv_trt_llm_kv_cache_block_metrics,
...), so one set of rules and dashboards serves both runtimes; and it counts its own requests
in flight (llmprep_requests_in_flight: from execute() to the final response) and times each
request's first response (llmprep_first_response_histogram_ms; Triton 2.51 exports no
first-response histogram of its own: llmprep_stats.FirstResponse).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils
import yaml
from llmprep_models import make_tensor, param, scalar, strings, text_array
from llmprep_stats import FirstResponse, InFlight, MetricsExporter, Passage, StatsPoller

SAMPLING_INPUTS = {
    "sampling_param_best_of": "best_of",
    "sampling_param_temperature": "temperature",
    "sampling_param_top_k": "top_k",
    "sampling_param_top_p": "top_p",
    "sampling_param_frequency_penalty": "frequency_penalty",
    "sampling_param_presence_penalty": "presence_penalty",
    "sampling_param_max_tokens": "max_tokens",
    "sampling_param_seed": "seed",
    "sampling_param_exclude_input_from_output": "exclude_input_from_output",
    "sampling_param_return_perf_metrics": "return_perf_metrics",
}

# Declared as upstream declares them; not wired to LoRA adapters here, so a request using
# them is refused rather than answered as if they were absent.
UNSUPPORTED_INPUTS = ("lora_id", "lora_name", "lora_path", "lora_ckpt_source")


# The perf-metrics outputs, from the LLM API's per-request metrics (present when the request set
# sampling_param_return_perf_metrics), as upstream's llmapi model reads them (TensorRT-LLM
# triton_backend/all_models/llmapi/tensorrt_llm/1/model.py, stored copy, commit not shown by the
# search tool): (output, group of request_perf_metrics, attribute, dtype as our config.pbtxt declares).
PERF_OUTPUTS = (
    ("kv_cache_reused_block", "kv_cache_metrics", "num_reused_blocks", np.int32),
    ("kv_cache_hit_rate", "kv_cache_metrics", "kv_cache_hit_rate", np.float32),
    ("kv_cache_alloc_new_blocks", "kv_cache_metrics", "num_new_allocated_blocks", np.int32),
    ("kv_cache_alloc_total_blocks", "kv_cache_metrics", "num_total_allocated_blocks", np.int32),
    ("kv_cache_missed_block", "kv_cache_metrics", "num_missed_blocks", np.int32),
    ("arrival_time_ns", "timing_metrics", "arrival_time", np.int64),
    ("first_scheduled_time_ns", "timing_metrics", "first_scheduled_time", np.int64),
    ("first_token_time_ns", "timing_metrics", "first_token_time", np.int64),
    ("last_token_time_ns", "timing_metrics", "last_token_time", np.int64),
    ("acceptance_rate", "speculative_decoding", "acceptance_rate", np.float32),
    ("total_accepted_draft_tokens", "speculative_decoding", "total_accepted_draft_tokens", np.int32),
    ("total_draft_tokens", "speculative_decoding", "total_draft_tokens", np.int32),
)


def _nanoseconds(value: object) -> int:
    """A timing metric in ns: the LLM API gives a datetime.timedelta (upstream converts it with pandas)."""
    if isinstance(value, datetime.timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1_000
    return int(value or 0)  # type: ignore[call-overload]


def perf_tensors(metrics: object) -> list:
    """Upstream's perf-metrics output tensors for one response (none when the request asked for none)."""
    if not metrics:
        return []
    out = []
    for name, group, attribute, dtype in PERF_OUTPUTS:
        value = getattr(getattr(metrics, group), attribute)
        value = _nanoseconds(value) if group == "timing_metrics" else value
        out.append(make_tensor(pb_utils, name, np.array([value], dtype=dtype)))
    return out


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from tensorrt_llm import LLM

        config = json.loads(args["model_config"])
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "model.yaml")) as handle:
            llm_args = yaml.safe_load(handle)
        llm_args.pop("triton_config", None)
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.llm = LLM(**llm_args)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llmapi-loop", daemon=True)
        self.thread.start()
        exporter = MetricsExporter(pb_utils, args["model_name"], args["model_version"])
        self.in_flight = InFlight(pb_utils, args["model_name"], args["model_version"])
        self.first_response = FirstResponse(pb_utils, args["model_name"], args["model_version"])
        period = float(param(config, "stats_check_period_ms", "1000")) / 1e3
        self.poller = StatsPoller(lambda: self.llm.get_stats(timeout=period), exporter.publish, period).start()

    def _sampling(self, request: object) -> object:
        from tensorrt_llm import SamplingParams

        kwargs = {}
        for name, field in SAMPLING_INPUTS.items():
            value = scalar(pb_utils, request, name, None)
            if value is not None and field != "exclude_input_from_output":
                kwargs[field] = value
        stop = strings(pb_utils, request, "sampling_param_stop")
        if stop:
            kwargs["stop"] = stop
        return SamplingParams(**kwargs)

    def _response(self, request: object, output: object, text: str) -> object:
        out = [make_tensor(pb_utils, "text_output", text_array([text]))]
        if scalar(pb_utils, request, "return_finish_reason", False):
            out.append(make_tensor(pb_utils, "finish_reason", text_array([str(output.finish_reason or "")])))
        if scalar(pb_utils, request, "return_stop_reason", False):
            out.append(make_tensor(pb_utils, "stop_reason", text_array([str(output.stop_reason or "")])))
        if scalar(pb_utils, request, "return_cumulative_logprob", False):
            value = output.cumulative_logprob or 0.0
            out.append(make_tensor(pb_utils, "cumulative_logprob", np.array([value], dtype=np.float32)))
        out.extend(perf_tensors(getattr(output, "request_perf_metrics", None)))
        return pb_utils.InferenceResponse(out)

    async def _generate(self, request: object, sender: object, passage: Passage) -> None:
        try:
            prompt = strings(pb_utils, request, "text_input")[0]
            streaming = bool(scalar(pb_utils, request, "streaming", False))
            if streaming and not self.decoupled:
                # An error, as upstream answers, not one silent unary response.
                raise ValueError(
                    "Streaming is only supported in decoupled mode (set model.repository.llmapiDecoupled: true)"
                )
            for name in UNSUPPORTED_INPUTS:
                if pb_utils.get_input_tensor_by_name(request, name) is not None:
                    raise ValueError(f"input {name!r} is not supported by llmprep's llmapi model")
            if scalar(pb_utils, request, "stop", False):
                raise ValueError("input 'stop' is not supported by llmprep's llmapi model")
            # Upstream's default is False: the answer starts with the prompt.
            exclude = bool(scalar(pb_utils, request, "sampling_param_exclude_input_from_output", False))
            result = None
            async for result in self.llm.generate_async(prompt, self._sampling(request), streaming=streaming):
                if sender.is_cancelled():
                    result.abort()
                    break
                if streaming:
                    passage.respond()
                    sender.send(self._response(request, result.outputs[0], result.outputs[0].text_diff))
            if not streaming and result is not None:
                text = result.outputs[0].text
                passage.respond()
                sender.send(self._response(request, result.outputs[0], text if exclude else prompt + text))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        finally:
            passage.finish()  # final response, error or cancellation: the request leaves the count once

    def execute(self, requests: list) -> None:
        # Hand-off, as upstream: Triton's counters end here, generation runs on the loop.
        started = time.monotonic_ns()  # the requests reach this model: in flight and timed from here
        for request in requests:
            passage = Passage(self.in_flight, self.first_response, started)
            asyncio.run_coroutine_threadsafe(self._generate(request, request.get_response_sender(), passage), self.loop)
        return None

    def finalize(self) -> None:
        self.poller.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.llm.shutdown()

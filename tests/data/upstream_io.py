"""Outputs of upstream's models as produced at runtime, and how upstream's clients read them.

Read from triton-inference-server/tensorrtllm_backend at tag v0.19.0 (the git mirror; tag
v1.0.0 no longer carries all_models/). Each row: model, output, runtime shape (B = requests
batched together, K = beams, T = tokens), how a client indexes it, source file:line.
Facts transcribed in our words; no upstream code.
"""

from __future__ import annotations

from typing import NamedTuple


class Output(NamedTuple):
    model: str
    output: str
    shape: str
    read_as: str
    source: str


V = "tensorrtllm_backend v0.19.0 "
OUTPUTS: tuple[Output, ...] = (
    Output("postprocessing", "OUTPUT", "[B*K]", "flat strings", V + "all_models/inflight_batcher_llm/postprocessing/1/model.py:152"),
    Output("ensemble", "text_output", "[B*K]", "[0].decode()", V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:351"),
    Output("tensorrt_llm_bls", "text_output", "[B*K]", "[0].decode()",
           V + "all_models/inflight_batcher_llm/tensorrt_llm_bls/1/lib/triton_decoder.py:98 (not un-reshaped)"),
    Output("ensemble", "batch_index", "[B, 1]", "[0][0]", V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:343"),
    Output("ensemble", "arrival_time_ns", "[B, 1]", "[0][0]", V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:390"),
    Output("tensorrt_llm", "output_ids", "[B, K, T]", "[0][0]", V + "inflight_batcher_llm/client/inflight_batcher_llm_client.py:256"),
    Output("tensorrt_llm", "sequence_length", "[B, K]", "[0][0]", V + "inflight_batcher_llm/client/inflight_batcher_llm_client.py:254"),
    Output("preprocessing", "INPUT_ID", "[B, T]", "row per request", V + "all_models/inflight_batcher_llm/preprocessing/1/model.py:368"),
    Output("llmapi", "text_output", "[1]", "[0].decode()", V + "all_models/llmapi/tensorrt_llm/1/model.py:423"),
)

# llmapi behaviour clients notice (same tag).
LLMAPI = {
    "decoupled": (False, V + "all_models/llmapi/tensorrt_llm/1/model.yaml:21"),
    "exclude_input_from_output": (False, V + "all_models/llmapi/tensorrt_llm/1/helpers.py:35"),
    "streaming_when_not_decoupled": ("error", V + "all_models/llmapi/tensorrt_llm/1/model.py:311"),
}

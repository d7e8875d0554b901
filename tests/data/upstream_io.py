"""Outputs of upstream's models as produced at runtime, and how upstream's clients read them.

Read from triton-inference-server/tensorrtllm_backend at tag v0.19.0 (the git mirror; tag
v1.0.0 no longer carries all_models/). Each row: model, output, runtime shape (B = requests
batched together, K = beams, T = tokens), how a client indexes it, source file:line. Each
output's type is the one upstream's config.pbtxt declares (tests/data/upstream_layouts.py
UPSTREAM). The tensorrt_llm model answers each row of a B-row request on its own (utils.cc:158-217,
model_instance_state.cc:1211-1219), so B is 1 in its responses and in those built from them.
MODELS and SEMANTICS (below) are each model's batch semantics: batched by Triton or not,
transaction policy, dynamic batching, and which inputs are reshaped to a scalar or batch ragged
(tests/test_repo.py checks them in every repository `llmprep repo` can write).
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
    Output(
        "postprocessing",
        "OUTPUT",
        "[B*K]",
        "flat strings",
        V + "all_models/inflight_batcher_llm/postprocessing/1/model.py:152",
    ),
    Output(
        "ensemble",
        "text_output",
        "[B*K]",
        "[0].decode()",
        V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:351",
    ),
    Output(
        "tensorrt_llm_bls",
        "text_output",
        "[B*K]",
        "[0].decode()",
        V + "all_models/inflight_batcher_llm/tensorrt_llm_bls/1/lib/triton_decoder.py:98 (not un-reshaped)",
    ),
    Output(
        "ensemble", "batch_index", "[B, 1]", "[0][0]", V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:343"
    ),
    Output(
        "ensemble",
        "arrival_time_ns",
        "[B, 1]",
        "[0][0]",
        V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:390",
    ),
    Output(
        "ensemble",
        "kv_cache_alloc_new_blocks",
        "[B, 1]",
        "[0][0]",
        V + "inflight_batcher_llm/client/end_to_end_grpc_client.py:384-385",
    ),
    Output(
        "tensorrt_llm",
        "output_ids",
        "[B, K, T]",
        "[0][0]",
        V + "inflight_batcher_llm/client/inflight_batcher_llm_client.py:256",
    ),
    Output(
        "tensorrt_llm",
        "sequence_length",
        "[B, K]",
        "[0][0]",
        V + "inflight_batcher_llm/client/inflight_batcher_llm_client.py:254",
    ),
    Output(
        "preprocessing",
        "INPUT_ID",
        "[B, T]",
        "row per request",
        V + "all_models/inflight_batcher_llm/preprocessing/1/model.py:368",
    ),
    Output("llmapi", "text_output", "[1]", "[0].decode()", V + "all_models/llmapi/tensorrt_llm/1/model.py:423"),
)

# llmapi behaviour clients notice (same tag).
LLMAPI = {
    "decoupled": (False, V + "all_models/llmapi/tensorrt_llm/1/model.yaml:21"),
    "exclude_input_from_output": (False, V + "all_models/llmapi/tensorrt_llm/1/helpers.py:35"),
    "streaming_when_not_decoupled": ("error", V + "all_models/llmapi/tensorrt_llm/1/model.py:311"),
}


# ---------------------------------------------------------------------------- batch semantics
# Per model: whether Triton batches it (max_batch_size > 0: the tutorials' triton_max_batch_size),
# which fill sets its transaction policy, and whether it has a dynamic_batching block. Read at
# v0.19.0 (config.pbtxt line of each; the llmapi model declares neither and takes both from
# model.yaml triton_config).
class Batching(NamedTuple):
    batched: bool
    decoupled_from: str | None  # the fill that sets model_transaction_policy.decoupled
    dynamic_batching: bool
    source: str


_IB = V + "all_models/inflight_batcher_llm/"
MODELS: dict[tuple[str, str], Batching] = {
    ("inflight_batcher_llm", "ensemble"): Batching(True, None, False, _IB + "ensemble/config.pbtxt:29"),
    ("inflight_batcher_llm", "preprocessing"): Batching(True, None, True, _IB + "preprocessing/config.pbtxt:29,31"),
    ("inflight_batcher_llm", "postprocessing"): Batching(True, None, True, _IB + "postprocessing/config.pbtxt:29,30"),
    ("inflight_batcher_llm", "tensorrt_llm"): Batching(
        True, "decoupled_mode", True, _IB + "tensorrt_llm/config.pbtxt:29,32,35"
    ),
    ("inflight_batcher_llm", "tensorrt_llm_bls"): Batching(
        True, "decoupled_mode", False, _IB + "tensorrt_llm_bls/config.pbtxt:29,32"
    ),
    ("llmapi", "tensorrt_llm"): Batching(
        False, "model.yaml", False, V + "all_models/llmapi/tensorrt_llm/1/model.yaml:20-21"
    ),
}

# Per input: `reshape` (upstream declares dims [1] and reshapes it to a scalar per request:
# `reshape: { shape: [ ] }`) and/or `ragged` (allow_ragged_batch: requests of different lengths
# batch together). Every input not listed has neither. Rows: name, flags, line in that model's
# config.pbtxt at v0.19.0 (commit c1e19638). v0.19.0's tensorrt_llm also reshapes min_length and
# random_seed, which 1.2.x renamed; those are in ADDED_IN_1_2 under the new names.
_SEMANTICS_V0_19 = """
ensemble
    lora_weights ragged 218
    lora_config ragged 238
    guided_decoding_guide_type ragged 245
    guided_decoding_guide ragged 252
tensorrt_llm
    input_ids ragged 43
    encoder_input_features ragged 50
    encoder_output_lengths reshape 57
    input_lengths reshape 64
    request_output_len reshape 70
    num_return_sequences reshape 76
    draft_input_ids ragged 83
    decoder_input_ids ragged 90
    decoder_input_lengths reshape 97
    draft_logits ragged 104
    draft_acceptance_threshold reshape 111
    end_id reshape 118
    pad_id reshape 125
    stop_words_list ragged 132
    bad_words_list ragged 139
    embedding_bias ragged 146
    beam_width reshape 153
    temperature reshape 160
    runtime_top_k reshape 167
    runtime_top_p reshape 174
    runtime_top_p_min reshape 181
    runtime_top_p_decay reshape 188
    runtime_top_p_reset_ids reshape 195
    len_penalty reshape 202
    early_stopping reshape 209
    repetition_penalty reshape 216
    beam_search_diversity_rate reshape 230
    presence_penalty reshape 237
    frequency_penalty reshape 244
    return_log_probs reshape 258
    return_context_logits reshape 265
    return_generation_logits reshape 272
    return_perf_metrics reshape 279
    exclude_input_in_output reshape 286
    stop reshape 293
    streaming reshape 300
    prompt_embedding_table ragged 307
    prompt_table_extra_ids ragged 314
    prompt_vocab_size reshape 321
    cross_attention_mask ragged 329
    lora_task_id reshape 353
    lora_weights ragged 364
    lora_config ragged 384
    context_phase_params ragged 391
    skip_cross_attn_blocks ragged 399
    retention_token_range_starts ragged 406
    retention_token_range_ends ragged 413
    retention_token_range_priorities ragged 420
    retention_token_range_durations_ms ragged 427
    retention_decode_priority ragged 434
    retention_decode_duration_ms ragged 441
    guided_decoding_guide_type ragged 448
    guided_decoding_guide ragged 455
    lookahead_window_size ragged 462
    lookahead_ngram_size ragged 469
    lookahead_verification_set_size ragged 476
tensorrt_llm_bls
    return_log_probs reshape 161
    return_context_logits reshape 168
    return_generation_logits reshape 175
    num_return_sequences reshape 182
    use_draft_logits reshape 237
    lora_task_id reshape 248
    lora_weights ragged 259
    lora_config ragged 279
    return_perf_metrics reshape 286
"""

# Inputs that 1.2.x added (or renamed), read in the stored NVIDIA/TensorRT-LLM copies of
# triton_backend/all_models/inflight_batcher_llm/<model>/config.pbtxt: tensorrt_llm at commit
# 0c8de69a, tensorrt_llm_bls at 0193dbd4 (the ensemble at 2a9abd95 and preprocessing at 08dc37e3
# add none with either flag). The llmapi model declares neither flag at v0.19.0; its 1.2.x
# additions were not re-read for them.
_ADDED_IN_1_2 = """
tensorrt_llm
    min_tokens reshape 0c8de69a
    seed reshape 0c8de69a
    return_num_input_tokens reshape 0c8de69a
    return_num_output_tokens reshape 0c8de69a
tensorrt_llm_bls
    return_num_input_tokens reshape 0193dbd4
    return_num_output_tokens reshape 0193dbd4
"""


class Semantics(NamedTuple):
    reshape: bool
    ragged: bool
    source: str


def _semantics(block: str, where: str) -> dict[tuple[str, str, str], Semantics]:
    out: dict[tuple[str, str, str], Semantics] = {}
    model = ""
    for line in block.splitlines():
        if line and not line.startswith(" "):
            model = line.strip()
        elif line.strip():
            name, flags, ref = line.split()
            source = where.format(model=model, ref=ref)
            out[("inflight_batcher_llm", model, name)] = Semantics("reshape" in flags, "ragged" in flags, source)
    return out


# (layout, model, input) -> flags; the llmapi layout has no row.
SEMANTICS: dict[tuple[str, str, str], Semantics] = {
    **_semantics(_SEMANTICS_V0_19, _IB + "{model}/config.pbtxt:{ref}"),
    **_semantics(
        _ADDED_IN_1_2, "TensorRT-LLM {ref} triton_backend/all_models/inflight_batcher_llm/{model}/config.pbtxt"
    ),
}

"""Upstream's model repository layouts: model names, inputs and outputs, per layout.

Transcribed from NVIDIA/TensorRT-LLM `triton_backend/all_models/inflight_batcher_llm/*/config.pbtxt`
and `triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt` (the 1.2.x layouts; the files
read were stored at commits 2a9abd95 ensemble, 0c8de69a tensorrt_llm, 08dc37e3 preprocessing,
89fd9b74 postprocessing, 0193dbd4 tensorrt_llm_bls, 0a710573 llmapi). `${...}` types are the
values the tutorials fill: logits TYPE_FP32, prompt embedding table and encoder features TYPE_FP16.

Each tensor is "name TYPE dims" with "?" after the name when optional. COMPAT lists the tensors
llmprep adds so clients of tensorrtllm_backend v0.12.0 (Triton 24.08) keep working: that release
named `min_tokens` `min_length` and `seed` `random_seed` (docs/repository.md).
"""

from __future__ import annotations

Tensor = tuple[str, str, tuple[int, ...], bool]


def _parse(block: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for line in filter(None, (raw.strip() for raw in block.splitlines())):
        name, dtype, dims = line.split(maxsplit=2)
        optional = name.endswith("?")
        name = name.rstrip("?")
        out[name] = (name, dtype, tuple(int(d) for d in dims.strip("[] ").split(",")), optional)
    return out


_RESPONSE_EXTRAS = """
batch_index TYPE_INT32 [1]
sequence_index TYPE_INT32 [1]
kv_cache_alloc_new_blocks TYPE_INT32 [1]
kv_cache_reused_blocks TYPE_INT32 [1]
kv_cache_alloc_total_blocks TYPE_INT32 [1]
arrival_time_ns TYPE_INT64 [1]
first_scheduled_time_ns TYPE_INT64 [1]
first_token_time_ns TYPE_INT64 [1]
last_token_time_ns TYPE_INT64 [1]
acceptance_rate TYPE_FP32 [1]
total_accepted_draft_tokens TYPE_INT32 [1]
total_draft_tokens TYPE_INT32 [1]
num_input_tokens TYPE_INT32 [1]
num_output_tokens TYPE_INT32 [1]
"""

_TEXT_OUTPUTS = (
    """
text_output TYPE_STRING [-1]
cum_log_probs TYPE_FP32 [-1]
output_log_probs TYPE_FP32 [-1,-1]
context_logits TYPE_FP32 [-1,-1]
generation_logits TYPE_FP32 [-1,-1,-1]
"""
    + _RESPONSE_EXTRAS
)

ENSEMBLE_INPUTS = """
text_input TYPE_STRING [1]
decoder_text_input? TYPE_STRING [1]
max_tokens TYPE_INT32 [1]
num_return_sequences? TYPE_INT32 [1]
bad_words? TYPE_STRING [-1]
stop_words? TYPE_STRING [-1]
exclude_input_in_output? TYPE_BOOL [1]
end_id? TYPE_INT32 [1]
pad_id? TYPE_INT32 [1]
top_k? TYPE_INT32 [1]
top_p? TYPE_FP32 [1]
temperature? TYPE_FP32 [1]
length_penalty? TYPE_FP32 [1]
repetition_penalty? TYPE_FP32 [1]
min_tokens? TYPE_INT32 [1]
presence_penalty? TYPE_FP32 [1]
frequency_penalty? TYPE_FP32 [1]
seed? TYPE_UINT64 [1]
return_log_probs? TYPE_BOOL [1]
return_context_logits? TYPE_BOOL [1]
return_generation_logits? TYPE_BOOL [1]
return_perf_metrics? TYPE_BOOL [1]
return_num_input_tokens? TYPE_BOOL [1]
return_num_output_tokens? TYPE_BOOL [1]
beam_width? TYPE_INT32 [1]
stream? TYPE_BOOL [1]
prompt_embedding_table? TYPE_FP16 [-1,-1]
prompt_table_extra_id? TYPE_UINT64 [1]
prompt_vocab_size? TYPE_INT32 [1]
embedding_bias_words? TYPE_STRING [-1]
embedding_bias_weights? TYPE_FP32 [-1]
lora_task_id? TYPE_UINT64 [1]
lora_weights? TYPE_FP16 [-1,-1]
lora_config? TYPE_INT32 [-1,3]
guided_decoding_guide_type? TYPE_STRING [1]
guided_decoding_guide? TYPE_STRING [1]
"""

PREPROCESSING_INPUTS = """
QUERY TYPE_STRING [1]
DECODER_QUERY? TYPE_STRING [1]
IMAGE_BYTES? TYPE_UINT8 [-1,-1,-1,-1]
IMAGE_URL? TYPE_STRING [1]
IMAGES? TYPE_STRING [-1]
VIDEO_BYTES? TYPE_UINT8 [-1,-1,-1,-1]
REQUEST_OUTPUT_LEN TYPE_INT32 [1]
BAD_WORDS_DICT? TYPE_STRING [-1]
STOP_WORDS_DICT? TYPE_STRING [-1]
EMBEDDING_BIAS_WORDS? TYPE_STRING [-1]
EMBEDDING_BIAS_WEIGHTS? TYPE_FP32 [-1]
END_ID? TYPE_INT32 [1]
PAD_ID? TYPE_INT32 [1]
PROMPT_TABLE_EXTRA_ID? TYPE_UINT64 [1]
"""

PREPROCESSING_OUTPUTS = """
INPUT_ID TYPE_INT32 [-1]
REQUEST_INPUT_LEN TYPE_INT32 [1]
DECODER_INPUT_ID TYPE_INT32 [-1]
REQUEST_DECODER_INPUT_LEN TYPE_INT32 [1]
BAD_WORDS_IDS TYPE_INT32 [2,-1]
STOP_WORDS_IDS TYPE_INT32 [2,-1]
EMBEDDING_BIAS TYPE_FP32 [-1]
REQUEST_OUTPUT_LEN TYPE_INT32 [-1]
OUT_END_ID TYPE_INT32 [1]
OUT_PAD_ID TYPE_INT32 [1]
OUT_PROMPT_TABLE_EXTRA_IDS TYPE_UINT64 [-1]
PIXEL_VALUES TYPE_FP16 [-1,-1,-1,-1]
ASPECT_RATIO_IDS TYPE_INT64 [-1]
ASPECT_RATIO_MASK TYPE_INT64 [-1,-1]
CROSS_ATTENTION_MASK TYPE_INT64 [-1,-1,-1]
IMAGE_SIZES TYPE_INT64 [-1,2]
IS_VIDEO_INPUT TYPE_BOOL [1]
ATTENTION_MASK TYPE_INT64 [-1]
IMAGE_GRID_THW TYPE_INT64 [3]
VISION_INPUT_ID TYPE_INT32 [-1]
"""

TENSORRT_LLM_INPUTS = """
input_ids? TYPE_INT32 [-1]
encoder_input_features? TYPE_FP16 [-1,-1]
encoder_output_lengths? TYPE_INT32 [1]
input_lengths TYPE_INT32 [1]
request_output_len TYPE_INT32 [1]
num_return_sequences? TYPE_INT32 [1]
draft_input_ids? TYPE_INT32 [-1]
decoder_input_ids? TYPE_INT32 [-1]
decoder_input_lengths? TYPE_INT32 [1]
draft_logits? TYPE_FP32 [-1,-1]
draft_acceptance_threshold? TYPE_FP32 [1]
end_id? TYPE_INT32 [1]
pad_id? TYPE_INT32 [1]
stop_words_list? TYPE_INT32 [2,-1]
bad_words_list? TYPE_INT32 [2,-1]
embedding_bias? TYPE_FP32 [-1]
beam_width? TYPE_INT32 [1]
temperature? TYPE_FP32 [1]
runtime_top_k? TYPE_INT32 [1]
runtime_top_p? TYPE_FP32 [1]
runtime_top_p_min? TYPE_FP32 [1]
runtime_top_p_decay? TYPE_FP32 [1]
runtime_top_p_reset_ids? TYPE_INT32 [1]
len_penalty? TYPE_FP32 [1]
early_stopping? TYPE_BOOL [1]
repetition_penalty? TYPE_FP32 [1]
min_tokens? TYPE_INT32 [1]
beam_search_diversity_rate? TYPE_FP32 [1]
presence_penalty? TYPE_FP32 [1]
frequency_penalty? TYPE_FP32 [1]
seed? TYPE_UINT64 [1]
return_log_probs? TYPE_BOOL [1]
return_context_logits? TYPE_BOOL [1]
return_generation_logits? TYPE_BOOL [1]
return_perf_metrics? TYPE_BOOL [1]
return_num_input_tokens? TYPE_BOOL [1]
return_num_output_tokens? TYPE_BOOL [1]
exclude_input_in_output? TYPE_BOOL [1]
stop? TYPE_BOOL [1]
streaming? TYPE_BOOL [1]
prompt_embedding_table? TYPE_FP16 [-1,-1]
prompt_table_extra_ids? TYPE_UINT64 [-1]
prompt_vocab_size? TYPE_INT32 [1]
cross_attention_mask? TYPE_BOOL [-1,-1]
mrope_rotary_cos_sin? TYPE_FP32 [-1]
mrope_position_deltas? TYPE_INT64 [1]
lora_task_id? TYPE_UINT64 [1]
lora_weights? TYPE_FP16 [-1,-1]
lora_config? TYPE_INT32 [-1,3]
context_phase_params? TYPE_UINT8 [-1]
skip_cross_attn_blocks? TYPE_BOOL [1]
retention_token_range_starts? TYPE_INT32 [-1]
retention_token_range_ends? TYPE_INT32 [-1]
retention_token_range_priorities? TYPE_INT32 [-1]
retention_token_range_durations_ms? TYPE_INT32 [-1]
retention_decode_priority? TYPE_INT32 [1]
retention_decode_duration_ms? TYPE_INT32 [1]
guided_decoding_guide_type? TYPE_STRING [1]
guided_decoding_guide? TYPE_STRING [1]
lookahead_window_size? TYPE_INT32 [1]
lookahead_ngram_size? TYPE_INT32 [1]
lookahead_verification_set_size? TYPE_INT32 [1]
"""

TENSORRT_LLM_OUTPUTS = (
    """
output_ids TYPE_INT32 [-1,-1]
sequence_length TYPE_INT32 [-1]
cum_log_probs TYPE_FP32 [-1]
output_log_probs TYPE_FP32 [-1,-1]
context_logits TYPE_FP32 [-1,-1]
generation_logits TYPE_FP32 [-1,-1,-1]
context_phase_params TYPE_UINT8 [-1]
"""
    + _RESPONSE_EXTRAS
)

BLS_INPUTS = """
text_input TYPE_STRING [1]
decoder_text_input? TYPE_STRING [1]
image_input? TYPE_FP16 [-1,3,-1,-1]
image_bytes_input? TYPE_UINT8 [-1,-1,-1,-1]
image_url_input? TYPE_STRING [1]
video_bytes_input? TYPE_UINT8 [-1,-1,-1,-1]
max_tokens TYPE_INT32 [1]
bad_words? TYPE_STRING [-1]
stop_words? TYPE_STRING [-1]
exclude_input_in_output? TYPE_BOOL [1]
end_id? TYPE_INT32 [1]
pad_id? TYPE_INT32 [1]
top_k? TYPE_INT32 [1]
top_p? TYPE_FP32 [1]
temperature? TYPE_FP32 [1]
length_penalty? TYPE_FP32 [1]
repetition_penalty? TYPE_FP32 [1]
min_tokens? TYPE_INT32 [1]
presence_penalty? TYPE_FP32 [1]
frequency_penalty? TYPE_FP32 [1]
seed? TYPE_UINT64 [1]
return_log_probs? TYPE_BOOL [1]
return_context_logits? TYPE_BOOL [1]
return_generation_logits? TYPE_BOOL [1]
num_return_sequences? TYPE_INT32 [1]
beam_width? TYPE_INT32 [1]
stream? TYPE_BOOL [1]
prompt_embedding_table? TYPE_FP16 [-1,-1]
prompt_vocab_size? TYPE_INT32 [1]
prompt_table_extra_id? TYPE_UINT64 [1]
embedding_bias_words? TYPE_STRING [-1]
embedding_bias_weights? TYPE_FP32 [-1]
num_draft_tokens? TYPE_INT32 [1]
use_draft_logits? TYPE_BOOL [1]
lora_task_id? TYPE_UINT64 [1]
lora_weights? TYPE_FP16 [-1,-1]
lora_config? TYPE_INT32 [-1,3]
return_perf_metrics? TYPE_BOOL [1]
return_num_input_tokens? TYPE_BOOL [1]
return_num_output_tokens? TYPE_BOOL [1]
guided_decoding_guide_type? TYPE_STRING [1]
guided_decoding_guide? TYPE_STRING [1]
"""

LLMAPI_INPUTS = """
text_input TYPE_STRING [-1]
image_url? TYPE_STRING [-1]
streaming? TYPE_BOOL [1]
sampling_param_best_of? TYPE_INT32 [1]
sampling_param_temperature? TYPE_FP32 [1]
sampling_param_top_k? TYPE_INT32 [1]
sampling_param_top_p? TYPE_FP32 [1]
sampling_param_frequency_penalty? TYPE_FP32 [1]
sampling_param_presence_penalty? TYPE_FP32 [1]
sampling_param_max_tokens? TYPE_INT32 [1]
sampling_param_stop? TYPE_STRING [-1]
sampling_param_seed? TYPE_UINT64 [1]
sampling_param_exclude_input_from_output? TYPE_BOOL [1]
sampling_param_return_perf_metrics? TYPE_BOOL [1]
return_finish_reason? TYPE_BOOL [1]
return_stop_reason? TYPE_BOOL [1]
return_cumulative_logprob? TYPE_BOOL [1]
stop? TYPE_BOOL [1]
lora_id? TYPE_UINT64 [1]
lora_name? TYPE_STRING [1]
lora_path? TYPE_STRING [1]
lora_ckpt_source? TYPE_STRING [1]
"""

LLMAPI_OUTPUTS = """
text_output TYPE_STRING [-1]
finish_reason TYPE_STRING [-1]
stop_reason TYPE_STRING [-1]
cumulative_logprob TYPE_FP32 [-1]
kv_cache_reused_block TYPE_INT32 [-1]
kv_cache_missed_block TYPE_INT32 [-1]
kv_cache_alloc_new_blocks TYPE_INT32 [-1]
kv_cache_alloc_total_blocks TYPE_INT32 [-1]
kv_cache_hit_rate TYPE_FP32 [-1]
arrival_time_ns TYPE_INT64 [1]
first_scheduled_time_ns TYPE_INT64 [1]
first_token_time_ns TYPE_INT64 [1]
last_token_time_ns TYPE_INT64 [1]
acceptance_rate TYPE_FP32 [1]
total_accepted_draft_tokens TYPE_INT32 [1]
total_draft_tokens TYPE_INT32 [1]
"""

# layout -> model -> (platform or backend, inputs, outputs); backend "tensorrtllm" is replaced by
# "python" in a stand-in repository.
UPSTREAM: dict[str, dict[str, tuple[str, dict[str, Tensor], dict[str, Tensor]]]] = {
    "inflight_batcher_llm": {
        "ensemble": ("ensemble", _parse(ENSEMBLE_INPUTS), _parse(_TEXT_OUTPUTS)),
        "preprocessing": ("python", _parse(PREPROCESSING_INPUTS), _parse(PREPROCESSING_OUTPUTS)),
        "tensorrt_llm": ("tensorrtllm", _parse(TENSORRT_LLM_INPUTS), _parse(TENSORRT_LLM_OUTPUTS)),
        "postprocessing": (
            "python",
            _parse("TOKENS_BATCH TYPE_INT32 [-1,-1]\nSEQUENCE_LENGTH TYPE_INT32 [-1]"),
            _parse("OUTPUT TYPE_STRING [-1]"),
        ),
        "tensorrt_llm_bls": ("python", _parse(BLS_INPUTS), _parse(_TEXT_OUTPUTS)),
    },
    "llmapi": {"tensorrt_llm": ("python", _parse(LLMAPI_INPUTS), _parse(LLMAPI_OUTPUTS))},
}

# model -> (extra inputs, extra outputs) that llmprep adds for v0.12.0 clients.
COMPAT: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {
    "ensemble": (_parse("min_length? TYPE_INT32 [1]\nrandom_seed? TYPE_UINT64 [1]"), {}),
    "tensorrt_llm_bls": (_parse("min_length? TYPE_INT32 [1]\nrandom_seed? TYPE_UINT64 [1]"), {}),
    "preprocessing": (
        _parse(
            "MIN_TOKENS? TYPE_INT32 [1]\nMIN_LENGTH? TYPE_INT32 [1]\nSEED? TYPE_UINT64 [1]\nRANDOM_SEED? TYPE_UINT64 [1]"
        ),
        _parse("OUT_MIN_TOKENS TYPE_INT32 [1]\nOUT_SEED TYPE_UINT64 [1]"),
    ),
}

# The v0.12.0 names and their 1.2.x successors, for the docs and the compatibility test.
RENAMED_SINCE_V0_12 = {"min_length": "min_tokens", "random_seed": "seed"}

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from llmprep.artifacts.capacity import (
    KV_CACHE_DTYPES,
    ModelShape,
    gpu_memory_bytes,
    load_config,
    make_plan,
    read_shape,
)
from llmprep.errors import UsageError
from tests.conftest import ROOT, run_cli

CONFIGS = ROOT / "tests" / "data" / "configs"
H100 = "NVIDIA-H100-80GB-HBM3"


def config(name: str) -> dict[str, object]:
    return load_config(CONFIGS / f"{name}.json")


@pytest.mark.parametrize(("name", "billions"), [("llama-3-8b", 8.03), ("llama-3-70b", 70.55)])
def test_parameter_count_matches_the_published_size(name: str, billions: float) -> None:
    assert read_shape(config(name)).parameters / 1e9 == pytest.approx(billions, abs=0.01)


@pytest.mark.parametrize(
    ("name", "data_type", "kib_per_token"),
    [("llama-3-8b", "bfloat16", 128), ("llama-3-8b", "float32", 256), ("llama-3-70b", "bfloat16", 320)],
)
def test_kv_cache_bytes_per_token_follow_layers_kv_heads_and_width(
    name: str, data_type: str, kib_per_token: int
) -> None:
    plan = make_plan(config(name), gpu=H100, data_type=data_type)
    assert plan.kv_bytes_per_token == kib_per_token * 1024


def test_llama_3_8b_fits_one_80gb_gpu() -> None:
    plan = make_plan(config("llama-3-8b"), gpu=H100, data_type="bfloat16")
    assert plan.recommended is not None and plan.recommended.gpus == 1
    assert plan.replicas_per_node == 8


def test_llama_3_70b_at_bf16_needs_several_80gb_gpus() -> None:
    plan = make_plan(config("llama-3-70b"), gpu=H100, data_type="bfloat16")
    assert plan.minimum is not None and plan.minimum.gpus >= 2
    assert plan.recommended is not None and plan.recommended.gpus <= 8
    assert plan.weight_bytes > 80 * 1024**3


@pytest.mark.parametrize(
    ("product", "gib"),
    [(H100, 79.6), ("NVIDIA-A100-SXM4-40GB", 40), ("Tesla-T4", 15), ("NVIDIA-A10G", 22.5), ("NVIDIA-H200", 140.4)],
)
def test_gpu_memory_comes_from_the_product_label(product: str, gib: float) -> None:
    assert gpu_memory_bytes(product) / 1024**3 == pytest.approx(gib, abs=0.1)


def test_an_unknown_product_asks_for_its_memory() -> None:
    with pytest.raises(UsageError, match="--gpu-memory-gib"):
        gpu_memory_bytes("Acme-Accelerator")


def test_a_config_without_dimensions_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="missing hidden_size"):
        read_shape({"model_type": "bert"})


def test_plan_command_prints_json(tmp_path: Path) -> None:
    result = run_cli(
        "plan",
        "--config",
        str(CONFIGS / "llama-3-70b.json"),
        "--gpu",
        H100,
        "--set",
        "model.name=llama-3-70b",
        "--set",
        "model.tensorrtLlm.dataType=bfloat16",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["data_type"] == "bfloat16"
    assert data["minimum"]["tensor"] * data["minimum"]["pipeline"] >= 2


def test_plan_command_prints_a_table() -> None:
    result = run_cli("plan", "--config", str(CONFIGS / "llama-3-8b.json"), "--gpu", H100)
    assert result.returncode == 0, result.stderr
    assert "recommended" in result.stdout and "replicas per node of 8 GPUs: 8" in result.stdout


# --------------------------------------------------------------------------- published figures (tests/data/published_sizes.csv)

PUBLISHED = list(csv.DictReader((ROOT / "tests" / "data" / "published_sizes.csv").open()))
AWQ_INT4 = {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": True}
FBGEMM_FP8 = {"quant_method": "fbgemm_fp8", "modules_to_not_convert": ["lm_head"]}


def _deepseek_checkpoint_extras(shape: ModelShape) -> int:
    """What DeepSeek-V3's FP8 checkpoint holds beyond the served main model (README_WEIGHTS.md).

    Every FP8 linear weight has a float32 `weight_scale_inv` per 128 × 128 block, and the MTP
    module is layer 61 (one more MoE layer, FP8 with its scales) plus its bf16 enorm, hnorm,
    eh_proj (2 × hidden → hidden), shared_head norm and its own copies of the embedding and head.
    """
    h = shape.hidden

    def scales(*matrices: tuple[int, int]) -> int:
        return 4 * sum(math.ceil(rows / 128) * math.ceil(cols / 128) for rows, cols in matrices)

    qk = shape.heads * (shape.qk_nope_dim + shape.qk_rope_dim)
    attention = scales(
        (shape.q_lora_rank, h),
        (qk, shape.q_lora_rank),
        (shape.kv_lora_rank + shape.qk_rope_dim, h),
        (shape.heads * (shape.qk_nope_dim + shape.v_head_dim), shape.kv_lora_rank),
        (h, shape.heads * shape.v_head_dim),
    )
    expert = scales((shape.expert_intermediate, h), (shape.expert_intermediate, h), (h, shape.expert_intermediate))
    dense = scales((shape.intermediate, h), (shape.intermediate, h), (h, shape.intermediate))
    moe_layer = attention + (shape.experts + shape.shared_experts) * expert
    main_scales = shape.dense_layers * (attention + dense) + (shape.layers - shape.dense_layers) * moe_layer
    mtp_layer = shape.attention() + (shape.experts + shape.shared_experts) * shape._mlp(shape.expert_intermediate)
    mtp_norms_router = 2 * h + shape.q_lora_rank + shape.kv_lora_rank + h * shape.experts
    mtp_bf16 = mtp_norms_router + 3 * h + 2 * h * h + 2 * shape.vocab * h
    return main_scales + mtp_layer + moe_layer + 2 * mtp_bf16


def _checkpoint_bytes(name: str) -> int:
    """The plan's weight bytes at the checkpoint's own dtype, plus what the files store that a served model does not."""
    doc = config(name)
    shape = read_shape(doc)
    plan = make_plan(doc, gpu=H100, data_type=str(doc["torch_dtype"]))
    extras = 0
    if name == "falcon-40b":  # lm_head.weight is stored beside the word embeddings it is tied to
        extras = shape.vocab * shape.hidden * 2
    if name == "deepseek-v3":
        extras = _deepseek_checkpoint_extras(shape)
    return plan.weight_bytes + extras


def figure(name: str, what: str) -> int | float:
    shape = read_shape(config(name))
    if what == "checkpoint_bytes":
        return _checkpoint_bytes(name)
    if what == "parameters":
        return shape.parameters
    if what == "active_parameters":
        return shape.active_parameters
    if what == "active_parameters_without_input_embedding":
        return shape.active_parameters - shape.vocab * shape.hidden
    if what == "kv_elements_per_token_per_layer":
        return shape.kv_elements_per_token() // shape.layers
    if what == "kv_bytes_per_token_bf16":
        return make_plan(config(name), gpu=H100, data_type="bfloat16").kv_bytes_per_token
    quantization = {"weight_bytes_awq": AWQ_INT4, "weight_bytes_fp8": FBGEMM_FP8}.get(what)
    doc = {**config(name), "quantization_config": quantization} if quantization else config(name)
    if name == "deepseek-v3" and not quantization:
        doc.pop("quantization_config")
    return make_plan(doc, gpu=H100, data_type="bfloat16").weight_bytes


@pytest.mark.parametrize("row", PUBLISHED, ids=[f"{r['config']}-{r['figure']}" for r in PUBLISHED])
def test_sizes_match_the_published_figures(row: dict[str, str]) -> None:
    assert figure(row["config"], row["figure"]) == pytest.approx(float(row["value"]), abs=float(row["tolerance"]))


def test_every_published_figure_names_its_source_and_config() -> None:
    for row in PUBLISHED:
        assert row["source"].strip() and row["where"].strip(), row
        assert (CONFIGS / f"{row['config']}.json").is_file(), row


def test_mixtral_counts_all_eight_experts_not_one() -> None:
    shape = read_shape(config("mixtral-8x7b"))
    assert shape.experts == 8 and shape.experts_per_token == 2
    assert shape.parameters > 6 * shape.active_parameters / 2


def test_deepseek_v3_has_three_dense_layers_one_shared_expert_and_latent_attention() -> None:
    shape = read_shape(config("deepseek-v3"))
    assert (shape.dense_layers, shape.shared_experts, shape.experts) == (3, 1, 256)
    assert shape.mla and shape.kv_elements_per_token() == 61 * (512 + 64)


def test_deepseek_v3_sizes_at_its_fp8_weights_not_bf16() -> None:
    # The published byte count itself is the deepseek-v3 checkpoint_bytes row of published_sizes.csv.
    plan = make_plan(config("deepseek-v3"), gpu="NVIDIA-H200", data_type="bfloat16")
    assert plan.quantization == "fp8"
    assert plan.weight_bytes < 0.51 * 2 * plan.parameters


@pytest.mark.parametrize(
    ("name", "kv_heads", "norms"),
    [("falcon-7b", 1, 1), ("falcon-40b", 8, 2)],
)
def test_falcon_reads_multi_query_and_the_new_decoder_architecture(name: str, kv_heads: int, norms: int) -> None:
    # configuration_falcon.py / modeling_falcon.py: multi_query (default true) keeps one K and one V
    # head; new_decoder_architecture uses num_kv_heads and two LayerNorms per layer.
    shape = read_shape(config(name))
    assert (shape.model_type, shape.kv_heads, shape.norms_per_layer, shape.tied_embeddings) == (
        "falcon",
        kv_heads,
        norms,
        True,
    )


def test_falcon_without_multi_query_has_a_kv_head_per_query_head() -> None:
    doc = {**config("falcon-7b"), "multi_query": False}
    assert read_shape(doc).kv_heads == 71
    doc = {**config("falcon-7b"), "new_decoder_architecture": True, "num_kv_heads": 8}  # multi_query ignored
    assert read_shape(doc).kv_heads == 8


def test_falcon_custom_code_and_transformers_configs_size_alike() -> None:
    legacy = config("falcon-40b")
    converted = {k: v for k, v in legacy.items() if k not in ("n_head", "n_layer", "n_head_kv", "auto_map")}
    converted |= {"model_type": "falcon", "num_attention_heads": 128, "num_hidden_layers": 60}
    converted |= {"num_kv_heads": 8, "new_decoder_architecture": True}
    assert read_shape(converted).parameters == read_shape(legacy).parameters


@pytest.mark.parametrize(
    ("model_type", "tied"),
    [("starcoder2", True), ("falcon", True), ("gpt2", True), ("gemma", True), ("llama", False), ("gpt_neox", False)],
)
def test_tied_embeddings_default_as_the_config_class_does(model_type: str, tied: bool) -> None:
    # PretrainedConfig defaults tie_word_embeddings to True; LlamaConfig and GPTNeoXConfig set False.
    doc = {k: v for k, v in config("llama-3-8b").items() if k != "tie_word_embeddings"}
    doc |= {"model_type": model_type, "n_positions": 1024}
    assert read_shape(doc).tied_embeddings is tied


def test_phi_qk_layernorm_adds_a_layernorm_of_head_dim_on_q_and_on_k() -> None:
    # modeling_phi.py: q_layernorm and k_layernorm are LayerNorm(hidden_size // num_attention_heads)
    plain = read_shape(config("phi-2"))
    normed = read_shape({**config("phi-2"), "qk_layernorm": True})
    assert normed.parameters - plain.parameters == plain.layers * 2 * 2 * plain.head_dim


OPT_350M = {"model_type": "opt", "hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24}
OPT_350M |= {"ffn_dim": 4096, "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 512}


def test_an_opt_with_a_projected_embedding_is_refused() -> None:
    with pytest.raises(UsageError, match="word_embed_proj_dim"):
        read_shape(OPT_350M)


@pytest.mark.parametrize(
    "doc",
    [OPT_350M, {"model_type": "mamba", "hidden_size": 768, "num_attention_heads": 1}],
    ids=["opt-350m", "mamba"],
)
def test_an_architecture_plan_cannot_size_exits_2_in_one_line(tmp_path: Path, doc: dict[str, object]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    result = run_cli("plan", "--config", str(path), "--gpu", H100)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_llama_405b_at_bf16_needs_two_nodes_of_h100_and_fp8_fits_one() -> None:
    # The Llama 3 paper (arXiv 2407.21783, section 6) serves 405B in BF16 on 16 H100s over two machines,
    # because its weights do not fit one 8-GPU node; FP8 is what brings it onto one node.
    bf16 = make_plan(config("llama-3.1-405b"), gpu=H100, data_type="bfloat16")
    assert bf16.minimum is not None and bf16.minimum.gpus == 16
    fp8 = make_plan({**config("llama-3.1-405b"), "quantization_config": FBGEMM_FP8}, gpu=H100, data_type="bfloat16")
    assert fp8.minimum is not None and fp8.minimum.gpus == 8


@pytest.mark.parametrize(
    ("quantization", "message"),
    [
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "quant_method 'bitsandbytes' cannot be sized"),
        ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "bits=8 cannot be sized"),
        ({"quant_method": "awq", "bits": 4}, "group_size None cannot be sized"),
        ({"quant_method": "fp8", "kv_cache_scheme": {"type": "float", "num_bits": 4}}, "KV-cache quantisation"),
        ("fp8", "must be a mapping"),
    ],
)
def test_a_quantisation_plan_cannot_size_is_refused_naming_it(quantization: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_plan({**config("llama-3-8b"), "quantization_config": quantization}, gpu=H100)


def test_an_architecture_plan_cannot_size_is_refused_not_guessed() -> None:
    with pytest.raises(UsageError, match="model_type 'mamba' is not one plan can size"):
        read_shape({**config("llama-3-8b"), "model_type": "mamba"})


def test_moe_layers_at_a_stride_are_refused_rather_than_miscounted() -> None:
    with pytest.raises(UsageError, match="MoE layers"):
        read_shape({**config("qwen2-57b-a14b"), "decoder_sparse_step": 2})


@pytest.mark.parametrize(("kv", "bytes_per_token"), [("auto", 131072), ("fp8", 65536), ("int8", 65536)])
def test_a_quantised_kv_cache_halves_the_bytes_per_token(kv: str, bytes_per_token: int) -> None:
    plan = make_plan(config("llama-3-8b"), gpu=H100, data_type="bfloat16", kv_cache_dtype=kv)
    assert plan.kv_bytes_per_token == bytes_per_token


def test_a_checkpoint_with_an_fp8_kv_cache_is_sized_with_it() -> None:
    quantization = {
        "quant_method": "compressed-tensors",
        "kv_cache_scheme": {"type": "float", "num_bits": 8},
        "config_groups": {"group_0": {"weights": {"type": "float", "num_bits": 8}}},
    }
    plan = make_plan({**config("llama-3-8b"), "quantization_config": quantization}, gpu=H100, data_type="bfloat16")
    assert (plan.quantization, plan.kv_cache_dtype, plan.kv_bytes_per_token) == ("fp8", "fp8", 65536)


def test_an_unknown_quantisation_exits_2_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config("llama-3-8b"), "quantization_config": {"quant_method": "hqq"}}))
    result = run_cli("plan", "--config", str(path), "--gpu", H100)
    assert result.returncode == 2 and "hqq" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


KV_ALGOS = list(csv.DictReader((ROOT / "tests" / "data" / "trtllm_kv_cache_quant.csv").open()))


@pytest.mark.parametrize("row", KV_ALGOS, ids=[r["algo"] for r in KV_ALGOS])
def test_kv_cache_dtypes_are_the_ones_tensorrt_llm_offers(row: dict[str, str]) -> None:
    sized = row["algo"].lower() in KV_CACHE_DTYPES
    assert sized == (row["sized"] == "yes")
    if not sized:
        with pytest.raises(UsageError, match="KV-cache dtype"):
            make_plan(config("llama-3-8b"), gpu=H100, kv_cache_dtype=row["algo"].lower())


def test_plan_sizes_no_kv_cache_dtype_tensorrt_llm_lacks() -> None:
    assert set(KV_CACHE_DTYPES) - {"auto"} <= {r["algo"].lower() for r in KV_ALGOS}

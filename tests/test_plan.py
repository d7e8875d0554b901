from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmprep.artifacts.capacity import gpu_memory_bytes, load_config, make_plan, read_shape
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
def test_kv_cache_bytes_per_token_follow_layers_kv_heads_and_width(name: str, data_type: str, kib_per_token: int) -> None:
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
    result = run_cli("plan", "--config", str(CONFIGS / "llama-3-70b.json"), "--gpu", H100,
                     "--set", "model.name=llama-3-70b", "--set", "model.tensorrtLlm.dataType=bfloat16", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["data_type"] == "bfloat16"
    assert data["minimum"]["tensor"] * data["minimum"]["pipeline"] >= 2


def test_plan_command_prints_a_table() -> None:
    result = run_cli("plan", "--config", str(CONFIGS / "llama-3-8b.json"), "--gpu", H100)
    assert result.returncode == 0, result.stderr
    assert "recommended" in result.stdout and "replicas per node of 8 GPUs: 8" in result.stdout

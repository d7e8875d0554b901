from __future__ import annotations

from pathlib import Path

import pytest

from llmprep.artifacts import gpu
from llmprep.errors import BuildError
from tests.doubles import H100, install_release


@pytest.mark.parametrize(
    ("nvml_name", "label"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB"),
        ("NVIDIA A10G", "NVIDIA-A10G"),
        ("Tesla T4", "Tesla-T4"),
        ("Tesla V100-SXM2-16GB", "Tesla-V100-SXM2-16GB"),
        ("  NVIDIA  L40S ", "NVIDIA-L40S"),
    ],
)
def test_product_names_normalise_to_the_gpu_feature_discovery_label(nvml_name: str, label: str) -> None:
    assert gpu.normalise_product(nvml_name) == label


def test_visible_gpus_are_counted_through_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_release(tmp_path, "pytorch", gpus=[H100, H100]).apply(monkeypatch)
    info = gpu.detect_gpus(use_nvml=False)
    assert (info.count, info.product, info.source) == (2, "NVIDIA-H100-80GB-HBM3", "nvidia-smi")


def test_a_failing_driver_counts_as_no_gpus_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_release(tmp_path, "pytorch", gpus=[]).apply(monkeypatch)
    info = gpu.detect_gpus(use_nvml=False)
    assert info.count == 0
    assert info.problem is not None and "nvidia-smi failed" in info.problem


def test_fewer_gpus_than_tensor_times_pipeline_is_refused() -> None:
    info = gpu.GpuInfo((H100, H100), "nvidia-smi")
    with pytest.raises(BuildError, match="tensor 2 × pipeline 2 needs 4 GPUs, this machine has 2 visible"):
        gpu.require_gpus(info, 4, tensor=2, pipeline=2)


def test_mixed_gpu_products_are_refused() -> None:
    info = gpu.GpuInfo((H100, "NVIDIA A100-SXM4-80GB"), "nvidia-smi")
    with pytest.raises(BuildError, match="different products"):
        gpu.require_gpus(info, 2, tensor=2, pipeline=1)

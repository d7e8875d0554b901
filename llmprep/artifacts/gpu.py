"""Visible GPUs: how many, which product, and the product's GPU Feature Discovery label."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from llmprep import proc
from llmprep.errors import BuildError, ProcessError


@dataclass(frozen=True)
class GpuInfo:
    names: tuple[str, ...]  # as NVML reports them, one per visible GPU
    source: str  # nvml | nvidia-smi | none
    problem: str | None = None  # why none were found, when none were

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def product(self) -> str | None:
        """The GPU Feature Discovery label (`nvidia.com/gpu.product`) of the visible GPUs."""
        return normalise_product(self.names[0]) if self.names else None


def normalise_product(name: str) -> str:
    """NVML product name to GPU Feature Discovery label form: `NVIDIA H100 80GB HBM3` → `NVIDIA-H100-80GB-HBM3`."""
    return re.sub(r"[\s_]+", "-", name.strip()).strip("-")


def _from_nvml() -> tuple[str, ...] | None:
    try:
        import pynvml  # nvidia-ml-py, present in the GPU image
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no driver here
        return None
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return tuple(names)
    finally:
        pynvml.nvmlShutdown()


def detect_gpus(*, nvidia_smi: str = "nvidia-smi", use_nvml: bool = True) -> GpuInfo:
    """Count the GPUs this process can see (NVML, else `nvidia-smi`); never raises."""
    names = _from_nvml() if use_nvml else None
    if names is not None:
        return GpuInfo(names, "nvml")
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return GpuInfo((), "none", "no NVIDIA driver here (neither NVML nor nvidia-smi found)")
    try:
        lines = proc.run([exe, "--query-gpu=name", "--format=csv,noheader"], timeout=30)
    except ProcessError as exc:
        return GpuInfo((), "none", f"nvidia-smi failed: {exc}")
    return GpuInfo(tuple(line.strip() for line in lines if line.strip()), "nvidia-smi")


def require_gpus(info: GpuInfo, needed: int, *, tensor: int, pipeline: int) -> str:
    """Refuse a build that cannot run here; return the GPU product label."""
    if info.count < needed:
        why = f" ({info.problem})" if info.problem else ""
        raise BuildError(
            f"model.tensorrtLlm.parallelism: tensor {tensor} × pipeline {pipeline} needs {needed} GPUs, "
            f"this machine has {info.count} visible{why}"
        )
    products = {normalise_product(n) for n in info.names[:needed]}
    if len(products) > 1:
        raise BuildError(
            f"the visible GPUs are different products ({', '.join(sorted(products))}); an engine is built "
            "for one product: make only GPUs of one kind visible (CUDA_VISIBLE_DEVICES)"
        )
    product = info.product
    assert product is not None
    return product

"""Capacity plan: weight and KV-cache bytes of a model, and the tensor × pipeline it needs.

Estimates from the model's config.json alone (`model_shape`: dense, multi-query, GQA, MoE and MLA
decoder-only transformers, quantised checkpoints). Per GPU, the weights' share, a fixed reserve
for the CUDA context and activations, and the KV cache must fit in the usable part of its memory.

A quantised KV cache is sized where TensorRT-LLM offers one: FP8 and INT8 are in
`KV_CACHE_QUANT_ALGO_LIST` (tensorrt_llm/quantization/mode.py; its third, NVFP4, carries block
scales this plan does not size). It comes from the checkpoint's quantization_config or from
`kv_cache_dtype`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmprep.artifacts.model_shape import ModelShape, Quantization, read_quantization, read_shape
from llmprep.errors import UsageError
from llmprep.files import read_json

__all__ = [
    "KV_CACHE_DTYPES",
    "Layout",
    "ModelShape",
    "Plan",
    "Quantization",
    "gpu_memory_bytes",
    "load_config",
    "make_plan",
    "read_quantization",
    "read_shape",
]

BYTES_PER_PARAM = {"float32": 4, "float16": 2, "bfloat16": 2}
KV_CACHE_DTYPES = {"auto": None, "fp8": 1, "int8": 1}  # None: the dataType's width
GIB = 1024**3
# Total memory (MiB) as NVML reports it for products whose label carries no size.
KNOWN_MEMORY_MIB = {
    "Tesla-T4": 15360,
    "NVIDIA-A10G": 23028,
    "NVIDIA-A10": 23028,
    "NVIDIA-L4": 23034,
    "NVIDIA-L40S": 46068,
    "NVIDIA-L40": 46068,
    "NVIDIA-A40": 46068,
    "NVIDIA-H100-PCIe": 81559,
    "NVIDIA-H200": 143771,
    "NVIDIA-B200": 183359,
}
USABLE_FRACTION = 0.90  # what TensorRT-LLM may take (kv_cache_free_gpu_mem_fraction's default spirit)
RESERVE_GIB = 3.0  # CUDA context, workspace and activations per GPU
TENSOR_SIZES = (1, 2, 4, 8)


def load_config(path: Path) -> dict[str, Any]:
    target = path / "config.json" if path.is_dir() else path
    data = read_json(
        target,
        UsageError,
        missing="no such file (give a config.json or a checkpoint directory)",
        unreadable="not a readable JSON config",
    )
    if not isinstance(data, dict):
        raise UsageError(f"{target}: not a model config")
    return data


def gpu_memory_bytes(product: str) -> int:
    """Memory of a GPU product given as its GPU Feature Discovery label."""
    if product in KNOWN_MEMORY_MIB:
        return KNOWN_MEMORY_MIB[product] * 1024**2
    match = re.search(r"(\d+)GB", product)
    if match:
        gb = int(match.group(1))
        return {80: 81559, 40: 40960, 16: 16384, 32: 32768, 94: 95830, 141: 143771}.get(gb, gb * 1024) * 1024**2
    raise UsageError(f"--gpu {product}: unknown memory size; add --gpu-memory-gib")


@dataclass(frozen=True)
class Layout:
    tensor: int
    pipeline: int
    weights_per_gpu: int
    kv_tokens: int  # KV-cache capacity in tokens across the instance
    full_batches: float  # how many maxBatchSize × maxSeqLen batches fit in the KV cache

    @property
    def gpus(self) -> int:
        return self.tensor * self.pipeline


@dataclass(frozen=True)
class Plan:
    model_type: str
    parameters: int
    data_type: str
    weight_bytes: int
    kv_bytes_per_token: int
    gpu: str
    gpu_memory: int
    gpus_per_node: int
    max_batch_size: int
    max_seq_len: int
    minimum: Layout | None  # smallest layout that holds the weights and one full sequence
    recommended: Layout | None  # smallest that also holds a full batch of full sequences
    replicas_per_node: int
    notes: tuple[str, ...]
    active_parameters: int = 0  # MoE: what one token passes through; dense: all
    quantization: str = "none"  # the checkpoint's weight quantisation (fp8, awq, gptq)
    kv_cache_dtype: str = "auto"  # auto: the dataType

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def _layout(
    shape: ModelShape,
    tensor: int,
    pipeline: int,
    *,
    weight_bytes: int,
    kv_per_token: int,
    memory: int,
    batch_tokens: int,
) -> Layout | None:
    gpus = tensor * pipeline
    weights_per_gpu = math.ceil(weight_bytes / gpus)
    free = memory * USABLE_FRACTION - RESERVE_GIB * GIB - weights_per_gpu
    if free <= 0:
        return None
    kv_tokens = int(free * gpus // kv_per_token)
    return Layout(tensor, pipeline, weights_per_gpu, kv_tokens, kv_tokens / batch_tokens)


def make_plan(
    config: dict[str, Any],
    *,
    gpu: str,
    data_type: str = "float16",
    max_batch_size: int = 64,
    max_seq_len: int = 4096,
    gpus_per_node: int = 8,
    gpu_memory_gib: float | None = None,
    source: str = "config.json",
    kv_cache_dtype: str | None = None,
) -> Plan:
    """Estimate memory and recommend tensor × pipeline for `gpu` (a GPU Feature Discovery label).

    `kv_cache_dtype` ("auto", "fp8", "int8") overrides what the checkpoint's quantization_config
    says about its KV cache; None keeps the checkpoint's (or the dataType's).
    """
    if data_type not in BYTES_PER_PARAM:
        raise UsageError(f"dataType {data_type!r} is not one of {', '.join(BYTES_PER_PARAM)}")
    shape = read_shape(config, source)
    quant: Quantization = read_quantization(config, source)
    kv_dtype = kv_cache_dtype if kv_cache_dtype is not None else quant.kv_cache
    if kv_dtype not in KV_CACHE_DTYPES:
        raise UsageError(f"KV-cache dtype {kv_dtype!r} is not one of {', '.join(KV_CACHE_DTYPES)}")
    width = BYTES_PER_PARAM[data_type]
    params = shape.parameters
    weight_bytes = math.ceil(quant.linear_bytes(shape.linear(), width) + shape.other() * width)
    kv_per_token = shape.kv_elements_per_token() * (KV_CACHE_DTYPES[kv_dtype] or width)
    memory = int(gpu_memory_gib * GIB) if gpu_memory_gib else gpu_memory_bytes(gpu)
    notes: list[str] = []

    layouts: list[Layout] = []
    tensors = [t for t in TENSOR_SIZES if shape.heads % t == 0 and (shape.kv_heads % t == 0 or t % shape.kv_heads == 0)]
    at = data_type if quant.method == "none" else f"{quant.method} ({data_type} for the rest)"
    for pipeline in range(1, shape.layers + 1):
        for tensor in tensors:
            if pipeline > 1 and tensor != tensors[-1]:
                continue  # across nodes only once tensor parallelism is at its widest
            layout = _layout(
                shape,
                tensor,
                pipeline,
                weight_bytes=weight_bytes,
                kv_per_token=kv_per_token,
                memory=memory,
                batch_tokens=max_batch_size * max_seq_len,
            )
            if layout:
                layouts.append(layout)
        if any(lay.kv_tokens >= max_batch_size * max_seq_len for lay in layouts) or pipeline * tensors[-1] >= 64:
            break
    minimum = next((lay for lay in layouts if lay.kv_tokens >= max_seq_len), None)
    recommended = next((lay for lay in layouts if lay.kv_tokens >= max_batch_size * max_seq_len), None)
    if minimum is None:
        notes.append(f"does not fit on up to {tensors[-1] * shape.layers} {gpu} GPUs at {at}")
    elif recommended is None:
        recommended = minimum
        notes.append(
            f"a full batch ({max_batch_size} × {max_seq_len} tokens) does not fit; about "
            f"{minimum.kv_tokens // max_seq_len} full-length sequences will run at once"
        )
    chosen = recommended or minimum
    if chosen and chosen.gpus > gpus_per_node:
        notes.append(f"spans {math.ceil(chosen.gpus / gpus_per_node)} nodes of {gpus_per_node} GPUs (multi-node)")
    replicas = gpus_per_node // chosen.gpus if chosen else 0
    return Plan(
        model_type=shape.model_type,
        parameters=params,
        data_type=data_type,
        weight_bytes=weight_bytes,
        kv_bytes_per_token=kv_per_token,
        gpu=gpu,
        gpu_memory=memory,
        gpus_per_node=gpus_per_node,
        max_batch_size=max_batch_size,
        max_seq_len=max_seq_len,
        minimum=minimum,
        recommended=recommended,
        replicas_per_node=replicas,
        notes=tuple(notes),
        active_parameters=shape.active_parameters,
        quantization=quant.method,
        kv_cache_dtype=kv_dtype,
    )

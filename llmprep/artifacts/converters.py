"""What each TensorRT-LLM 1.2.1 checkpoint converter accepts, and what it cannot do.

Facts read from NVIDIA/TensorRT-LLM's `examples/models/core/<family>/convert_checkpoint.py` and
`tensorrt_llm/commands/build.py` (commits in tests/data/converter_flags.csv and
tests/data/trtllm_build_flags.csv, which the tests compare with these tables).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.errors import BuildError, SpecError

# Hugging Face model_type → the examples folder whose convert_checkpoint.py handles it.
CONVERTERS = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen",
    "qwen": "qwen",
    "gpt2": "gpt",
    "opt": "opt",
    "falcon": "falcon",
    "gemma": "gemma",
    "phi": "phi",
    "phi3": "phi",
}


@dataclass(frozen=True)
class Family:
    """How one converter takes its parallelism, and its limits."""

    # "tp_pp": --tp_size and --pp_size; "world_size": --world-size only (tensor parallel only)
    parallel: str
    pipeline: bool  # accepts pipeline > 1
    extra: tuple[str, ...] = ()  # fixed arguments this family needs


FAMILIES: dict[str, Family] = {
    "llama": Family("tp_pp", pipeline=True),
    # qwen (core/, read at 0df9aaf3) and falcon (contrib/, read at 323e8460): --tp_size and
    # --pp_size into one Mapping, no check on pipeline (tests/data/converter_flags.csv).
    "qwen": Family("tp_pp", pipeline=True),
    "gpt": Family("tp_pp", pipeline=True),
    "falcon": Family("tp_pp", pipeline=True),
    # opt and phi: the converter asserts pipeline == 1 (issue 18 item 5)
    "opt": Family("tp_pp", pipeline=False),
    "phi": Family("tp_pp", pipeline=False),
    # gemma: --world-size is its tensor size, pipeline fixed to 1; --ckpt-type has no default
    "gemma": Family("world_size", pipeline=False, extra=("--ckpt-type", "hf")),
}

# convert_checkpoint.py switches (argparse store_true): given as `--flag`, never `--flag enable`.
CONVERT_SWITCHES = frozenset(
    {
        "use_weight_only",
        "disable_weight_only_quant_plugin",
        "use_qserve",
        "per_channel",
        "per_token",
        "int8_kv_cache",
        "fp8_kv_cache",
        "use_fp8",
        "use_nvfp4",
        "use_fp8_rowwise",
        "use_meta_fp8_rowwise_recipe",
        "per_group",
        "load_by_shard",
        "load_model_on_cpu",
        "use_parallel_embedding",
        "save_config_only",
        "remove_duplicated_kv_heads",
        "enable_fp8",
        "use_smooth_quant",
        "use-int8-weight-only-embedding",
    }
)
# trtllm-build switches (argparse store_true in 1.2.1): no value.
BUILD_SWITCHES = frozenset(
    {
        "strip_plan",
        "weight_sparsity",
        "weight_streaming",
        "fast_build",
        "enable_debug_output",
        "dry_run",
        "monitor_memory",
        "gather_context_logits",
        "gather_generation_logits",
        "gather_all_token_logits",
    }
)

_REPO_FAMILY = (
    ("gemma", re.compile(r"gemma", re.I)),
    ("phi", re.compile(r"phi-?\d", re.I)),
    ("opt", re.compile(r"(^|/)opt-", re.I)),
)


def family_of(kind: str) -> str:
    family = CONVERTERS.get(kind)
    if family is None:
        raise BuildError(
            f"no TensorRT-LLM checkpoint converter known for model_type {kind!r} (known: {', '.join(sorted(CONVERTERS))}); "
            "use runtime: pytorch"
        )
    return family


def guess_family(hf_repo: str) -> str | None:
    """The family a repository's name gives away before download (None when it does not)."""
    for family, pattern in _REPO_FAMILY:
        if pattern.search(hf_repo):
            return family
    return None


def check_parallelism(family: str, tensor: int, pipeline: int) -> None:
    """A spec error when `family`'s converter cannot split the model this way."""
    caps = FAMILIES.get(family)
    if caps is None or pipeline == 1 or caps.pipeline:
        return
    raise SpecError(
        f"model.tensorrtLlm.parallelism.pipeline: {family} models cannot be split into pipeline stages by "
        f"TensorRT-LLM's {family} converter (got {pipeline}): set pipeline to 1 (tensor may be "
        f"{tensor * pipeline}) or use runtime: pytorch"
    )


def flag_args(options: Mapping[str, Any], switches: frozenset[str]) -> list[str]:
    """`--key value` per option; a switch is `--key` when true and absent when false."""
    args: list[str] = []
    for key, value in options.items():
        flag = f"--{key}"
        if key in switches:
            if value:
                args.append(flag)
        elif isinstance(value, bool):
            args += [flag, "enable" if value else "disable"]
        elif isinstance(value, (list, tuple)):
            args += [flag, *[str(v) for v in value]]
        elif value is not None:
            args += [flag, str(value)]
    return args


def convert_flag_args(options: Mapping[str, Any]) -> list[str]:
    """Converter options: every boolean is a store_true switch there."""
    args: list[str] = []
    for key, value in options.items():
        if isinstance(value, bool) or key in CONVERT_SWITCHES:
            if value:
                args.append(f"--{key}")
        else:
            args += flag_args({key: value}, frozenset())
    return args


def conversion_args(
    family: str, checkpoint_dir: Path, output_dir: Path, data_type: str, tensor: int, pipeline: int
) -> list[str]:
    """The converter's arguments for one family (after the script path)."""
    check_parallelism(family, tensor, pipeline)
    caps = FAMILIES.get(family, Family("tp_pp", pipeline=True))
    args = ["--model_dir", str(checkpoint_dir), "--output_dir", str(output_dir), "--dtype", data_type, *caps.extra]
    if caps.parallel == "world_size":
        return [*args, "--world-size", str(tensor)]
    return [*args, "--tp_size", str(tensor), "--pp_size", str(pipeline)]

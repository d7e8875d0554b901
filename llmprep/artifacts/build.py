"""Build the serving artifact of a checkpoint for one of the two TensorRT-LLM runtimes.

engine  (TensorRT-LLM 1.2.1 and earlier): the documented two steps of that release,
        `convert_checkpoint.py --model_dir --output_dir --dtype` and the family's parallelism
        flags (llmprep/artifacts/converters.py), then `trtllm-build --checkpoint_dir --output_dir --max_batch_size
        --max_input_len --max_seq_len --max_num_tokens` plus the spec's options. The artifact
        is the engine directory: `config.json` and one `rank<N>.engine` per GPU.
pytorch (current releases): no build. The artifact holds the LLM API arguments
        (`llm_api_options.yaml`), `runtime.json` naming the start-up caches the release can
        reuse, and `caches/` for them (autotuner results via TLLM_AUTOTUNER_CACHE_PATH,
        torch.compile via TORCHINDUCTOR_CACHE_DIR, Triton kernels via TRITON_CACHE_DIR); the
        first server fills them and every later pod on the shared volume reuses them.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmprep import proc
from llmprep.artifacts import converters, trtllm
from llmprep.artifacts import gpu as gpu_mod
from llmprep.artifacts.cache import MUTABLE_DIR
from llmprep.errors import BuildError, ProcessError
from llmprep.spec import ModelSpec

# Where the engine-capable images keep TensorRT-LLM's examples (searched in order).
EXAMPLES_DIRS = (
    Path("/app/tensorrt_llm/examples"),
    Path("/opt/tensorrt_llm/examples"),
    Path("/app/examples"),
    Path("/workspace/TensorRT-LLM/examples"),
)
CONVERTERS = converters.CONVERTERS
BUILD_SWITCHES = converters.BUILD_SWITCHES
# Options reserved for our own use inside `model.tensorrtLlm.options` on the engine runtime.
CONVERT_OPTIONS_KEY = "convert"
LLM_API_OPTIONS = "llm_api_options.yaml"
RUNTIME_FILE = "runtime.json"
RUNTIME_CACHES = {
    "TLLM_AUTOTUNER_CACHE_PATH": f"{MUTABLE_DIR}/autotuner/autotuner_cache.json",
    "TORCHINDUCTOR_CACHE_DIR": f"{MUTABLE_DIR}/torchinductor",
    "TRITON_CACHE_DIR": f"{MUTABLE_DIR}/triton",
}


@dataclass(frozen=True)
class Environment:
    """What this machine brings to a build."""

    trtllm: trtllm.TrtllmInfo | None
    gpus: gpu_mod.GpuInfo


def detect_environment(python: str = sys.executable) -> Environment:
    return Environment(trtllm.detect(python), gpu_mod.detect_gpus())


def unobserved_environment() -> Environment:
    """A machine seen as having neither TensorRT-LLM nor GPUs: matching then ignores both."""
    return Environment(None, gpu_mod.GpuInfo((), "none"))


def artifact_inputs(
    spec: ModelSpec, *, commit: str, gpu_product: str | None, trtllm_version: str | None
) -> dict[str, Any]:
    """Everything that changes the artifact, in clear text (the cache key hashes exactly this)."""
    limits = spec.limits
    return {
        "runtime": spec.runtime,
        "hfRepo": spec.hf_repo,
        "revision": commit,
        "tensor": spec.parallelism.tensor,
        "pipeline": spec.parallelism.pipeline,
        "dataType": spec.data_type,
        "limits": {
            "maxBatchSize": limits.max_batch_size,
            "maxInputLen": limits.max_input_len,
            "maxSeqLen": limits.max_seq_len,
            "maxNumTokens": limits.max_num_tokens,
        },
        "options": json.loads(json.dumps(dict(spec.options), sort_keys=True, default=str)),
        "gpuProduct": gpu_product,
        "trtllmVersion": trtllm_version,
    }


# --------------------------------------------------------------------------- engine


def model_type(checkpoint_dir: Path) -> str:
    try:
        config = json.loads((checkpoint_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"{checkpoint_dir}/config.json: cannot read the model's configuration ({exc})") from None
    kind = config.get("model_type")
    if not isinstance(kind, str):
        raise BuildError(f"{checkpoint_dir}/config.json: no model_type")
    return kind


def find_convert_script(kind: str, examples_dir: Path | None = None) -> Path:
    """The release's convert_checkpoint.py for a Hugging Face `model_type`."""
    family = converters.family_of(kind)
    roots = [examples_dir] if examples_dir else list(EXAMPLES_DIRS)
    for root in roots:
        for sub in (f"models/core/{family}", f"models/contrib/{family}", family):
            script = root / sub / "convert_checkpoint.py"
            if script.is_file():
                return script
    where = ", ".join(str(r) for r in roots)
    raise BuildError(
        f"TensorRT-LLM's examples/…/{family}/convert_checkpoint.py not found under {where}; "
        "give the examples folder of the installed release with --trtllm-examples"
    )


def _flag_args(options: Mapping[str, Any], switches: frozenset[str] = frozenset()) -> list[str]:
    return converters.flag_args(options, switches)


def conversion_command(python: str, script: Path, spec: ModelSpec, checkpoint_dir: Path, output_dir: Path) -> list[str]:
    """`convert_checkpoint.py` with the spec's dataType (bfloat16 included) and parallelism."""
    extra = spec.options.get(CONVERT_OPTIONS_KEY) or {}
    if not isinstance(extra, Mapping):
        raise BuildError(
            f"model.tensorrtLlm.options.{CONVERT_OPTIONS_KEY}: must be a map of convert_checkpoint.py flags"
        )
    family = script.parent.name
    args = converters.conversion_args(
        family, checkpoint_dir, output_dir, spec.data_type, spec.parallelism.tensor, spec.parallelism.pipeline
    )
    return [python, str(script), *args, *converters.convert_flag_args(extra)]


def build_command(base: list[str], spec: ModelSpec, converted_dir: Path, output_dir: Path) -> list[str]:
    """`trtllm-build` with the spec's limits, then the spec's options as flags."""
    limits = spec.limits
    options = {k: v for k, v in spec.options.items() if k != CONVERT_OPTIONS_KEY}
    reserved = {"checkpoint_dir", "output_dir", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens"}
    clash = sorted(reserved & set(options))
    if clash:
        raise BuildError(
            f"model.tensorrtLlm.options.{clash[0]}: set by llmprep itself; use the spec's own field instead "
            "(maxBatchSize, maxInputLen, maxSeqLen, maxNumTokens)"
        )
    return [
        *base,
        "--checkpoint_dir",
        str(converted_dir),
        "--output_dir",
        str(output_dir),
        "--max_batch_size",
        str(limits.max_batch_size),
        "--max_input_len",
        str(limits.max_input_len),
        "--max_seq_len",
        str(limits.max_seq_len),
        "--max_num_tokens",
        str(limits.max_num_tokens),
        *_flag_args(options, BUILD_SWITCHES),
    ]


def verify_engine_dir(path: Path, spec: ModelSpec) -> None:
    """The engine directory trtllm-build wrote matches what was asked for."""
    world = spec.parallelism.gpus
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"trtllm-build wrote no readable config.json in {path} ({exc})") from None
    for rank in range(world):
        engine = path / f"rank{rank}.engine"
        if not engine.is_file() or engine.stat().st_size == 0:
            raise BuildError(f"trtllm-build wrote no {engine.name} (expected {world} engines, one per GPU)")
    pretrained = config.get("pretrained_config", {}) if isinstance(config, dict) else {}
    dtype = pretrained.get("dtype")
    if dtype is not None and dtype != spec.data_type:
        raise BuildError(
            f"the engine was built as {dtype}, not the requested model.tensorrtLlm.dataType {spec.data_type}"
        )
    mapping = pretrained.get("mapping", {})
    got = (mapping.get("tp_size", spec.parallelism.tensor), mapping.get("pp_size", spec.parallelism.pipeline))
    if got != (spec.parallelism.tensor, spec.parallelism.pipeline):
        raise BuildError(f"the engine was built for tensor {got[0]} × pipeline {got[1]}, not the spec's parallelism")


def build_engine(
    spec: ModelSpec,
    checkpoint_dir: Path,
    out_dir: Path,
    info: trtllm.TrtllmInfo,
    *,
    examples_dir: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> None:
    """Convert the checkpoint and run trtllm-build into `out_dir`."""
    script = find_convert_script(model_type(checkpoint_dir), examples_dir)
    converted = out_dir / ".converted"  # inside the partial entry: a crash leaves nothing elsewhere
    try:
        try:
            proc.run(
                conversion_command(info.python, script, spec, checkpoint_dir, converted),
                on_line=on_line,
                log=log,
                timeout=timeout,
            )
        except ProcessError as exc:
            raise BuildError(f"checkpoint conversion failed: {exc}") from None
        try:
            proc.run(
                build_command(info.build_command(), spec, converted, out_dir), on_line=on_line, log=log, timeout=timeout
            )
        except ProcessError as exc:
            raise BuildError(f"engine build failed: {exc}") from None
    finally:
        shutil.rmtree(converted, ignore_errors=True)
    verify_engine_dir(out_dir, spec)


# --------------------------------------------------------------------------- pytorch


def llm_api_options(spec: ModelSpec) -> dict[str, Any]:
    """The LLM API arguments of the PyTorch runtime (the spec's options win)."""
    limits = spec.limits
    args: dict[str, Any] = {
        "backend": "pytorch",
        "tensor_parallel_size": spec.parallelism.tensor,
        "pipeline_parallel_size": spec.parallelism.pipeline,
        "dtype": spec.data_type,
        "max_batch_size": limits.max_batch_size,
        "max_input_len": limits.max_input_len,
        "max_seq_len": limits.max_seq_len,
        "max_num_tokens": limits.max_num_tokens,
    }
    args.update(dict(spec.options))
    return args


def verify_checkpoint(checkpoint_dir: Path) -> None:
    """A Hugging Face checkpoint the PyTorch backend can load: config and weights present."""
    model_type(checkpoint_dir)
    weights = list(checkpoint_dir.glob("*.safetensors")) + list(checkpoint_dir.glob("pytorch_model*.bin"))
    if not weights:
        raise BuildError(f"{checkpoint_dir}: no weights (*.safetensors or pytorch_model*.bin)")
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise BuildError(f"{index}: unreadable ({exc})") from None
        missing = sorted(s for s in shards if not (checkpoint_dir / s).is_file())
        if missing:
            raise BuildError(f"{checkpoint_dir}: weight shard {missing[0]} named in the index is missing")


def build_pytorch(spec: ModelSpec, checkpoint_dir: Path, out_dir: Path, info: trtllm.TrtllmInfo) -> None:
    """No engine: record the LLM API arguments and make room for the reusable start-up caches."""
    verify_checkpoint(checkpoint_dir)
    (out_dir / LLM_API_OPTIONS).write_text(yaml.safe_dump(llm_api_options(spec), sort_keys=True))
    runtime = {"runtime": "pytorch", "trtllmVersion": info.version, "env": dict(RUNTIME_CACHES)}
    (out_dir / RUNTIME_FILE).write_text(json.dumps(runtime, indent=2, sort_keys=True) + "\n")
    for rel in RUNTIME_CACHES.values():
        target = out_dir / rel
        (target.parent if target.suffix else target).mkdir(parents=True, exist_ok=True)


def runtime_env(artifact_dir: Path) -> dict[str, str]:
    """Environment variables that point the server at the artifact's start-up caches."""
    try:
        data = json.loads((artifact_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {name: str(artifact_dir / rel) for name, rel in data.get("env", {}).items()}


def build_artifact(
    spec: ModelSpec,
    checkpoint_dir: Path,
    out_dir: Path,
    info: trtllm.TrtllmInfo,
    *,
    examples_dir: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> None:
    """Fill `out_dir` with the artifact of `spec` (whose runtime is already resolved)."""
    if spec.runtime == "engine":
        build_engine(
            spec, checkpoint_dir, out_dir, info, examples_dir=examples_dir, on_line=on_line, log=log, timeout=timeout
        )
    elif spec.runtime == "pytorch":
        build_pytorch(spec, checkpoint_dir, out_dir, info)
    else:
        raise BuildError(f"model.tensorrtLlm.runtime: {spec.runtime!r} must be resolved to engine or pytorch first")

"""Write a Triton model repository for a model spec, from our own Jinja2 templates.

Two layouts, one per runtime (DESIGN.md "Triton model repository"):
- `engine` -> `inflight_batcher_llm`: ensemble, preprocessing, tensorrt_llm (Triton's
  `tensorrtllm` backend), postprocessing, tensorrt_llm_bls;
- `pytorch` -> `llmapi`: one `tensorrt_llm` Python model running the LLM API, plus model.yaml.
Model names, tensor names, types and dims match TensorRT-LLM 1.2.x's layouts (the table in
tests/data/upstream_layouts.py). With `engine="standin"` the `tensorrt_llm` model is
llmprep's stand-in (a cost-model engine with the same inputs and outputs, for the lab and
tests). Templates use StrictUndefined: a placeholder left unfilled is an error, never a
silently empty value. The repository is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from llmprep.errors import RepoError, SpecError, UsageError
from llmprep.files import ensure_dir, publish_dir
from llmprep.spec import ModelSpec

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENGINES = ("real", "standin")
LAYOUTS = {"engine": "inflight_batcher_llm", "pytorch": "llmapi"}
MARKER = ".llmprep-repository.json"
# The helpers shared by our Python models (templates/common/); each model gets the ones it imports.
COMMON = TEMPLATES / "common"
# Where the tiny tokenizer of a stand-in goes: inside a model folder, since Triton takes every
# top-level folder for a model (and ignores non-numeric folders inside one).
TINY_TOKENIZER = Path("tensorrt_llm") / "tokenizer"
INFLIGHT_MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
# Triton's queue limit in front of each batching model: 0 is unlimited, upstream's usual fill.
MAX_QUEUE_SIZE = 0
# The engine backend's default capacity scheduler; the stand-in emulates it.
BATCH_SCHEDULER_POLICY = "guaranteed_no_evict"
EXECUTOR_WORKER = "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker"


@dataclass(frozen=True)
class Sources:
    """The folders a repository points at, resolved to absolute paths."""

    tokenizer: Path
    engine_dir: Path | None
    model_dir: Path | None


def resolve_runtime(spec: ModelSpec, engine: str, layout: str | None) -> str:
    """The concrete runtime: the spec's, or what `layout` names, or `engine` for a stand-in on `auto`."""
    by_layout = {v: k for k, v in LAYOUTS.items()}
    if layout is not None and layout not in by_layout:
        raise UsageError(f"--layout: {layout!r} is not one of {', '.join(by_layout)}")
    wanted = by_layout[layout] if layout else None
    runtime = spec.runtime
    if runtime == "auto":
        if wanted:
            return wanted
        if engine == "standin":
            return "engine"
        raise SpecError(
            "model.tensorrtLlm.runtime: 'auto' must be resolved before writing a repository; "
            "pass --runtime engine or --runtime pytorch (llmprep prepare resolves it from the installed TensorRT-LLM)"
        )
    if wanted and wanted != runtime:
        raise UsageError(f"--layout: {layout} does not serve runtime {runtime!r}; use {LAYOUTS[runtime]}")
    return runtime


def kv_cache_blocks(spec: ModelSpec) -> int:
    """The stand-in's KV-cache size in blocks (its `kvCacheBlocks`, or room for maxInFlight full sequences)."""
    st = spec.standin
    if st.kv_cache_blocks:
        return st.kv_cache_blocks
    return st.max_in_flight * math.ceil(spec.limits.max_seq_len / st.tokens_per_block)


def _pbtxt_string(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _standin_parameters(spec: ModelSpec, tokenizer: Path) -> list[tuple[str, str]]:
    st = spec.standin
    params = [
        ("llmprep_standin", "true"),
        ("standin_prefill_ms_per_token", f"{st.prefill_ms_per_token:g}"),
        ("standin_decode_ms_per_step", f"{st.decode_ms_per_step:g}"),
        ("standin_max_in_flight", str(st.max_in_flight)),
        ("standin_queue_in_triton", _bool(st.queue_in_triton)),
        ("standin_output_tokens", str(st.output_tokens)),
        ("standin_compute", st.compute),
        ("standin_tokens_per_block", str(st.tokens_per_block)),
        ("standin_kv_cache_blocks", str(kv_cache_blocks(spec))),
        # The per-iteration token budget: the engine's max_num_tokens (trtllm-build / LLM API).
        ("standin_max_num_tokens", str(spec.limits.max_num_tokens)),
        # The stand-in's scheduler chunks contexts as the backend's does with this parameter set.
        ("enable_chunked_context", _bool(spec.repository.enable_chunked_context)),
        # How often the emulated nv_trt_llm_* gauges refresh (the backend's own stats period parameter).
        ("stats_check_period_ms", "100"),
    ]
    if st.compute == "torch":
        params.append(("standin_vocab_size", str(_vocab_size(tokenizer))))
        params.append(("standin_torch_width", str(st.torch_width)))
        params.append(("standin_torch_layers", str(st.torch_layers)))
    return params


def _vocab_size(tokenizer: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True))


def _engine_parameters(spec: ModelSpec, engine: str, src: Sources) -> list[tuple[str, str]]:
    repo = spec.repository
    if engine == "standin":
        return [
            ("exclude_input_in_output", _bool(repo.exclude_input_in_output)),
            # Read with no fallback by the real backend (tests/data/backend_parameters.csv): the stand-in carries them too.
            ("gpt_model_type", repo.batching_strategy),
            ("tokenizer_dir", str(src.tokenizer)),
            *_standin_parameters(spec, src.tokenizer),
        ]
    assert src.engine_dir is not None
    return [
        ("max_beam_width", str(repo.max_beam_width)),
        ("FORCE_CPU_ONLY_INPUT_TENSORS", "no"),
        ("gpt_model_type", repo.batching_strategy),
        ("gpt_model_path", str(src.engine_dir)),
        ("batch_scheduler_policy", BATCH_SCHEDULER_POLICY),
        ("kv_cache_free_gpu_mem_fraction", f"{repo.kv_cache_free_gpu_mem_fraction:g}"),
        ("exclude_input_in_output", _bool(repo.exclude_input_in_output)),
        ("enable_kv_cache_reuse", _bool(repo.enable_kv_cache_reuse)),
        # Off when unset or unparseable (model_instance_state.cc, v0.19.0 lines 518-533); needs an
        # engine built with use_paged_context_fmha.
        ("enable_chunked_context", _bool(repo.enable_chunked_context)),
        ("tokenizer_dir", str(src.tokenizer)),
        ("executor_worker_path", EXECUTOR_WORKER),
    ]


def template_values(spec: ModelSpec, runtime: str, engine: str, src: Sources) -> dict[str, Any]:
    """Every value the templates of `runtime` read (missing ones fail the render)."""
    repo, limits = spec.repository, spec.limits
    common: dict[str, Any] = {
        "standin": engine == "standin",
        "decoupled": _bool(repo.decoupled),
        "logits_datatype": repo.logits_datatype,
    }
    if runtime == "engine":
        batch = limits.max_batch_size
        if engine == "standin" and spec.standin.queue_in_triton:
            # The opposite assumption: Triton hands the engine at most maxInFlight requests at a
            # time and the rest wait in Triton's queue (every model, since an ensemble may not
            # batch more than the models it contains).
            batch = min(batch, spec.standin.max_in_flight)
        return {
            **common,
            "max_batch_size": batch,
            "max_queue_delay_microseconds": repo.max_queue_delay_microseconds,
            "max_queue_size": MAX_QUEUE_SIZE,
            "tokenizer_dir": _pbtxt_string(src.tokenizer),
            "engine_dir": _pbtxt_string(src.engine_dir or ""),
            "add_special_tokens": "true",
            "skip_special_tokens": "true",
            "accumulate_tokens": "false",
            "preprocessing_instances": repo.preprocessing_instances,
            "postprocessing_instances": repo.postprocessing_instances,
            "bls_instances": repo.bls_instances,
            "parameters": [(k, _pbtxt_string(v)) for k, v in _engine_parameters(spec, engine, src)],
        }
    model = src.model_dir or src.tokenizer
    return {
        **common,
        "decoupled": _bool(repo.llmapi_decoupled),
        # Upstream's llmapi model does not batch in Triton (its model.yaml: max_batch_size 0);
        # the LLM API batches inside (engine_max_batch_size).
        "max_batch_size": 0,
        "parameters": [
            (k, _pbtxt_string(v)) for k, v in (_standin_parameters(spec, src.tokenizer) if engine == "standin" else [])
        ],
        "model": str(model),
        "tokenizer": str(src.tokenizer) if src.tokenizer != model else "",
        "tensor_parallel_size": spec.parallelism.tensor,
        "pipeline_parallel_size": spec.parallelism.pipeline,
        "dtype": spec.data_type,
        "engine_max_batch_size": limits.max_batch_size,
        "max_num_tokens": limits.max_num_tokens,
        "max_input_len": limits.max_input_len,
        "max_seq_len": limits.max_seq_len,
        "max_beam_width": repo.max_beam_width,
        "kv_cache_free_gpu_mem_fraction": f"{repo.kv_cache_free_gpu_mem_fraction:g}",
        "enable_kv_cache_reuse": _bool(repo.enable_kv_cache_reuse),
        "extra_args": sorted(_llm_args(spec).items()),
    }


def _llm_args(spec: ModelSpec) -> dict[str, Any]:
    """Free-form `model.tensorrtLlm.options` that are LLM API arguments pass through to model.yaml."""
    reserved = {
        "model",
        "backend",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "triton_config",
        "kv_cache_config",
    }
    args = {k: v for k, v in spec.options.items() if k.isidentifier() and k not in reserved}
    # The LLM API's name for chunked context (llm_args.py BaseLlmArgs.enable_chunked_prefill, default
    # False); an explicit `options.enable_chunked_prefill` wins.
    if spec.repository.enable_chunked_context:
        args.setdefault("enable_chunked_prefill", True)
    return args


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, values: Mapping[str, Any]) -> str:
    """Render one template; an unfilled placeholder raises RepoError naming it."""
    try:
        text = _environment().get_template(name).render(**values)
    except jinja2.UndefinedError as exc:
        raise RepoError(f"template {name}: {exc.message} (a placeholder was left unfilled)") from None
    except jinja2.TemplateError as exc:
        raise RepoError(f"template {name}: {exc}") from None
    if "${" in text:
        raise RepoError(f"template {name}: an upstream-style ${{...}} placeholder is left in the output")
    return text


def _python_model(root: Path, model: str, source: Path) -> None:
    version = root / model / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, version / "model.py")
    for name in common_modules(source):
        shutil.copy2(COMMON / name, version / name)


def common_modules(source: Path) -> list[str]:
    """The common/ files a model file imports, directly or through another common file."""
    needed: set[str] = set()
    pending = [source]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                file = f"{name}.py"
                if (COMMON / file).is_file() and file not in needed:
                    needed.add(file)
                    pending.append(COMMON / file)
    return sorted(needed)


def _write_inflight(root: Path, values: Mapping[str, Any], engine: str) -> None:
    base = "inflight_batcher_llm"
    for model in INFLIGHT_MODELS:
        (root / model).mkdir(parents=True, exist_ok=True)
        (root / model / "config.pbtxt").write_text(render(f"{base}/{model}/config.pbtxt.j2", values))
    (root / "ensemble" / "1").mkdir(exist_ok=True)
    for model in ("preprocessing", "postprocessing", "tensorrt_llm_bls"):
        _python_model(root, model, TEMPLATES / base / model / "1" / "model.py")
    if engine == "standin":
        _python_model(root, "tensorrt_llm", TEMPLATES / "standin" / "engine_model.py")
    else:
        # The tensorrtllm backend reads the engine from gpt_model_path; the version folder must exist.
        (root / "tensorrt_llm" / "1").mkdir(exist_ok=True)


def _write_llmapi(root: Path, values: Mapping[str, Any], engine: str) -> None:
    base = "llmapi/tensorrt_llm"
    (root / "tensorrt_llm").mkdir(parents=True, exist_ok=True)
    (root / "tensorrt_llm" / "config.pbtxt").write_text(render(f"{base}/config.pbtxt.j2", values))
    source = TEMPLATES / "standin" / "llmapi_model.py" if engine == "standin" else TEMPLATES / base / "1" / "model.py"
    _python_model(root, "tensorrt_llm", source)
    (root / "tensorrt_llm" / "1" / "model.yaml").write_text(render(f"{base}/1/model.yaml.j2", values))


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise UsageError(
            f"--out {out_dir}: folder is not empty and was not written by llmprep repo; choose a new folder"
        )


def _existing_dir(path: Path | None, flag: str) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(f"{flag} {path}: no such folder")
    return path


def _sources(
    runtime: str,
    engine: str,
    out_dir: Path,
    checkpoint_dir: Path | None,
    artifact_dir: Path | None,
    tokenizer_dir: Path | None,
) -> tuple[Sources, bool]:
    """Resolved folders, and whether a tiny tokenizer must be written into the repository."""
    checkpoint = _existing_dir(checkpoint_dir, "--checkpoint")
    artifact = _existing_dir(artifact_dir, "--artifact")
    tokenizer = _existing_dir(tokenizer_dir, "--tokenizer") or checkpoint
    tiny = tokenizer is None and engine == "standin"
    if tiny:
        tokenizer = out_dir / TINY_TOKENIZER
    if tokenizer is None:
        raise UsageError("--tokenizer: required (or --checkpoint, whose folder holds the tokenizer)")
    if engine == "real" and runtime == "engine" and artifact is None:
        raise UsageError("--artifact: required for the engine runtime (the folder of the built TensorRT-LLM engine)")
    # The LLM API loads the Hugging Face checkpoint; an artifact folder serves when none is named.
    model_dir = checkpoint or artifact
    if engine == "real" and runtime == "pytorch" and model_dir is None:
        raise UsageError("--checkpoint: required for the pytorch runtime (the Hugging Face checkpoint folder)")
    return Sources(tokenizer=tokenizer, engine_dir=artifact, model_dir=model_dir), tiny


def write_repository(
    spec: ModelSpec,
    *,
    out_dir: Path,
    engine: str = "real",
    checkpoint_dir: Path | None = None,
    artifact_dir: Path | None = None,
    tokenizer_dir: Path | None = None,
    layout: str | None = None,
) -> Path:
    """Write the complete model repository for `spec` to `out_dir` (atomically) and return its path."""
    if engine not in ENGINES:
        raise UsageError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    runtime = resolve_runtime(spec, engine, layout)
    out_dir = Path(out_dir).expanduser().absolute()
    _check_target(out_dir)
    src, tiny = _sources(runtime, engine, out_dir, checkpoint_dir, artifact_dir, tokenizer_dir)
    ensure_dir(out_dir.parent, "the repository's directory")
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        if tiny:
            from llmprep.tinytok import write_tiny_tokenizer

            # Rendered against the staging copy (which exists now), then repointed at the final path.
            tiny_dir = write_tiny_tokenizer(staging / TINY_TOKENIZER)
            src = Sources(tokenizer=tiny_dir, engine_dir=src.engine_dir, model_dir=src.model_dir)
        values = template_values(spec, runtime, engine, src)
        if tiny:
            values = _repoint(values, staging / TINY_TOKENIZER, out_dir / TINY_TOKENIZER)
        if runtime == "engine":
            _write_inflight(staging, values, engine)
        else:
            _write_llmapi(staging, values, engine)
        manifest = {
            "runtime": runtime,
            "layout": LAYOUTS[runtime],
            "engine": engine,
            "standin": engine == "standin",
            "tokenizer": str(out_dir / TINY_TOKENIZER) if tiny else str(src.tokenizer),
            "spec": spec.with_runtime(runtime).to_values(),
        }
        (staging / MARKER).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.chmod(staging, 0o755)
        publish_dir(staging, out_dir)  # an older repository there is replaced whole
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _repoint(values: Mapping[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """Replace the staging path of the tiny tokenizer with its final path in every value."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(str(old), str(new))
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, tuple):
            return tuple(fix(v) for v in value)
        return value

    return {k: fix(v) for k, v in values.items()}


def model_names(repository: Path) -> list[str]:
    """The models in a repository (folders with a config.pbtxt)."""
    return sorted(p.parent.name for p in Path(repository).glob("*/config.pbtxt"))


def describe(repository: Path) -> dict[str, Any]:
    """The manifest llmprep wrote beside the models, plus the model names."""
    manifest = json.loads((Path(repository) / MARKER).read_text())
    manifest["models"] = model_names(repository)
    return manifest


def all_templates() -> Iterable[str]:
    """Every template file name (for tests that render them all)."""
    return sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.j2"))

"""The model spec: one typed description of a deployment, read from the chart's values.

Field names are the chart's values keys, which start from the NVIDIA tutorials' keys
(shared SEED-VALUES.md). The chart renders the `gpu` and `model` sections into the
ConfigMap `model.yaml`; a whole values file is accepted too (its other sections are
the chart's business and are not read here).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmprep.artifacts import converters
from llmprep.errors import LlmprepError, SpecError
from llmprep.files import looks_like_token, quote

_DECIMAL = re.compile(r"^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$")
INT32_MAX = 2**31 - 1  # Kubernetes and TensorRT-LLM integers are int32
MAX_PARALLEL = 1024  # GPUs in one tensor or pipeline group; far above any machine made
# A Secret's name is a DNS-1123 subdomain (Kubernetes: apimachinery validation IsDNS1123Subdomain).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

DATA_TYPES = ("float16", "bfloat16", "float32")
RUNTIMES = ("auto", "engine", "pytorch")
BATCHING_STRATEGIES = ("inflight_fused_batching", "v1")
LOGITS_DATATYPES = ("TYPE_FP32", "TYPE_FP16", "TYPE_BF16")
STANDIN_COMPUTE = ("timing", "torch")

# Top-level sections of a values file that belong to the chart, not to the model spec.
CHART_SECTIONS = frozenset(
    {
        "triton",
        "autoscaling",
        "kubernetes",
        "logging",
        "monitoring",
        "multinode",
        "cache",
        "llmprep",
        "lab",
        "alerts",
        "networkPolicy",
        "podDisruptionBudget",
        "grafana",
        "global",
    }
)

# The tutorials' short model names and the Hugging Face repositories they mean.
KNOWN_MODELS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "opt125m": "facebook/opt-125m",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-3-8b-instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama-3-70b": "meta-llama/Meta-Llama-3-70B",
    "llama-3-70b-instruct": "meta-llama/Meta-Llama-3-70B-Instruct",
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b-instruct": "meta-llama/Llama-3.1-70B-Instruct",
    "llama-3.1-405b-instruct": "meta-llama/Llama-3.1-405B-Instruct",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.3",
    "qwen2.5-0.5b-instruct": "Qwen/Qwen2.5-0.5B-Instruct",
}


@dataclass(frozen=True)
class Parallelism:
    tensor: int = 1
    pipeline: int = 1

    @property
    def gpus(self) -> int:
        """GPUs one model instance spans (tensor × pipeline)."""
        return self.tensor * self.pipeline


@dataclass(frozen=True)
class BuildLimits:
    max_batch_size: int = 64
    max_input_len: int = 2048
    max_seq_len: int = 4096
    max_num_tokens: int = 8192


@dataclass(frozen=True)
class Conversion:
    """Resources of the multi-node tutorial's conversion job (accepted for compatibility)."""

    cpu: str = "4"
    gpu: int = 1
    memory: str = "32Gi"


@dataclass(frozen=True)
class RepositoryOptions:
    """What the tutorials filled into the model repository with fill_template.py."""

    decoupled: bool = True
    # The llmapi layout's own switch: upstream's model.yaml ships decoupled False (unary).
    llmapi_decoupled: bool = False
    max_beam_width: int = 1
    enable_kv_cache_reuse: bool = False
    batching_strategy: str = "inflight_fused_batching"
    max_queue_delay_microseconds: int = 0
    kv_cache_free_gpu_mem_fraction: float = 0.9
    exclude_input_in_output: bool = True
    logits_datatype: str = "TYPE_FP32"
    preprocessing_instances: int = 1
    postprocessing_instances: int = 1
    bls_instances: int = 1


@dataclass(frozen=True)
class StandinOptions:
    """Cost model of the stand-in engine used by the lab and tests (never a real model)."""

    prefill_ms_per_token: float = 0.2
    decode_ms_per_step: float = 20.0
    max_in_flight: int = 4
    queue_in_triton: bool = False
    output_tokens: int = 16
    compute: str = "timing"
    tokens_per_block: int = 64
    kv_cache_blocks: int = 0  # 0: enough for maxInFlight sequences of maxSeqLen tokens
    # Size of the random-weight transformer that compute=torch runs each step (sets its GPU cost).
    torch_width: int = 256
    torch_layers: int = 4


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_repo: str
    revision: str = "main"
    tokenizer: str | None = None
    pull_secret: str | None = None
    skip_conversion: bool = False
    persistent_volume_claim: str | None = None
    data_type: str = "float16"
    runtime: str = "auto"
    parallelism: Parallelism = Parallelism()
    limits: BuildLimits = BuildLimits()
    options: Mapping[str, Any] = field(default_factory=dict)
    conversion: Conversion = Conversion()
    repository: RepositoryOptions = RepositoryOptions()
    standin: StandinOptions = StandinOptions()
    gpu: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def with_runtime(self, runtime: str) -> ModelSpec:
        """This spec with `auto` resolved to a concrete runtime."""
        return dataclasses.replace(self, runtime=runtime)

    def to_values(self) -> dict[str, Any]:
        """The spec as values-file YAML (the form the chart renders into model.yaml)."""
        doc: dict[str, Any] = {"model": _model_values(self)}
        if self.gpu:
            doc["gpu"] = list(self.gpu)
        return doc


def _model_values(spec: ModelSpec) -> dict[str, Any]:
    limits, repo, st = spec.limits, spec.repository, spec.standin
    model: dict[str, Any] = {
        "name": spec.name,
        "hfRepo": spec.hf_repo,
        "revision": spec.revision,
        "skipConversion": spec.skip_conversion,
        "tensorrtLlm": {
            "dataType": spec.data_type,
            "runtime": spec.runtime,
            "parallelism": {"tensor": spec.parallelism.tensor, "pipeline": spec.parallelism.pipeline},
            "maxBatchSize": limits.max_batch_size,
            "maxInputLen": limits.max_input_len,
            "maxSeqLen": limits.max_seq_len,
            "maxNumTokens": limits.max_num_tokens,
            "options": dict(spec.options),
        },
        "repository": {
            "decoupled": repo.decoupled,
            "llmapiDecoupled": repo.llmapi_decoupled,
            "maxBeamWidth": repo.max_beam_width,
            "enableKvCacheReuse": repo.enable_kv_cache_reuse,
            "batchingStrategy": repo.batching_strategy,
            "maxQueueDelayMicroseconds": repo.max_queue_delay_microseconds,
            "kvCacheFreeGpuMemFraction": repo.kv_cache_free_gpu_mem_fraction,
            "excludeInputInOutput": repo.exclude_input_in_output,
            "logitsDatatype": repo.logits_datatype,
            "instances": {
                "preprocessing": repo.preprocessing_instances,
                "postprocessing": repo.postprocessing_instances,
                "bls": repo.bls_instances,
            },
        },
        "standin": {
            "prefillMsPerToken": st.prefill_ms_per_token,
            "decodeMsPerStep": st.decode_ms_per_step,
            "maxInFlight": st.max_in_flight,
            "queueInTriton": st.queue_in_triton,
            "outputTokens": st.output_tokens,
            "compute": st.compute,
            "tokensPerBlock": st.tokens_per_block,
            "kvCacheBlocks": st.kv_cache_blocks,
            "torchWidth": st.torch_width,
            "torchLayers": st.torch_layers,
        },
    }
    for key, value in (
        ("tokenizer", spec.tokenizer),
        ("pullSecret", spec.pull_secret),
        ("persistentVolumeClaim", spec.persistent_volume_claim),
    ):
        if value is not None:
            model[key] = value
    return model


# --------------------------------------------------------------------------- reading


class _Section:
    """Reads typed keys out of one mapping, naming the full path in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(f"{path}: must be a mapping of keys, got {_kind(data)}")
        self.data = dict(data)
        self.path = path
        self.seen: set[str] = set()

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def text(self, key: str, default: str | None = None, *, choices: Iterable[str] = ()) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{self._at(key)}: must be a non-empty string, got {_kind(value)}")
        allowed = tuple(choices)
        if allowed and value not in allowed:
            raise SpecError(f"{self._at(key)}: {quote(value)} is not one of {', '.join(allowed)}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = INT32_MAX) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self._at(key)}: must be an integer ≥ {minimum}, got {_kind(value)}")
        if value < minimum:
            raise SpecError(f"{self._at(key)}: must be an integer ≥ {minimum}, got {value}")
        if value > maximum:
            raise SpecError(f"{self._at(key)}: must be an integer ≤ {maximum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, str) and _DECIMAL.match(value):
            value = float(value)  # Helm's --set leaves decimals as strings ("0.8")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{self._at(key)}: must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise SpecError(f"{self._at(key)}: must be a finite number, got {value}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"≥ {minimum:g}"
            raise SpecError(f"{self._at(key)}: must be {bound}, got {value}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SpecError(f"{self._at(key)}: must be true or false, got {_kind(value)}")
        return value

    def quantity(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SpecError(f"{self._at(key)}: must be a Kubernetes quantity such as 4 or 32Gi")
        return str(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SpecError(f"{self._at(key)}: must be a mapping, got {_kind(value)}")
        return dict(value)

    def section(self, key: str) -> _Section:
        return _Section(self._get(key), self._at(key))

    def ignore(self, *keys: str) -> None:
        self.seen.update(keys)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen, key=str)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            raise SpecError(f"{self._at(str(unknown[0]))[:200]}: unknown key; allowed here: {allowed}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float)):
        return f"number {quote(value)}"
    if isinstance(value, str):
        return f"string {quote(value)}"
    if value is None:
        return "nothing"
    return type(value).__name__


def _secret_name(sec: _Section, key: str) -> str | None:
    """A field that names a Secret: a DNS subdomain, and never echoed (a pasted token would be printed)."""
    value = sec._get(key)
    if value is None:
        return None
    if looks_like_token(value):
        raise SpecError(
            f"{sec._at(key)}: this looks like a token, not a Secret's name (value not shown); "
            "store the token in a Secret (kubectl create secret generic NAME --from-literal=token=…) and give NAME"
        )
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise SpecError(
            f"{sec._at(key)}: must be a Secret's name (lowercase letters, digits, '-' and '.', at most 253; value not shown)"
        )
    return value


def _read_gpu(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise SpecError("gpu: must be a GPU product name or a non-empty list of them (e.g. NVIDIA-H100-80GB-HBM3)")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"gpu[{i}]: must be a GPU product name such as NVIDIA-H100-80GB-HBM3, got {_kind(item)}")
    return tuple(items)


def parse_spec(doc: Any, *, source: str = "spec") -> ModelSpec:
    """Validate a values-shaped document and return the typed spec."""
    top = _Section(doc, "")
    gpu = _read_gpu(top._get("gpu"))
    model = top.section("model")
    top.ignore(*CHART_SECTIONS)
    top.done()
    warnings: list[str] = []

    name = model.text("name")
    if name is None:
        raise SpecError("model.name: required (a short name such as llama-3-8b, or set model.hfRepo too)")
    hf_repo = model.text("hfRepo") or KNOWN_MODELS.get(name) or (name if "/" in name else None)
    if hf_repo is None:
        known = ", ".join(sorted(KNOWN_MODELS))
        raise SpecError(f"model.hfRepo: required for model.name {name!r} (built-in short names: {known})")

    trt = model.section("tensorrtLlm")
    par = trt.section("parallelism")
    parallelism = Parallelism(
        tensor=par.integer("tensor", 1, minimum=1, maximum=MAX_PARALLEL),
        pipeline=par.integer("pipeline", 1, minimum=1, maximum=MAX_PARALLEL),
    )
    par.done()
    limits = BuildLimits(
        max_batch_size=trt.integer("maxBatchSize", BuildLimits.max_batch_size, minimum=1),
        max_input_len=trt.integer("maxInputLen", BuildLimits.max_input_len, minimum=1),
        max_seq_len=trt.integer("maxSeqLen", BuildLimits.max_seq_len, minimum=2),
        max_num_tokens=trt.integer("maxNumTokens", BuildLimits.max_num_tokens, minimum=1),
    )
    if limits.max_input_len >= limits.max_seq_len:
        raise SpecError(
            f"model.tensorrtLlm.maxInputLen: must be less than maxSeqLen ({limits.max_input_len} ≥ {limits.max_seq_len})"
        )
    conv = trt.section("conversion")
    conversion = Conversion(
        cpu=conv.quantity("cpu", Conversion.cpu),
        gpu=conv.integer("gpu", Conversion.gpu, minimum=0),
        memory=conv.quantity("memory", Conversion.memory),
    )
    conv.done()
    if trt._get("enable") is not None:
        warnings.append("model.tensorrtLlm.enable does nothing (it never did in the tutorials' chart)")
    data_type = trt.text("dataType", "float16", choices=DATA_TYPES) or "float16"
    runtime = trt.text("runtime", "auto", choices=RUNTIMES) or "auto"
    if runtime == "engine":  # what the family's converter cannot do fails before any download
        converters.check_parallelism(converters.guess_family(hf_repo) or "", parallelism.tensor, parallelism.pipeline)
    options = trt.mapping("options")
    trt.done()

    repo = _read_repository(model.section("repository"), warnings)
    standin = _read_standin(model.section("standin"))

    spec = ModelSpec(
        name=name,
        hf_repo=hf_repo,
        revision=model.text("revision", "main") or "main",
        tokenizer=model.text("tokenizer"),
        pull_secret=_secret_name(model, "pullSecret"),
        skip_conversion=model.flag("skipConversion", False),
        persistent_volume_claim=model.text("persistentVolumeClaim"),
        data_type=data_type,
        runtime=runtime,
        parallelism=parallelism,
        limits=limits,
        options=options,
        conversion=conversion,
        repository=repo,
        standin=standin,
        gpu=gpu,
        warnings=tuple(warnings),
    )
    model.done()
    return spec


def _read_repository(sec: _Section, warnings: list[str]) -> RepositoryOptions:
    d = RepositoryOptions()
    if sec._get("tokenizerType") is not None:
        warnings.append(
            "model.repository.tokenizerType is ignored: upstream preprocessing uses AutoTokenizer since v0.9"
        )
    inst = sec.section("instances")
    opts = RepositoryOptions(
        decoupled=sec.flag("decoupled", d.decoupled),
        llmapi_decoupled=sec.flag("llmapiDecoupled", d.llmapi_decoupled),
        max_beam_width=sec.integer("maxBeamWidth", d.max_beam_width, minimum=1),
        enable_kv_cache_reuse=sec.flag("enableKvCacheReuse", d.enable_kv_cache_reuse),
        batching_strategy=sec.text("batchingStrategy", d.batching_strategy, choices=BATCHING_STRATEGIES)
        or d.batching_strategy,
        max_queue_delay_microseconds=sec.integer("maxQueueDelayMicroseconds", d.max_queue_delay_microseconds),
        kv_cache_free_gpu_mem_fraction=sec.number(
            "kvCacheFreeGpuMemFraction", d.kv_cache_free_gpu_mem_fraction, minimum=0.01, maximum=1.0
        ),
        exclude_input_in_output=sec.flag("excludeInputInOutput", d.exclude_input_in_output),
        logits_datatype=sec.text("logitsDatatype", d.logits_datatype, choices=LOGITS_DATATYPES) or d.logits_datatype,
        preprocessing_instances=inst.integer("preprocessing", d.preprocessing_instances, minimum=1),
        postprocessing_instances=inst.integer("postprocessing", d.postprocessing_instances, minimum=1),
        bls_instances=inst.integer("bls", d.bls_instances, minimum=1),
    )
    inst.done()
    sec.done()
    return opts


def _read_standin(sec: _Section) -> StandinOptions:
    d = StandinOptions()
    opts = StandinOptions(
        prefill_ms_per_token=sec.number("prefillMsPerToken", d.prefill_ms_per_token),
        decode_ms_per_step=sec.number("decodeMsPerStep", d.decode_ms_per_step, minimum=0.01),
        max_in_flight=sec.integer("maxInFlight", d.max_in_flight, minimum=1),
        queue_in_triton=sec.flag("queueInTriton", d.queue_in_triton),
        output_tokens=sec.integer("outputTokens", d.output_tokens, minimum=1),
        compute=sec.text("compute", d.compute, choices=STANDIN_COMPUTE) or d.compute,
        tokens_per_block=sec.integer("tokensPerBlock", d.tokens_per_block, minimum=1),
        kv_cache_blocks=sec.integer("kvCacheBlocks", d.kv_cache_blocks, minimum=0),
        torch_width=sec.integer("torchWidth", d.torch_width, minimum=8),
        torch_layers=sec.integer("torchLayers", d.torch_layers, minimum=1),
    )
    sec.done()
    return opts


# --------------------------------------------------------------------------- files and flags


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` onto `base` as Helm merges values files: maps merge, the rest replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of `doc` with `a.b.c` set to `value` (maps are created as needed)."""
    keys = [k for k in dotted.split(".") if k]
    if not keys:
        raise SpecError(f"--set {dotted!r}: the key is empty; write it as model.tensorrtLlm.dataType=bfloat16")
    patch: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        patch = {key: patch}
    return deep_merge(doc, patch)


def read_yaml(path: Path) -> Any:
    """Read one YAML document, turning every failure into a one-line SpecError."""
    from llmprep import files

    return files.read_yaml(path, "spec file", SpecError)


def load_spec(
    paths: Iterable[Path] = (),
    *,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
) -> ModelSpec:
    """Read values files in order (later wins), apply `--set` expressions (Helm's parser), then overrides."""
    doc: dict[str, Any] = dict(base or {})
    for path in paths:
        data = read_yaml(Path(path))
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise SpecError(f"{path}: must be a mapping of values keys, got {_kind(data)}")
        doc = deep_merge(doc, data)
    if sets:
        from llmprep.chart import apply_set  # Helm's --set grammar, the same as `chart template`

        try:
            for expression in sets:
                doc = apply_set(doc, expression)
        except SpecError:
            raise
        except LlmprepError as exc:
            raise SpecError(str(exc)) from None
    for key, value in (overrides or {}).items():
        doc = set_path(doc, key, value)
    return parse_spec(doc)


def dump_spec(spec: ModelSpec) -> str:
    """The spec as YAML, round-trippable through load_spec."""
    return yaml.safe_dump(spec.to_values(), sort_keys=False)

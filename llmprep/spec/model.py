"""The typed spec: one frozen dataclass per section of the chart's `model` values, and back to values.

Field names are the chart's values keys (camelCase there, snake_case here); `ModelSpec.to_values`
writes the spec back in the form the chart renders into `model.yaml`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATA_TYPES = ("float16", "bfloat16", "float32")
RUNTIMES = ("auto", "engine", "pytorch")
# The values the backend takes for gpt_model_type (model_instance_state.cc, v0.19.0 lines 64-78); the
# tutorials' fill wrote inflight_batching, which selects the same in-flight batching as ours.
BATCHING_STRATEGIES = ("inflight_fused_batching", "inflight_batching", "v1")
LOGITS_DATATYPES = ("TYPE_FP32", "TYPE_FP16", "TYPE_BF16")
STANDIN_COMPUTE = ("timing", "torch")
# tritonserver options `llmprep serve` appends for the serving rank (values `triton.serverOptions`).
# On by default: the latency histograms behind the time-to-first-token input
# (`nv_inference_first_response_histogram_ms`, Triton core r24.11 and later; 2.51 = r24.10 ignores
# the setting and starts normally, run here). tests/data/triton_latency_metrics.csv cites the source.
DEFAULT_SERVER_OPTIONS = ("--metrics-config=histogram_latencies=true",)
# Options `llmprep serve` sets itself (llmprep/serve/triton.py server_args, serve/compose.py
# rank_args), each with where to change it instead.
RESERVED_SERVER_OPTIONS: dict[str, str] = {
    **dict.fromkeys(
        ("--http-port", "--grpc-port", "--metrics-port", "--http-address", "--grpc-address", "--metrics-address"),
        "the endpoints are `llmprep serve`'s --http-port/--grpc-port/--metrics-port/--address (the chart fixes 8000-8002)",
    ),
    **dict.fromkeys(
        ("--allow-http", "--allow-grpc", "--allow-metrics"), "every endpoint stays on for the serving rank"
    ),
    **dict.fromkeys(
        ("--model-repository", "--model-store"), "the repository is `llmprep serve`'s --repository or --cache"
    ),
    **dict.fromkeys(("--model-control-mode", "--load-model"), "llmprep loads every model of the repository"),
    "--exit-timeout-secs": "set triton.exitTimeoutSeconds (`llmprep serve --exit-timeout-secs`)",
    "--backend-directory": "llmprep serve uses the backends of the Triton it runs",
}

# Top-level sections of a values file that belong to the chart, not to the model spec
# (of `triton`, the spec reads only `serverOptions`).
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
    # The backend's enable_chunked_context; off when unset (model_instance_state.cc, v0.19.0 line 518).
    enable_chunked_context: bool = False
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
    server_options: tuple[str, ...] = DEFAULT_SERVER_OPTIONS
    warnings: tuple[str, ...] = ()

    def with_runtime(self, runtime: str) -> ModelSpec:
        """This spec with `auto` resolved to a concrete runtime."""
        return dataclasses.replace(self, runtime=runtime)

    def to_values(self) -> dict[str, Any]:
        """The spec as values-file YAML (the form the chart renders into model.yaml)."""
        doc: dict[str, Any] = {"model": _model_values(self)}
        if self.gpu:
            doc["gpu"] = list(self.gpu)
        if self.server_options != DEFAULT_SERVER_OPTIONS:
            doc["triton"] = {"serverOptions": list(self.server_options)}
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
            "enableChunkedContext": repo.enable_chunked_context,
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

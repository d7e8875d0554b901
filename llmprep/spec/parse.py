"""Validating a values-shaped document into a `ModelSpec` (`parse_spec`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmprep.artifacts import converters
from llmprep.errors import SpecError
from llmprep.files import quote
from llmprep.spec.fields import (
    MAX_ID,
    MAX_LABEL,
    MAX_NAME,
    MAX_TEXT,
    Section,
    check_free_text,
    check_length,
    kind_of,
    secret_name,
)
from llmprep.spec.model import (
    BATCHING_STRATEGIES,
    CHART_SECTIONS,
    DATA_TYPES,
    DEFAULT_SERVER_OPTIONS,
    KNOWN_MODELS,
    LOGITS_DATATYPES,
    RESERVED_SERVER_OPTIONS,
    RUNTIMES,
    STANDIN_COMPUTE,
    BuildLimits,
    Conversion,
    ModelSpec,
    Parallelism,
    RepositoryOptions,
    StandinOptions,
)

MAX_PARALLEL = 1024  # GPUs in one tensor or pipeline group; far above any machine made


def _read_gpu(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise SpecError("gpu: must be a GPU product name or a non-empty list of them (e.g. NVIDIA-H100-80GB-HBM3)")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"gpu[{i}]: must be a GPU product name such as NVIDIA-H100-80GB-HBM3, got {kind_of(item)}")
        check_length(item, f"gpu[{i}]" if isinstance(value, list) else "gpu", MAX_LABEL)  # a node label's value
    return tuple(items)


def read_server_options(triton: Any) -> tuple[str, ...]:
    """`triton.serverOptions`: `--flag=value` strings for tritonserver; the rest of `triton` is the chart's."""
    if not isinstance(triton, Mapping) or triton.get("serverOptions") is None:
        return DEFAULT_SERVER_OPTIONS
    items = triton["serverOptions"]
    if not isinstance(items, list):
        raise SpecError(f"triton.serverOptions: must be a list of --flag=value strings, got {kind_of(items)}")
    for i, item in enumerate(items):
        at = f"triton.serverOptions[{i}]"
        if not isinstance(item, str) or not item.startswith("--") or len(item) < 3:
            raise SpecError(
                f"{at}: must be a tritonserver option starting with --, such as --log-verbose=1, got {kind_of(item)}"
            )
        check_length(item, at, MAX_TEXT)
        if any(c.isspace() for c in item):
            raise SpecError(
                f"{at}: {quote(item)} contains whitespace; write the option and its value as one --flag=value"
            )
        flag = item.split("=", 1)[0]
        if flag in RESERVED_SERVER_OPTIONS:
            raise SpecError(f"{at}: {flag} is set by llmprep serve itself; remove it ({RESERVED_SERVER_OPTIONS[flag]})")
    return tuple(items)


def parse_spec(doc: Any, *, source: str = "spec") -> ModelSpec:
    """Validate a values-shaped document and return the typed spec."""
    top = Section(doc, "")
    gpu = _read_gpu(top._get("gpu"))
    server_options = read_server_options(top._get("triton"))
    model = top.section("model")
    top.ignore(*CHART_SECTIONS)
    top.done()
    warnings: list[str] = []

    name = model.text("name", max_length=MAX_ID)
    if name is None:
        raise SpecError("model.name: required (a short name such as llama-3-8b, or set model.hfRepo too)")
    hf_repo = model.text("hfRepo", max_length=MAX_ID) or KNOWN_MODELS.get(name) or (name if "/" in name else None)
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
    check_free_text(options, "model.tensorrtLlm.options")  # flags of trtllm-build and the LLM API
    trt.done()

    repo = _read_repository(model.section("repository"), warnings)
    standin = _read_standin(model.section("standin"))

    spec = ModelSpec(
        name=name,
        hf_repo=hf_repo,
        revision=model.text("revision", "main", max_length=MAX_ID) or "main",
        tokenizer=model.text("tokenizer"),
        pull_secret=secret_name(model, "pullSecret"),
        skip_conversion=model.flag("skipConversion", False),
        persistent_volume_claim=model.text("persistentVolumeClaim", max_length=MAX_NAME),
        data_type=data_type,
        runtime=runtime,
        parallelism=parallelism,
        limits=limits,
        options=options,
        conversion=conversion,
        repository=repo,
        standin=standin,
        gpu=gpu,
        server_options=server_options,
        warnings=tuple(warnings),
    )
    model.done()
    return spec


def _read_repository(sec: Section, warnings: list[str]) -> RepositoryOptions:
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
        enable_chunked_context=sec.flag("enableChunkedContext", d.enable_chunked_context),
        logits_datatype=sec.text("logitsDatatype", d.logits_datatype, choices=LOGITS_DATATYPES) or d.logits_datatype,
        preprocessing_instances=inst.integer("preprocessing", d.preprocessing_instances, minimum=1),
        postprocessing_instances=inst.integer("postprocessing", d.postprocessing_instances, minimum=1),
        bls_instances=inst.integer("bls", d.bls_instances, minimum=1),
    )
    inst.done()
    sec.done()
    return opts


def _read_standin(sec: Section) -> StandinOptions:
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

"""The `llmprep` command line: parse options, call one domain function, report errors.

Domain modules never import typer and never exit; this module turns their errors into one
line on stderr with exit code 2 (bad input) or 1 (failed work). `--debug` shows tracebacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from llmprep import __version__
from llmprep.errors import LlmprepError
from llmprep.serve.drain import DEFAULT_PAUSE_S, DEFAULT_TIMEOUT_S
from llmprep.spec import ModelSpec, dump_spec, load_spec

app = typer.Typer(
    name="llmprep",
    help="Prepare, serve, load-test and autoscale TensorRT-LLM models on Triton Inference Server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}

SpecOption = Annotated[
    list[Path] | None,
    typer.Option("--spec", "-f", help="Values or model.yaml file; repeat to layer files (later wins)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one spec key, e.g. model.tensorrtLlm.parallelism.tensor=2."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout only.")]


def _version(value: bool) -> None:
    if value:
        print(f"llmprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


def read_spec(spec_files: list[Path] | None, sets: list[str] | None, **flags: Any) -> ModelSpec:
    """The spec from files, then `--set` overrides, then named flags that were given."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    spec = load_spec(spec_files or [], overrides=overrides, sets=sets or [])
    for warning in spec.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    return spec


def emit_json(data: Any) -> None:
    """Programs read stdout: JSON and nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


spec_app = typer.Typer(help="Validate and show the model spec.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")


@spec_app.command("show")
def spec_show(spec: SpecOption = None, set_: SetOption = None, as_json: JsonOption = False) -> None:
    """Validate the spec and print it with every default filled in."""
    parsed = read_spec(spec, set_)
    if as_json:
        emit_json(parsed.to_values())
    else:
        sys.stdout.write(dump_spec(parsed))


# Commands of the other modules register below, one block each.

# --- status: watch a release's autoscaling in a cluster (status.py) ---
@app.command("status")
def status_cmd(
    release: Annotated[str, typer.Argument(help="Helm release name.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace of the release (default: the context's).")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh live until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.5, help="Seconds between refreshes with --watch.")] = 5.0,
    kubeconfig: Annotated[
        str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file (default ~/.kube/config, else in-cluster).")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")] = None,
    events: Annotated[int, typer.Option("--events", min=0, help="How many of the HPA's last events to show.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Show a release's HPA metrics (current vs target), replicas, pod readiness and last scaling events."""
    from rich.console import Console as RichConsole

    from llmprep import status

    read = status.release_status(release, namespace, kubeconfig=kubeconfig, context=context, events=events)
    if as_json:
        emit_json(read().to_dict())
    elif watch:
        status.watch(read, RichConsole(), interval=interval)
    else:
        RichConsole().print(status.render(read()))


# --- core: download, build, prepare, cache ls/rm, plan (hub.py, build.py, cache.py, prepare.py, plan.py) ---
CacheDirOption = Annotated[
    Path | None,
    typer.Option("--cache", help="Artifact cache folder (default: $LLMPREP_CACHE or ./.llmprep-cache)."),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", help="File holding the Hugging Face token (the Secret mount); else $HF_TOKEN."),
]
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="No network: use only the cache and the Hub cache (also $HF_HUB_OFFLINE=1).")
]
HubCacheOption = Annotated[
    Path | None,
    typer.Option("--hub-cache", help="A Hugging Face Hub cache to read from (default: <cache>/hf/.hub; $LLMPREP_HUB_CACHE)."),
]
ExamplesOption = Annotated[
    Path | None,
    typer.Option("--trtllm-examples", help="TensorRT-LLM examples folder with convert_checkpoint.py ($LLMPREP_TRTLLM_EXAMPLES)."),
]
LockTimeoutOption = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for another process building the same entry.")
]


def _cache_dir(value: Path | None) -> Path:
    import os

    return (value or Path(os.environ.get("LLMPREP_CACHE") or ".llmprep-cache")).resolve()


def _core_options(
    token_file: Path | None, offline: bool, hub_cache: Path | None, examples: Path | None, lock_timeout: float
) -> Any:
    import os

    from llmprep.artifacts import hub
    from llmprep.artifacts.prepare import Options

    return Options(
        token=hub.resolve_token(token_file, warn=lambda text: console.print(f"[yellow]warning:[/] {text}", highlight=False)),
        offline=offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"},
        hub_cache=hub_cache or (Path(os.environ["LLMPREP_HUB_CACHE"]) if os.environ.get("LLMPREP_HUB_CACHE") else None),
        examples_dir=examples
        or (Path(os.environ["LLMPREP_TRTLLM_EXAMPLES"]) if os.environ.get("LLMPREP_TRTLLM_EXAMPLES") else None),
        lock_timeout=lock_timeout,
        on_line=lambda line: console.out(line, style="dim", highlight=False),
    )


def _say(message: str) -> None:
    console.print(f"[cyan]•[/] {message}", highlight=False, soft_wrap=True)


@app.command("download")
def download_cmd(
    spec: SpecOption = None,
    set_: SetOption = None,
    cache: CacheDirOption = None,
    token_file: TokenFileOption = None,
    offline: OfflineOption = False,
    hub_cache: HubCacheOption = None,
    lock_timeout: LockTimeoutOption = 3600.0,
    as_json: JsonOption = False,
) -> None:
    """Download the model's checkpoint into <cache>/hf/<repo>/<revision> (reused when complete)."""
    from llmprep.artifacts import hub

    parsed = read_spec(spec, set_)
    opts = _core_options(token_file, offline, hub_cache, None, lock_timeout)
    ck = hub.download(
        parsed.hf_repo,
        parsed.revision,
        _cache_dir(cache),
        token=opts.token,
        offline=opts.offline,
        hub_cache=opts.hub_cache,
        lock_timeout=lock_timeout,
        progress=_say,
        show_bars=not as_json,
    )
    if as_json:
        emit_json({"path": str(ck.path), "repo": ck.repo, "revision": ck.revision, "commit": ck.commit, "files": ck.files})
    else:
        console.print(f"checkpoint {ck.repo}@{ck.commit[:12]}: {ck.path}", highlight=False)


@app.command("build")
def build_cmd(
    spec: SpecOption = None,
    set_: SetOption = None,
    cache: CacheDirOption = None,
    examples: ExamplesOption = None,
    lock_timeout: LockTimeoutOption = 3600.0,
    as_json: JsonOption = False,
) -> None:
    """Build the artifact (engine or pytorch) from the downloaded checkpoint; reused when cached."""
    from llmprep.artifacts import hub
    from llmprep.artifacts.prepare import build_artifact
    from llmprep.errors import CacheError

    parsed = read_spec(spec, set_)
    cache_dir = _cache_dir(cache)
    ck = hub.find_checkpoint(cache_dir, parsed.hf_repo, parsed.revision)
    if ck is None:
        raise CacheError(f"{parsed.hf_repo}@{parsed.revision}: not downloaded to {cache_dir}; run `llmprep download` first")
    opts = _core_options(None, True, None, examples, lock_timeout)
    with console.status("building…"):
        resolved, entry = build_artifact(parsed, cache_dir, ck, opts=opts, progress=_say)
    if as_json:
        emit_json({"key": entry.path.name, "runtime": resolved.runtime, "path": str(entry.path), "built": entry.built,
                   "manifest": entry.manifest})
    else:
        verb = "built" if entry.built else "reused"
        console.print(f"{verb} {resolved.runtime} artifact {entry.path.name}: {entry.path}", highlight=False, soft_wrap=True)


@app.command("prepare")
def prepare_cmd(
    spec: SpecOption = None,
    set_: SetOption = None,
    cache: CacheDirOption = None,
    token_file: TokenFileOption = None,
    offline: OfflineOption = False,
    hub_cache: HubCacheOption = None,
    examples: ExamplesOption = None,
    lock_timeout: LockTimeoutOption = 3600.0,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check cached files' SHA-256 checksums before reuse (slow for large engines).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Download → build → model repository, each step reused from the cache when already done."""
    import dataclasses
    import time

    from llmprep.artifacts.prepare import prepare

    parsed = read_spec(spec, set_)
    opts = dataclasses.replace(_core_options(token_file, offline, hub_cache, examples, lock_timeout), verify=verify)
    started = time.monotonic()
    with console.status("preparing…"):
        result = prepare(parsed, _cache_dir(cache), opts=opts, progress=_say)
    took = time.monotonic() - started
    if as_json:
        emit_json({**result.to_json(), "seconds": round(took, 3)})
        return
    if result.note:
        console.print(f"[yellow]note:[/] {result.note}", highlight=False)
    verb = "built" if result.built else "reused"
    console.print(f"{verb} {result.spec.runtime} artifact {result.key}: {result.artifact_dir}", highlight=False, soft_wrap=True)
    if result.repository_dir:
        console.print(f"model repository: {result.repository_dir}", highlight=False, soft_wrap=True)
    console.print(f"done in {took:.2f} s", highlight=False)


cache_app = typer.Typer(help="Show and prune the artifact cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls(cache: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """List checkpoints, artifacts and repositories, marking partial and corrupt entries."""
    from rich.table import Table

    from llmprep.artifacts.cache import list_entries

    entries = list_entries(_cache_dir(cache))
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    table = Table("kind", "state", "size", "runtime", "created")
    table.add_column("key", no_wrap=True)
    table.add_column("model", overflow="fold")
    for e in entries:
        table.add_row(
            e.kind, e.state, f"{e.size / 1e6:,.1f} MB", str(e.inputs.get("runtime", "")), (e.created or "")[:16],
            e.key, str(e.inputs.get("hfRepo", "")),
        )
    Console(width=max(Console().width, 140)).print(table)


@cache_app.command("rm")
def cache_rm(
    keys: Annotated[list[str] | None, typer.Argument(help="Keys (or unique key prefixes) from `cache ls`.")] = None,
    cache: CacheDirOption = None,
    broken: Annotated[bool, typer.Option("--broken", help="Also remove partial and corrupt entries.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove cache entries (an artifact takes its model repositories with it)."""
    from llmprep.artifacts.cache import remove_entries
    from llmprep.errors import UsageError

    if not keys and not broken and not everything:
        raise UsageError("cache rm: name keys, or give --broken or --all")
    removed = remove_entries(_cache_dir(cache), list(keys or []), broken=broken, everything=everything)
    if as_json:
        emit_json([str(p) for p in removed])
    else:
        for path in removed:
            console.print(f"removed {path}", highlight=False)


@app.command("plan")
def plan_cmd(
    spec: SpecOption = None,
    set_: SetOption = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="config.json or checkpoint folder (default: the spec's downloaded checkpoint).")
    ] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU product label, e.g. NVIDIA-H100-80GB-HBM3 (default: the spec's first gpu).")] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", min=1, help="GPUs in one node.")] = 8,
    gpu_memory_gib: Annotated[float | None, typer.Option("--gpu-memory-gib", help="Memory of one GPU, for unknown products.")] = None,
    cache: CacheDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Estimate weight and KV-cache memory and recommend tensor × pipeline and replicas per node."""
    from llmprep.artifacts import hub
    from llmprep.artifacts.capacity import load_config, make_plan
    from llmprep.errors import UsageError

    parsed = read_spec(spec, set_) if (spec or set_) else None
    if config is None:
        if parsed is None:
            raise UsageError("plan: give --config PATH, or --spec with a model whose checkpoint is downloaded")
        ck = hub.find_checkpoint(_cache_dir(cache), parsed.hf_repo, parsed.revision)
        if ck is None:
            raise UsageError(f"plan: {parsed.hf_repo}@{parsed.revision} is not downloaded; run `llmprep download` or give --config")
        config = ck.path
    product = gpu or (parsed.gpu[0] if parsed and parsed.gpu else None)
    if product is None:
        raise UsageError("plan: give --gpu PRODUCT (a GPU Feature Discovery label such as NVIDIA-H100-80GB-HBM3)")
    limits = parsed.limits if parsed else None
    result = make_plan(
        load_config(config),
        gpu=product,
        data_type=parsed.data_type if parsed else "float16",
        max_batch_size=limits.max_batch_size if limits else 64,
        max_seq_len=limits.max_seq_len if limits else 4096,
        gpus_per_node=gpus_per_node,
        gpu_memory_gib=gpu_memory_gib,
        source=str(config),
    )
    if as_json:
        emit_json(result.to_json())
        return
    from rich.table import Table

    gib = 1024**3
    head = Table("model", "parameters", "dataType", "weights", "KV per token", "GPU", "GPU memory")
    head.add_row(result.model_type, f"{result.parameters / 1e9:.2f} B", result.data_type,
                 f"{result.weight_bytes / gib:.1f} GiB", f"{result.kv_bytes_per_token / 1024:.0f} KiB", result.gpu,
                 f"{result.gpu_memory / gib:.1f} GiB")
    layouts = Table("layout", "tensor × pipeline", "GPUs", "weights per GPU", "KV tokens", "full batches")
    for name, lay in (("minimum", result.minimum), ("recommended", result.recommended)):
        if lay:
            layouts.add_row(name, f"{lay.tensor} × {lay.pipeline}", str(lay.gpus), f"{lay.weights_per_gpu / gib:.1f} GiB",
                            f"{lay.kv_tokens:,}", f"{lay.full_batches:.2f}")
    out = Console(width=max(Console().width, 140))
    out.print(head)
    out.print(layouts)
    out.print(f"replicas per node of {result.gpus_per_node} GPUs: {result.replicas_per_node}")
    for note in result.notes:
        out.print(f"note: {note}")


# --- repo: the Triton model repository (llmprep/repo.py) ---
@app.command("repo")
def repo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model repository into (replaced whole).")],
    spec: SpecOption = None,
    set_: SetOption = None,
    engine: Annotated[str, typer.Option(help="real (TensorRT-LLM) or standin (emulated engine for the lab and tests).")] = "real",
    runtime: Annotated[str | None, typer.Option(help="engine or pytorch; overrides model.tensorrtLlm.runtime.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Hugging Face checkpoint folder (pytorch: the model).")] = None,
    artifact: Annotated[Path | None, typer.Option(help="Built engine folder (engine runtime) or prepared artifact.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer folder; a standin without one gets a tiny tokenizer.")] = None,
    layout: Annotated[str | None, typer.Option(help="inflight_batcher_llm or llmapi (default: the runtime's).")] = None,
    standin_compute: Annotated[str | None, typer.Option(help="Stand-in tokens from the cost model (timing) or a torch transformer.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a complete Triton model repository for the spec (upstream's model and tensor names)."""
    from llmprep.repo import describe, write_repository

    parsed = read_spec(
        spec, set_, **{"model.tensorrtLlm.runtime": runtime, "model.standin.compute": standin_compute}
    )
    path = write_repository(
        parsed, out_dir=out, engine=engine, checkpoint_dir=checkpoint, artifact_dir=artifact,
        tokenizer_dir=tokenizer, layout=layout,
    )
    info = describe(path)
    if as_json:
        emit_json({"path": str(path), **{k: v for k, v in info.items() if k != "spec"}})
    else:
        kind = "stand-in engine" if info["standin"] else "TensorRT-LLM"
        console.print(f"wrote {info['layout']} repository ({kind}) to {path}: {', '.join(info['models'])}")


# --- load: the streaming load generator (llmprep/load/) ---
@app.command("load")
def load_cmd(
    url: Annotated[list[str], typer.Option("--url", help="Triton HOST:PORT or Service name; repeat for round-robin.")],
    protocol: Annotated[str, typer.Option(help="grpc (ModelStreamInfer) or http (generate_stream).")] = "grpc",
    model: Annotated[str, typer.Option(help="ensemble, tensorrt_llm_bls or the llmapi tensorrt_llm model.")] = "ensemble",
    concurrency: Annotated[int | None, typer.Option(help="Closed loop: N clients, each sends its next request when one ends.")] = None,
    rate: Annotated[float | None, typer.Option(help="Open loop: Poisson arrivals at R requests per second.")] = None,
    profile: Annotated[Path | None, typer.Option(help="YAML stages: ramp / hold / step of clients or rate.")] = None,
    duration: Annotated[str, typer.Option(help="With --concurrency/--rate: 60s, 5m, or forever.")] = "60s",
    input_tokens: Annotated[float, typer.Option(help="Synthetic prompt length, mean (tokens).")] = 128,
    input_stddev: Annotated[float, typer.Option(help="Synthetic prompt length, standard deviation.")] = 0,
    output_tokens: Annotated[float, typer.Option(help="Requested output length, mean (tokens).")] = 64,
    output_stddev: Annotated[float, typer.Option(help="Requested output length, standard deviation.")] = 0,
    prompts: Annotated[Path | None, typer.Option(help="JSONL prompts: {\"text\": ..., \"output_tokens\": N} a line.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for prompts and arrivals.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write every sample and the percentiles as JSON.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write one CSV row per request.")] = None,
    max_error_rate: Annotated[float, typer.Option(help="Exit 1 when the error rate is above this fraction.")] = 0.01,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 60.0,
    fixed_output: Annotated[bool, typer.Option(help="Ask for exactly the output length (min_length/min_tokens/ignore_eos).")] = True,
    extra_input: Annotated[list[str] | None, typer.Option(help="Send another model input, NAME=VALUE (e.g. end_id=-1).")] = None,
    connections: Annotated[int, typer.Option(help="Connections per target (each balanced by kube-proxy).")] = 1,
    reconnect_every: Annotated[str, typer.Option(help="Re-open connections this often (e.g. 30s) so new pods get load; 0 = never.")] = "0",
    wait_ready: Annotated[str, typer.Option(help="Keep trying to reach the model this long at start (e.g. 10m).")] = "0",
    max_in_flight: Annotated[int, typer.Option(help="Open loop: drop (and count) arrivals beyond this many in flight.")] = 10_000,
    max_samples: Annotated[int | None, typer.Option(help="Keep only the latest N samples in memory (for runs without end).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Send streaming LLM requests to Triton and report TTFT, inter-token and end-to-end latency."""
    from llmprep.load.command import LoadOptions, run_command

    options = LoadOptions(
        urls=url, protocol=protocol, model=model, concurrency=concurrency, rate=rate, profile=profile,
        duration=duration, input_tokens=input_tokens, input_stddev=input_stddev, output_tokens=output_tokens,
        output_stddev=output_stddev, prompts=prompts, seed=seed, report=report, csv=csv,
        max_error_rate=max_error_rate, timeout=timeout, fixed_output=fixed_output, extra_inputs=extra_input or [],
        connections=connections, reconnect_every=reconnect_every, wait_ready=wait_ready, max_in_flight=max_in_flight,
        max_samples=max_samples, progress="none" if as_json else ("live" if console.is_terminal else "lines"),
    )
    run_command(options, console, None if as_json else Console(), emit_json if as_json else None)


# --- serve: compose and run tritonserver / mpirun for this pod (serve.py) ---
@app.command("serve")
def serve_cmd(
    spec: SpecOption = None,
    set_: SetOption = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Prepared artifact cache: serve the entry matching the spec.")
    ] = None,
    repository: Annotated[
        Path | None, typer.Option("--repository", help="Serve this model repository folder (no artifact cache).")
    ] = None,
    http_port: Annotated[int, typer.Option("--http-port", min=1, max=65535, help="HTTP port (rank 0).")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", min=1, max=65535, help="gRPC port (rank 0).")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port", min=1, max=65535, help="Prometheus metrics port.")] = 8002,
    address: Annotated[str, typer.Option("--address", help="Address the endpoints bind to.")] = "0.0.0.0",
    exit_timeout_secs: Annotated[
        int, typer.Option("--exit-timeout-secs", min=0, help="On SIGTERM, seconds in-flight requests get to finish.")
    ] = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command instead of running it.")] = False,
    as_json: JsonOption = False,
    role: Annotated[
        str, typer.Option("--role", help="auto (from LWS_WORKER_INDEX), single, leader or worker (multi-node).")
    ] = "auto",
    world_size: Annotated[
        int | None, typer.Option("--world-size", min=1, help="Ranks in all (must equal tensor × pipeline).")
    ] = None,
    group_size: Annotated[
        int | None, typer.Option("--group-size", min=1, help="Pods in the group (default $LWS_GROUP_SIZE).")
    ] = None,
    leader_address: Annotated[
        str | None, typer.Option("--leader-address", help="The leader pod's address (default $LWS_LEADER_ADDRESS).")
    ] = None,
    hosts: Annotated[
        str | None, typer.Option("--hosts", help="Comma-separated pod addresses, leader first (instead of LWS's).")
    ] = None,
    ssh_port: Annotated[int, typer.Option("--ssh-port", min=1, max=65535, help="Port of the workers' sshd.")] = 2222,
    ssh_dir: Annotated[
        Path, typer.Option("--ssh-dir", help="The group's ssh keys (id_ed25519, known_hosts, host key, authorized_keys).")
    ] = Path("/etc/llmprep/ssh"),
    hostfile: Annotated[Path | None, typer.Option("--hostfile", help="Where the leader writes the MPI hostfile.")] = None,
    wait_workers_secs: Annotated[
        float, typer.Option("--wait-workers-secs", min=0, help="How long the leader waits for its workers.")
    ] = 600.0,
) -> None:
    """Start Triton for this pod: tritonserver, or mpirun of it over tensor × pipeline ranks (and pods)."""
    import os

    from llmprep import serve
    from llmprep.errors import UsageError

    if cache is not None and repository is not None:
        raise UsageError("--cache or --repository: give one, not both (the prepared cache, or a model repository)")
    parsed = read_spec(spec, set_) if spec or set_ else None
    request = serve.ServeRequest(
        spec=parsed,
        cache_dir=cache.resolve() if cache else None,
        repository=repository,
        options=serve.ServeOptions(
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            address=address,
            exit_timeout_secs=exit_timeout_secs,
        ),
        role=role,
        world_size=world_size,
        group_size=group_size,
        leader_address=leader_address,
        hosts=tuple(h.strip() for h in (hosts or "").split(",") if h.strip()),
        ssh=serve.SshOptions(port=ssh_port, directory=ssh_dir),
        hostfile=hostfile or serve.DEFAULT_HOSTFILE,
        wait_workers_secs=wait_workers_secs,
    )
    if as_json and not dry_run:
        raise UsageError("--json: only with --dry-run (a running server's stdout is its log)")
    plan = serve.make_plan(request, env=dict(os.environ))
    if as_json:
        emit_json(plan.to_json())
        return
    if dry_run:
        console.print(plan.description, highlight=False, soft_wrap=True)
        if plan.hostfile is not None:
            console.print(f"hostfile {plan.hostfile_path}:\n{plan.hostfile.rstrip()}", highlight=False)
        sys.stdout.write(serve.render_command(plan.argv) + "\n")
        return
    console.print(plan.description, highlight=False, soft_wrap=True)
    raise typer.Exit(serve.exec_plan(plan, log=lambda line: console.print(line, highlight=False)))


@app.command("drain")
def drain_cmd(
    port: Annotated[
        list[int], typer.Option("--port", min=1, max=65535, help="Inference port to watch (HTTP, gRPC); repeat.")
    ],
    pause: Annotated[
        float, typer.Option("--pause", min=0, help="Seconds to keep serving first, while endpoints drop the pod.")
    ] = DEFAULT_PAUSE_S,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Then at most this many seconds to wait for clients to leave.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """preStop hook: serve on while endpoints drop the pod, then wait until no client is connected."""
    from llmprep.serve.drain import drain

    drain(port, pause_s=pause, timeout_s=timeout, log=lambda line: console.print(line, highlight=False))


# --- lab: the local autoscaling lab (llmprep/lab/) ---
@app.command("lab")
def lab_cmd(
    values: Annotated[
        list[Path] | None, typer.Option("--values", "-f", help="Chart values file, after the scenario's; repeatable.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Helm --set expression, after every values file; repeatable.")
    ] = None,
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help="Scenario file (load, values, cost model, speed, SLO); default: embedded.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for timeseries.csv, report.json, report.md, lab.png.")] = Path(
        "lab-out"
    ),
    sync_period: Annotated[
        str | None, typer.Option("--sync-period", help="HPA sync period in cluster time, e.g. 15s (divided by --speed).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option("--speed", help="Time compression of the control loop (scenario default, e.g. 5).")
    ] = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="Chart folder (default: the chart shipped with llmprep).")] = None,
) -> None:
    """Run the chart's rules and HPA against real Triton replicas, Prometheus and a load; plot the result."""
    from llmprep.lab.run import run_command

    try:
        result = run_command(
            scenario_file=scenario, values_files=values or [], sets=set_ or [], out_dir=out, sync_period=sync_period,
            speed=speed, chart_dir=chart, console=console,
        )
    except KeyboardInterrupt:  # a second Ctrl-C: clean-up ran in the lab's finally blocks
        console.print("[red]interrupted[/]")
        sys.exit(130)
    sys.stdout.write(f"{result.paths['plot']}\n")
    if result.interrupted:  # the first Ctrl-C stops the lab gracefully; say so in the exit code
        console.print("[red]interrupted[/]: the report covers the run up to the interruption")
        sys.exit(130)


# --- chart: render and lint the Helm chart without a helm binary (chart.py) ---
chart_app = typer.Typer(help="Render or lint the Helm chart as `helm template` / `helm lint` would.", no_args_is_help=True)
app.add_typer(chart_app, name="chart")
ValuesOption = Annotated[
    list[Path] | None, typer.Option("--values", "-f", help="Values file; repeat to layer files (later wins).")
]
HelmSetOption = Annotated[list[str] | None, typer.Option("--set", help="Helm --set expression, e.g. gpu[0]=NVIDIA-L4.")]


@chart_app.command("template")
def chart_template_cmd(
    release: Annotated[str, typer.Argument(help="Release name.")] = "llmprep",
    values: ValuesOption = None,
    set_: HelmSetOption = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the release.")] = "default",
    api_versions: Annotated[
        list[str] | None, typer.Option("--api-versions", "-a", help="API versions the cluster serves (auto switches).")
    ] = None,
) -> None:
    """Print the Kubernetes objects the chart renders for these values."""
    from llmprep import chart

    sys.stdout.write(chart.template(values or [], set_ or [], release=release, namespace=namespace,
                                    api_versions=api_versions if api_versions is not None else chart.DEFAULT_API_VERSIONS))


@chart_app.command("lint")
def chart_lint_cmd(values: ValuesOption = None, set_: HelmSetOption = None) -> None:
    """`helm lint --strict` of the chart with these values; exit 1 on findings."""
    from llmprep import chart

    findings = chart.lint(chart.merge_values(values or [], set_ or []))
    for line in findings:
        console.print(line, highlight=False, soft_wrap=True)
    if findings:
        raise typer.Exit(1)
    console.print("chart lint: no findings")

def _one_line(message: str, limit: int = 2000) -> str:
    """An error as one line of bounded length (a pasted 10 MB value must not come back whole)."""
    line = " ".join(message.split())
    return line if len(line) <= limit else f"{line[: limit - 1]}…"


def main() -> None:
    """Console-script entry point."""
    try:
        # Without standalone mode typer returns (not raises) the codes of typer.Exit and Ctrl-C.
        code = app(standalone_mode=False)
    except LlmprepError as exc:
        if _state["debug"]:
            raise
        console.print(f"[red]error:[/] {escape(_one_line(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("[red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # usage errors: click's, or (typer ≥ 0.2x) those of typer's own copy of click
        import click

        usage_errors: tuple[type[Exception], ...] = (click.ClickException,)
        if hasattr(typer, "TyperException"):
            usage_errors += (typer.TyperException,)
        if isinstance(exc, usage_errors) and hasattr(exc, "show"):
            exc.show()
            sys.exit(int(getattr(exc, "exit_code", 2)))
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

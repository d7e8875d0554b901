"""Preparing a model: `spec`, `download`, `build`, `prepare`, `cache` and `plan`.

Each command parses its options and calls one function of `llmprep.artifacts` (or `llmprep.spec`);
the groups' typer apps (`spec_app`, `cache_app`) are defined here and registered by `app.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llmprep.cli.options import JsonOption, SetOption, SpecOption, console, emit_json, read_spec
from llmprep.spec import dump_spec

spec_app = typer.Typer(help="Validate and show the model spec.", no_args_is_help=True)


@spec_app.command("show")
def spec_show(spec: SpecOption = None, set_: SetOption = None, as_json: JsonOption = False) -> None:
    """Validate the spec and print it with every default filled in."""
    parsed = read_spec(spec, set_)
    if as_json:
        emit_json(parsed.to_values())
    else:
        sys.stdout.write(dump_spec(parsed))


# Commands of the other modules register below, one block each.


CacheDirOption = Annotated[
    Path | None, typer.Option("--cache", help="Artifact cache folder (default: $LLMPREP_CACHE or ./.llmprep-cache).")
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
    typer.Option(
        "--hub-cache", help="A Hugging Face Hub cache to read from (default: <cache>/hf/.hub; $LLMPREP_HUB_CACHE)."
    ),
]
ExamplesOption = Annotated[
    Path | None,
    typer.Option(
        "--trtllm-examples", help="TensorRT-LLM examples folder with convert_checkpoint.py ($LLMPREP_TRTLLM_EXAMPLES)."
    ),
]
LockTimeoutOption = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for another process building the same entry.")
]


def _cache_dir(value: Path | None, *, must_exist: bool = False, missing_fix: str = "") -> Path:
    """The --cache folder, refused in one line when it cannot be a cache (see files.check_dir)."""
    import os

    from llmprep.files import check_dir

    path = (value or Path(os.environ.get("LLMPREP_CACHE") or ".llmprep-cache")).absolute()
    return check_dir(path, must_exist=must_exist, missing_fix=missing_fix).resolve()  # errors name the path given


_RUN_DOWNLOAD = "run `llmprep download` (or `prepare`) first, or give the cache it wrote with --cache"
_RUN_PREPARE = "run `llmprep prepare` first, or give the cache it wrote with --cache"


def _core_options(
    token_file: Path | None, offline: bool, hub_cache: Path | None, examples: Path | None, lock_timeout: float
) -> Any:
    import os

    from llmprep.artifacts import hub
    from llmprep.artifacts.prepare import Options

    return Options(
        token=hub.resolve_token(
            token_file, warn=lambda text: console.print(f"[yellow]warning:[/] {text}", highlight=False)
        ),
        offline=offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"},
        hub_cache=hub_cache or (Path(os.environ["LLMPREP_HUB_CACHE"]) if os.environ.get("LLMPREP_HUB_CACHE") else None),
        examples_dir=examples
        or (Path(os.environ["LLMPREP_TRTLLM_EXAMPLES"]) if os.environ.get("LLMPREP_TRTLLM_EXAMPLES") else None),
        lock_timeout=lock_timeout,
        on_line=lambda line: console.out(line, style="dim", highlight=False),
    )


def _say(message: str) -> None:
    from rich.markup import escape

    # The message may carry a repo id or revision (cut by hub.shown); `[` in them is no markup.
    console.print(f"[cyan]•[/] {escape(message)}", highlight=False, soft_wrap=True)


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
        emit_json(
            {"path": str(ck.path), "repo": ck.repo, "revision": ck.revision, "commit": ck.commit, "files": ck.files}
        )
    else:
        console.print(f"checkpoint {ck.repo}@{ck.commit[:12]}: {ck.path}", highlight=False)


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
    cache_dir = _cache_dir(cache, must_exist=True, missing_fix=_RUN_DOWNLOAD)
    ck = hub.find_checkpoint(cache_dir, parsed.hf_repo, parsed.revision)
    if ck is None:
        raise CacheError(
            f"{hub.shown(parsed.hf_repo)}@{hub.shown(parsed.revision)}: not downloaded to {cache_dir}; "
            "run `llmprep download` first"
        )
    opts = _core_options(None, True, None, examples, lock_timeout)
    with console.status("building…"):
        resolved, entry = build_artifact(parsed, cache_dir, ck, opts=opts, progress=_say)
    if as_json:
        emit_json(
            {
                "key": entry.path.name,
                "runtime": resolved.runtime,
                "path": str(entry.path),
                "built": entry.built,
                "manifest": entry.manifest,
            }
        )
    else:
        verb = "built" if entry.built else "reused"
        console.print(
            f"{verb} {resolved.runtime} artifact {entry.path.name}: {entry.path}", highlight=False, soft_wrap=True
        )


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
        bool,
        typer.Option("--verify", help="Check cached files' SHA-256 checksums before reuse (slow for large engines)."),
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
    console.print(
        f"{verb} {result.spec.runtime} artifact {result.key}: {result.artifact_dir}", highlight=False, soft_wrap=True
    )
    if result.repository_dir:
        console.print(f"model repository: {result.repository_dir}", highlight=False, soft_wrap=True)
    console.print(f"done in {took:.2f} s", highlight=False)


cache_app = typer.Typer(help="Show and prune the artifact cache.", no_args_is_help=True)


@cache_app.command("ls")
def cache_ls(cache: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """List checkpoints, artifacts and repositories, marking partial and corrupt entries."""
    from rich.table import Table

    from llmprep.artifacts.inventory import list_entries

    entries = list_entries(_cache_dir(cache, must_exist=True, missing_fix=_RUN_PREPARE))
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    table = Table("kind", "state", "size", "runtime", "created")
    table.add_column("key", no_wrap=True)
    table.add_column("model", overflow="fold")
    for e in entries:
        table.add_row(
            e.kind,
            e.state,
            f"{e.size / 1e6:,.1f} MB",
            str(e.inputs.get("runtime", "")),
            (e.created or "")[:16],
            e.key,
            str(e.inputs.get("hfRepo", "")),
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
    from llmprep.artifacts.inventory import remove_entries
    from llmprep.errors import UsageError

    if not keys and not broken and not everything:
        raise UsageError("cache rm: name keys, or give --broken or --all")
    cache_dir = _cache_dir(
        cache, must_exist=True, missing_fix="nothing to remove; give the cache `llmprep prepare` wrote with --cache"
    )
    removed = remove_entries(cache_dir, list(keys or []), broken=broken, everything=everything)
    if as_json:
        emit_json([str(p) for p in removed])
    elif not removed:
        console.print(f"nothing to remove in {cache_dir}", highlight=False, soft_wrap=True)
    else:
        for path in removed:
            console.print(f"removed {path}", highlight=False)


def plan_cmd(
    spec: SpecOption = None,
    set_: SetOption = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="config.json or checkpoint folder (default: the spec's downloaded checkpoint)."),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", help="GPU product label, e.g. NVIDIA-H100-80GB-HBM3 (default: the spec's first gpu)."),
    ] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", min=1, help="GPUs in one node.")] = 8,
    gpu_memory_gib: Annotated[
        float | None, typer.Option("--gpu-memory-gib", help="Memory of one GPU, for unknown products.")
    ] = None,
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
        ck = hub.find_checkpoint(
            _cache_dir(cache, must_exist=True, missing_fix=_RUN_DOWNLOAD), parsed.hf_repo, parsed.revision
        )
        if ck is None:
            raise UsageError(
                f"plan: {hub.shown(parsed.hf_repo)}@{hub.shown(parsed.revision)} is not downloaded; "
                "run `llmprep download` or give --config"
            )
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
    head.add_row(
        result.model_type,
        f"{result.parameters / 1e9:.2f} B",
        result.data_type,
        f"{result.weight_bytes / gib:.1f} GiB",
        f"{result.kv_bytes_per_token / 1024:.0f} KiB",
        result.gpu,
        f"{result.gpu_memory / gib:.1f} GiB",
    )
    layouts = Table("layout", "tensor × pipeline", "GPUs", "weights per GPU", "KV tokens", "full batches")
    for name, lay in (("minimum", result.minimum), ("recommended", result.recommended)):
        if lay:
            layouts.add_row(
                name,
                f"{lay.tensor} × {lay.pipeline}",
                str(lay.gpus),
                f"{lay.weights_per_gpu / gib:.1f} GiB",
                f"{lay.kv_tokens:,}",
                f"{lay.full_batches:.2f}",
            )
    out = Console(width=max(Console().width, 140))
    out.print(head)
    out.print(layouts)
    out.print(f"replicas per node of {result.gpus_per_node} GPUs: {result.replicas_per_node}")
    for note in result.notes:
        out.print(f"note: {note}")

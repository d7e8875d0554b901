"""Serving in the pod: `repo` (the Triton model repository), `serve` (tritonserver or mpirun) and `drain`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from llmprep.cli.options import JsonOption, SetOption, SpecOption, console, emit_json, read_spec
from llmprep.serve.drain import DEFAULT_PAUSE_S, DEFAULT_TIMEOUT_S

_MISSING_CACHE = "run `llmprep prepare` first, or give the cache it wrote with --cache"


def repo_cmd(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the model repository into (replaced whole).")
    ],
    spec: SpecOption = None,
    set_: SetOption = None,
    engine: Annotated[
        str, typer.Option(help="real (TensorRT-LLM) or standin (emulated engine for the lab and tests).")
    ] = "real",
    runtime: Annotated[str | None, typer.Option(help="engine or pytorch; overrides model.tensorrtLlm.runtime.")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Hugging Face checkpoint folder (pytorch: the model).")
    ] = None,
    artifact: Annotated[
        Path | None, typer.Option(help="Built engine folder (engine runtime) or prepared artifact.")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="Tokenizer folder; a standin without one gets a tiny tokenizer.")
    ] = None,
    layout: Annotated[str | None, typer.Option(help="inflight_batcher_llm or llmapi (default: the runtime's).")] = None,
    standin_compute: Annotated[
        str | None, typer.Option(help="Stand-in tokens from the cost model (timing) or a torch transformer.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a complete Triton model repository for the spec (upstream's model and tensor names)."""
    from llmprep.repo import describe, write_repository

    parsed = read_spec(spec, set_, **{"model.tensorrtLlm.runtime": runtime, "model.standin.compute": standin_compute})
    path = write_repository(
        parsed,
        out_dir=out,
        engine=engine,
        checkpoint_dir=checkpoint,
        artifact_dir=artifact,
        tokenizer_dir=tokenizer,
        layout=layout,
    )
    info = describe(path)
    if as_json:
        emit_json({"path": str(path), **{k: v for k, v in info.items() if k != "spec"}})
    else:
        kind = "stand-in engine" if info["standin"] else "TensorRT-LLM"
        console.print(f"wrote {info['layout']} repository ({kind}) to {path}: {', '.join(info['models'])}")


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
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", min=1, max=65535, help="Prometheus metrics port.")
    ] = 8002,
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
        Path,
        typer.Option("--ssh-dir", help="The group's ssh keys (id_ed25519, known_hosts, host key, authorized_keys)."),
    ] = Path("/etc/llmprep/ssh"),
    hostfile: Annotated[
        Path | None, typer.Option("--hostfile", help="Where the leader writes the MPI hostfile.")
    ] = None,
    wait_workers_secs: Annotated[
        float, typer.Option("--wait-workers-secs", min=0, help="How long the leader waits for its workers.")
    ] = 600.0,
) -> None:
    """Start Triton for this pod: tritonserver, or mpirun of it over tensor × pipeline ranks (and pods)."""
    import os

    from llmprep import serve
    from llmprep.artifacts.cache import check_dir
    from llmprep.errors import UsageError

    if cache is not None and repository is not None:
        raise UsageError("--cache or --repository: give one, not both (the prepared cache, or a model repository)")
    parsed = read_spec(spec, set_) if spec or set_ else None
    request = serve.ServeRequest(
        spec=parsed,
        cache_dir=check_dir(cache.absolute(), must_exist=True, missing_fix=_MISSING_CACHE).resolve() if cache else None,
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

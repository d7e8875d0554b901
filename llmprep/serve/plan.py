"""What to run in this pod: the repository (a folder, or the prepared cache), its layout and the group.

`make_plan` reads what `llmprep serve` was asked (`ServeRequest`), finds the model repository
(`--repository`, or the artifact `prepare` made for the spec in `--cache`), observes the pod
(TensorRT-LLM release, GPUs), runs the drift guard and hands every fact to `compose`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.errors import CacheError, UsageError
from llmprep.serve.compose import ServeOptions, ServePlan, compose, compose_worker
from llmprep.serve.drift import PodFacts, check_drift
from llmprep.serve.group import (
    DEFAULT_HOSTFILE,
    DEFAULT_WAIT_WORKERS_SECS,
    LWS_GROUP_SIZE,
    Group,
    SshOptions,
    discover_group,
)
from llmprep.serve.triton import TritonInstall
from llmprep.spec import DEFAULT_SERVER_OPTIONS, ModelSpec, parse_spec

ROLES = ("auto", "single", "leader", "worker")
REPOSITORY_MARKER = ".llmprep-repository.json"  # written by llmprep.repo beside the models
SYSTEM_PREFIXES = ("/", "/usr", "/usr/local")


@dataclass(frozen=True)
class ServeRequest:
    """Everything `llmprep serve` was asked (flags and spec), before looking at the pod."""

    spec: ModelSpec | None
    cache_dir: Path | None = None
    repository: Path | None = None
    options: ServeOptions = ServeOptions()
    role: str = "auto"
    world_size: int | None = None
    group_size: int | None = None
    leader_address: str | None = None
    hosts: tuple[str, ...] = ()
    ssh: SshOptions = SshOptions()
    hostfile: Path = DEFAULT_HOSTFILE
    wait_workers_secs: float = DEFAULT_WAIT_WORKERS_SECS


@dataclass(frozen=True)
class _Source:
    repository: Path
    runtime: str | None
    spec: ModelSpec | None
    manifest: dict[str, Any] | None
    standin: bool


def read_marker(repository: Path) -> dict[str, Any] | None:
    """llmprep.repo's description of a repository it wrote, or None for any other repository."""
    path = repository / REPOSITORY_MARKER
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"--repository: {path} is not readable JSON; write the repository again") from None
    return data if isinstance(data, dict) else None


def _from_repository(repository: Path, spec: ModelSpec | None) -> _Source:
    repository = repository.expanduser().absolute()
    if not repository.is_dir():
        raise UsageError(f"--repository: {repository} is not a folder (write one with `llmprep repo`)")
    if not any(repository.glob("*/config.pbtxt")):
        raise UsageError(f"--repository: {repository} has no model (no */config.pbtxt)")
    marker = read_marker(repository)
    runtime = spec.runtime if spec is not None and spec.runtime != "auto" else None
    if marker is not None:
        written = marker.get("runtime")
        if runtime is not None and written is not None and written != runtime:
            raise UsageError(
                f"model.tensorrtLlm.runtime: the spec says {runtime} but {repository} is the {written} layout; "
                "write the repository again or fix the spec"
            )
        runtime = written or runtime
        if spec is None and isinstance(marker.get("spec"), dict):
            spec = parse_spec(marker["spec"], source=str(repository / REPOSITORY_MARKER))
    standin = bool(marker and marker.get("standin"))
    return _Source(repository, runtime, spec, None, standin)


def _from_cache(spec: ModelSpec, cache_dir: Path, facts_env: Any | None) -> _Source:
    from llmprep.artifacts import build, prepare

    try:
        found = prepare.find_prepared(spec, cache_dir, env=facts_env)
    except CacheError as first:
        # Nothing matches this pod: look again ignoring the pod's facts, so that an artifact
        # built for another GPU or release is refused with the drift guard's clear line.
        try:
            found = prepare.find_prepared(spec, cache_dir, env=build.unobserved_environment())
        except CacheError:
            raise first from None
    if found.repository_dir is None:
        raise CacheError(f"artifact {found.key} in {cache_dir} has no model repository yet; run `llmprep prepare`")
    marker = read_marker(found.repository_dir) or {}
    return _Source(
        found.repository_dir, found.spec.runtime, found.spec, dict(found.manifest), bool(marker.get("standin"))
    )


def observe_pod(python: str | None = None) -> tuple[PodFacts, Any]:
    """This pod's TensorRT-LLM release and GPUs (llmprep.artifacts.build's detection); never raises."""
    import sys

    from llmprep.artifacts import build

    try:
        env = build.detect_environment(python or sys.executable)
    except Exception:  # a pod we cannot inspect is reported as unobservable, not as a failure
        return PodFacts(), None
    gpus = env.gpus
    return (
        PodFacts(
            trtllm_version=env.trtllm.version if env.trtllm else None,
            gpu_product=gpus.product,
            gpu_count=gpus.count if gpus.source != "none" else None,
        ),
        env,
    )


def resolve_role(role: str, group: Group | None) -> str:
    """auto → leader or worker inside a group of several pods (LWS_WORKER_INDEX), else single."""
    if role not in ROLES:
        raise UsageError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    if role != "auto":
        return role
    if group is None or group.size == 1:
        return "single"
    return "leader" if group.index == 0 else "worker"


def make_plan(
    request: ServeRequest,
    *,
    env: Mapping[str, str],
    pod: PodFacts | None = None,
    triton: TritonInstall | None = None,
    mpirun: str | None = None,
    sshd: str | None = None,
) -> ServePlan:
    """The plan for this pod: find the repository, guard against drift, compose the command."""
    group = discover_group(
        env, leader_address=request.leader_address, group_size=request.group_size, hosts=request.hosts
    )
    role = resolve_role(request.role, group)
    if role == "worker":
        found = sshd or shutil.which("sshd", path=env.get("PATH")) or "/usr/sbin/sshd"
        return compose_worker(request.ssh, sshd=found, group=group)
    if role == "leader" and group is None:
        raise UsageError(
            f"--role leader: needs the group (--leader-address and --group-size, or the {LWS_GROUP_SIZE} variables)"
        )

    facts_env = None
    if pod is None and request.cache_dir is not None:
        pod, facts_env = observe_pod()
    if request.cache_dir is not None:
        if request.spec is None:
            raise UsageError("--spec: required with --cache (the spec names the artifact to serve)")
        source = _from_cache(request.spec, request.cache_dir, facts_env)
    elif request.repository is not None:
        source = _from_repository(request.repository, request.spec)
    else:
        raise UsageError("--cache or --repository: give one (the prepared cache, or a model repository folder)")

    spec = source.spec
    tensor, pipeline = (spec.parallelism.tensor, spec.parallelism.pipeline) if spec else (1, 1)
    world = tensor * pipeline
    if request.world_size is not None and request.world_size != world:
        raise UsageError(
            f"--world-size: {request.world_size} does not match tensor {tensor} × pipeline {pipeline} = {world}"
        )
    runtime = source.runtime
    if runtime is None:
        runtime = "engine" if world == 1 else _installed_runtime()
    hosts = group.hosts if (role == "leader" and group is not None) else ()
    ranks_here = world // max(1, len(hosts))
    guard = check_drift(
        source.manifest,
        pod or PodFacts(),
        runtime=runtime,
        tensor=tensor,
        pipeline=pipeline,
        ranks_here=ranks_here,
        standin=source.standin,
    )
    if triton is None:
        from llmprep.serve.triton import locate_triton

        triton = locate_triton(env)
    return compose(
        runtime=runtime,
        repository=source.repository,
        tensor=tensor,
        pipeline=pipeline,
        options=request.options,
        triton=triton,
        mpirun=mpirun or "mpirun",
        mpi_prefix=_mpi_prefix(mpirun or shutil.which("mpirun", path=env.get("PATH"))),
        hosts=hosts,
        hostfile_path=request.hostfile,
        ssh=request.ssh,
        env=env,
        wait_timeout=request.wait_workers_secs,
        notes=[f"repository {source.repository}", guard],
        server_options=spec.server_options if spec is not None else DEFAULT_SERVER_OPTIONS,
    )


def _mpi_prefix(mpirun: str | None) -> Path | None:
    """OpenMPI's installation prefix (…/bin/mpirun → …) when ssh's default PATH lacks it.

    `--prefix /usr` would also put /usr/bin first on every rank's PATH, ahead of the image's
    Python (see _mpirun_head), so system prefixes are left out: ssh finds orted there anyway.
    """
    if not mpirun or os.sep not in mpirun:
        return None
    prefix = Path(os.path.realpath(mpirun)).parent.parent
    return None if str(prefix) in SYSTEM_PREFIXES else prefix


def _installed_runtime() -> str:
    from llmprep.artifacts import trtllm

    try:
        return trtllm.resolve_runtime("auto", trtllm.detect())
    except Exception as exc:
        raise UsageError(
            f"model.tensorrtLlm.runtime: set engine or pytorch; auto cannot be resolved here ({exc})"
        ) from None

"""Compose the inference server's command line for this pod and run it (`llmprep serve`).

Pure functions turn the spec, the model repository and the pod's facts into a `ServePlan`
(argv, environment, a description for people); `exec_plan` runs it. The layouts follow the
engine backend's and the LLM API's launchers of TensorRT-LLM 1.2.x (docs/serving.md):

- one GPU (tensor × pipeline = 1), either runtime: one `tritonserver`, exec'd in place;
- `engine`, several GPUs: `mpirun` with one `tritonserver` rank per GPU (MPMD): every rank
  `--disable-auto-complete-config` and its own Python-backend shared-memory prefix; rank 0
  serves HTTP, gRPC and metrics and loads every model; ranks ≥ 1 load only `tensorrt_llm`
  (explicit model control) with their endpoints switched off;
- `pytorch`, several GPUs: `mpirun` of `trtllm-llmapi-launch tritonserver …` over tensor ×
  pipeline ranks: rank 0 runs the server, the other ranks become LLM API workers;
- several pods (LeaderWorkerSet): the leader's `mpirun` spans its group through a hostfile of
  the group's pod addresses, launching remote ranks over ssh; each worker pod runs
  `llmprep serve --role worker`, an sshd on a fixed port with the group's keys.

Draining: a single server gets SIGTERM itself (it is exec'd). `mpirun` would instead
SIGCONT, then only after `odls_base_sigkill_timeout` SIGTERM, then SIGKILL its ranks (measured
with OpenMPI 4.1: no drain), so for multi-rank plans `exec_plan` stays as a small supervisor:
SIGTERM goes to the serving rank's `tritonserver` first, which fails readiness and finishes
its in-flight requests, then to the other ranks, then to `mpirun`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.errors import CacheError, ServeError, UsageError
from llmprep.serve.triton import TritonInstall, server_args
from llmprep.spec import ModelSpec, parse_spec

# LeaderWorkerSet injects these into every container of a group (kubernetes-sigs/lws,
# api/leaderworkerset/v1: LwsLeaderAddress, LwsGroupSize, LwsWorkerIndex).
LWS_LEADER_ADDRESS = "LWS_LEADER_ADDRESS"
LWS_GROUP_SIZE = "LWS_GROUP_SIZE"
LWS_WORKER_INDEX = "LWS_WORKER_INDEX"

ROLES = ("auto", "single", "leader", "worker")
RUNTIMES = ("engine", "pytorch")
# The models ranks >= 1 load: the engine itself (upstream's `--tensorrt_llm_model_name`).
RANK_MODELS = ("tensorrt_llm",)
LLMAPI_LAUNCH = "trtllm-llmapi-launch"
REPOSITORY_MARKER = ".llmprep-repository.json"  # written by llmprep.repo beside the models
DEFAULT_SSH_PORT = 2222
DEFAULT_SSH_DIR = Path("/etc/llmprep/ssh")
DEFAULT_HOSTFILE = Path(tempfile.gettempdir()) / "llmprep-hostfile"
DEFAULT_WAIT_WORKERS_SECS = 600.0
# Environment the remote ranks need from the leader (mpirun forwards only what -x names):
# the Triton install's own variables plus these families when the pod sets them.
FORWARD_PREFIXES = ("NCCL_", "UCX_", "CUDA_", "HF_", "TRTLLM_", "TLLM_", "TRANSFORMERS_", "TOKENIZERS_")
FORWARD_NAMES = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "HOME")
SYSTEM_PREFIXES = ("/", "/usr", "/usr/local")
# After the serving rank has drained, how long the others and mpirun get before SIGKILL.
TEARDOWN_GRACE_S = 15.0


@dataclass(frozen=True)
class ServePlan:
    """What to run: argv, the variables to add to the pod's environment, and why (for people)."""

    argv: list[str]
    env: dict[str, str]
    description: str
    hostfile: str | None = None  # text to write to hostfile_path before starting
    hostfile_path: Path | None = None
    wait_for: tuple[str, ...] = ()  # host:port of workers that must answer first
    wait_timeout: float = DEFAULT_WAIT_WORKERS_SECS
    supervise: bool = False  # multi-rank: stay as a draining supervisor instead of exec
    exit_timeout_secs: int = 30
    needs_files: tuple[Path, ...] = ()  # checked before starting, each missing one named
    make_dirs: tuple[Path, ...] = ()  # created before starting

    def to_json(self) -> dict[str, Any]:
        return {
            "argv": self.argv,
            "command": render_command(self.argv),
            "env": self.env,
            "description": self.description,
            "hostfile": self.hostfile,
            "hostfilePath": str(self.hostfile_path) if self.hostfile_path else None,
            "waitFor": list(self.wait_for),
            "supervise": self.supervise,
            "needsFiles": [str(f) for f in self.needs_files],
        }


@dataclass(frozen=True)
class ServeOptions:
    """The server's endpoints and drain time (flags of `llmprep serve`)."""

    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    address: str = "0.0.0.0"
    exit_timeout_secs: int = 30


@dataclass(frozen=True)
class PodFacts:
    """What this pod has; None where it could not be observed."""

    trtllm_version: str | None = None
    gpu_product: str | None = None
    gpu_count: int | None = None


@dataclass(frozen=True)
class SshOptions:
    """How the leader's mpirun reaches worker pods, and what the worker's sshd serves.

    `directory` holds the group's keys (a Secret mounted with mode 0400): `id_ed25519` (the
    leader's client key), `authorized_keys` (its public key), `ssh_host_ed25519_key` (the host
    key every pod of the group shares) and `known_hosts` (`* ssh-ed25519 <host public key>`).
    """

    port: int = DEFAULT_SSH_PORT
    directory: Path = DEFAULT_SSH_DIR

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.directory / "authorized_keys"


@dataclass(frozen=True)
class Group:
    """This pod's place in a LeaderWorkerSet group (or a group named host by host)."""

    leader_address: str
    size: int  # pods in the group, leader included
    index: int  # 0 for the leader
    named_hosts: tuple[str, ...] = ()  # --hosts: addresses given explicitly, leader first

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.named_hosts or group_hosts(self.leader_address, self.size)


# --------------------------------------------------------------------------- rendering


def render_command(argv: Sequence[str]) -> str:
    """A copy-pasteable shell rendering, one option (or MPI app context) per line."""
    lines: list[list[str]] = [[]]
    for arg in argv:
        if lines[-1] and ((arg.startswith("-") and " " not in arg) or arg == ":"):
            lines.append([])
        lines[-1].append(shlex.quote(arg))
    return " \\\n  ".join(" ".join(line) for line in lines)


# --------------------------------------------------------------------------- the drift guard


def check_drift(
    manifest: Mapping[str, Any] | None,
    pod: PodFacts,
    *,
    runtime: str,
    tensor: int,
    pipeline: int,
    ranks_here: int,
    standin: bool = False,
) -> str:
    """Refuse (ServeError, one line) an artifact built for another pod; return what was checked.

    Compares the manifest's runtime, TensorRT-LLM version, GPU product and tensor × pipeline
    with this pod's. A field the manifest left empty (built without a GPU) is not compared; a
    GPU product this pod cannot observe is reported as unchecked, not as a match.
    """
    if manifest is None:
        if standin:
            return "stand-in repository: no artifact manifest, so the drift guard is skipped"
        return "no artifact manifest for this repository (serve with --cache for the drift guard): guard skipped"
    inputs = manifest.get("inputs", manifest)
    problems: list[str] = []
    unchecked: list[str] = []

    def compare(label: str, built: Any, here: Any, fix: str) -> None:
        if built is None:
            return
        if here is None:
            unchecked.append(label)
            return
        if str(built) != str(here):
            problems.append(f"{label} {built} ≠ {here} here ({fix})")

    compare("runtime", inputs.get("runtime"), runtime, "prepare again with this runtime")
    built_version = inputs.get("trtllmVersion")
    if built_version is not None and pod.trtllm_version is None:
        problems.append(f"TensorRT-LLM {built_version} ≠ not installed here (use the image the artifact was built in)")
    else:
        compare("TensorRT-LLM", built_version, pod.trtllm_version, "prepare again in this image")
    compare("GPU product", inputs.get("gpuProduct"), pod.gpu_product, "prepare again on this GPU product")
    built_tp = (inputs.get("tensor"), inputs.get("pipeline"))
    if None not in built_tp and built_tp != (tensor, pipeline):
        problems.append(
            f"tensor × pipeline {built_tp[0]}×{built_tp[1]} ≠ {tensor}×{pipeline} in the spec (prepare again)"
        )
    if pod.gpu_count is not None and pod.gpu_count < ranks_here:
        problems.append(f"this pod sees {pod.gpu_count} GPU(s) but runs {ranks_here} rank(s) (request more GPUs)")
    key = manifest.get("key", "?")
    if problems:
        raise ServeError(f"refusing to serve artifact {key}: " + "; ".join(problems))
    note = f"drift guard: artifact {key} matches this pod"
    if unchecked:
        note += f" (not observable here, so unchecked: {', '.join(unchecked)})"
    return note


# --------------------------------------------------------------------------- groups (LeaderWorkerSet)


def group_hosts(leader_address: str, size: int) -> tuple[str, ...]:
    """The group's pod addresses in rank order: the leader, then `<leader pod>-<index>` workers.

    LWS names the leader pod `<lws>-<group>` and worker pods `<lws>-<group>-<index>`, all under
    one headless service, so worker addresses are the leader's with `-<index>` on its first label.
    """
    first, dot, rest = leader_address.partition(".")
    return (leader_address, *(f"{first}-{i}{dot}{rest}" for i in range(1, size)))


def discover_group(
    env: Mapping[str, str],
    *,
    leader_address: str | None = None,
    group_size: int | None = None,
    hosts: Sequence[str] = (),
) -> Group | None:
    """This pod's group from flags, else from the LeaderWorkerSet variables; None outside a group."""
    if hosts:
        if group_size is not None and group_size != len(hosts):
            raise UsageError(f"--group-size: {group_size} does not match the {len(hosts)} addresses of --hosts")
        return Group(hosts[0], len(hosts), _env_int(env, LWS_WORKER_INDEX) or 0, tuple(hosts))
    address = leader_address or env.get(LWS_LEADER_ADDRESS) or None
    size = group_size if group_size is not None else _env_int(env, LWS_GROUP_SIZE)
    index = _env_int(env, LWS_WORKER_INDEX)
    if address is None and size is None and index is None:
        return None
    if size is None or size < 1:
        raise UsageError(f"--group-size: required (or {LWS_GROUP_SIZE}), the number of pods in the group (≥ 1)")
    if address is None:
        raise UsageError(f"--leader-address: required (or {LWS_LEADER_ADDRESS}) for a group of {size} pods")
    return Group(leader_address=address, size=size, index=index or 0)


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name}: must be an integer, got {raw!r}") from None


def hostfile_text(hosts: Sequence[str], slots: int) -> str:
    """An OpenMPI hostfile: one line per pod, `slots` ranks (GPUs) each, leader first."""
    return "".join(f"{host} slots={slots} max_slots={slots}\n" for host in hosts)


def wait_for_workers(
    targets: Sequence[str],
    timeout: float,
    *,
    interval: float = 2.0,
    reachable: Callable[[str], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
) -> None:
    """Retry until every `host:port` accepts a connection; ServeError naming the missing ones."""
    check = reachable or _tcp_reachable
    deadline = clock() + timeout
    missing = list(targets)
    while True:
        missing = [t for t in missing if not check(t)]
        if not missing:
            if log:
                log(f"all {len(targets)} workers answer")
            return
        if clock() >= deadline:
            raise ServeError(
                f"workers not reachable after {timeout:g} s: {', '.join(missing)} "
                "(is `llmprep serve --role worker` running in those pods, with the same --ssh-port?)"
            )
        if log:
            log(f"waiting for {len(missing)} of {len(targets)} workers: {', '.join(missing)}")
        sleep(interval)


def _tcp_reachable(target: str) -> bool:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- composing plans


def rank_args(
    rank: int,
    repository: Path,
    options: ServeOptions,
    triton: TritonInstall,
    *,
    rank_models: Sequence[str] = RANK_MODELS,
) -> list[str]:
    """tritonserver flags for one rank of the engine layout (rank 0 serves, the others compute)."""
    if rank == 0:
        args = server_args(
            repository,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            metrics_port=options.metrics_port,
            address=options.address,
            exit_timeout_secs=options.exit_timeout_secs,
            backend_dir=triton.backend_dir,
        )
    else:
        args = [f"--model-repository={repository}", f"--exit-timeout-secs={options.exit_timeout_secs}"]
        if triton.backend_dir is not None:
            args.append(f"--backend-directory={triton.backend_dir}")
        args += ["--allow-http=false", "--allow-grpc=false", "--allow-metrics=false", "--model-control-mode=explicit"]
        args += [f"--load-model={name}" for name in rank_models]
    return args + [
        "--disable-auto-complete-config",
        f"--backend-config=python,shm-region-prefix-name=prefix{rank}_",
    ]


def _mpirun_head(
    mpirun: str,
    *,
    hosts: Sequence[str],
    hostfile_path: Path,
    ssh: SshOptions,
    forward: Iterable[str],
    prefix: Path | None,
) -> list[str]:
    # mpirun by name, not path: OpenMPI treats `/usr/bin/mpirun` like `--prefix /usr` and puts
    # /usr/bin first on the ranks' PATH (measured: the Python backend stub then found the
    # system Python instead of the image's and failed with "No module named '_struct'").
    head = [mpirun, "--allow-run-as-root", "--bind-to", "none"]
    if len(hosts) <= 1:
        # One pod: the ranks are the pod's GPUs, whatever the cpuset's core count says.
        return head + ["--oversubscribe"]
    rsh = (
        f"-p {ssh.port} -i {ssh.client_key} -o UserKnownHostsFile={ssh.known_hosts} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes"
    )
    head += ["--hostfile", str(hostfile_path), "--map-by", "slot"]
    if prefix is not None:
        # Remote orted and ranks find OpenMPI where the leader's mpirun lives (ssh's PATH is minimal).
        head += ["--prefix", str(prefix)]
    head += ["--mca", "plm_rsh_agent", "ssh", "--mca", "plm_rsh_args", rsh]
    names = list(forward)
    if names:
        # Not `-x`: in an MPMD command line OpenMPI 4 applies -x to the first app context only
        # (measured: remote rank 1 got ssh's bare environment); this list reaches every rank.
        head += ["--mca", "mca_base_env_list", ";".join(names)]
    return head


def forwarded_names(env: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    """Variable names the remote ranks get from the leader (values never appear in argv)."""
    names = {n for n in env if n in FORWARD_NAMES or n.startswith(FORWARD_PREFIXES)}
    names.update(extra)
    return sorted(names)


def compose(
    *,
    runtime: str,
    repository: Path,
    tensor: int,
    pipeline: int,
    options: ServeOptions,
    triton: TritonInstall,
    mpirun: str = "mpirun",
    mpi_prefix: Path | None = None,
    hosts: Sequence[str] = (),
    hostfile_path: Path = DEFAULT_HOSTFILE,
    ssh: SshOptions = SshOptions(),
    env: Mapping[str, str] | None = None,
    wait_timeout: float = DEFAULT_WAIT_WORKERS_SECS,
    notes: Sequence[str] = (),
) -> ServePlan:
    """The serving plan for the leader (or only) pod: pure, every fact passed in."""
    if runtime not in RUNTIMES:
        raise UsageError(f"model.tensorrtLlm.runtime: cannot serve {runtime!r}; one of {', '.join(RUNTIMES)}")
    world = tensor * pipeline
    pods = max(1, len(hosts))
    if world % pods:
        raise UsageError(
            f"--group-size: {pods} pods cannot split tensor {tensor} × pipeline {pipeline} = {world} ranks evenly"
        )
    slots = world // pods
    binary = str(triton.binary)
    endpoints = (
        f"HTTP {options.address}:{options.http_port}, gRPC :{options.grpc_port}, metrics :{options.metrics_port}"
    )
    lines = [f"{runtime} runtime, tensor {tensor} × pipeline {pipeline} = {world} GPU(s); tritonserver from {triton.source}"]
    if world == 1:
        argv = [binary, *rank_args(0, repository, options, triton)]
        lines.append(f"one tritonserver serving {endpoints}; SIGTERM drains for up to {options.exit_timeout_secs} s")
        return ServePlan(argv, dict(triton.env), "\n".join([*lines, *notes]), exit_timeout_secs=options.exit_timeout_secs)

    multi = pods > 1
    forward = forwarded_names({**(env or {}), **triton.env}) if multi else []
    argv = _mpirun_head(mpirun, hosts=hosts, hostfile_path=hostfile_path, ssh=ssh, forward=forward, prefix=mpi_prefix)
    if runtime == "engine":
        for rank in range(world):
            if rank:
                argv.append(":")
            argv += ["-n", "1", binary, *rank_args(rank, repository, options, triton)]
        others = "rank 1 loads" if world == 2 else f"ranks 1–{world - 1} load"
        lines.append(
            f"mpirun: {world} tritonserver ranks; rank 0 serves {endpoints}; "
            f"{others} only {', '.join(RANK_MODELS)}, endpoints off"
        )
    else:
        if any(c.isspace() for c in str(repository) + binary):
            # trtllm-llmapi-launch runs its command through word splitting.
            raise UsageError(f"--repository: {repository} contains whitespace, which trtllm-llmapi-launch cannot pass on")
        server = server_args(
            repository,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            metrics_port=options.metrics_port,
            address=options.address,
            exit_timeout_secs=options.exit_timeout_secs,
            backend_dir=triton.backend_dir,
        )
        argv += ["-np", str(world), LLMAPI_LAUNCH, binary, *server, "--disable-auto-complete-config"]
        lines.append(
            f"mpirun: {world} ranks of {LLMAPI_LAUNCH}; rank 0 runs tritonserver serving {endpoints}, "
            "the other ranks run LLM API workers"
        )
    hostfile = None
    wait_for: tuple[str, ...] = ()
    if multi:
        hostfile = hostfile_text(hosts, slots)
        wait_for = tuple(f"{h}:{ssh.port}" for h in hosts[1:])
        lines.append(
            f"group of {pods} pods × {slots} GPUs, ranks in hostfile order (leader first); "
            f"remote ranks over ssh port {ssh.port}; waits up to {wait_timeout:g} s for the workers"
        )
    lines.append(
        f"SIGTERM: the serving tritonserver drains first (up to {options.exit_timeout_secs} s), then the other ranks stop"
    )
    return ServePlan(
        argv=argv,
        env=dict(triton.env),
        description="\n".join([*lines, *notes]),
        hostfile=hostfile,
        hostfile_path=hostfile_path if multi else None,
        wait_for=wait_for,
        wait_timeout=wait_timeout,
        supervise=True,
        exit_timeout_secs=options.exit_timeout_secs,
        needs_files=(ssh.client_key, ssh.known_hosts) if multi else (),
    )


def compose_worker(ssh: SshOptions, *, sshd: str = "/usr/sbin/sshd", group: Group | None = None) -> ServePlan:
    """The worker pod's side: an sshd in the foreground that the leader's mpirun launches ranks through."""
    argv = [
        sshd,
        "-D",
        "-e",
        "-f",
        "/dev/null",
        "-p",
        str(ssh.port),
        "-h",
        str(ssh.host_key),
        "-o",
        f"AuthorizedKeysFile={ssh.authorized_keys}",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "PermitRootLogin=prohibit-password",
        "-o",
        "PidFile=none",
        # Secret volumes are owned by root with group bits; the key files themselves are 0400.
        "-o",
        "StrictModes=no",
    ]
    where = f" (pod {group.index} of {group.size}, leader {group.leader_address})" if group else ""
    description = (
        f"worker{where}: sshd on port {ssh.port} with the group's keys from {ssh.directory}; "
        "the leader's mpirun starts this pod's ranks through it"
    )
    return ServePlan(
        argv=argv,
        env={},
        description=description,
        needs_files=(ssh.host_key, ssh.authorized_keys),
        # sshd refuses to start without its privilege-separation folder.
        make_dirs=(Path("/run/sshd"),),
    )


# --------------------------------------------------------------------------- from the CLI's inputs


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
    from llmprep.artifacts import build, gpu, prepare

    try:
        found = prepare.find_prepared(spec, cache_dir, env=facts_env)
    except CacheError as first:
        # Nothing matches this pod: look again ignoring the pod's facts, so that an artifact
        # built for another GPU or release is refused with the drift guard's clear line.
        try:
            found = prepare.find_prepared(spec, cache_dir, env=build.Environment(None, gpu.GpuInfo((), "none")))
        except CacheError:
            raise first from None
    if found.repository_dir is None:
        raise CacheError(f"artifact {found.key} in {cache_dir} has no model repository yet; run `llmprep prepare`")
    marker = read_marker(found.repository_dir) or {}
    return _Source(found.repository_dir, found.spec.runtime, found.spec, dict(found.manifest), bool(marker.get("standin")))


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
        raise UsageError(f"--role leader: needs the group (--leader-address and --group-size, or the {LWS_GROUP_SIZE} variables)")

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


# --------------------------------------------------------------------------- running


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def exec_plan(
    plan: ServePlan,
    *,
    base_env: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run the plan: exec a single server in place; supervise mpirun so that SIGTERM drains.

    Returns the exit code (only for supervised plans; an exec never returns).
    """
    env = {**(os.environ if base_env is None else base_env), **plan.env}
    missing = [str(f) for f in plan.needs_files if not f.is_file()]
    if missing:
        raise ServeError(f"cannot start {Path(plan.argv[0]).name}: missing {', '.join(missing)} (mount the group's ssh Secret)")
    for folder in plan.make_dirs:
        folder.mkdir(parents=True, exist_ok=True)
    if plan.hostfile is not None and plan.hostfile_path is not None:
        write_atomically(plan.hostfile_path, plan.hostfile)
    if plan.wait_for:
        wait_for_workers(plan.wait_for, plan.wait_timeout, log=log)
    if not plan.supervise:
        try:
            os.execvpe(plan.argv[0], plan.argv, env)
        except OSError as exc:
            raise ServeError(f"cannot start {plan.argv[0]}: {exc.strerror}") from None
    return supervise(plan.argv, env, exit_timeout_secs=plan.exit_timeout_secs, log=log)


def supervise(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    exit_timeout_secs: int,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run mpirun as a child; on SIGTERM/SIGINT drain the serving rank first, then stop the rest."""
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    # Handlers first: a SIGTERM right after the start must not kill us and orphan mpirun.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            child = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise ServeError(f"cannot start {argv[0]}: {exc.strerror}") from None
        while child.poll() is None and not stopping:
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if child.returncode is not None:
            return child.returncode
        if log:
            log(f"signal {stopping[0]}: draining the serving tritonserver (up to {exit_timeout_secs} s)")
        return _drain(child, exit_timeout_secs, log)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _drain(child: subprocess.Popen[bytes], exit_timeout_secs: int, log: Callable[[str], None] | None) -> int:
    """SIGTERM the serving rank, wait for it, then stop the rest; 0 when the serving rank drained."""
    servers = [pid for pid in tritonserver_pids(child.pid) if _serves(pid)]
    for pid in servers:
        _kill(pid, signal.SIGTERM)
    drained = _wait_gone(servers, child, exit_timeout_secs + TEARDOWN_GRACE_S)
    # The serving rank is done: the compute ranks have nothing left to finish.
    local = tritonserver_pids(child.pid)
    for pid in local:
        _kill(pid, signal.SIGTERM)
    _wait_gone(local, child, TEARDOWN_GRACE_S)
    if child.poll() is None:
        child.terminate()  # mpirun stops the ranks on other pods through their orted
        try:
            child.wait(timeout=TEARDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if log:
        log("serving rank drained; all ranks stopped" if drained else "serving rank did not drain in time")
    # mpirun's own status after we stopped it says nothing about the requests: report the drain.
    return 0 if drained else (child.returncode or 1)


def _wait_gone(pids: Sequence[int], child: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def tritonserver_pids(root: int) -> list[int]:
    """tritonserver processes below `root` (Linux /proc), in start order."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop(0)
        for child in _children(pid):
            todo.append(child)
            argv = _cmdline(child)
            if argv and Path(argv[0]).name == "tritonserver":
                found.append(child)
    return sorted(found)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return kids


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _serves(pid: int) -> bool:
    """The rank that serves requests: the one whose endpoints are not switched off."""
    return "--allow-http=false" not in _cmdline(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass



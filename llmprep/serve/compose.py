"""The inference server's command line for this pod, as pure functions of the facts passed in.

`compose` turns the runtime, the model repository, the parallelism and the pod's group into a
`ServePlan` (argv, environment, a description for people); `llmprep.serve.supervise.exec_plan`
runs it. The layouts follow the engine backend's and the LLM API's launchers of TensorRT-LLM
1.2.x (docs/serving.md):

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
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.errors import UsageError
from llmprep.serve.group import DEFAULT_HOSTFILE, DEFAULT_WAIT_WORKERS_SECS, Group, SshOptions, hostfile_text
from llmprep.serve.triton import TritonInstall, server_args

RUNTIMES = ("engine", "pytorch")
# The models ranks >= 1 load: the engine itself (upstream's `--tensorrt_llm_model_name`).
RANK_MODELS = ("tensorrt_llm",)
LLMAPI_LAUNCH = "trtllm-llmapi-launch"
# Environment the remote ranks need from the leader (mpirun forwards only what -x names):
# the Triton install's own variables plus these families when the pod sets them.
FORWARD_PREFIXES = ("NCCL_", "UCX_", "CUDA_", "HF_", "TRTLLM_", "TLLM_", "TRANSFORMERS_", "TOKENIZERS_")
FORWARD_NAMES = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "HOME")


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


def render_command(argv: Sequence[str]) -> str:
    """A copy-pasteable shell rendering, one option (or MPI app context) per line."""
    lines: list[list[str]] = [[]]
    for arg in argv:
        if lines[-1] and ((arg.startswith("-") and " " not in arg) or arg == ":"):
            lines.append([])
        lines[-1].append(shlex.quote(arg))
    return " \\\n  ".join(" ".join(line) for line in lines)


def serving_args(repository: Path, options: ServeOptions, triton: TritonInstall) -> list[str]:
    """tritonserver flags of the rank that serves: the endpoints, the drain time, the backends."""
    return server_args(
        repository,
        http_port=options.http_port,
        grpc_port=options.grpc_port,
        metrics_port=options.metrics_port,
        address=options.address,
        exit_timeout_secs=options.exit_timeout_secs,
        backend_dir=triton.backend_dir,
    )


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
        args = serving_args(repository, options, triton)
    else:
        args = [f"--model-repository={repository}", f"--exit-timeout-secs={options.exit_timeout_secs}"]
        if triton.backend_dir is not None:
            args.append(f"--backend-directory={triton.backend_dir}")
        args += ["--allow-http=false", "--allow-grpc=false", "--allow-metrics=false", "--model-control-mode=explicit"]
        args += [f"--load-model={name}" for name in rank_models]
    return args + ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]


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
    ssh: SshOptions = SshOptions(),  # noqa: B008 (frozen: one shared default is safe)
    env: Mapping[str, str] | None = None,
    wait_timeout: float = DEFAULT_WAIT_WORKERS_SECS,
    notes: Sequence[str] = (),
    server_options: Sequence[str] = (),
) -> ServePlan:
    """The serving plan for the leader (or only) pod: pure, every fact passed in.

    `server_options` (values `triton.serverOptions`) go to the serving tritonserver only, after
    llmprep's own flags: the other ranks of the engine layout serve no endpoint and load only the
    engine, and on the pytorch layout only rank 0 runs tritonserver at all.
    """
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
    lines = [
        f"{runtime} runtime, tensor {tensor} × pipeline {pipeline} = {world} GPU(s); tritonserver from {triton.source}"
    ]
    extra = list(server_options)
    if extra:
        notes = [f"serving tritonserver options (triton.serverOptions): {' '.join(extra)}", *notes]
    if world == 1:
        argv = [binary, *rank_args(0, repository, options, triton), *extra]
        lines.append(f"one tritonserver serving {endpoints}; SIGTERM drains for up to {options.exit_timeout_secs} s")
        return ServePlan(
            argv, dict(triton.env), "\n".join([*lines, *notes]), exit_timeout_secs=options.exit_timeout_secs
        )

    multi = pods > 1
    forward = forwarded_names({**(env or {}), **triton.env}) if multi else []
    argv = _mpirun_head(mpirun, hosts=hosts, hostfile_path=hostfile_path, ssh=ssh, forward=forward, prefix=mpi_prefix)
    if runtime == "engine":
        for rank in range(world):
            if rank:
                argv.append(":")
            argv += ["-n", "1", binary, *rank_args(rank, repository, options, triton), *(extra if rank == 0 else [])]
        others = "rank 1 loads" if world == 2 else f"ranks 1–{world - 1} load"
        lines.append(
            f"mpirun: {world} tritonserver ranks; rank 0 serves {endpoints}; "
            f"{others} only {', '.join(RANK_MODELS)}, endpoints off"
        )
    else:
        if any(c.isspace() for c in str(repository) + binary):
            # trtllm-llmapi-launch runs its command through word splitting.
            raise UsageError(
                f"--repository: {repository} contains whitespace, which trtllm-llmapi-launch cannot pass on"
            )
        server = serving_args(repository, options, triton)
        argv += ["-np", str(world), LLMAPI_LAUNCH, binary, *server, "--disable-auto-complete-config", *extra]
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

"""`llmprep serve`: golden command lines, the drift guard, LeaderWorkerSet groups, and real servers.

Goldens live in tests/data/serve_golden/; after a deliberate change, regenerate them with
`LLMPREP_UPDATE_GOLDENS=1 pytest tests/test_serve.py -k golden` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from llmprep.errors import ServeError, UsageError
from llmprep.serve import (
    Group,
    PodFacts,
    ServeOptions,
    ServePlan,
    SshOptions,
    check_drift,
    compose,
    compose_worker,
    discover_group,
    exec_plan,
    group_hosts,
    hostfile_text,
    render_command,
    resolve_role,
    wait_for_workers,
)
from llmprep.serve.triton import TritonInstall, http_ok
from tests.conftest import ROOT, FakeClock, free_port, run_cli

GOLDEN = ROOT / "tests" / "data" / "serve_golden"
ECHO_REPO = ROOT / "tests" / "data" / "echo_repo"
GATE_REPO = ROOT / "tests" / "data" / "gate_repo"
NGC = TritonInstall(
    binary=Path("/opt/tritonserver/bin/tritonserver"), backend_dir=Path("/opt/tritonserver/backends"), source="path"
)
REPOSITORY = Path("/cache/repos/0123abcd")
MPI_PREFIX = Path("/opt/hpcx/ompi")
POD_ENV = {"PATH": "/opt/tritonserver/bin:/usr/bin", "NCCL_DEBUG": "WARN", "HF_HOME": "/cache/hf", "SECRET_THING": "x"}


def _compose(runtime: str, tensor: int, pipeline: int, pods: int = 1) -> ServePlan:
    hosts = group_hosts("llm-0.llm.default", pods) if pods > 1 else ()
    return compose(
        runtime=runtime,
        repository=REPOSITORY,
        tensor=tensor,
        pipeline=pipeline,
        options=ServeOptions(),
        triton=NGC,
        mpi_prefix=MPI_PREFIX,
        hosts=hosts,
        hostfile_path=Path("/tmp/llmprep-hostfile"),
        env=POD_ENV,
    )


def _golden_text(plan: ServePlan) -> str:
    text = render_command(plan.argv) + "\n"
    if plan.hostfile is not None:
        text += f"# hostfile {plan.hostfile_path}\n{plan.hostfile}"
    return text


GOLDEN_CASES = [
    ("engine-1-rank", "engine", 1, 1, 1),
    ("engine-2-ranks", "engine", 2, 1, 1),
    ("engine-8-ranks", "engine", 4, 2, 1),
    ("pytorch-1-rank", "pytorch", 1, 1, 1),
    ("pytorch-2-ranks", "pytorch", 2, 1, 1),
    ("pytorch-8-ranks", "pytorch", 8, 1, 1),
    ("engine-2x8-pods", "engine", 8, 2, 2),
    ("engine-4x8-pods", "engine", 8, 4, 4),
    ("pytorch-2x8-pods", "pytorch", 16, 1, 2),
    ("pytorch-4x8-pods", "pytorch", 8, 4, 4),
]


@pytest.mark.parametrize(("name", "runtime", "tensor", "pipeline", "pods"), GOLDEN_CASES)
def test_dry_run_command_matches_its_golden(name: str, runtime: str, tensor: int, pipeline: int, pods: int) -> None:
    text = _golden_text(_compose(runtime, tensor, pipeline, pods))
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("LLMPREP_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def _contexts(argv: list[str]) -> list[list[str]]:
    """The MPI app contexts of an MPMD mpirun command (after its options)."""
    start = argv.index("-n")
    contexts: list[list[str]] = [[]]
    for arg in argv[start:]:
        if arg == ":":
            contexts.append([])
        else:
            contexts[-1].append(arg)
    return contexts


def test_every_engine_rank_has_its_own_shared_memory_prefix_and_a_complete_config() -> None:
    contexts = _contexts(_compose("engine", 8, 1).argv)
    assert len(contexts) == 8
    for rank, ctx in enumerate(contexts):
        assert ctx[:3] == ["-n", "1", str(NGC.binary)]
        assert "--disable-auto-complete-config" in ctx
        assert f"--backend-config=python,shm-region-prefix-name=prefix{rank}_" in ctx


def test_only_engine_rank_0_serves_endpoints_and_the_others_load_only_the_engine() -> None:
    rank0, *others = _contexts(_compose("engine", 2, 2).argv)
    assert "--http-port=8000" in rank0 and not any(a.startswith("--model-control-mode") for a in rank0)
    for ctx in others:
        assert not any(a.startswith(("--http-port", "--grpc-port", "--metrics-port")) for a in ctx)
        assert {"--allow-http=false", "--allow-grpc=false", "--allow-metrics=false"} <= set(ctx)
        assert [a for a in ctx if a.startswith("--load-model")] == ["--load-model=tensorrt_llm"]
        assert "--model-control-mode=explicit" in ctx


def test_pytorch_ranks_all_run_the_llmapi_launcher_and_only_one_server_command() -> None:
    argv = _compose("pytorch", 2, 2).argv
    assert argv[argv.index("-np") + 1] == "4"
    assert argv[argv.index("-np") + 2 : argv.index("-np") + 4] == ["trtllm-llmapi-launch", str(NGC.binary)]
    assert argv.count(str(NGC.binary)) == 1


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_one_gpu_runs_tritonserver_alone_exec_in_place(runtime: str) -> None:
    plan = _compose(runtime, 1, 1)
    assert plan.argv[0] == str(NGC.binary) and not plan.supervise


@pytest.mark.parametrize(
    ("flag", "value"), [("http_port", 9000), ("grpc_port", 9001), ("metrics_port", 9002), ("exit_timeout_secs", 7)]
)
def test_ports_and_drain_time_come_from_the_options(flag: str, value: int) -> None:
    options = ServeOptions(**{flag: value})
    plan = compose(runtime="engine", repository=REPOSITORY, tensor=2, pipeline=1, options=options, triton=NGC)
    expected = "--" + flag.replace("_", "-") + f"={value}"
    assert expected in _contexts(plan.argv)[0]


def test_multi_node_forwards_variables_by_name_only() -> None:
    argv = _compose("engine", 8, 2, pods=2).argv
    assert argv[argv.index("mca_base_env_list") + 1] == "HF_HOME;NCCL_DEBUG;PATH"
    assert "WARN" not in " ".join(argv) and "SECRET_THING" not in " ".join(argv)


def test_a_group_that_cannot_split_the_ranks_evenly_is_refused() -> None:
    with pytest.raises(UsageError, match="--group-size: 3 pods cannot split"):
        _compose("engine", 8, 1, pods=3)


# --------------------------------------------------------------------------- the drift guard

MANIFEST = {
    "key": "0123abcd",
    "inputs": {
        "runtime": "engine",
        "trtllmVersion": "1.2.1",
        "gpuProduct": "NVIDIA-H100-80GB-HBM3",
        "tensor": 2,
        "pipeline": 1,
    },
}
POD = PodFacts(trtllm_version="1.2.1", gpu_product="NVIDIA-H100-80GB-HBM3", gpu_count=2)


@pytest.mark.parametrize(
    ("pod", "runtime", "tensor", "refusal"),
    [
        (
            PodFacts(trtllm_version="1.3.0", gpu_product=POD.gpu_product, gpu_count=2),
            "engine",
            2,
            "TensorRT-LLM 1.2.1 ≠ 1.3.0",
        ),
        (PodFacts(trtllm_version=None, gpu_product=POD.gpu_product, gpu_count=2), "engine", 2, "not installed here"),
        (
            PodFacts(trtllm_version="1.2.1", gpu_product="NVIDIA-A100-SXM4-80GB", gpu_count=2),
            "engine",
            2,
            "GPU product",
        ),
        (POD, "pytorch", 2, "runtime engine ≠ pytorch"),
        (POD, "engine", 4, "tensor × pipeline 2×1 ≠ 4×1"),
        (PodFacts(trtllm_version="1.2.1", gpu_product=POD.gpu_product, gpu_count=1), "engine", 2, "sees 1 GPU"),
    ],
)
def test_drift_guard_refuses_an_artifact_built_for_another_pod(
    pod: PodFacts, runtime: str, tensor: int, refusal: str
) -> None:
    with pytest.raises(ServeError, match="refusing to serve artifact 0123abcd") as caught:
        check_drift(MANIFEST, pod, runtime=runtime, tensor=tensor, pipeline=1, ranks_here=tensor)
    assert refusal in str(caught.value) and "\n" not in str(caught.value)


def test_drift_guard_passes_an_artifact_built_for_this_pod() -> None:
    note = check_drift(MANIFEST, POD, runtime="engine", tensor=2, pipeline=1, ranks_here=2)
    assert note == "drift guard: artifact 0123abcd matches this pod"


def test_drift_guard_says_what_it_could_not_observe() -> None:
    pod = PodFacts(trtllm_version="1.2.1", gpu_product=None, gpu_count=None)
    note = check_drift(MANIFEST, pod, runtime="engine", tensor=2, pipeline=1, ranks_here=2)
    assert "unchecked: GPU product" in note


@pytest.mark.parametrize(("standin", "says"), [(True, "stand-in repository"), (False, "no artifact manifest")])
def test_drift_guard_is_skipped_without_a_manifest_and_says_so(standin: bool, says: str) -> None:
    note = check_drift(None, PodFacts(), runtime="engine", tensor=2, pipeline=1, ranks_here=2, standin=standin)
    assert says in note and "skipped" in note


# --------------------------------------------------------------------------- LeaderWorkerSet groups


@pytest.mark.parametrize(
    ("leader", "size", "hosts"),
    [
        ("llm-0.llm.default", 2, ("llm-0.llm.default", "llm-0-1.llm.default")),
        ("my-lws-1.my-lws-1.ns", 3, ("my-lws-1.my-lws-1.ns", "my-lws-1-1.my-lws-1.ns", "my-lws-1-2.my-lws-1.ns")),
        ("leader", 2, ("leader", "leader-1")),
        ("llm-0.llm.default", 1, ("llm-0.llm.default",)),
    ],
)
def test_group_hosts_follow_leaderworkerset_pod_naming(leader: str, size: int, hosts: tuple[str, ...]) -> None:
    assert group_hosts(leader, size) == hosts


def test_group_is_read_from_the_leaderworkerset_variables() -> None:
    env = {"LWS_LEADER_ADDRESS": "llm-0.llm.ns", "LWS_GROUP_SIZE": "4", "LWS_WORKER_INDEX": "2"}
    assert discover_group(env) == Group("llm-0.llm.ns", 4, 2)


def test_flags_override_the_leaderworkerset_variables() -> None:
    env = {"LWS_LEADER_ADDRESS": "llm-0.llm.ns", "LWS_GROUP_SIZE": "4", "LWS_WORKER_INDEX": "0"}
    assert discover_group(env, leader_address="x-0.x", group_size=2) == Group("x-0.x", 2, 0)


def test_outside_a_group_there_is_no_group() -> None:
    assert discover_group({"PATH": "/bin"}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LWS_LEADER_ADDRESS": "llm-0.llm"}, "--group-size: required"),
        ({"LWS_GROUP_SIZE": "2"}, "--leader-address: required"),
        ({"LWS_GROUP_SIZE": "two", "LWS_LEADER_ADDRESS": "a"}, "LWS_GROUP_SIZE: must be an integer"),
    ],
)
def test_an_incomplete_group_is_a_usage_error_naming_the_flag(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        discover_group(env)


@pytest.mark.parametrize(
    ("role", "group", "resolved"),
    [
        ("auto", None, "single"),
        ("auto", Group("a", 1, 0), "single"),
        ("auto", Group("a", 2, 0), "leader"),
        ("auto", Group("a", 2, 1), "worker"),
        ("worker", None, "worker"),
    ],
)
def test_role_follows_the_worker_index(role: str, group: Group | None, resolved: str) -> None:
    assert resolve_role(role, group) == resolved


def test_hostfile_gives_each_pod_its_gpus_leader_first() -> None:
    assert hostfile_text(["a.x", "a-1.x"], 8) == "a.x slots=8 max_slots=8\na-1.x slots=8 max_slots=8\n"


def test_the_leader_waits_for_the_worker_sshd_ports() -> None:
    plan = _compose("engine", 8, 4, pods=4)
    assert plan.wait_for == ("llm-0-1.llm.default:2222", "llm-0-2.llm.default:2222", "llm-0-3.llm.default:2222")


def test_waiting_for_workers_times_out_naming_the_missing_hosts() -> None:
    clock = FakeClock()
    up = {"a-1.x:2222"}
    with pytest.raises(ServeError) as caught:
        wait_for_workers(
            ["a-1.x:2222", "a-2.x:2222", "a-3.x:2222"], 10, reachable=up.__contains__, clock=clock, sleep=clock.sleep
        )
    assert str(caught.value).startswith("workers not reachable after 10 s: a-2.x:2222, a-3.x:2222 (")


def test_waiting_for_workers_retries_until_they_answer() -> None:
    clock = FakeClock()
    asked: list[str] = []

    def reachable(target: str) -> bool:
        asked.append(target)
        return clock.now >= 4  # the worker's sshd comes up on the third try

    wait_for_workers(["a-1.x:2222"], 60, reachable=reachable, clock=clock, sleep=clock.sleep)
    assert asked == ["a-1.x:2222"] * 3


def test_a_worker_runs_sshd_in_the_foreground_with_the_group_keys() -> None:
    plan = compose_worker(SshOptions(port=2300, directory=Path("/keys")), sshd="/usr/sbin/sshd")
    assert plan.argv[:3] == ["/usr/sbin/sshd", "-D", "-e"]
    assert {"-p", "2300", "-h", "/keys/ssh_host_ed25519_key", "AuthorizedKeysFile=/keys/authorized_keys"} <= set(
        plan.argv
    )
    assert "PasswordAuthentication=no" in plan.argv


def test_a_worker_without_its_keys_is_refused_naming_the_missing_files(tmp_path: Path) -> None:
    plan = compose_worker(SshOptions(directory=tmp_path), sshd="/usr/sbin/sshd")
    with pytest.raises(ServeError, match=f"missing {tmp_path}/ssh_host_ed25519_key, {tmp_path}/authorized_keys"):
        exec_plan(plan)


# --------------------------------------------------------------------------- through the CLI


def _spec(tmp_path: Path, tensor: int = 1, runtime: str = "engine") -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(
        f"model:\n  name: gpt2\n  tensorrtLlm:\n    runtime: {runtime}\n    parallelism: {{tensor: {tensor}}}\n"
    )
    return path


def test_cli_dry_run_json_shows_the_mpirun_plan(tmp_path: Path) -> None:
    result = run_cli("serve", "--spec", str(_spec(tmp_path, 2)), "--repository", str(GATE_REPO), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert Path(plan["argv"][0]).name == "mpirun" and plan["argv"].count(":") == 1
    assert "guard skipped" in plan["description"]


def test_cli_dry_run_of_a_worker_pod_prints_its_sshd_from_the_leaderworkerset_variables() -> None:
    env = {"LWS_LEADER_ADDRESS": "llm-0.llm.ns", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}
    result = run_cli("serve", "--ssh-port", "2400", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "-p 2400" in result.stdout and "pod 1 of 2, leader llm-0.llm.ns" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--cache or --repository"),
        (["--repository", str(ECHO_REPO), "--json"], "--json: only with --dry-run"),
        (["--repository", str(ROOT / "tests" / "data")], "has no model"),
        (["--repository", str(GATE_REPO), "--world-size", "4", "--dry-run"], "--world-size: 4 does not match"),
        (["--repository", str(GATE_REPO), "--role", "boss", "--dry-run"], "--role: 'boss'"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(args: list[str], message: str) -> None:
    result = run_cli("serve", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


class Served:
    """`llmprep serve` started through the CLI, as a container would start it."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.log = tmp_path / "serve.log"
        cmd = [
            sys.executable, "-m", "llmprep.cli", "serve", *args, "--address", "127.0.0.1",
            "--http-port", str(self.http), "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics),
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def ready(self) -> bool:
        return http_ok(f"{self.url}/v2/health/ready")

    def wait_ready(self, timeout: float = 90) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"llmprep serve exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.stop()


def _infer(url: str, model: str, gate: Path | None = None) -> list[int]:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=180)
    tensor = httpclient.InferInput("IN", [3], "INT32")
    tensor.set_data_from_numpy(np.array([4, 5, 6], dtype=np.int32))
    inputs = [tensor]
    if gate is not None:
        held = httpclient.InferInput("GATE", [1], "BYTES")
        held.set_data_from_numpy(np.array([str(gate).encode()], dtype=object))
        inputs.append(held)
    return list(client.infer(model, inputs).as_numpy("OUT").tolist())


def test_cli_serves_a_repository_on_loopback_until_sigterm(tmp_path: Path, served: list[Served]) -> None:
    server = Served(tmp_path, "--repository", str(ECHO_REPO), "--exit-timeout-secs", "5")
    served.append(server)
    server.wait_ready()
    assert _infer(server.url, "echo") == [4, 5, 6]
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


def _drain_while_a_request_is_held(server: Served, tmp_path: Path) -> tuple[dict[str, Any], list[bool]]:
    """Hold one request in the gate model, SIGTERM `llmprep serve`, watch readiness, then release it."""
    import time

    gate = tmp_path / "gate"
    gate.mkdir()
    result: dict[str, Any] = {}

    def request() -> None:
        try:
            result["out"] = _infer(server.url, "tensorrt_llm", gate)
        except Exception as exc:  # reported by the assertion below
            result["error"] = repr(exc)

    thread = threading.Thread(target=request)
    thread.start()
    while not (gate / "started").exists():
        assert thread.is_alive() and server.proc.poll() is None, result
        time.sleep(0.02)
    os.kill(server.proc.pid, signal.SIGTERM)  # Kubernetes signals the container's first process only
    deadline = time.monotonic() + 60  # a guard against hanging, not a measurement
    while server.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Readiness failed while the request is still held, and the server is still running (draining).
    readiness = [server.ready(), server.proc.poll() is None]
    (gate / "release").touch()
    thread.join(timeout=120)
    return result, readiness


def test_sigterm_fails_readiness_then_finishes_the_request_in_flight_then_exits_0(
    tmp_path: Path, served: list[Served]
) -> None:
    server = Served(tmp_path, "--repository", str(GATE_REPO), "--exit-timeout-secs", "60")
    served.append(server)
    server.wait_ready()
    result, readiness = _drain_while_a_request_is_held(server, tmp_path)
    assert readiness == [False, True]
    assert result == {"out": [4, 5, 6]}
    assert server.proc.wait(timeout=60) == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="OpenMPI's mpirun is not installed (Debian openmpi-bin)")
def test_two_mpirun_ranks_of_the_real_tritonserver_serve_and_drain(tmp_path: Path, served: list[Served]) -> None:
    server = Served(
        tmp_path, "--spec", str(_spec(tmp_path, 2)), "--repository", str(GATE_REPO), "--exit-timeout-secs", "60"
    )
    served.append(server)
    server.wait_ready()
    from llmprep.serve import tritonserver_pids

    ranks = tritonserver_pids(server.proc.pid)
    assert len(ranks) == 2  # rank 1 runs too, endpoints off, tensorrt_llm loaded
    assert _infer(server.url, "tensorrt_llm") == [4, 5, 6]
    result, readiness = _drain_while_a_request_is_held(server, tmp_path)
    assert readiness == [False, True]
    assert result == {"out": [4, 5, 6]}
    assert server.proc.wait(timeout=90) == 0


# --------------------------------------------------------------------------- --cache: the prepared artifact


@pytest.fixture
def prepared_cache(tmp_path: Path) -> tuple[Path, Path]:
    """An engine artifact prepared with the TensorRT-LLM 1.2.1 double on an H100 double: (spec, cache)."""
    from tests.doubles import install_release, make_hub_cache, tiny_checkpoint_files

    hub = tmp_path / "hub"
    make_hub_cache(hub, "acme/tiny-llama", tiny_checkpoint_files())
    spec = tmp_path / "served.yaml"
    spec.write_text("model:\n  name: acme/tiny-llama\n")
    rel = install_release(tmp_path / "built-with", "engine")
    made = run_cli(
        "prepare", "--spec", str(spec), "--cache", str(tmp_path / "cache"), "--hub-cache", str(hub), "--json",
        env=rel.env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return spec, tmp_path / "cache"


def test_cache_serving_passes_the_drift_guard_on_the_pod_it_was_built_for(
    tmp_path: Path, prepared_cache: tuple[Path, Path]
) -> None:
    from tests.doubles import install_release

    spec, cache = prepared_cache
    pod = install_release(tmp_path / "pod", "engine")
    result = run_cli("serve", "--spec", str(spec), "--cache", str(cache), "--dry-run", "--json", env=pod.env)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert "matches this pod" in plan["description"]
    assert any(a.startswith(f"--model-repository={cache}/repos/") for a in plan["argv"])


@pytest.mark.parametrize(
    ("kind", "gpus", "refusal"),
    [
        ("engine", ["NVIDIA A100-SXM4-80GB"], "GPU product NVIDIA-H100-80GB-HBM3 ≠ NVIDIA-A100-SXM4-80GB here"),
        ("pytorch", None, "TensorRT-LLM 1.2.1 ≠ 1.3.0 here"),
    ],
)
def test_cache_serving_refuses_in_one_line_on_a_pod_that_drifted(
    tmp_path: Path, prepared_cache: tuple[Path, Path], kind: str, gpus: list[str] | None, refusal: str
) -> None:
    from tests.doubles import install_release

    spec, cache = prepared_cache
    pod = install_release(tmp_path / "pod", kind, gpus=gpus)
    result = run_cli("serve", "--spec", str(spec), "--cache", str(cache), "--dry-run", env=pod.env)
    assert result.returncode == 1
    assert refusal in result.stderr and "refusing to serve artifact" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- two "pods" on loopback


def _group_keys(folder: Path) -> Path:
    """The group's ssh Secret, as the chart would mount it."""
    folder.mkdir()
    for name in ("id_ed25519", "ssh_host_ed25519_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    shutil.copy(folder / "id_ed25519.pub", folder / "authorized_keys")
    (folder / "known_hosts").write_text("* " + (folder / "ssh_host_ed25519_key.pub").read_text())
    for path in folder.iterdir():
        path.chmod(0o400)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mpirun", "ssh", "ssh-keygen")) or not Path("/usr/sbin/sshd").exists()
    or os.geteuid() != 0,
    reason="needs OpenMPI, openssh-server and root (the worker's sshd runs as in the image)",
)  # fmt: skip
def test_a_leader_and_a_worker_pod_on_loopback_serve_one_model_over_mpirun_and_ssh(
    tmp_path: Path, served: list[Served]
) -> None:
    keys = _group_keys(tmp_path / "ssh")
    ssh_port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "llmprep.cli", "serve", "--role", "worker", "--ssh-port", str(ssh_port), "--ssh-dir", str(keys)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    try:
        # 127.0.0.2 is not one of this machine's interface addresses, so mpirun treats it as
        # another node and starts rank 1 there through ssh: the worker's sshd, the real path.
        leader = Served(
            tmp_path, "--spec", str(_spec(tmp_path, 2)), "--repository", str(GATE_REPO), "--role", "leader",
            "--hosts", "127.0.0.1,127.0.0.2", "--ssh-port", str(ssh_port), "--ssh-dir", str(keys),
            "--hostfile", str(tmp_path / "hostfile"), "--wait-workers-secs", "60", "--exit-timeout-secs", "60",
        )  # fmt: skip
        served.append(leader)
        leader.wait_ready()
        from llmprep.serve import tritonserver_pids

        assert len(tritonserver_pids(worker.pid)) == 1  # rank 1 runs under the worker's sshd
        assert (tmp_path / "hostfile").read_text() == "127.0.0.1 slots=1 max_slots=1\n127.0.0.2 slots=1 max_slots=1\n"
        assert _infer(leader.url, "tensorrt_llm") == [4, 5, 6]
        result, readiness = _drain_while_a_request_is_held(leader, tmp_path)
        assert readiness == [False, True]
        assert result == {"out": [4, 5, 6]}
        assert leader.proc.wait(timeout=90) == 0
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


def test_the_leader_gives_up_on_a_missing_worker_naming_it(tmp_path: Path) -> None:
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("id_ed25519", "known_hosts"):
        (keys / name).write_text("")
    dead = free_port()  # nothing listens there
    result = run_cli(
        "serve", "--spec", str(_spec(tmp_path, 2)), "--repository", str(GATE_REPO), "--role", "leader",
        "--hosts", "127.0.0.1,127.0.0.3", "--ssh-port", str(dead), "--ssh-dir", str(keys),
        "--hostfile", str(tmp_path / "hostfile"), "--wait-workers-secs", "1",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"workers not reachable after 1 s: 127.0.0.3:{dead}" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_a_standin_repository_is_served_from_its_own_spec_without_the_drift_guard(tmp_path: Path, runtime: str) -> None:
    from llmprep.repo import write_repository
    from llmprep.spec import parse_spec

    spec = parse_spec({"model": {"name": "gpt2", "tensorrtLlm": {"runtime": runtime, "parallelism": {"tensor": 2}}}})
    repo = write_repository(spec, out_dir=tmp_path / "repo", engine="standin")
    result = run_cli("serve", "--repository", str(repo), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["description"].startswith(f"{runtime} runtime, tensor 2 × pipeline 1")
    assert "stand-in repository: no artifact manifest, so the drift guard is skipped" in plan["description"]


def test_a_spec_that_contradicts_the_repository_layout_is_refused(tmp_path: Path) -> None:
    from llmprep.repo import write_repository
    from llmprep.spec import parse_spec

    spec = parse_spec({"model": {"name": "gpt2", "tensorrtLlm": {"runtime": "engine"}}})
    repo = write_repository(spec, out_dir=tmp_path / "repo", engine="standin")
    result = run_cli("serve", "--spec", str(_spec(tmp_path, 1, "pytorch")), "--repository", str(repo), "--dry-run")
    assert result.returncode == 2
    assert "the spec says pytorch but" in result.stderr and "is the engine layout" in result.stderr

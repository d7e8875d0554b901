"""Find a Triton Inference Server binary and run it: the NGC image's, or the nvidia-pytriton wheel's.

The same `llmprep serve` runs in the NGC image (tritonserver on PATH, backends in
/opt/tritonserver/backends) and on a laptop or CI machine, where the nvidia-pytriton wheel
ships a real tritonserver 2.51 whose Python backend needs the stub built for the running
Python copied beside it (shared TOOLS.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from llmprep.errors import ServeError
from llmprep.proc import ManagedProcess

NGC_BACKENDS = Path("/opt/tritonserver/backends")


@dataclass(frozen=True)
class TritonInstall:
    """Where the server binary and its backends are, and the environment it needs."""

    binary: Path
    backend_dir: Path | None
    env: Mapping[str, str] = field(default_factory=dict)
    source: str = "path"


def _pytriton_root() -> Path | None:
    # find_spec, not import: importing pytriton pulls in gevent, which a GPU image may lack.
    found = importlib.util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(next(iter(found.submodule_search_locations))) / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def _owned_backends(root: Path, workdir: Path) -> Path:
    """A backends folder we own, with the Python stub for the running interpreter beside the backend."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServeError(f"the nvidia-pytriton wheel has no Python backend stub for Python {version}")
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    target = workdir / f"py{version}-{digest}" / "backends"
    python_dir = target / "python"
    if not (python_dir / "triton_python_backend_stub").exists():
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=workdir))
        shutil.copytree(root / "backends", staging / "backends", dirs_exist_ok=True)
        shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.joinpath("backends").rename(target)
        except OSError:
            if not (python_dir / "triton_python_backend_stub").exists():
                raise
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _wheel_env(root: Path, base_env: Mapping[str, str]) -> dict[str, str]:
    # The stub must load the running Python's libpython first, or extension modules fail
    # with "undefined symbol: _PyModule_Add" (shared TOOLS.md); then the wheel's own libraries.
    libs = root.parent.parent / "nvidia_pytriton.libs"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ld = [p for p in (libdir, str(libs), base_env.get("LD_LIBRARY_PATH", "")) if p]
    site = [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
    here = str(Path(__file__).resolve().parents[2])  # the folder that holds the llmprep package
    pythonpath = [here, *site, *[p for p in base_env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    # The stub embeds Python in isolated mode: it ignores PYTHONPATH and finds its prefix by
    # looking up `python3` on PATH. With this interpreter's bin first, a virtual environment's
    # pyvenv.cfg is found and its site-packages (numpy, transformers) are the ones loaded;
    # otherwise the base interpreter's numpy is mixed in and tensors read back garbled.
    path = [str(Path(sys.executable).parent), *base_env.get("PATH", "").split(os.pathsep)]
    return {
        "LD_LIBRARY_PATH": os.pathsep.join(ld),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
        "PATH": os.pathsep.join(p for p in dict.fromkeys(path) if p),
    }


def locate_triton(base_env: Mapping[str, str] | None = None, workdir: Path | None = None) -> TritonInstall:
    """The tritonserver to run: on PATH first (the NGC image), else the nvidia-pytriton wheel's."""
    base_env = dict(os.environ if base_env is None else base_env)
    on_path = shutil.which("tritonserver", path=base_env.get("PATH"))
    if on_path:
        backends = NGC_BACKENDS if NGC_BACKENDS.exists() else None
        return TritonInstall(binary=Path(on_path), backend_dir=backends, env={}, source="path")
    root = _pytriton_root()
    if root is None:
        raise ServeError(
            "no tritonserver found: run inside the NGC tritonserver image, or `pip install nvidia-pytriton`"
        )
    workdir = workdir or Path(tempfile.gettempdir()) / "llmprep-triton"
    workdir.mkdir(parents=True, exist_ok=True)
    return TritonInstall(
        binary=root / "bin" / "tritonserver",
        backend_dir=_owned_backends(root, workdir),
        env=_wheel_env(root, base_env),
        source="nvidia-pytriton",
    )


def server_args(
    repository: Path,
    *,
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    address: str = "0.0.0.0",
    exit_timeout_secs: int = 30,
    backend_dir: Path | None = None,
    log_verbose: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """tritonserver flags (without the binary) for one serving rank."""
    args = [
        f"--model-repository={repository}",
        f"--http-address={address}",
        f"--http-port={http_port}",
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={address}",
        f"--metrics-port={metrics_port}",
        f"--exit-timeout-secs={exit_timeout_secs}",
    ]
    if backend_dir is not None:
        args.append(f"--backend-directory={backend_dir}")
    if log_verbose:
        args.append("--log-verbose=1")
    return args + list(extra)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class TritonProcess(ManagedProcess):
    """A tritonserver process on loopback: start, wait until ready, drain and stop."""

    name = "tritonserver"
    error = ServeError
    poll_s = 0.1
    tail_lines = 8

    def __init__(
        self,
        repository: Path,
        *,
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        log_path: Path,
        exit_timeout_secs: int = 10,
        extra: Sequence[str] = (),
        install: TritonInstall | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_path)
        self.install = install or locate_triton()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.exit_timeout_secs = exit_timeout_secs
        self.command = (
            list(command)
            if command is not None
            else [
                str(self.install.binary),
                *server_args(
                    repository,
                    http_port=http_port,
                    grpc_port=grpc_port,
                    metrics_port=metrics_port,
                    address="127.0.0.1",
                    exit_timeout_secs=exit_timeout_secs,
                    backend_dir=self.install.backend_dir,
                    extra=extra,
                ),
            ]
        )
        self.env = {**os.environ, **self.install.env, **(env or {})}

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> TritonProcess:
        self.spawn(self.command, self.env)
        return self

    def ready(self) -> bool:
        return http_ok(f"{self.http_url}/v2/health/ready")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll readiness; fail with the log's tail if the server dies or never gets ready."""
        super().wait_ready(timeout)

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after `grace` seconds."""
        return self.terminate(grace if grace is not None else self.exit_timeout_secs + 10)

    def __enter__(self) -> TritonProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

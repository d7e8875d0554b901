from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from llmprep.errors import ServeError
from llmprep.serve.triton import TritonProcess, locate_triton, server_args
from tests.conftest import ROOT, free_port


def test_the_wheel_triton_is_found_with_a_python_stub_beside_its_backend(tmp_path: Path) -> None:
    install = locate_triton(base_env={"PATH": "/usr/bin:/bin"}, workdir=tmp_path)
    assert install.source == "nvidia-pytriton"
    assert install.backend_dir is not None
    assert (install.backend_dir / "python" / "triton_python_backend_stub").exists()
    assert install.env["LD_LIBRARY_PATH"].split(":")[0].endswith("lib")


def test_server_args_bind_every_endpoint_to_the_given_address() -> None:
    args = server_args(Path("/repo"), http_port=1, grpc_port=2, metrics_port=3, address="127.0.0.1")
    assert "--http-address=127.0.0.1" in args and "--grpc-port=2" in args and "--metrics-port=3" in args


def test_a_real_tritonserver_serves_the_echo_model_and_stops(tmp_path: Path) -> None:
    server = TritonProcess(
        ROOT / "tests" / "data" / "echo_repo",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp_path / "triton.log",
        exit_timeout_secs=2,
    )
    with server:
        server.wait_ready(60)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        tensor = httpclient.InferInput("IN", [3], "INT32")
        tensor.set_data_from_numpy(np.array([1, 2, 3], dtype=np.int32))
        assert client.infer("echo", [tensor]).as_numpy("OUT").tolist() == [1, 2, 3]
    assert server.proc is not None and server.proc.poll() is not None


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    server = TritonProcess(
        tmp_path / "missing-repo",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp_path / "triton.log",
    )
    with server, pytest.raises(ServeError, match="tritonserver exited"):
        server.wait_ready(30)

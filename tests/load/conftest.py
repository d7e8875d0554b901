"""A real tritonserver serving the streaming test model, shared by the load tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmprep.serve.triton import TritonProcess
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent / "data" / "repo"


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    server = TritonProcess(
        REPO,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp_path_factory.mktemp("triton") / "triton.log",
        exit_timeout_secs=2,
    )
    with server:
        server.wait_ready(90)
        yield server

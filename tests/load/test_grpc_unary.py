"""gRPC requests to a model that is not decoupled go through `ModelInfer`, not a stream per request.

A stream per request costs the client about three times the CPU of a unary call
(docs/benchmarks.md, load-generator overhead); a model that is not decoupled answers once
either way, so the cheaper call measures the same thing.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from llmprep.load.clients import GrpcClient, ModelSchema, build_plan
from llmprep.load.prompts import Prompt
from llmprep.load.stats import Sample
from llmprep.serve.triton import TritonProcess
from tests.conftest import ROOT, free_port

FAST_MODEL = ROOT / "bench" / "models" / "fast"
FAST_CONFIG = {
    "max_batch_size": 0,
    "input": [
        {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
        {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": [1]},
    ],
}
PROMPT = Prompt(text="hello there", input_tokens=2, output_tokens=4)


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    repository = tmp_path_factory.mktemp("repo")
    shutil.copytree(FAST_MODEL, repository / "fast", ignore=shutil.ignore_patterns("__pycache__"))
    server = TritonProcess(
        repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=repository.parent / "triton.log",
        exit_timeout_secs=2,
    )
    with server:
        server.wait_ready(90)
        yield server


def _one_request(target: str, *, forbid_stream: bool) -> Sample:
    plan = build_plan(ModelSchema.from_config("fast", FAST_CONFIG))

    async def go() -> Sample:
        client = GrpcClient(target, plan, timeout=10.0)
        if forbid_stream:

            def no_stream(*_args: Any, **_kwargs: Any) -> Any:
                raise AssertionError("a stream was opened for a model that is not decoupled")

            client._client.stream_infer = no_stream  # type: ignore[method-assign]
        try:
            return await client.request(0, PROMPT, 0.0)
        finally:
            await client.close()

    return asyncio.run(go())


def test_a_model_that_is_not_decoupled_is_asked_once_with_model_infer(fast_server: TritonProcess) -> None:
    sample = _one_request(fast_server.grpc_url, forbid_stream=True)
    assert (sample.error, sample.tokens_out, sample.ttft) == (None, 1, sample.e2e)


def test_an_unreachable_target_is_counted_as_unavailable_on_the_unary_path() -> None:
    sample = _one_request(f"127.0.0.1:{free_port()}", forbid_stream=True)
    assert sample.error == "unavailable"


def test_a_missing_model_is_a_server_error_on_the_unary_path(fast_server: TritonProcess) -> None:
    plan = build_plan(ModelSchema.from_config("no_such_model", FAST_CONFIG))

    async def go() -> Sample:
        client = GrpcClient(fast_server.grpc_url, plan, timeout=10.0)
        try:
            return await client.request(0, PROMPT, 0.0)
        finally:
            await client.close()

    sample = asyncio.run(go())
    assert sample.error == "server" and "no_such_model" in sample.detail

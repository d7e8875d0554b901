"""`compute: torch` on a real tritonserver: the stand-in's tokens are the small transformer's.

Needs PyTorch in the Python that runs the tests (the server's Python stub uses the same one);
skips where it does not import. Where numpy 2 is the numpy loaded, the numeric request below
also runs make_tensor's DLPack path inside the stub; the text one then skips (measured with
nvidia-pytriton's Triton 2.51 stub under numpy 2.4: BYTES inputs crash the stub,
"unpack_from requires a buffer of at least …"). On the GPU machine:

    . bench/gpu_env.sh && python -m pytest -q -p no:cacheprovider tests/e2e/test_standin_torch_serving.py
"""

from __future__ import annotations

import queue
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from llmprep.tinytok import write_tiny_tokenizer
from tests.e2e.conftest import Server, grpc_stream, launch, running, text_inputs
from tests.e2e.test_standin_torch_unit import job, load, torch_or_skip

pytestmark = pytest.mark.slow

TORCH = {"compute": "torch", "torchWidth": 32, "torchLayers": 1, "maxInFlight": 4}
NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    torch_or_skip()
    tmp = tmp_path_factory.mktemp("torch")
    server = launch(tmp, write_tiny_tokenizer(tmp / "tokenizer"), "engine", **TORCH)
    REPOSITORY[server.grpc] = tmp / "engine-handoff-decoupled"  # where launch() wrote it
    with running({"torch": server}):
        yield server


REPOSITORY: dict[str, Path] = {}


def config_of(server: Server) -> str:
    return (REPOSITORY[server.grpc] / "tensorrt_llm" / "config.pbtxt").read_text()


def vocab_size(server: Server) -> int:
    config = config_of(server)
    found = re.search(r'key: "standin_vocab_size", value: \{ string_value: "(\d+)" \}', config)
    assert found, "the stand-in's config.pbtxt names its vocabulary size"
    return int(found.group(1))


def stream_ids(server: Server, prompt: list[int], max_tokens: int) -> list[int]:
    """Every streamed output id of one request to the `tensorrt_llm` model (numeric tensors only)."""

    def tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
        made = grpcclient.InferInput(name, list(array.shape), dtype)
        made.set_data_from_numpy(array)
        return made

    inputs = [
        tensor("input_ids", np.array([prompt], dtype=np.int32), "INT32"),
        tensor("input_lengths", np.array([[len(prompt)]], dtype=np.int32), "INT32"),
        tensor("request_output_len", np.array([[max_tokens]], dtype=np.int32), "INT32"),
        tensor("streaming", np.array([[True]]), "BOOL"),
    ]
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    ids: list[int] = []
    try:
        client.async_stream_infer("tensorrt_llm", inputs, enable_empty_final_response=True)
        while True:
            result, error = results.get(timeout=60)
            assert error is None, error
            out = result.as_numpy("output_ids")
            if out is not None:
                ids += [int(t) for t in out.reshape(-1)]
            if result.get_response().parameters["triton_final_response"].bool_param:
                return ids
    finally:
        client.stop_stream()
        client.close()


def test_a_torch_stand_in_streams_the_transformers_greedy_tokens(torch_server: Server) -> None:
    prompt, n = [5, 6, 7, 8], 6
    step = load("llmprep_standin").torch_step(
        vocab_size(torch_server), width=TORCH["torchWidth"], layers=TORCH["torchLayers"]
    )
    expected, running_job = [], job(prompt)
    for _ in range(n):
        token = step([running_job], [])[0]
        running_job.generated.append(token)
        expected.append(token)
    got = stream_ids(torch_server, prompt, n)
    assert got == expected  # the same seeded model in the server as here, one greedy token per step
    assert got != [prompt[i % len(prompt)] for i in range(n)]  # not timing mode's cycled prompt


def test_a_torch_stand_in_answers_the_ensembles_text_requests_the_same_each_time(torch_server: Server) -> None:
    if NUMPY_2:
        pytest.skip("numpy 2 here: the wheel's Python stub crashes on BYTES inputs (see the module docstring)")
    first = grpc_stream(torch_server, "ensemble", text_inputs("ensemble", 6, stream=True))
    again = grpc_stream(torch_server, "ensemble", text_inputs("ensemble", 6, stream=True))
    assert len(first) == 6 and first == again


def test_the_torch_server_uses_the_repository_it_was_given(torch_server: Server) -> None:
    assert 'key: "standin_compute", value: { string_value: "torch" }' in config_of(torch_server)

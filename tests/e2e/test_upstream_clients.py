"""The requests upstream's documented clients send, read the way those clients read them.

Our own code, written from what upstream's clients do (tests/data/upstream_io.py has the
source lines): end_to_end_grpc_client.py streams or infers the ensemble / BLS and reads
`as_numpy("text_output")[0].decode()`; inflight_batcher_llm_client.py reads the engine's
`output_ids[0][0]`; the llmapi docs send a unary request to a non-decoupled model.
Served by a real tritonserver on llmprep's stand-in repositories.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from llmprep.tinytok import write_tiny_tokenizer
from tests.data.upstream_io import LLMAPI, OUTPUTS
from tests.e2e.conftest import PROMPT, Server, launch, running, text_inputs

pytestmark = pytest.mark.slow

FAST = {"decodeMsPerStep": 2, "prefillMsPerToken": 0}
FLAT_TEXT = sorted({(r.model, r.output) for r in OUTPUTS if r.read_as == "[0].decode()"})


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    tmp = tmp_path_factory.mktemp("clients")
    tokenizer = write_tiny_tokenizer(tmp / "tokenizer")
    started = {
        "engine": launch(tmp, tokenizer, "engine", **FAST),
        "engine-sync": launch(tmp, tokenizer, "engine", decoupled=False, **FAST),
        "llmapi": launch(tmp, tokenizer, "pytorch", decoupled=False, **FAST),
        "llmapi-stream": launch(tmp, tokenizer, "pytorch", **FAST),
    }
    with running(started) as servers:
        yield servers


def stream_results(server: Server, model: str, inputs: list[grpcclient.InferInput]) -> list[Any]:
    """Every result of one ModelStreamInfer request (errors raise)."""
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    out: list[Any] = []
    try:
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while True:
            result, error = results.get(timeout=30)
            if error is not None:
                raise error
            if result.as_numpy("text_output") is not None or result.as_numpy("output_ids") is not None:
                out.append(result)
            if result.get_response().parameters["triton_final_response"].bool_param:
                return out
    finally:
        client.stop_stream()
        client.close()


def unary(server: Server, model: str, inputs: list[grpcclient.InferInput]) -> Any:
    client = grpcclient.InferenceServerClient(server.grpc)
    try:
        return client.infer(model, inputs)
    finally:
        client.close()


def test_the_io_table_covers_every_text_answering_model() -> None:
    assert {m for m, _ in FLAT_TEXT} == {"ensemble", "tensorrt_llm_bls", "llmapi"}


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_streamed_text_output_reads_as_the_end_to_end_client_reads_it(servers: dict[str, Server], model: str) -> None:
    results = stream_results(servers["engine"], model, text_inputs(model, 5, stream=True))
    chunks = [r.as_numpy("text_output")[0].decode("utf-8") for r in results]
    assert len(chunks) >= 2 and all(r.as_numpy("text_output").ndim == 1 for r in results)


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_non_streaming_stream_request_answers_one_flat_text(servers: dict[str, Server], model: str) -> None:
    results = stream_results(servers["engine"], model, text_inputs(model, 5, stream=False))
    assert len(results) == 1 and results[0].as_numpy("text_output").shape == (1,)
    assert results[0].as_numpy("text_output")[0].decode("utf-8").strip()


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_unary_infer_reads_text_output_zero_as_bytes(servers: dict[str, Server], model: str) -> None:
    result = unary(servers["engine-sync"], model, text_inputs(model, 5, stream=False))
    assert isinstance(result.as_numpy("text_output")[0], bytes)


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_http_generate_and_generate_stream_answer_strings(servers: dict[str, Server], model: str) -> None:
    body = {"text_input": PROMPT, "max_tokens": 4, "bad_words": "", "stop_words": ""}
    whole = json.loads(servers["engine"].post(f"/v2/models/{model}/generate", {**body, "stream": False}))
    events = servers["engine"].post(f"/v2/models/{model}/generate_stream", {**body, "stream": True}).decode()
    chunks = [json.loads(line[5:])["text_output"] for line in events.splitlines() if line.startswith("data:")]
    assert isinstance(whole["text_output"], str) and all(isinstance(c, str) for c in chunks) and chunks


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_the_tutorial_clients_request_gets_the_prompt_back_only_when_exclude_input_is_false(
    servers: dict[str, Server], model: str
) -> None:
    # The tutorials' client.py POSTs {text_input, max_tokens} to generate. Their fill left
    # exclude_input_in_output unset, so the backend returned prompt + completion
    # (model_instance_state.cc:800 v0.19.0); false per request stands in for that repository
    # (utils.cc:920-927: the request's value wins). chart/README.md "Coming from the tutorials".
    body = {"text_input": PROMPT, "max_tokens": 4}
    ours = json.loads(servers["engine"].post(f"/v2/models/{model}/generate", body))["text_output"]
    theirs = json.loads(
        servers["engine"].post(f"/v2/models/{model}/generate", {**body, "exclude_input_in_output": False})
    )
    assert ours.strip() and not ours.startswith(PROMPT)
    assert theirs["text_output"].startswith(PROMPT) and theirs["text_output"].endswith(ours)


def test_tensorrt_llm_output_ids_read_as_batch_beam_tokens(servers: dict[str, Server]) -> None:
    ids = np.array([[5, 6, 7, 8]], dtype=np.int32)
    inputs = []
    for name, array in (
        ("input_ids", ids),
        ("input_lengths", np.array([[4]], np.int32)),
        ("request_output_len", np.array([[3]], np.int32)),
        ("streaming", np.array([[True]])),
    ):
        tensor = grpcclient.InferInput(name, list(array.shape), "BOOL" if array.dtype == bool else "INT32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    results = stream_results(servers["engine"], "tensorrt_llm", inputs)
    tokens = [list(r.as_numpy("output_ids")[0][0]) for r in results]
    assert results[0].as_numpy("output_ids").ndim == 3 and results[0].as_numpy("sequence_length").shape == (1, 1)
    assert sum(len(t) for t in tokens) == 3


def llmapi_inputs(stream: bool, **extra: tuple[Any, str]) -> list[grpcclient.InferInput]:
    return text_inputs("llmapi", 4, stream, **extra)


def test_llmapi_default_repository_is_not_decoupled_and_answers_unary_infer(servers: dict[str, Server]) -> None:
    assert LLMAPI["decoupled"][0] is False
    text = unary(servers["llmapi"], "tensorrt_llm", llmapi_inputs(False)).as_numpy("text_output")[0].decode()
    # Upstream keeps the prompt by default (exclude_input_from_output False).
    assert text.startswith(PROMPT) and len(text) > len(PROMPT)


def test_llmapi_streaming_asked_of_a_unary_model_is_an_error(servers: dict[str, Server]) -> None:
    with pytest.raises(InferenceServerException, match="decoupled"):
        unary(servers["llmapi"], "tensorrt_llm", llmapi_inputs(True))


def test_llmapi_decoupled_repository_streams_chunks(servers: dict[str, Server]) -> None:
    results = stream_results(servers["llmapi-stream"], "tensorrt_llm", llmapi_inputs(True))
    assert len(results) == 4 and all(r.as_numpy("text_output")[0].decode() is not None for r in results)


@pytest.mark.parametrize("extra", [{"lora_name": ("a", "BYTES")}, {"stop": (True, "BOOL")}])
def test_llmapi_inputs_the_stand_in_cannot_honour_are_errors(servers: dict[str, Server], extra: dict) -> None:
    with pytest.raises(InferenceServerException, match="not supported"):
        unary(servers["llmapi"], "tensorrt_llm", llmapi_inputs(False, **extra))


def test_llmapi_perf_metrics_request_returns_every_documented_key(servers: dict[str, Server]) -> None:
    result = unary(
        servers["llmapi"], "tensorrt_llm", llmapi_inputs(False, sampling_param_return_perf_metrics=(True, "BOOL"))
    )
    keys = (
        "acceptance_rate",
        "kv_cache_alloc_new_blocks",
        "kv_cache_reused_block",
        "kv_cache_hit_rate",
        "last_token_time_ns",
        "total_accepted_draft_tokens",
        "total_draft_tokens",
        "arrival_time_ns",
    )
    assert [k for k in keys if result.as_numpy(k) is None] == []

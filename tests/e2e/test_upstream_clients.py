"""The requests upstream's documented clients send, read the way those clients read them.

Our own code, written from what upstream's clients do (tests/data/upstream_io.py has the
source lines): end_to_end_grpc_client.py streams or infers the ensemble / BLS and reads
`as_numpy("text_output")[0].decode()` and, with --return-perf-metrics, each perf output `[0][0]`;
inflight_batcher_llm_client.py asks the engine unary by default and reads `output_ids[0][0]`; the
llmapi docs send a unary request to a non-decoupled model and POST to HTTP `generate`. Every row of
the OUTPUTS table is checked for shape, upstream's declared type and the client's reading.
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
from tests.data.upstream_io import LLMAPI, OUTPUTS, Output
from tests.data.upstream_layouts import UPSTREAM
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


def tensors(**arrays: Any) -> list[grpcclient.InferInput]:
    """Inputs from numpy arrays, typed by their dtype."""
    kinds = {"bool": "BOOL", "int32": "INT32", "object": "BYTES"}
    out = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), kinds[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def engine_inputs(rows: list[list[int]], max_tokens: int, streaming: bool) -> list[grpcclient.InferInput]:
    """A request straight to the tensorrt_llm model, as inflight_batcher_llm_client.py builds it."""
    return tensors(
        input_ids=np.array(rows, dtype=np.int32),
        input_lengths=np.array([[len(r)] for r in rows], dtype=np.int32),
        request_output_len=np.array([[max_tokens]] * len(rows), dtype=np.int32),
        streaming=np.array([[streaming]] * len(rows)),
    )


def test_tensorrt_llm_output_ids_read_as_batch_beam_tokens(servers: dict[str, Server]) -> None:
    results = stream_results(servers["engine"], "tensorrt_llm", engine_inputs([[5, 6, 7, 8]], 3, streaming=True))
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
    chunks = [r.as_numpy("text_output")[0].decode() for r in results]
    (whole,) = stream_results(servers["llmapi-stream"], "tensorrt_llm", llmapi_inputs(False))
    # The chunks are the completion, piece by piece: together, the non-streaming answer less its prompt.
    assert len(chunks) == 4 and "".join(chunks).strip()
    assert whole.as_numpy("text_output")[0].decode() == PROMPT + "".join(chunks)


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


# --------------------------------------------------------------------------- every output of the table


NUMPY = {"TYPE_STRING": "object", "TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_FP32": "float32"}


def declared_type(row: Output) -> str:
    layout, model = ("llmapi", "tensorrt_llm") if row.model == "llmapi" else ("inflight_batcher_llm", row.model)
    return UPSTREAM[layout][model][2][row.output][1]


def responses_for(servers: dict[str, Server], row: Output) -> list[Any]:
    """The responses to the request an upstream client sends to get this output."""
    engine = servers["engine"]
    if row.model == "postprocessing":
        inputs = tensors(TOKENS_BATCH=np.array([[[5, 6, 7]]], np.int32), SEQUENCE_LENGTH=np.array([[3]], np.int32))
        return [unary(engine, "postprocessing", inputs)]
    if row.model == "preprocessing":
        query = np.array([[PROMPT.encode()]], dtype=object)
        return [unary(engine, "preprocessing", tensors(QUERY=query, REQUEST_OUTPUT_LEN=np.array([[4]], np.int32)))]
    if row.model == "llmapi":
        return [unary(servers["llmapi"], "tensorrt_llm", llmapi_inputs(False))]
    if row.model == "tensorrt_llm":  # inflight_batcher_llm_client.py's default: unary, not streaming
        return [unary(servers["engine-sync"], "tensorrt_llm", engine_inputs([[5, 6, 7, 8]], 3, streaming=False))]
    if row.output == "batch_index":  # sent only for a request of more than one row (model_instance_state.cc:1211)
        return stream_results(engine, row.model, rows_text_inputs(TWO_PROMPTS, stream=False))
    perf = {} if row.output == "text_output" else {"return_perf_metrics": (True, "BOOL")}
    return stream_results(engine, row.model, text_inputs(row.model, 3, stream=True, **perf))


TWO_PROMPTS = (PROMPT, "Hi")  # the second shorter than max_tokens: its padding would show


def rows_text_inputs(prompts: tuple[str, ...], stream: bool) -> list[grpcclient.InferInput]:
    """An ensemble request of a row per prompt (text_input [rows, 1]), as end_to_end_grpc_client.py sends one."""
    return tensors(
        text_input=np.array([[p.encode()] for p in prompts], dtype=object),
        max_tokens=np.array([[3]] * len(prompts), np.int32),
        stream=np.array([[stream]] * len(prompts)),
    )


def shape_matches(shape: tuple[int, ...], pattern: str) -> bool:
    # B, K and B*K are 1 in each response (tests/data/upstream_io.py); T is any token count.
    dims = [d.strip() for d in pattern.strip("[]").split(",")]
    return len(shape) == len(dims) and all((n >= 1) if d == "T" else (n == 1) for d, n in zip(dims, shape, strict=True))


def read_as_the_client_does(array: np.ndarray, read_as: str, pattern: str) -> Any:
    if read_as == "[0].decode()":
        value = array[0].decode()
        assert isinstance(value, str)
    elif read_as == "[0][0]":  # a value per [batch, beam]; for output_ids the beam's tokens
        value = array[0][0]
        assert np.ndim(value) == len(pattern.split(",")) - 2
    elif read_as == "flat strings":
        value = [v.decode() for v in array]
    elif read_as == "row per request":
        value = array[0].tolist()
        assert value and all(isinstance(t, int) for t in value)
    else:
        raise AssertionError(f"no reading for {read_as!r}")
    return value


OUTPUT_CASES = [pytest.param(r, id=f"{r.model}-{r.output}") for r in OUTPUTS]


@pytest.mark.parametrize("row", OUTPUT_CASES)
def test_every_output_has_upstreams_shape_and_type_and_reads_as_its_client_reads_it(
    servers: dict[str, Server], row: Output
) -> None:
    arrays = [a for r in responses_for(servers, row) if (a := r.as_numpy(row.output)) is not None]
    assert arrays, f"{row.model} sent no {row.output}"
    values = []
    for array in arrays:
        assert shape_matches(array.shape, row.shape), f"{row.output}: {array.shape} is not {row.shape}"
        assert str(array.dtype) == NUMPY[declared_type(row)]
        values.append(read_as_the_client_does(array, row.read_as, row.shape))
    if row.output == "batch_index":
        assert sorted(int(v) for v in values) == [0, 1]
    if row.output == "kv_cache_alloc_new_blocks":
        assert int(values[-1]) >= 1  # the context's blocks, counted as the backend counts them


# --------------------------------------------------------------------------- requests of several rows


def texts_by_row(results: list[Any]) -> dict[int, str]:
    """Each row's text: its responses' text_output[0], joined in order, keyed by batch_index."""
    texts: dict[int, str] = {}
    for result in results:
        row = int(result.as_numpy("batch_index")[0][0])
        texts[row] = texts.get(row, "") + result.as_numpy("text_output")[0].decode()
    return texts


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
def test_ensemble_answers_each_row_of_a_two_row_request_as_it_answers_that_row_alone(
    servers: dict[str, Server], stream: bool
) -> None:
    # Preprocessing gives the engine one padded row per prompt with its own length (tensorrtllm_backend
    # v0.19.0 preprocessing/1/model.py:628-638); the engine answers each row on its own, tagged with
    # batch_index (model_instance_state.cc:1211-1219). A row cut wrongly would differ from its answer alone.
    engine = servers["engine"]
    rows = texts_by_row(stream_results(engine, "ensemble", rows_text_inputs(TWO_PROMPTS, stream)))
    alone = [
        "".join(
            r.as_numpy("text_output")[0].decode()
            for r in stream_results(engine, "ensemble", rows_text_inputs((p,), stream))
        )
        for p in TWO_PROMPTS
    ]
    assert rows == {0: alone[0], 1: alone[1]} and alone[0] != alone[1] and all(alone)


def test_ensemble_two_row_request_to_a_unary_repository_is_refused_as_the_backend_refuses_it(
    servers: dict[str, Server],
) -> None:
    # The engine backend refuses B > 1 unless the model is decoupled (utils.cc:900-903, v0.19.0); through
    # the ensemble the refusal reaches the client.
    with pytest.raises(InferenceServerException, match=r"batch size > 1"):
        unary(servers["engine-sync"], "ensemble", rows_text_inputs(TWO_PROMPTS, stream=False))


# The second prompt's first three tokens are one character's bytes (the tiny tokenizer is byte-level):
# streamed text that mixed the rows' tokens would break that character.
BLS_TWO_PROMPTS = (PROMPT, "日本語")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
def test_bls_answers_each_row_of_a_two_row_request_as_it_answers_that_row_alone(
    servers: dict[str, Server], stream: bool
) -> None:
    # Upstream's BLS sends the rows to the engine as one request, answers each engine response with
    # text_output flat and its batch_index, and keeps streamed tokens per batch_index (tensorrtllm_backend
    # v0.19.0 tensorrt_llm_bls/1/lib/decode.py:260-288, 427-448; triton_decoder.py:574-598).
    engine = servers["engine"]
    results = stream_results(engine, "tensorrt_llm_bls", rows_text_inputs(BLS_TWO_PROMPTS, stream))
    assert all(r.as_numpy("text_output").shape == (1,) and r.as_numpy("batch_index").shape == (1, 1) for r in results)
    rows = texts_by_row(results)
    alone = [
        "".join(
            r.as_numpy("text_output")[0].decode()
            for r in stream_results(engine, "tensorrt_llm_bls", rows_text_inputs((p,), stream))
        )
        for p in BLS_TWO_PROMPTS
    ]
    assert rows == {0: alone[0], 1: alone[1]} and alone[0] != alone[1] and all(alone)


def test_bls_two_row_request_to_a_unary_repository_is_refused_as_the_backend_refuses_it(
    servers: dict[str, Server],
) -> None:
    # Upstream's BLS sends B > 1 to the engine whatever its own policy (decode.py:277-288); the engine
    # refuses it unless decoupled (utils.cc:900-903) and the BLS answers the refusal.
    with pytest.raises(InferenceServerException, match=r"batch size > 1"):
        unary(servers["engine-sync"], "tensorrt_llm_bls", rows_text_inputs(TWO_PROMPTS, stream=False))


def test_preprocessing_answers_a_two_row_request_with_two_rows_in_every_output(servers: dict[str, Server]) -> None:
    # tensorrtllm_backend v0.19.0 preprocessing/1/model.py: every output has the request's rows, the
    # engine backend slicing each along them (utils.cc:192-209); lists the client left out are empty.
    query = np.array([[PROMPT.encode()], [b"Hi"]], dtype=object)
    result = unary(
        servers["engine"], "preprocessing", tensors(QUERY=query, REQUEST_OUTPUT_LEN=np.array([[4], [2]], np.int32))
    )
    shapes = {name: result.as_numpy(name).shape for name in ("REQUEST_INPUT_LEN", "REQUEST_OUTPUT_LEN", "OUT_END_ID")}
    assert set(shapes.values()) == {(2, 1)} and result.as_numpy("REQUEST_OUTPUT_LEN").tolist() == [[4], [2]]
    lengths = result.as_numpy("REQUEST_INPUT_LEN").reshape(-1).tolist()
    assert result.as_numpy("INPUT_ID").shape == (2, max(lengths)) and lengths[0] > lengths[1]
    assert result.as_numpy("BAD_WORDS_IDS").shape == result.as_numpy("STOP_WORDS_IDS").shape == (2, 2, 0)
    assert result.as_numpy("EMBEDDING_BIAS").shape == (2, 0)


# --------------------------------------------------------------------------- the tensorrt_llm model directly


def test_tensorrt_llm_unary_request_reads_output_ids_zero_zero(servers: dict[str, Server]) -> None:
    # inflight_batcher_llm_client.py without --streaming: async_infer, then output_ids[0][beam].
    result = unary(servers["engine-sync"], "tensorrt_llm", engine_inputs([[5, 6, 7, 8]], 3, streaming=False))
    tokens = list(result.as_numpy("output_ids")[0][0])
    assert len(tokens) == result.as_numpy("sequence_length")[0][0] and tokens[-3:] == [5, 6, 7]


@pytest.mark.parametrize(
    ("rows", "streaming", "error"),
    [([[5, 6, 7]], True, "streaming is only possible"), ([[5, 6, 7], [8, 9, 10]], False, r"batch size > 1")],
    ids=["streaming", "batch-of-2"],
)
def test_tensorrt_llm_not_decoupled_refuses_what_the_backend_refuses(
    servers: dict[str, Server], rows: list[list[int]], streaming: bool, error: str
) -> None:
    # tensorrtllm_backend v0.19.0 inflight_batcher_llm/src/utils.cc:900-903, 905-908.
    with pytest.raises(InferenceServerException, match=error):
        unary(servers["engine-sync"], "tensorrt_llm", engine_inputs(rows, 2, streaming))


def test_tensorrt_llm_answers_each_row_of_a_batch_with_its_batch_index(servers: dict[str, Server]) -> None:
    inputs = tensors(
        input_ids=np.array([[5, 6, 7, 0], [8, 9, 0, 0]], np.int32),
        input_lengths=np.array([[3], [2]], np.int32),
        request_output_len=np.array([[2], [2]], np.int32),
        exclude_input_in_output=np.array([[True], [True]]),
        streaming=np.array([[True], [True]]),
    )
    tokens: dict[int, list[int]] = {0: [], 1: []}
    for result in stream_results(servers["engine"], "tensorrt_llm", inputs):
        tokens[int(result.as_numpy("batch_index")[0][0])] += list(result.as_numpy("output_ids")[0][0])
    assert tokens == {0: [5, 6], 1: [8, 9]}  # each row's own prompt, cycled (the timing stand-in)


# --------------------------------------------------------------------------- llmapi over HTTP, as its docs show


def test_llmapi_http_generate_as_upstreams_docs_send_it(servers: dict[str, Server]) -> None:
    # tensorrtllm_backend docs/llmapi.md:32 (commit dd230968): text_input and sampling_param_max_tokens.
    body = {"text_input": "The future of AI is", "sampling_param_max_tokens": 10}
    answer = json.loads(servers["llmapi"].post("/v2/models/tensorrt_llm/generate", body))
    assert answer["text_output"].startswith(body["text_input"]) and len(answer["text_output"]) > len(body["text_input"])


def test_llmapi_http_generate_with_perf_metrics_returns_the_documented_keys(servers: dict[str, Server]) -> None:
    # docs/llmapi.md:40 (commit dd230968) and the sample response below it.
    body = {
        "text_input": "Please explain to me what is machine learning?",
        "sampling_param_max_tokens": 10,
        "sampling_param_return_perf_metrics": True,
    }
    answer = json.loads(servers["llmapi"].post("/v2/models/tensorrt_llm/generate", body))
    documented = {
        "acceptance_rate",
        "arrival_time_ns",
        "first_scheduled_time_ns",
        "first_token_time_ns",
        "kv_cache_alloc_new_blocks",
        "kv_cache_alloc_total_blocks",
        "kv_cache_hit_rate",
        "kv_cache_missed_block",
        "kv_cache_reused_block",
        "last_token_time_ns",
        "model_name",
        "model_version",
        "text_output",
        "total_accepted_draft_tokens",
        "total_draft_tokens",
    }
    assert documented <= set(answer) and answer["text_output"].startswith(body["text_input"])
    assert int(answer["first_token_time_ns"]) >= int(answer["arrival_time_ns"]) > 0

"""A real tritonserver serving `llmprep repo --engine standin` repositories, per runtime.

Clients talk to the models as they would to upstream's: gRPC streaming, HTTP generate and
generate_stream, the ensemble, the BLS model and the llmapi model; /metrics shows Triton's
counters and the nv_trt_llm_* families on both runtimes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient

from llmprep.tinytok import write_tiny_tokenizer
from tests.e2e.conftest import PROMPT, Server, grpc_stream, launch, metric, running, text_inputs

pytestmark = pytest.mark.slow

# Fast tokens: these tests are about the interface, not timing.
FAST = {"decodeMsPerStep": 2, "prefillMsPerToken": 0}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    tmp = tmp_path_factory.mktemp("serving")
    tokenizer = write_tiny_tokenizer(tmp / "tokenizer")
    started = {
        "engine": launch(tmp, tokenizer, "engine", **FAST),
        "pytorch": launch(tmp, tokenizer, "pytorch", **FAST),
        "engine-sync": launch(tmp, tokenizer, "engine", decoupled=False, **FAST),
    }
    with running(started) as servers:
        yield servers


# --------------------------------------------------------------------------- the clients' view


def test_ensemble_answers_a_non_streaming_request_with_real_text(servers: dict[str, Server]) -> None:
    chunks = grpc_stream(servers["engine"], "ensemble", text_inputs("ensemble", 6, stream=False))
    assert len(chunks) == 1
    # The timing stand-in writes the prompt's own tokens back: real words, decoded by postprocessing.
    assert chunks[0].strip() and all(word in PROMPT for word in chunks[0].split())


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_streaming_over_grpc_sends_one_token_per_response(servers: dict[str, Server], model: str) -> None:
    whole = grpc_stream(servers["engine"], model, text_inputs(model, 6, stream=False))
    chunks = grpc_stream(servers["engine"], model, text_inputs(model, 6, stream=True))
    assert len(chunks) == 6
    assert "".join(chunks) == whole[0]


def test_bls_and_ensemble_give_the_same_text(servers: dict[str, Server]) -> None:
    ensemble = grpc_stream(servers["engine"], "ensemble", text_inputs("ensemble", 9, stream=False))
    bls = grpc_stream(servers["engine"], "tensorrt_llm_bls", text_inputs("tensorrt_llm_bls", 9, stream=False))
    assert bls == ensemble


def test_http_generate_and_generate_stream_return_the_same_text(servers: dict[str, Server]) -> None:
    body = {"text_input": PROMPT, "max_tokens": 5}
    whole = json.loads(servers["engine"].post("/v2/models/ensemble/generate", {**body, "stream": False}))
    events = servers["engine"].post("/v2/models/ensemble/generate_stream", {**body, "stream": True}).decode()
    chunks = [
        json.loads(line[len("data:") :])["text_output"] for line in events.splitlines() if line.startswith("data:")
    ]
    assert len(chunks) == 5
    assert "".join(chunks) == whole["text_output"] and whole["text_output"].strip()


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
@pytest.mark.parametrize(
    ("old", "new", "dtype"), [("random_seed", "seed", "UINT64"), ("min_length", "min_tokens", "INT32")]
)
def test_v0_12_clients_input_names_work_like_the_new_ones(
    servers: dict[str, Server], model: str, old: str, new: str, dtype: str
) -> None:
    with_old = grpc_stream(servers["engine"], model, text_inputs(model, 4, False, **{old: (3, dtype)}))
    with_new = grpc_stream(servers["engine"], model, text_inputs(model, 4, False, **{new: (3, dtype)}))
    assert with_old == with_new and with_old[0].strip()


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_the_old_random_seed_reaches_the_engine(servers: dict[str, Server], model: str) -> None:
    # The stand-in's output depends on the seed, so a seed that got lost would show.
    plain = grpc_stream(servers["engine"], model, text_inputs(model, 4, False))
    seeded = grpc_stream(servers["engine"], model, text_inputs(model, 4, False, random_seed=(3, "UINT64")))
    assert seeded != plain


def test_a_non_decoupled_repository_answers_plain_grpc_infer(servers: dict[str, Server]) -> None:
    client = grpcclient.InferenceServerClient(servers["engine-sync"].grpc)
    for model in ("ensemble", "tensorrt_llm_bls"):
        result = client.infer(model, text_inputs(model, 5, stream=False))
        assert result.as_numpy("text_output").reshape(-1)[0].decode().strip()
    client.close()


def test_llmapi_model_streams_text_token_by_token(servers: dict[str, Server]) -> None:
    whole = grpc_stream(servers["pytorch"], "tensorrt_llm", text_inputs("llmapi", 7, stream=False))
    chunks = grpc_stream(servers["pytorch"], "tensorrt_llm", text_inputs("llmapi", 7, stream=True))
    # Upstream's default keeps the prompt in a non-streaming answer (exclude_input_from_output False).
    assert len(chunks) == 7 and PROMPT + "".join(chunks) == whole[0] and "".join(chunks).strip()


def test_llmapi_model_answers_http_generate(servers: dict[str, Server]) -> None:
    answer = json.loads(
        servers["pytorch"].post(
            "/v2/models/tensorrt_llm/generate", {"text_input": PROMPT, "sampling_param_max_tokens": 3}
        )
    )
    assert answer["text_output"].strip()


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_metrics_show_triton_counters_and_the_trt_llm_families(servers: dict[str, Server], runtime: str) -> None:
    model = "ensemble" if runtime == "engine" else "tensorrt_llm"
    inputs = text_inputs("llmapi" if runtime == "pytorch" else model, 2, stream=False)
    grpc_stream(servers[runtime], model, inputs)
    # Triton counts a decoupled step's success after its final response went out, which can be
    # after the ensemble's own last response reached us: poll, never read once.
    deadline = time.monotonic() + 30
    while True:
        text = servers[runtime].metrics()
        if metric(text, "nv_inference_request_success", model="tensorrt_llm") >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert metric(text, "nv_inference_request_success", model="tensorrt_llm") >= 1
    assert "nv_inference_queue_duration_us{" in text and "nv_inference_compute_infer_duration_us{" in text
    for request_type in ("waiting", "scheduled", "max", "active", "context"):
        assert f'request_type="{request_type}"' in text
    for block_type in ("fraction", "used", "free", "max", "tokens_per"):
        assert f'kv_cache_block_type="{block_type}"' in text
    assert metric(text, "nv_trt_llm_request_metrics", request_type="max") == 4
    assert re.search(r"# HELP nv_trt_llm_request_metrics .*emulated", text)

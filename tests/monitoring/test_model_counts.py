"""Our models' own counts, with test doubles of Triton's Python backend: requests in flight
(llmprep_requests_in_flight) and time to first response (llmprep_first_response_histogram_ms).

The real llmapi model cannot run here (it needs TensorRT-LLM and a GPU): it runs against a double
of `tensorrt_llm.LLM`. The BLS model and the stand-ins run on a real tritonserver in
tests/e2e/test_first_response_lab.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT

TEMPLATES = ROOT / "llmprep" / "templates"


def load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- pb_utils double


class Metric:
    def __init__(self, labels: dict[str, str], buckets: list[float] | None) -> None:
        self.labels, self.buckets = labels, buckets
        self.value = 0.0
        self.observed: list[float] = []

    def increment(self, by: float) -> None:
        self.value += by

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, value: float) -> None:
        self.observed.append(value)


class MetricFamily:
    GAUGE, HISTOGRAM = "gauge", "histogram"
    created: dict[str, MetricFamily] = {}

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.metrics: list[Metric] = []
        MetricFamily.created[name] = self

    def Metric(self, labels: dict[str, str], buckets: list[float] | None = None) -> Metric:  # noqa: N802 (pb_utils' name)
        if self.kind == self.HISTOGRAM:
            assert buckets, "Triton refuses a histogram metric without buckets"
        metric = Metric(labels, buckets)
        self.metrics.append(metric)
        return metric


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self.array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self.array


class Response:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: Any = None) -> None:
        self.tensors, self.error = output_tensors or [], error


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[Response | None, int]] = []
        self.cancelled = False

    def send(self, response: Response | None = None, flags: int = 0) -> None:
        self.sent.append((response, flags))

    def is_cancelled(self) -> bool:
        return self.cancelled

    @property
    def final(self) -> bool:
        return any(flags == FINAL for _, flags in self.sent)


class Request:
    def __init__(self, **inputs: Any) -> None:
        self.inputs = {k: np.array([v], dtype=np.object_ if isinstance(v, bytes) else None) for k, v in inputs.items()}
        self.sender = Sender()

    def get_response_sender(self) -> Sender:
        return self.sender


FINAL = 1


def pb_utils() -> types.ModuleType:
    MetricFamily.created = {}
    module = types.ModuleType("triton_python_backend_utils")
    module.MetricFamily = MetricFamily  # type: ignore[attr-defined]
    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = Response  # type: ignore[attr-defined]
    module.TritonError = str  # type: ignore[attr-defined]
    module.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: (  # type: ignore[attr-defined]
        Tensor(name, request.inputs[name]) if name in request.inputs else None
    )
    module.using_decoupled_model_transaction_policy = lambda config: config["model_transaction_policy"]["decoupled"]  # type: ignore[attr-defined]
    return module


def gauge(name: str = "llmprep_requests_in_flight") -> float:
    return MetricFamily.created[name].metrics[0].value


def observed() -> list[float]:
    return MetricFamily.created["llmprep_first_response_histogram_ms"].metrics[0].observed


# --------------------------------------------------------------------------- the counters alone


@pytest.fixture
def stats() -> types.ModuleType:
    return load("llmprep_stats", TEMPLATES / "common" / "llmprep_stats.py")


def test_first_response_is_a_histogram_in_milliseconds_with_our_buckets(stats: types.ModuleType) -> None:
    first = stats.FirstResponse(pb_utils(), "tensorrt_llm_bls", "1")
    family = MetricFamily.created["llmprep_first_response_histogram_ms"]
    assert family.kind == "histogram" and family.metrics[0].labels == {"model": "tensorrt_llm_bls", "version": "1"}
    assert family.metrics[0].buckets == list(stats.FIRST_RESPONSE_BUCKETS_MS)
    first.observe(1_000_000_000, now_ns=1_250_000_000)
    first.observe(2_000_000_000, now_ns=1_000_000_000)  # a clock never goes backwards into a negative time
    assert family.metrics[0].observed == [250.0, 0.0]


def test_a_passage_counts_once_however_many_ways_out_a_model_takes(stats: types.ModuleType) -> None:
    pb = pb_utils()
    in_flight, first = stats.InFlight(pb, "m", "1"), stats.FirstResponse(pb, "m", "1")
    passages = [stats.Passage(in_flight, first, started_ns=time.monotonic_ns()) for _ in range(3)]
    assert gauge() == 3
    for _ in range(4):  # every chunk of a stream
        passages[0].respond()
    passages[0].finish()
    passages[0].finish()  # the final response, then the finally: still one exit
    passages[1].finish()  # failed before any response: an exit, no first response
    assert gauge() == 1 and len(observed()) == 1
    passages[2].respond()
    passages[2].finish()
    assert gauge() == 0 and len(observed()) == 2


def test_a_passage_may_count_only_one_of_the_two(stats: types.ModuleType) -> None:
    pb = pb_utils()
    first = stats.FirstResponse(pb, "m", "1")
    passage = stats.Passage(None, first)
    passage.respond()
    passage.finish()
    assert len(observed()) == 1


# --------------------------------------------------------------------------- the real llmapi model


class Output:
    def __init__(self, text: str, diff: str) -> None:
        self.text, self.text_diff = text, diff
        self.finish_reason, self.stop_reason, self.cumulative_logprob = "length", None, None
        self.request_perf_metrics = None


class Result:
    def __init__(self, text: str, diff: str) -> None:
        self.outputs = [Output(text, diff)]
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class LLM:
    """`tensorrt_llm.LLM` as our model uses it: generate_async (an async iterator of results), get_stats, shutdown."""

    words = ("one", " two", " three")
    gate: threading.Event | None = None  # when set up, generation waits for it after the first chunk

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def generate_async(self, prompt: str, sampling: Any, streaming: bool = False) -> AsyncIterator[Result]:
        async def results() -> AsyncIterator[Result]:
            text = ""
            for word in self.words:
                text += word
                if streaming:
                    yield Result(text, word)
                while self.gate is not None and not self.gate.is_set():
                    await asyncio.sleep(0.01)
            if not streaming:
                yield Result(text, text)

        return results()

    def get_stats(self, timeout: float) -> list[Any]:
        return []

    def shutdown(self) -> None:
        pass


@pytest.fixture
def llmapi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pb = pb_utils()
    trt = types.ModuleType("tensorrt_llm")
    trt.LLM = LLM  # type: ignore[attr-defined]
    trt.SamplingParams = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.setitem(sys.modules, "tensorrt_llm", trt)
    for name in ("llmprep_models", "llmprep_stats"):
        monkeypatch.setitem(sys.modules, name, load(name, TEMPLATES / "common" / f"{name}.py"))
    module = load("llmapi_model_under_test", TEMPLATES / "llmapi" / "tensorrt_llm" / "1" / "model.py")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.yaml").write_text("model: /models/gpt2\n")
    config = {"model_transaction_policy": {"decoupled": True}, "parameters": {}}
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(tmp_path),
            "model_version": "1",
            "model_name": "tensorrt_llm",
        }
    )
    yield model
    model.finalize()


def answered(*requests: Request, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not all(r.sender.final for r in requests):
        assert time.monotonic() < deadline, "no final response"
        time.sleep(0.01)
    time.sleep(0.05)  # the coroutine's finally runs after its final send


def test_the_real_llmapi_model_counts_a_stream_in_flight_until_its_final_response(llmapi: Any) -> None:
    LLM.gate = threading.Event()
    request = Request(text_input=b"hi", streaming=True)
    try:
        llmapi.execute([request])
        deadline = time.monotonic() + 10
        while not request.sender.sent:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert gauge() == 1 and len(observed()) == 1  # first chunk out, the rest to come
    finally:
        LLM.gate.set()
        LLM.gate = None
    answered(request)
    data = [r for r, _ in request.sender.sent if r is not None]
    assert len(data) == 3  # one response per chunk, then the final flag
    assert gauge() == 0
    assert len(observed()) == 1 and observed()[0] >= 0  # the first chunk only


def test_the_real_llmapi_model_times_a_unary_answer_once(llmapi: Any) -> None:
    requests = [Request(text_input=b"hi"), Request(text_input=b"hello")]
    llmapi.execute(requests)
    answered(*requests)
    assert gauge() == 0 and len(observed()) == 2


def test_a_refused_request_leaves_the_count_without_a_first_response(llmapi: Any) -> None:
    request = Request(text_input=b"hi", lora_name=b"adapter")
    llmapi.execute([request])
    answered(request)
    ((response, flags),) = request.sender.sent
    assert response is not None and response.error and flags == FINAL
    assert gauge() == 0 and observed() == []


def test_a_cancelled_stream_leaves_the_count(llmapi: Any) -> None:
    request = Request(text_input=b"hi", streaming=True)
    request.sender.cancelled = True
    llmapi.execute([request])
    answered(request)
    assert gauge() == 0 and observed() == []

"""Helpers for the end-to-end tests: stand-in repositories served by a real tritonserver."""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from llmprep.repo import write_repository
from llmprep.serve.triton import TritonProcess
from llmprep.spec import parse_spec
from tests.conftest import free_port

PROMPT = "What is machine learning?"


@dataclass
class Server:
    process: TritonProcess
    runtime: str

    @property
    def grpc(self) -> str:
        return self.process.grpc_url

    def metrics(self) -> str:
        with urllib.request.urlopen(self.process.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def post(self, path: str, body: dict[str, Any]) -> bytes:
        request = urllib.request.Request(
            f"{self.process.http_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())


def launch(tmp: Path, tokenizer: Path, runtime: str, decoupled: bool = True, **standin: Any) -> Server:
    """Write a stand-in repository and start (not yet ready) a tritonserver on it."""
    spec = parse_spec(
        {
            "model": {
                "name": "gpt2",
                "tensorrtLlm": {"runtime": runtime},
                "standin": standin,
                "repository": {"decoupled": decoupled, "llmapiDecoupled": decoupled},
            }
        }
    )
    name = f"{runtime}-{'queue' if standin.get('queueInTriton') else 'handoff'}-{'decoupled' if decoupled else 'sync'}"
    root = write_repository(spec, out_dir=tmp / name, engine="standin", tokenizer_dir=tokenizer)
    process = TritonProcess(
        root,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp / f"{name}.log",
        exit_timeout_secs=2,
    )
    return Server(process.start(), runtime)


@contextmanager
def running(servers: dict[Any, Server]) -> Iterator[dict[Any, Server]]:
    """Wait until every server is ready; stop them all together (each stop drains for seconds)."""
    try:
        for server in servers.values():
            server.process.wait_ready(120)
        yield servers
    finally:
        stoppers = [threading.Thread(target=server.process.stop) for server in servers.values()]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()


def infer_input(name: str, value: Any, dtype: str, batched: bool) -> grpcclient.InferInput:
    array = np.array([[value]] if batched else [value], dtype=np.object_ if dtype == "BYTES" else None)
    if dtype == "INT32":
        array = array.astype(np.int32)
    elif dtype == "UINT64":
        array = array.astype(np.uint64)
    elif dtype == "BOOL":
        array = array.astype(bool)
    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def text_inputs(model: str, max_tokens: int, stream: bool, **extra: tuple[Any, str]) -> list[grpcclient.InferInput]:
    if model == "llmapi":
        fields = {
            "text_input": (PROMPT, "BYTES"),
            "sampling_param_max_tokens": (max_tokens, "INT32"),
            "streaming": (stream, "BOOL"),
        }
        return [infer_input(k, v, t, batched=False) for k, (v, t) in {**fields, **extra}.items()]
    fields = {"text_input": (PROMPT, "BYTES"), "max_tokens": (max_tokens, "INT32"), "stream": (stream, "BOOL")}
    return [infer_input(k, v, t, batched=True) for k, (v, t) in {**fields, **extra}.items()]


def grpc_stream(server: Server, model: str, inputs: list[grpcclient.InferInput]) -> list[str]:
    """Every text_output chunk of one request sent over ModelStreamInfer, in order."""
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    chunks: list[str] = []
    try:
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while True:
            result, error = results.get(timeout=30)
            assert error is None, error
            output = result.as_numpy("text_output")
            if output is not None:
                chunks.append(b"".join(output.reshape(-1)).decode())
            if result.get_response().parameters["triton_final_response"].bool_param:
                return chunks
    finally:
        client.stop_stream()
        client.close()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total

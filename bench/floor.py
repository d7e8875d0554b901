"""The floor of load-generator overhead: the least a Python tritonclient gRPC client can do.

N coroutines on one `tritonclient.grpc.aio` client, each sending its next request as soon as the
previous one ends, with the input tensors built once. `--rpc stream` sends each request on its
own `ModelStreamInfer` stream (what `llmprep load` does; works for decoupled models), `--rpc
unary` uses `ModelInfer` (non-decoupled models only). It records only timestamps, and prints one
JSON object: requests, seconds, and every request's latency and time to first response.

    python -m bench.floor --url 127.0.0.1:8001 --model fast --concurrency 8 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np


def _inputs(prompt: str, max_tokens: int, stream: bool) -> list[Any]:
    from tritonclient.grpc import InferInput

    tensors = []
    for name, value, datatype, dtype in (
        ("text_input", prompt.encode(), "BYTES", np.object_),
        ("max_tokens", max_tokens, "INT32", np.int32),
        *((("stream", True, "BOOL", np.bool_),) if stream else ()),
    ):
        tensor = InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.full([1], value, dtype=dtype))
        tensors.append(tensor)
    return tensors


async def run(
    url: str, model: str, concurrency: int, duration: float, rpc: str, prompt: str, max_tokens: int, stream_input: bool
) -> dict[str, Any]:
    import tritonclient.grpc.aio as grpcaio

    client = grpcaio.InferenceServerClient(url)
    inputs = _inputs(prompt, max_tokens, stream_input)
    latencies: list[float] = []
    ttfts: list[float] = []
    responses = 0
    errors = 0

    async def one_stream() -> None:
        nonlocal responses, errors
        message = {"model_name": model, "inputs": inputs}

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield message

        start = time.perf_counter()
        first = 0.0
        n = 0
        async for _result, error in client.stream_infer(requests()):
            if error is not None:
                errors += 1
                return
            if n == 0:
                first = time.perf_counter()
            n += 1
        latencies.append(time.perf_counter() - start)
        ttfts.append(first - start)
        responses += n

    async def one_unary() -> None:
        nonlocal responses
        start = time.perf_counter()
        await client.infer(model, inputs)
        took = time.perf_counter() - start
        latencies.append(took)
        ttfts.append(took)
        responses += 1

    one = one_stream if rpc == "stream" else one_unary
    started = time.perf_counter()
    deadline = started + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    return {
        "requests": len(latencies),
        "errors": errors,
        "responses": responses,
        "seconds": elapsed,
        "latency_s": latencies,
        "ttft_s": ttfts,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="HOST:PORT of Triton's gRPC endpoint")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--rpc", choices=("stream", "unary"), default="stream")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream-input", action="store_true", help="also send stream=true (decoupled LLM models)")
    parser.add_argument("--prompt", default="hello " * 16)
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            args.url,
            args.model,
            args.concurrency,
            args.duration,
            args.rpc,
            args.prompt,
            args.max_tokens,
            args.stream_input,
        )
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

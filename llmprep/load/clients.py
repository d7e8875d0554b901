"""Streaming clients for Triton: gRPC `ModelStreamInfer` (tritonclient.grpc.aio) and HTTP `generate_stream`.

Both learn the model's inputs from its config once, then send each request with the inputs
that model has: `text_input`, the output length (`max_tokens` for `ensemble` and
`tensorrt_llm_bls`, `sampling_param_max_tokens` for the LLM API `tensorrt_llm` model) and the
streaming switch (`stream` or `streaming`). Fixed output lengths use the first of these the
model declares: `min_length` (TensorRT-LLM engine models: no end-of-sequence before that many
tokens), `min_tokens`/`sampling_param_min_tokens`, or `ignore_eos`/`sampling_param_ignore_eos`.
Per token the clients only take a timestamp and count: one streamed response is one token.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from llmprep.errors import LoadError, UsageError
from llmprep.load.prompts import Prompt
from llmprep.load.stats import Sample

PROMPT_NAMES = ("text_input",)
MAX_TOKENS_NAMES = ("max_tokens", "sampling_param_max_tokens", "max_new_tokens", "request_output_len")
STREAM_NAMES = ("stream", "streaming")
MIN_TOKENS_NAMES = ("min_length", "min_tokens", "sampling_param_min_tokens")
IGNORE_EOS_NAMES = ("ignore_eos", "sampling_param_ignore_eos")
EXCLUDE_INPUT_NAMES = ("sampling_param_exclude_input_from_output",)

_DTYPES: dict[str, tuple[str, Any]] = {
    "TYPE_STRING": ("BYTES", np.object_),
    "TYPE_BOOL": ("BOOL", np.bool_),
    "TYPE_INT8": ("INT8", np.int8),
    "TYPE_INT16": ("INT16", np.int16),
    "TYPE_INT32": ("INT32", np.int32),
    "TYPE_INT64": ("INT64", np.int64),
    "TYPE_UINT8": ("UINT8", np.uint8),
    "TYPE_UINT16": ("UINT16", np.uint16),
    "TYPE_UINT32": ("UINT32", np.uint32),
    "TYPE_UINT64": ("UINT64", np.uint64),
    "TYPE_FP16": ("FP16", np.float16),
    "TYPE_FP32": ("FP32", np.float32),
    "TYPE_FP64": ("FP64", np.float64),
}


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str  # Triton wire name: BYTES, INT32, ...
    shape: tuple[int, ...]  # the shape of one request's tensor
    dtype: Any = np.object_

    def array(self, value: Any) -> np.ndarray:
        if self.datatype == "BYTES" and isinstance(value, str):
            value = value.encode()
        return np.full(self.shape, value, dtype=self.dtype)


@dataclass(frozen=True)
class ModelSchema:
    """A model's inputs as its config declares them (shapes for one request)."""

    model: str
    inputs: Mapping[str, InputSpec]
    decoupled: bool

    @classmethod
    def from_config(cls, model: str, config: Mapping[str, Any]) -> ModelSchema:
        batched = int(config.get("max_batch_size", 0) or 0) > 0
        inputs = {}
        for entry in config.get("input", []):
            kind = str(entry.get("data_type", ""))
            datatype, dtype = _DTYPES.get(kind, (kind.removeprefix("TYPE_"), np.object_))
            dims = [max(1, int(d)) for d in entry.get("dims", [])]
            shape = tuple([1, *dims] if batched else dims or [1])
            inputs[entry["name"]] = InputSpec(entry["name"], datatype, shape, dtype)
        decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))
        return cls(model=model, inputs=inputs, decoupled=decoupled)

    def first(self, names: tuple[str, ...]) -> str | None:
        return next((n for n in names if n in self.inputs), None)


def parse_value(spec: InputSpec, text: str, field_name: str) -> Any:
    """A command-line string as a value of the input's type."""
    try:
        if spec.datatype == "BOOL":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return lowered in ("true", "1")
        if spec.datatype.startswith(("INT", "UINT")):
            return int(text)
        if spec.datatype.startswith("FP"):
            return float(text)
    except ValueError as exc:
        raise UsageError(f"{field_name}: {text!r} is not a valid {spec.datatype} value") from exc
    return text


@dataclass
class RequestPlan:
    """How one request is built for this model: which input carries what."""

    schema: ModelSchema
    prompt_input: str
    max_tokens_input: str | None
    min_tokens_input: str | None
    constants: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.schema.model

    def values(self, prompt: Prompt) -> dict[str, Any]:
        """Input name -> value for one prompt."""
        values: dict[str, Any] = {self.prompt_input: prompt.text}
        if self.max_tokens_input:
            values[self.max_tokens_input] = prompt.output_tokens
        if self.min_tokens_input:
            values[self.min_tokens_input] = prompt.output_tokens
        values.update(self.constants)
        return values


def build_plan(
    schema: ModelSchema, *, fixed_output: bool = True, extra_inputs: Mapping[str, str] | None = None
) -> RequestPlan:
    """Match the model's inputs to our request fields; explain what we could not do in `notes`."""
    names = ", ".join(schema.inputs) or "none"
    prompt_input = schema.first(PROMPT_NAMES)
    if prompt_input is None:
        raise LoadError(
            f"model {schema.model!r} has no text_input input (its inputs: {names}); pick an LLM model with --model"
        )
    plan = RequestPlan(schema, prompt_input, schema.first(MAX_TOKENS_NAMES), None)
    if plan.max_tokens_input is None:
        plan.notes.append(f"model {schema.model!r} has no max_tokens input: output lengths are the model's own")
    stream = schema.first(STREAM_NAMES)
    if stream is not None:
        plan.constants[stream] = True
    elif not schema.decoupled:
        plan.notes.append(f"model {schema.model!r} is not decoupled: one response per request, TTFT = latency")
    exclude = schema.first(EXCLUDE_INPUT_NAMES)
    if exclude is not None:
        plan.constants[exclude] = True
    if fixed_output and plan.max_tokens_input is not None:
        plan.min_tokens_input = schema.first(MIN_TOKENS_NAMES)
        ignore_eos = schema.first(IGNORE_EOS_NAMES)
        if ignore_eos is not None:
            plan.constants[ignore_eos] = True
        if plan.min_tokens_input is None and ignore_eos is None:
            plan.notes.append(
                f"model {schema.model!r} has no min_length/min_tokens/ignore_eos input: outputs may end early at "
                "end-of-sequence (try --extra-input end_id=<an id the model never emits>)"
            )
    for name, text in (extra_inputs or {}).items():
        spec = schema.inputs.get(name)
        if spec is None:
            raise UsageError(
                f"--extra-input {name}: model {schema.model!r} has no input {name!r} (its inputs: {names})"
            )
        plan.constants[name] = parse_value(spec, text, f"--extra-input {name}")
    return plan


class Client(Protocol):
    target: str

    async def request(self, index: int, prompt: Prompt, t0: float) -> Sample: ...

    async def close(self) -> None: ...


def _sample(
    prompt: Prompt,
    target: str,
    t0: float,
    start: float,
    first: float,
    last: float,
    n: int,
    error: str | None = None,
    detail: str = "",
) -> Sample:
    end = time.perf_counter() if error is not None or n == 0 else last
    return Sample(
        start=start - t0,
        target=target,
        e2e=end - start,
        ttft=(first - start) if n else None,
        itl=((last - first) / (n - 1)) if n > 1 else None,
        tokens_in=prompt.input_tokens,
        tokens_out=n,
        error=error,
        detail=detail[:300],
    )


def _grpc_channel_args() -> list[tuple[str, Any]]:
    import tritonclient.grpc as grpcclient

    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        # Each channel opens its own connection, so several channels to one Service spread over
        # its pods through kube-proxy; a `dns:///` target of a headless Service is balanced per pod.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.lb_policy_name", "round_robin"),
    ]


_GRPC_ERRORS = {"DEADLINE_EXCEEDED": "timeout", "UNAVAILABLE": "unavailable", "CANCELLED": "cancelled"}


class GrpcClient:
    """One gRPC channel to one target; each request is one bidirectional stream."""

    def __init__(self, target: str, plan: RequestPlan, timeout: float) -> None:
        import tritonclient.grpc.aio as grpcaio

        self.target, self.plan, self.timeout = target, plan, timeout
        self._client = grpcaio.InferenceServerClient(target, channel_args=_grpc_channel_args())
        self._inputs: dict[int, list[Any]] = {}

    def _tensors(self, index: int, prompt: Prompt) -> list[Any]:
        tensors = self._inputs.get(index)
        if tensors is None:
            from tritonclient.grpc import InferInput

            tensors = []
            for name, value in self.plan.values(prompt).items():
                spec = self.plan.schema.inputs[name]
                tensor = InferInput(name, list(spec.shape), spec.datatype)
                tensor.set_data_from_numpy(spec.array(value))
                tensors.append(tensor)
            self._inputs[index] = tensors
        return tensors

    async def request(self, index: int, prompt: Prompt, t0: float) -> Sample:
        import grpc

        if not self.plan.schema.decoupled:
            return await self._unary(index, prompt, t0)
        message = {"model_name": self.plan.model, "inputs": self._tensors(index, prompt)}

        async def one() -> AsyncIterator[dict[str, Any]]:
            yield message  # then half-close: the server ends the stream after the final response

        n, first, last = 0, 0.0, 0.0
        start = time.perf_counter()
        try:
            async for _result, error in self._client.stream_infer(one(), stream_timeout=self.timeout):
                now = time.perf_counter()
                if error is not None:
                    return _sample(prompt, self.target, t0, start, first, last, n, "server", str(error))
                if n == 0:
                    first = now
                last = now
                n += 1
        except grpc.aio.AioRpcError as exc:
            kind = _GRPC_ERRORS.get(exc.code().name, "server")
            return _sample(prompt, self.target, t0, start, first, last, n, kind, f"{exc.code().name}: {exc.details()}")
        if n == 0:
            return _sample(
                prompt, self.target, t0, start, first, last, n, "protocol", "stream ended without a response"
            )
        return _sample(prompt, self.target, t0, start, first, last, n)

    async def _unary(self, index: int, prompt: Prompt, t0: float) -> Sample:
        """A model that is not decoupled answers once: `ModelInfer` costs the client a third of a stream's CPU."""
        from tritonclient.utils import InferenceServerException

        start = time.perf_counter()
        try:
            await self._client.infer(self.plan.model, self._tensors(index, prompt), client_timeout=self.timeout)
        except InferenceServerException as exc:
            code = str(exc.status() or "").removeprefix("StatusCode.")
            kind = _GRPC_ERRORS.get(code, "server")
            return _sample(prompt, self.target, t0, start, 0.0, 0.0, 0, kind, f"{code or 'error'}: {exc.message()}")
        now = time.perf_counter()
        return _sample(prompt, self.target, t0, start, now, now, 1)

    async def close(self) -> None:
        await self._client.close()


class HttpClient:
    """HTTP `POST /v2/models/<model>/generate_stream` (server-sent events) through aiohttp."""

    def __init__(self, target: str, plan: RequestPlan, timeout: float) -> None:
        import aiohttp

        self.target, self.plan, self.timeout = target, plan, timeout
        base = target if target.startswith(("http://", "https://")) else f"http://{target}"
        self.url = f"{base}/v2/models/{plan.model}/generate_stream"
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0)),
            connector=aiohttp.TCPConnector(limit=0),
        )
        self._bodies: dict[int, bytes] = {}
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    def _body(self, index: int, prompt: Prompt) -> bytes:
        body = self._bodies.get(index)
        if body is None:
            body = json.dumps(self.plan.values(prompt)).encode()
            self._bodies[index] = body
        return body

    async def request(self, index: int, prompt: Prompt, t0: float) -> Sample:
        import asyncio

        import aiohttp

        n, first, last = 0, 0.0, 0.0
        start = time.perf_counter()
        try:
            async with self._session.post(self.url, data=self._body(index, prompt), headers=self._headers) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    kind = "server" if '"error"' in text else "protocol"
                    return _sample(prompt, self.target, t0, start, first, last, n, kind, f"HTTP {resp.status}: {text}")
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    now = time.perf_counter()
                    if b'{"error"' in line[:16]:
                        return _sample(
                            prompt,
                            self.target,
                            t0,
                            start,
                            first,
                            last,
                            n,
                            "server",
                            line[5:].decode(errors="replace").strip(),
                        )
                    if n == 0:
                        first = now
                    last = now
                    n += 1
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return _sample(prompt, self.target, t0, start, first, last, n, "timeout", str(exc) or "timed out")
        except aiohttp.ClientConnectorError as exc:
            return _sample(prompt, self.target, t0, start, first, last, n, "unavailable", str(exc))
        except aiohttp.ClientError as exc:
            return _sample(prompt, self.target, t0, start, first, last, n, "protocol", f"{type(exc).__name__}: {exc}")
        if n == 0:
            return _sample(
                prompt, self.target, t0, start, first, last, n, "protocol", "stream ended without a response"
            )
        return _sample(prompt, self.target, t0, start, first, last, n)

    async def close(self) -> None:
        await self._session.close()


def make_client(protocol: str, target: str, plan: RequestPlan, timeout: float) -> Client:
    """A client for `protocol` (grpc or http); call inside a running event loop."""
    if protocol == "grpc":
        return GrpcClient(target, plan, timeout)
    if protocol == "http":
        return HttpClient(target, plan, timeout)
    raise UsageError(f"--protocol: expected grpc or http, got {protocol!r}")


async def fetch_schema(protocol: str, target: str, model: str, timeout: float) -> ModelSchema:
    """The model's inputs from its config; LoadError naming the target if it cannot be read."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc.aio as grpcaio

            client = grpcaio.InferenceServerClient(target, channel_args=_grpc_channel_args())
            try:
                reply = await client.get_model_config(model, as_json=True, client_timeout=timeout)
            finally:
                await client.close()
            config = reply.get("config", reply)
        else:
            import aiohttp

            base = target if target.startswith(("http://", "https://")) else f"http://{target}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.get(f"{base}/v2/models/{model}/config") as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:200]
                        raise LoadError(f"{target}: model {model!r} config: HTTP {resp.status} {text}")
                    config = await resp.json()
    except LoadError:
        raise
    except Exception as exc:  # every transport failure becomes one line naming the target
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoadError(f"{target}: cannot read model {model!r} config over {protocol} ({text[:200]})") from exc
    return ModelSchema.from_config(model, config)

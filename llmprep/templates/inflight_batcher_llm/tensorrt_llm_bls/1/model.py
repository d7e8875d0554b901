"""`tensorrt_llm_bls`: the ensemble's pipeline as one Python model (llmprep's own; upstream's I/O).

Calls `preprocessing`, then `tensorrt_llm` (streaming when asked), then `postprocessing`
through Triton's BLS API. It keeps each row's tokens, so streamed text never splits
a character: every chunk is the growth of the decoded whole (or the whole so far with
the `accumulate_tokens` parameter, as upstream's option does).

A request of B rows (`text_input` [B, 1]) is served as upstream's BLS serves it (read in
tensorrtllm_backend v0.19.0 all_models/inflight_batcher_llm/tensorrt_llm_bls/1/, cited as
`decode.py:LINE`, `model.py:LINE`, `triton_decoder.py:LINE`): one engine request of B rows, which the
decoupled engine answers row by row, each response tagged with its row as `batch_index` [1, 1]
(decode.py:284-288); each response becomes one response here with `text_output` flat
[batch * beams] ([beams] for one row) and the engine's outputs, `batch_index` included, passed on
(triton_decoder.py:574-598). Streamed tokens are kept per row, keyed by `batch_index` (0 when the
engine sends none, model.py:88-95) as upstream keys its accumulated tokens (decode.py:427-448),
and by `sequence_index` too, so that num_return_sequences' sequences of a row never mix (upstream
keys the row only). The final flag goes out once, after the engine's last response (model.py:203-225,
triton_decoder.py:109-114), which the backend marks final only when every row is done
(inflight_batcher_llm/src/model_instance_state.cc:1369-1371). A model that is not decoupled
passes the engine's refusal of B > 1 back as the request's error, as upstream's does (decode.py:277-288
sends B > 1 to the engine whatever the policy; the engine refuses it, utils.cc:900-903).

Like upstream's BLS model, execute() serves its requests one after another: concurrency
through this model needs `bls_instance_count` instances (tensorrtllm_backend docs,
"model_config.md": tensorrt_llm_bls).

Like the llmapi model, it counts its requests in flight (llmprep_requests_in_flight: from
execute() to the final response, sent or failed) and times each request's first response
(llmprep_first_response_histogram_ms; Triton 2.51 exports no first-response histogram of its
own). The preprocessing, engine and postprocessing requests it makes are parts of one request:
they are not counted again.

Both names of renamed inputs are read: `min_tokens` or v0.12.0's `min_length`, `seed` or
v0.12.0's `random_seed` (docs/repository.md).
"""

from __future__ import annotations

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils
from llmprep_models import flag, input_array, make_tensor, param, text_array
from llmprep_stats import FirstResponse, InFlight, Passage

# BLS input -> preprocessing input.
PRE_INPUTS = {
    "text_input": "QUERY",
    "decoder_text_input": "DECODER_QUERY",
    "max_tokens": "REQUEST_OUTPUT_LEN",
    "bad_words": "BAD_WORDS_DICT",
    "stop_words": "STOP_WORDS_DICT",
    "end_id": "END_ID",
    "pad_id": "PAD_ID",
    "embedding_bias_words": "EMBEDDING_BIAS_WORDS",
    "embedding_bias_weights": "EMBEDDING_BIAS_WEIGHTS",
    "prompt_table_extra_id": "PROMPT_TABLE_EXTRA_ID",
}
# preprocessing output -> tensorrt_llm input.
PRE_TO_ENGINE = {
    "INPUT_ID": "input_ids",
    "REQUEST_INPUT_LEN": "input_lengths",
    "REQUEST_OUTPUT_LEN": "request_output_len",
    "DECODER_INPUT_ID": "decoder_input_ids",
    "REQUEST_DECODER_INPUT_LEN": "decoder_input_lengths",
    "BAD_WORDS_IDS": "bad_words_list",
    "STOP_WORDS_IDS": "stop_words_list",
    "EMBEDDING_BIAS": "embedding_bias",
    "OUT_END_ID": "end_id",
    "OUT_PAD_ID": "pad_id",
    "OUT_PROMPT_TABLE_EXTRA_IDS": "prompt_table_extra_ids",
}
# BLS input -> tensorrt_llm input, first name found wins.
PASS_THROUGH = {
    "runtime_top_k": ("top_k",),
    "runtime_top_p": ("top_p",),
    "temperature": ("temperature",),
    "len_penalty": ("length_penalty",),
    "repetition_penalty": ("repetition_penalty",),
    "min_tokens": ("min_tokens", "min_length"),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
    "seed": ("seed", "random_seed"),
    "return_log_probs": ("return_log_probs",),
    "return_context_logits": ("return_context_logits",),
    "return_generation_logits": ("return_generation_logits",),
    "return_perf_metrics": ("return_perf_metrics",),
    "return_num_input_tokens": ("return_num_input_tokens",),
    "return_num_output_tokens": ("return_num_output_tokens",),
    "num_return_sequences": ("num_return_sequences",),
    "beam_width": ("beam_width",),
    "exclude_input_in_output": ("exclude_input_in_output",),
    "streaming": ("stream",),
    "prompt_embedding_table": ("prompt_embedding_table",),
    "prompt_vocab_size": ("prompt_vocab_size",),
    "lora_task_id": ("lora_task_id",),
    "lora_weights": ("lora_weights",),
    "lora_config": ("lora_config",),
    "guided_decoding_guide_type": ("guided_decoding_guide_type",),
    "guided_decoding_guide": ("guided_decoding_guide",),
}
# tensorrt_llm outputs passed back unchanged when present.
ENGINE_OUTPUTS = (
    "cum_log_probs",
    "output_log_probs",
    "context_logits",
    "generation_logits",
    "batch_index",
    "sequence_index",
    "kv_cache_alloc_new_blocks",
    "kv_cache_reused_blocks",
    "kv_cache_alloc_total_blocks",
    "arrival_time_ns",
    "first_scheduled_time_ns",
    "first_token_time_ns",
    "last_token_time_ns",
    "acceptance_rate",
    "total_accepted_draft_tokens",
    "total_draft_tokens",
    "num_input_tokens",
    "num_output_tokens",
)


def _check(response: object, step: str) -> None:
    if response.has_error():
        raise RuntimeError(f"{step}: {response.error().message()}")


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _validate(request: object) -> None:
    """Upstream's checks before any work (decode.py:107-110), in our words; max_tokens on every row
    (upstream reads the first row's only)."""
    text = input_array(pb_utils, request, "text_input")
    if text is None or text.size == 0:
        raise ValueError("text_input is required")
    max_tokens = input_array(pb_utils, request, "max_tokens")
    if max_tokens is None or max_tokens.size == 0 or (max_tokens <= 0).any():
        raise ValueError("max_tokens must be one value > 0 per row")


def _index(response: object, name: str) -> int:
    """The response's row (`batch_index`) or sequence (`sequence_index`): its one value, 0 when the engine
    sends none (a request of one row; model.py:88-104). Anything but [1, 1] is an error (decode.py:428-435)."""
    tensor = pb_utils.get_output_tensor_by_name(response, name)
    if tensor is None:
        return 0
    array = tensor.as_numpy()
    if array.shape != (1, 1):
        raise ValueError(f"expected {name} as one value [1, 1] per engine response, got {list(array.shape)}")
    return int(array[0][0])


class _Row:
    """One row (and sequence) of a streamed request: its tokens so far and the text already sent."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.sent = ""


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.accumulate = flag(param(config, "accumulate_tokens"), False)
        self.engine = param(config, "tensorrt_llm_model_name", "tensorrt_llm") or "tensorrt_llm"
        self.in_flight = InFlight(pb_utils, args["model_name"], args["model_version"])
        self.first_response = FirstResponse(pb_utils, args["model_name"], args["model_version"])

    def _preprocess(self, request: object) -> dict[str, object]:
        inputs = []
        for ours, theirs in PRE_INPUTS.items():
            array = input_array(pb_utils, request, ours)
            if array is not None:
                inputs.append(make_tensor(pb_utils, theirs, array))
        response = pb_utils.InferenceRequest(
            model_name="preprocessing", inputs=inputs, requested_output_names=list(PRE_TO_ENGINE)
        ).exec()
        _check(response, "preprocessing")
        return {t.name(): t for t in response.output_tensors()}

    def _postprocess(self, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
        """TOKENS_BATCH [batch, beams, T] and SEQUENCE_LENGTH [batch, beams] -> a text per batch and beam."""
        response = pb_utils.InferenceRequest(
            model_name="postprocessing",
            inputs=[
                make_tensor(pb_utils, "TOKENS_BATCH", tokens.astype(np.int32)),
                make_tensor(pb_utils, "SEQUENCE_LENGTH", lengths.astype(np.int32)),
            ],
            requested_output_names=["OUTPUT"],
        ).exec()
        _check(response, "postprocessing")
        return [_text(v) for v in pb_utils.get_output_tensor_by_name(response, "OUTPUT").as_numpy().reshape(-1)]

    def _engine_inputs(self, request: object, pre: dict[str, object]) -> list:
        inputs = [
            make_tensor(pb_utils, PRE_TO_ENGINE[name], t.as_numpy()) for name, t in pre.items() if name in PRE_TO_ENGINE
        ]
        for engine_name, names in PASS_THROUGH.items():
            for name in names:
                array = input_array(pb_utils, request, name)
                if array is not None:
                    # Inputs this model reshapes to [] arrive as [B]; the engine wants [B, 1], a row per
                    # request row. Upstream makes them [1, B] (triton_decoder.py:187-192), which the engine's
                    # dims [1] refuse for B > 1.
                    inputs.append(
                        make_tensor(pb_utils, engine_name, array.reshape(-1, 1) if array.ndim == 1 else array)
                    )
                    break
        return inputs

    def _streamed(self, rows: dict[tuple[int, int], _Row], response: object, tokens: np.ndarray) -> str | None:
        """The chunk one streamed engine response adds to its row's text; None while the row's text ends
        in an incomplete character."""
        if tokens.shape[0] != 1:
            raise ValueError(f"expected one row per streamed engine response, got {tokens.shape[0]}")
        row = rows.setdefault((_index(response, "batch_index"), _index(response, "sequence_index")), _Row())
        row.tokens.extend(tokens[0, 0].tolist())
        text = self._postprocess(np.array([[row.tokens]]), np.array([[len(row.tokens)]]))[0]
        if text.endswith("\ufffd"):
            return None  # wait for the next token
        chunk = text if self.accumulate else text[len(row.sent) :]
        row.sent = text
        return chunk

    def _serve(self, request: object, send: object) -> None:
        _validate(request)
        stream_in = input_array(pb_utils, request, "stream")
        streaming = bool(stream_in is not None and stream_in.reshape(-1)[0])
        inputs = self._engine_inputs(request, self._preprocess(request))
        engine_request = pb_utils.InferenceRequest(
            model_name=self.engine,
            inputs=inputs,
            requested_output_names=["output_ids", "sequence_length", *ENGINE_OUTPUTS],
        )
        rows: dict[tuple[int, int], _Row] = {}
        # The engine is decoupled exactly when this model is (one decoupled_mode for both).
        responses = engine_request.exec(decoupled=True) if self.decoupled else [engine_request.exec()]
        for response in responses:
            _check(response, self.engine)
            ids = pb_utils.get_output_tensor_by_name(response, "output_ids")
            if ids is None:
                continue  # the empty final response of a decoupled model
            tokens = ids.as_numpy()
            if tokens.ndim != 3:  # decode.py:418-419
                raise ValueError(f"expected output_ids [batch, beams, tokens], got {list(tokens.shape)}")
            lengths = pb_utils.get_output_tensor_by_name(response, "sequence_length").as_numpy()
            lengths = lengths.reshape(tokens.shape[:2])
            if self.accumulate and self.decoupled and tokens.shape[:2] != (1, 1):
                # Upstream accumulates whenever decoupled (decode.py:416-425, model.py:79-81).
                raise ValueError("accumulate_tokens needs one row and beam width 1 per engine response")
            extras = [
                make_tensor(pb_utils, name, t.as_numpy())
                for name in ENGINE_OUTPUTS
                if (t := pb_utils.get_output_tensor_by_name(response, name)) is not None
            ]
            if streaming and tokens.shape[1] == 1:
                chunk = self._streamed(rows, response, tokens[:, :, : int(lengths.reshape(-1)[0])])
                if chunk is None:
                    continue
                texts = [chunk]
            else:
                # Not streamed, or beams (which the engine streams whole): decoded as it comes, as upstream's
                # non-accumulating path does (decode.py:449-451).
                texts = self._postprocess(tokens, lengths)
            # text_output is flat [batch * beams], as upstream's BLS sends it (text_output is not in
            # its undo-reshape list, triton_decoder.py:98), so clients read `as_numpy("text_output")[0].decode()`.
            send(pb_utils.InferenceResponse([make_tensor(pb_utils, "text_output", text_array(texts)), *extras]))

    def execute(self, requests: list) -> list | None:
        # Every request of the call has reached this model: in flight and timed from here, though
        # they are served one after another.
        started = time.monotonic_ns()
        passages = [Passage(self.in_flight, self.first_response, started) for _ in requests]
        results = []
        for request, passage in zip(requests, passages, strict=True):
            try:
                if self.decoupled:
                    self._respond(request, passage)
                    continue
                collected: list = []
                try:
                    self._serve(request, collected.append)
                    results.append(collected[-1] if collected else pb_utils.InferenceResponse([]))
                    passage.respond()  # ready now; Triton sends it when execute() returns
                except Exception as exc:
                    results.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            finally:
                passage.finish()
        return None if self.decoupled else results

    def _respond(self, request: object, passage: Passage) -> None:
        """Serve one request of a decoupled model through its response sender, timing its first response."""
        sender = request.get_response_sender()

        def send(response: object) -> None:
            passage.respond()
            sender.send(response)

        try:
            self._serve(request, send)
            passage.finish()
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:
            passage.finish()
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

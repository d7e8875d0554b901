"""`preprocessing`: text in, token ids out (llmprep's own model; upstream's inputs and outputs).

Tokenizes QUERY with transformers.AutoTokenizer from the `tokenizer_dir` parameter and
turns stop/bad word lists into the [2, N] id tensors the engine expects (flat ids, then
end offsets padded with -1). END_ID / PAD_ID default to the tokenizer's eos / pad ids.
Upstream's `tokenizer_type` parameter no longer exists; AutoTokenizer reads the type
from the tokenizer folder.

A request of B rows (QUERY [B, 1]) is answered with B rows in every output, as upstream's model
answers it: read in tensorrtllm_backend v0.19.0 all_models/inflight_batcher_llm/preprocessing/1/model.py,
cited below as `upstream:LINE`. The engine backend slices every input along that first dimension
into B requests (inflight_batcher_llm/src/utils.cc:192-209, same tag), so no output may have one
row where the request has several. Per row: INPUT_ID padded on the right to the longest row with
the tokenizer's pad id and REQUEST_INPUT_LEN its unpadded length (upstream:628-638); END_ID /
PAD_ID the row's own or the tokenizer's (:253-267); BAD/STOP_WORDS_IDS [B, 2, N] (:642-684);
EMBEDDING_BIAS [B, vocab] (:686-719); DECODER_INPUT_ID the row's own or its pad id (:336-342).
Outputs the client asked nothing of keep upstream's empty shapes: words [B, 2, 0], bias [B, 0].
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from llmprep_models import flag, input_array, load_tokenizer, make_tensor, param

# Outputs of the two sampling inputs 1.2.x renamed: output, (1.2.x name, v0.12.0 name), type.
RENAMED = (("OUT_MIN_TOKENS", ("MIN_TOKENS", "MIN_LENGTH"), np.int32), ("OUT_SEED", ("SEED", "RANDOM_SEED"), np.uint64))


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _padded(rows: list[list[int]], pad: int) -> np.ndarray:
    """[len(rows), longest] int32, each row padded on the right with `pad` (upstream:630-638)."""
    width = max((len(r) for r in rows), default=0)
    return np.array([r + [pad] * (width - len(r)) for r in rows], dtype=np.int32).reshape(len(rows), width)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.tokenizer = load_tokenizer(param(config, "tokenizer_dir"))
        self.add_special_tokens = flag(param(config, "add_special_tokens"), True)
        tok = self.tokenizer
        self.end_id = int(tok.eos_token_id if tok.eos_token_id is not None else 0)
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else self.end_id)
        # Ids at or above it are prompt-table (fake prompt) ids (upstream:123, 351-356).
        self.vocab_size = int(tok.vocab_size)

    @staticmethod
    def _rows(request: object, name: str, batch: int | None) -> np.ndarray | None:
        """The input as [rows, N], one row per request row; None when the client sent none."""
        array = input_array(pb_utils, request, name)
        if array is None:
            return None
        rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
        if batch is not None and rows.shape[0] != batch:
            raise ValueError(f"{name} has {rows.shape[0]} rows where QUERY has {batch}")
        return rows

    def _column(self, request: object, name: str, batch: int, default: int | None, dtype: type) -> np.ndarray | None:
        """[batch, 1]: the row's value of an input of dims [1], else `default` on every row (None: no output)."""
        rows = self._rows(request, name, batch)
        if rows is None:
            return None if default is None else np.full((batch, 1), default, dtype=dtype)
        return rows[:, :1].astype(dtype)

    def _encode(self, texts: np.ndarray) -> list[list[int]]:
        """Each row's first string as ids (upstream:558-564)."""
        return [self.tokenizer.encode(_text(row[0]), add_special_tokens=self.add_special_tokens) for row in texts]

    def _word_lists(self, rows: np.ndarray | None, batch: int) -> np.ndarray:
        """[batch, 2, N]: per row its words' ids end to end, then each word's cumulative end offset. Ids pad
        with 0 and offsets with -1 to the longest row (at least 1); words that encode to nothing are skipped;
        [batch, 2, 0] when the client sent no list (upstream:642-684)."""
        if rows is None:
            return np.zeros((batch, 2, 0), dtype=np.int32)
        flat: list[list[int]] = []
        ends: list[list[int]] = []
        for row in rows:
            ids: list[int] = []
            offsets: list[int] = []
            for word in row:
                tokens = self.tokenizer.encode(_text(word), add_special_tokens=False)
                if tokens:
                    ids.extend(tokens)
                    offsets.append(len(ids))
            flat.append(ids)
            ends.append(offsets)
        width = max([1, *(len(ids) for ids in flat)])
        return np.array(
            [[ids + [0] * (width - len(ids)), offs + [-1] * (width - len(offs))] for ids, offs in zip(flat, ends)],
            dtype=np.int32,
        )

    def _bias(self, words: np.ndarray | None, weights: np.ndarray | None, batch: int) -> np.ndarray:
        """[batch, vocab] float32: each row's weights added at its words' ids; [batch, 0] without words
        and weights (upstream:686-719; upstream encodes a bias word with special tokens, we without)."""
        if words is None or weights is None:
            return np.zeros((batch, 0), dtype=np.float32)
        bias = np.zeros((batch, len(self.tokenizer)), dtype=np.float32)
        for row, (row_words, row_weights) in enumerate(zip(words, weights)):
            if len(row_words) != len(row_weights):  # upstream:702-704
                raise ValueError("EMBEDDING_BIAS_WORDS and EMBEDDING_BIAS_WEIGHTS must have as many values per row")
            for word, weight in zip(row_words, row_weights):
                for token in self.tokenizer.encode(_text(word), add_special_tokens=False):
                    bias[row, token] += float(weight)
        return bias

    def _one(self, request: object) -> object:
        query = self._rows(request, "QUERY", None)
        if query is None:
            raise ValueError("QUERY is required")
        batch = query.shape[0]  # upstream:223
        ids = self._encode(query)
        input_id = _padded(ids, self.pad_id)
        end_id = self._column(request, "END_ID", batch, self.end_id, np.int32)
        pad_id = self._column(request, "PAD_ID", batch, self.pad_id, np.int32)
        decoder = self._rows(request, "DECODER_QUERY", batch)
        if decoder is None:  # the row's pad id, length 1 (upstream:339-342)
            decoder_id, decoder_len = pad_id, np.ones((batch, 1), dtype=np.int32)
        else:
            decoder_ids = self._encode(decoder)
            decoder_id = _padded(decoder_ids, self.pad_id)
            decoder_len = np.array([[len(r)] for r in decoder_ids], dtype=np.int32)
        # Passed on row by row (upstream:379-380); 16 only where no client sent one (in-process calls).
        output_len = self._column(request, "REQUEST_OUTPUT_LEN", batch, 16, np.int32)
        bad = self._word_lists(self._rows(request, "BAD_WORDS_DICT", batch), batch)
        stop = self._word_lists(self._rows(request, "STOP_WORDS_DICT", batch), batch)
        words, weights = (self._rows(request, n, batch) for n in ("EMBEDDING_BIAS_WORDS", "EMBEDDING_BIAS_WEIGHTS"))
        outputs = [
            make_tensor(pb_utils, "INPUT_ID", input_id),
            make_tensor(pb_utils, "REQUEST_INPUT_LEN", np.array([[len(r)] for r in ids], dtype=np.int32)),
            make_tensor(pb_utils, "DECODER_INPUT_ID", decoder_id),
            make_tensor(pb_utils, "REQUEST_DECODER_INPUT_LEN", decoder_len),
            make_tensor(pb_utils, "REQUEST_OUTPUT_LEN", output_len),
            make_tensor(pb_utils, "BAD_WORDS_IDS", bad),
            make_tensor(pb_utils, "STOP_WORDS_IDS", stop),
            make_tensor(pb_utils, "EMBEDDING_BIAS", self._bias(words, weights, batch)),
            make_tensor(pb_utils, "OUT_END_ID", end_id),
            make_tensor(pb_utils, "OUT_PAD_ID", pad_id),
        ]
        extra = self._column(request, "PROMPT_TABLE_EXTRA_ID", batch, None, np.uint64)
        if extra is not None:  # the row's extra id on its prompt-table ids, 0 elsewhere (upstream:351-356, 390-394)
            extra_ids = np.where(input_id >= self.vocab_size, extra, 0).astype(np.uint64)
            outputs.append(make_tensor(pb_utils, "OUT_PROMPT_TABLE_EXTRA_IDS", extra_ids))
        # Either release's name of the two renamed sampling inputs reaches the engine (docs/repository.md).
        for out, names, dtype in RENAMED:
            for name in names:
                value = self._column(request, name, batch, None, dtype)
                if value is not None:
                    outputs.append(make_tensor(pb_utils, out, value))
                    break
        return pb_utils.InferenceResponse(outputs)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"preprocessing: {exc}")))
        return responses

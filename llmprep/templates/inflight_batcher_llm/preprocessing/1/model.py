"""`preprocessing`: text in, token ids out (llmprep's own model; upstream's inputs and outputs).

Tokenizes QUERY with transformers.AutoTokenizer from the `tokenizer_dir` parameter and
turns stop/bad word lists into the [2, N] id tensors the engine expects (flat ids, then
end offsets padded with -1). END_ID / PAD_ID default to the tokenizer's eos / pad ids.
Upstream's `tokenizer_type` parameter no longer exists; AutoTokenizer reads the type
from the tokenizer folder.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from llmprep_models import flag, input_array, load_tokenizer, make_tensor, param, scalar, strings


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.tokenizer = load_tokenizer(param(config, "tokenizer_dir"))
        self.add_special_tokens = flag(param(config, "add_special_tokens"), True)
        tok = self.tokenizer
        self.end_id = int(tok.eos_token_id if tok.eos_token_id is not None else 0)
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else self.end_id)

    def _word_ids(self, words: list[str]) -> np.ndarray:
        """The [1, 2, N] words tensor: ids, then cumulative end offsets padded with -1."""
        ids: list[int] = []
        offsets: list[int] = []
        for word in words:
            if not word:
                continue
            ids.extend(self.tokenizer.encode(word, add_special_tokens=False))
            offsets.append(len(ids))
        if not ids:
            return np.array([[[0], [-1]]], dtype=np.int32)
        offsets += [-1] * (len(ids) - len(offsets))
        return np.array([[ids, offsets]], dtype=np.int32)

    def _one(self, request: object) -> object:
        query = strings(pb_utils, request, "QUERY")
        text = query[0] if query else ""
        ids = self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens)
        output_len = input_array(pb_utils, request, "REQUEST_OUTPUT_LEN")
        end_id = scalar(pb_utils, request, "END_ID", None)
        pad_id = scalar(pb_utils, request, "PAD_ID", None)
        outputs = [
            make_tensor(pb_utils, "INPUT_ID", np.array([ids], dtype=np.int32)),
            make_tensor(pb_utils, "REQUEST_INPUT_LEN", np.array([[len(ids)]], dtype=np.int32)),
            make_tensor(
                pb_utils,
                "REQUEST_OUTPUT_LEN",
                np.array(output_len if output_len is not None else [[16]], dtype=np.int32).reshape(1, -1),
            ),
            make_tensor(pb_utils, "BAD_WORDS_IDS", self._word_ids(strings(pb_utils, request, "BAD_WORDS_DICT"))),
            make_tensor(pb_utils, "STOP_WORDS_IDS", self._word_ids(strings(pb_utils, request, "STOP_WORDS_DICT"))),
            make_tensor(pb_utils, "OUT_END_ID", np.array([[self.end_id if end_id is None else end_id]], dtype=np.int32)),
            make_tensor(pb_utils, "OUT_PAD_ID", np.array([[self.pad_id if pad_id is None else pad_id]], dtype=np.int32)),
        ]
        decoder = strings(pb_utils, request, "DECODER_QUERY")
        if decoder and decoder[0]:
            dec_ids = self.tokenizer.encode(decoder[0], add_special_tokens=self.add_special_tokens)
            outputs.append(make_tensor(pb_utils, "DECODER_INPUT_ID", np.array([dec_ids], dtype=np.int32)))
            outputs.append(make_tensor(pb_utils, "REQUEST_DECODER_INPUT_LEN", np.array([[len(dec_ids)]], dtype=np.int32)))
        bias_words = strings(pb_utils, request, "EMBEDDING_BIAS_WORDS")
        bias_weights = input_array(pb_utils, request, "EMBEDDING_BIAS_WEIGHTS")
        if bias_words and bias_weights is not None:
            bias = np.zeros((1, len(self.tokenizer)), dtype=np.float32)
            for word, weight in zip(bias_words, bias_weights.reshape(-1), strict=False):
                for token in self.tokenizer.encode(word, add_special_tokens=False):
                    bias[0, token] += float(weight)
            outputs.append(make_tensor(pb_utils, "EMBEDDING_BIAS", bias))
        extra = input_array(pb_utils, request, "PROMPT_TABLE_EXTRA_ID")
        if extra is not None:
            outputs.append(
                make_tensor(pb_utils, "OUT_PROMPT_TABLE_EXTRA_IDS", np.full((1, len(ids)), extra.reshape(-1)[0], np.uint64))
            )
        # Either release's name of the two renamed sampling inputs reaches the engine (docs/repository.md).
        for out, names, dtype in (("OUT_MIN_TOKENS", ("MIN_TOKENS", "MIN_LENGTH"), np.int32), ("OUT_SEED", ("SEED", "RANDOM_SEED"), np.uint64)):
            for name in names:
                value = input_array(pb_utils, request, name)
                if value is not None:
                    outputs.append(make_tensor(pb_utils, out, value.astype(dtype).reshape(1, 1)))
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

"""`postprocessing`: token ids in, text out (llmprep's own model; upstream's inputs and outputs).

TOKENS_BATCH [batch, beams, tokens] and SEQUENCE_LENGTH [batch, beams] -> OUTPUT
[batch * beams] (flat, as upstream's). In the ensemble every streamed response is its own request here, so this
model cannot keep state between chunks: it decodes each chunk on its own, as upstream's
does. The BLS model (`tensorrt_llm_bls`) keeps the whole sequence and streams text
without splitting characters.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from llmprep_models import flag, input_array, load_tokenizer, make_tensor, param, text_array


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.tokenizer = load_tokenizer(param(config, "tokenizer_dir"))
        self.skip_special_tokens = flag(param(config, "skip_special_tokens"), True)

    def _one(self, request: object) -> object:
        tokens = input_array(pb_utils, request, "TOKENS_BATCH")
        lengths = input_array(pb_utils, request, "SEQUENCE_LENGTH")
        if tokens is None:
            raise ValueError("TOKENS_BATCH is required")
        tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]) if tokens.ndim >= 2 else tokens.reshape(1, 1, -1)
        if lengths is None:
            lengths = np.full(tokens.shape[:2], tokens.shape[-1], dtype=np.int32)
        lengths = lengths.reshape(tokens.shape[0], tokens.shape[1])
        texts = [
            self.tokenizer.decode(tokens[b, k, : int(lengths[b, k])].tolist(), skip_special_tokens=self.skip_special_tokens)
            for b in range(tokens.shape[0])
            for k in range(tokens.shape[1])
        ]
        # Flat [batch * beams], as upstream's postprocessing returns it (np.array of the
        # request's decoded strings, postprocessing/1/model.py:152, v0.19.0).
        return pb_utils.InferenceResponse([make_tensor(pb_utils, "OUTPUT", text_array(texts))])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"postprocessing: {exc}")))
        return responses

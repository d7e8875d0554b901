"""A stand-in for the TensorRT-LLM ensemble in load tests: streams one word per "token".

Behaviour the tests rely on:
- streams `max_tokens` responses (one `text_output` word each) when `stream` is true, or
  one response with the whole text otherwise;
- stops at a "natural end of sequence" after `natural_length` tokens unless `min_length`
  asks for more (as TensorRT-LLM's min_length suppresses EOS) or `end_id` is -1;
- a prompt that contains the word FAIL gets an error response instead;
- each request runs on its own thread (as an in-flight batcher does), so many stream at once.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _text_tensor(words):
    array = np.array([" ".join(words).encode()], dtype=np.object_)
    return pb_utils.Tensor("text_output", array)


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.delay = float(params.get("token_delay_ms", {}).get("string_value", "2")) / 1000.0
        self.natural = int(params.get("natural_length", {}).get("string_value", "3"))

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            prompt = _scalar(request, "text_input", b"")
            prompt = prompt.decode() if isinstance(prompt, bytes) else str(prompt)
            args = (
                sender,
                prompt,
                int(_scalar(request, "max_tokens", 16)),
                bool(_scalar(request, "stream", False)),
                int(_scalar(request, "min_length", 0)),
                int(_scalar(request, "end_id", 2)),
            )
            threading.Thread(target=self._generate, args=args, daemon=True).start()
        return None

    def _generate(self, sender, prompt, max_tokens, stream, min_length, end_id):
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            if "FAIL" in prompt.split():
                time.sleep(self.delay)
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("asked to fail")), flags=final)
                return
            length = max_tokens if end_id == -1 else min(max_tokens, max(self.natural, min_length))
            words = []
            for index in range(length):
                time.sleep(self.delay)
                words.append(f"w{index}")
                if stream:
                    sender.send(pb_utils.InferenceResponse([_text_tensor([words[-1]])]))
            if stream:
                sender.send(flags=final)
            else:
                sender.send(pb_utils.InferenceResponse([_text_tensor(words)]), flags=final)
        except Exception as exc:  # noqa: BLE001 - the server must always get a final response
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=final)

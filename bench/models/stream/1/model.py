"""Streams `max_tokens` one-word responses, one every `token_delay_ms`, each request on its own thread.

The server-side time to first token is `token_delay_ms` plus Triton's own handling. Triton's
statistics end a decoupled request when `execute()` hands it off, so the model counts what they
cannot see: two counters on Triton's /metrics, `bench_first_response_seconds_total` (from
`execute()` to the first response sent, summed) and `bench_first_responses_total`.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

_WORD = np.array([b"w"], dtype=np.object_)


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    return tensor.as_numpy().reshape(-1)[0].item()


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.delay = float(params.get("token_delay_ms", {}).get("string_value", "10")) / 1000.0
        seconds = pb_utils.MetricFamily(
            name="bench_first_response_seconds_total",
            description="Seconds from execute() to the first response sent, summed over requests",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        count = pb_utils.MetricFamily(
            name="bench_first_responses_total",
            description="Requests whose first response was sent",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.families = (seconds, count)  # a family must outlive its metrics
        self.first_seconds = seconds.Metric(labels={"model": "stream"})
        self.first_count = count.Metric(labels={"model": "stream"})
        self.lock = threading.Lock()

    def execute(self, requests):
        for request in requests:
            args = (request.get_response_sender(), int(_scalar(request, "max_tokens", 16)), time.monotonic())
            threading.Thread(target=self._generate, args=args, daemon=True).start()
        return None

    def _generate(self, sender, tokens, start):
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            for index in range(max(1, tokens)):
                # Keep the schedule (not drift with send time): token i is due at (i + 1) * delay.
                due = start + (index + 1) * self.delay
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("text_output", _WORD)]))
                if index == 0:
                    with self.lock:
                        self.first_seconds.increment(time.monotonic() - start)
                        self.first_count.increment(1)
            sender.send(flags=final)
        except Exception as exc:  # noqa: BLE001 - the server must always get a final response
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=final)

"""Echo IN as OUT; with GATE (a folder path) set, hold the request until GATE/release exists.

The tests use it to keep a request in flight for as long as they need (no sleeps, no clocks):
the model writes GATE/started when the request arrives and answers once the test writes
GATE/release. A safety limit answers anyway after 120 s so a failed test never hangs a server.
"""

import os
import time

import triton_python_backend_utils as pb_utils

SAFETY_LIMIT_S = 120.0


def _wait_for_release(gate):
    open(os.path.join(gate, "started"), "w").close()
    deadline = time.monotonic() + SAFETY_LIMIT_S
    while not os.path.exists(os.path.join(gate, "release")) and time.monotonic() < deadline:
        time.sleep(0.02)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            gate = pb_utils.get_input_tensor_by_name(request, "GATE")
            if gate is not None:
                raw = gate.as_numpy().reshape(-1)[0]
                _wait_for_release(raw.decode() if isinstance(raw, bytes) else str(raw))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]))
        return responses

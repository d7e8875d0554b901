"""A tiny metrics exporter on loopback for tests: serves whatever text a function returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class Exporter:
    """An HTTP server on 127.0.0.1 answering GET /metrics with `render()` (Prometheus text format)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Exporter:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def exposition(families: Iterable[tuple[str, str, Sequence[tuple[Mapping[str, str], float]]]]) -> str:
    """Prometheus text format from (name, type, [(labels, value)]) families."""
    lines: list[str] = []
    for name, kind, samples in families:
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{_labels(labels)} {value:g}" for labels, value in samples)
    return "\n".join(lines) + "\n"


ENSEMBLE_MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing")


class TritonPod:
    """The /metrics of one Triton pod serving the engine runtime's ensemble under a steady load.

    Counters grow with wall time at the given rates, so rate() over any window is positive;
    gauges hold the given values. Names and labels as Triton 2.51 and the TensorRT-LLM backend
    export them (model, version; request_type; kv_cache_block_type).
    """

    def __init__(
        self,
        requests_per_s: float = 4.0,
        queue_us: float = 3000.0,
        compute_us: float = 2000.0,
        waiting: float = 3.0,
        kv_fraction: float = 0.4,
        pending: float = 2.0,
        queued: float = 6.0,
        in_flight: float = 13.0,
    ) -> None:
        self.start = time.monotonic() - 1.0
        self.requests_per_s, self.queue_us, self.compute_us = requests_per_s, queue_us, compute_us
        self.waiting, self.kv_fraction, self.pending = waiting, kv_fraction, pending
        self.queued, self.in_flight = queued, in_flight

    def render(self) -> str:
        elapsed = time.monotonic() - self.start
        n = self.requests_per_s * elapsed
        per_model = [{"model": m, "version": "1"} for m in ENSEMBLE_MODELS]
        buckets = [(1, 0.0), (10, 0.2), (100, 0.7), (1000, 0.95), (5000, 1.0)]
        first_response = [({"model": "ensemble", "version": "1", "le": str(le)}, n * share) for le, share in buckets]
        first_response.append(({"model": "ensemble", "version": "1", "le": "+Inf"}, n))
        return exposition(
            [
                ("nv_inference_request_success", "counter", [(m, n) for m in per_model]),
                (
                    "nv_inference_request_failure",
                    "counter",
                    [({**m, "reason": "REJECTED"}, n * 0.01) for m in per_model],
                ),
                ("nv_inference_count", "counter", [(m, n) for m in per_model]),
                ("nv_inference_exec_count", "counter", [(m, n) for m in per_model]),
                (
                    "nv_inference_request_duration_us",
                    "counter",
                    [(m, n * (self.queue_us + self.compute_us + 100)) for m in per_model],
                ),
                ("nv_inference_queue_duration_us", "counter", [(m, n * self.queue_us) for m in per_model]),
                ("nv_inference_compute_infer_duration_us", "counter", [(m, n * self.compute_us) for m in per_model]),
                ("nv_inference_pending_request_count", "gauge", [(m, self.pending) for m in per_model]),
                ("nv_inference_first_response_histogram_ms_bucket", "counter", first_response),
                (
                    "nv_inference_first_response_histogram_ms_count",
                    "counter",
                    [({"model": "ensemble", "version": "1"}, n)],
                ),
                (
                    "nv_inference_first_response_histogram_ms_sum",
                    "counter",
                    [({"model": "ensemble", "version": "1"}, n * 80)],
                ),
                (
                    "nv_trt_llm_request_metrics",
                    "gauge",
                    [
                        ({"model": "tensorrt_llm", "version": "1", "request_type": t}, v)
                        # As the backend reports them: active = scheduled + waiting, at most max (model_instance_state.cc:1441).
                        for t, v in (
                            ("waiting", self.waiting),
                            ("scheduled", 4),
                            ("context", 1),
                            ("active", 4 + self.waiting),
                            ("max", 8 + self.waiting),
                        )
                    ],
                ),
                # Our own families (llmprep/templates): the executor's queue, and requests in flight counted where
                # they enter (preprocessing) and leave (postprocessing, with the final response): the pod's sum is net.
                (
                    "llmprep_executor_queued_requests",
                    "gauge",
                    [({"model": "tensorrt_llm", "version": "1"}, self.queued)],
                ),
                (
                    "llmprep_requests_in_flight",
                    "gauge",
                    [
                        ({"model": "preprocessing", "version": "1"}, self.in_flight + 5),
                        ({"model": "postprocessing", "version": "1"}, -5),
                    ],
                ),
                (
                    "nv_trt_llm_kv_cache_block_metrics",
                    "gauge",
                    [
                        ({"model": "tensorrt_llm", "version": "1", "kv_cache_block_type": t}, v)
                        for t, v in (
                            ("fraction", self.kv_fraction),
                            ("used", 400 * self.kv_fraction),
                            ("free", 400 * (1 - self.kv_fraction)),
                            ("max", 400),
                            ("tokens_per", 64),
                        )
                    ],
                ),
            ]
        )


def cluster_metrics(namespace: str, release: str, pods: Iterable[str]) -> str:
    """kube-state-metrics and dcgm-exporter (--kubernetes=true) series for a release's pods."""
    pods = list(pods)
    hpa = {"namespace": namespace, "horizontalpodautoscaler": release}
    deployment = {"namespace": namespace, "deployment": release}
    gpus = [
        {
            "gpu": str(i),
            "UUID": f"GPU-{i:04d}",
            "modelName": "NVIDIA H100 80GB HBM3",
            "Hostname": "node-1",
            "namespace": namespace,
            "pod": pod,
            "container": "triton",
        }
        for i, pod in enumerate(pods)
    ]
    return exposition(
        [
            ("kube_horizontalpodautoscaler_status_current_replicas", "gauge", [(hpa, len(pods))]),
            ("kube_horizontalpodautoscaler_status_desired_replicas", "gauge", [(hpa, len(pods) + 1)]),
            ("kube_horizontalpodautoscaler_spec_min_replicas", "gauge", [(hpa, 1)]),
            ("kube_horizontalpodautoscaler_spec_max_replicas", "gauge", [(hpa, 4)]),
            ("kube_deployment_status_replicas_available", "gauge", [(deployment, len(pods))]),
            (
                "kube_pod_status_ready",
                "gauge",
                [({"namespace": namespace, "pod": p, "condition": "true"}, 1) for p in pods],
            ),
            ("DCGM_FI_DEV_GPU_UTIL", "gauge", [(g, 87) for g in gpus]),
            ("DCGM_FI_DEV_FB_USED", "gauge", [(g, 61000) for g in gpus]),
            ("DCGM_FI_DEV_FB_FREE", "gauge", [(g, 19000) for g in gpus]),
        ]
    )

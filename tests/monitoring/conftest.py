"""A real Prometheus scraping a small release: Triton pods, kube-state-metrics and DCGM series."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from llmprep import chart
from llmprep.lab.prometheus import PrometheusServer, ScrapeTarget
from tests.monitoring.exporter import Exporter, TritonPod, cluster_metrics

SIGNALS = (
    "triton:queue_compute:ratio",
    "triton:request_duration:average",
    "triton:compute_duration:average",
    "triton:pending_requests",
    "trtllm:requests_waiting",
    "trtllm:requests_in_engine",
    "trtllm:kv_cache:utilization",
    "triton:first_response_ms:p95",
    "trtllm:batch:fullness",
    "trtllm:requests_queued",
    "llmprep:requests_in_flight",
)
NAMESPACE = "llm"
RELEASE = "gpt2"
PODS = ("gpt2-7d9c-abcde", "gpt2-7d9c-fghij", "gpt2-7d9c-klmno")
OTHER = ("other", "gpt2-7d9c-abcde")  # same pod name, other namespace: must never leak in


def chart_rules(folder: Path, release: str = RELEASE, namespace: str = NAMESPACE) -> Path:
    """The rule groups of the chart's rendered PrometheusRule for this release, as a Prometheus rules file."""
    values = chart.merge_values([], ["triton.image.name=registry.example/llmprep-triton:26.07"])
    groups = chart.rule_groups(chart.render(values, release=release, namespace=namespace))
    path = folder / "chart-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@dataclass
class Release:
    prometheus: PrometheusServer
    namespace: str
    pods: tuple[str, ...]


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """Prometheus with the chart's rules, scraping 3 pods of one release, 1 pod elsewhere, and cluster series."""
    rules = chart_rules(tmp_path_factory.mktemp("rules"))
    with contextlib.ExitStack() as stack:
        targets = []
        for namespace, pod in [*((NAMESPACE, p) for p in PODS), OTHER]:
            exporter = stack.enter_context(Exporter(TritonPod().render))
            targets.append(ScrapeTarget(exporter.address, labels={"namespace": namespace, "pod": pod}))
        cluster = stack.enter_context(Exporter(lambda: cluster_metrics(NAMESPACE, RELEASE, PODS)))
        targets.append(ScrapeTarget(cluster.address, job="cluster"))
        prom = stack.enter_context(PrometheusServer(targets=targets, rule_files=[rules]))
        for signal in SIGNALS:
            prom.wait_for(signal, lambda r: len(r) == len(PODS), timeout=60)
        yield Release(prom, NAMESPACE, PODS)

"""Our models' own in-flight gauge (llmprep_requests_in_flight), with a recording pb_utils double."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

from tests.conftest import ROOT


def stats_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "llmprep_stats_in_flight", ROOT / "llmprep" / "templates" / "common" / "llmprep_stats.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Gauge:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels, self.value = labels, 0.0

    def increment(self, by: float) -> None:
        self.value += by


class PbUtils:
    """The custom metrics API as the Python backend offers it: MetricFamily(name, description, kind).Metric(labels)."""

    families: list[Any] = []

    class MetricFamily:
        GAUGE = "gauge"

        def __init__(self, name: str, description: str, kind: str) -> None:
            self.name, self.kind, self.metrics = name, kind, []
            PbUtils.families.append(self)

        def Metric(self, labels: dict[str, str]) -> Gauge:  # noqa: N802 (pb_utils' name)
            gauge = Gauge(labels)
            self.metrics.append(gauge)
            return gauge


def test_requests_in_flight_rise_on_entry_and_fall_with_the_final_response() -> None:
    stats = stats_module()
    counter = stats.InFlight(PbUtils, "tensorrt_llm", "1")
    family = PbUtils.families[-1]
    assert (family.name, family.kind) == ("llmprep_requests_in_flight", "gauge")
    assert family.metrics[0].labels == {"model": "tensorrt_llm", "version": "1"}
    for _ in range(3):
        counter.enter()
    counter.leave()
    assert family.metrics[0].value == 2


def test_the_family_name_is_the_one_the_chart_records() -> None:
    rule = (ROOT / "chart" / "templates" / "prometheusrule.yaml").read_text()
    assert f"sum by (namespace, pod) ({stats_module().IN_FLIGHT_FAMILY}{{" in rule

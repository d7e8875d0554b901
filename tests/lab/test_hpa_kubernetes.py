"""Kubernetes' own HPA controller test cases (tests/data/k8s_hpa_cases.py) run against our controller."""

from __future__ import annotations

from typing import Any

import pytest

from llmprep.lab.hpa import (
    Behavior,
    HorizontalController,
    HpaSpec,
    MetricSpec,
    Pod,
    Reading,
    ScalingPolicy,
    ScalingRules,
    _Event,
    _Rec,
)
from tests.data.k8s_hpa_cases import CONTROLLER_CASES, RATE_CASES, REPLICA_CASES, STABILIZATION_CASES

NOW = 10_000.0
NO_WINDOWS = Behavior(
    scale_up=ScalingRules(0.0, "Max", (ScalingPolicy("Percent", 100000, 15.0),)),
    scale_down=ScalingRules(0.0, "Max", (ScalingPolicy("Percent", 100, 15.0),)),
)
KINDS = {
    "pods": ("Pods", "AverageValue"),
    "object": ("Object", "Value"),
    "object_per_pod": ("Object", "AverageValue"),
    "external": ("External", "Value"),
    "external_per_pod": ("External", "AverageValue"),
}


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['test']}:{case.get('name', '')}".rstrip(":")


def _reading(kind: str, levels: list[int], pods: list[Pod]) -> Reading:
    values = [v / 1000.0 for v in levels]
    if kind == "pods":
        return Reading(per_pod={pods[i].name: v for i, v in enumerate(values)})
    if kind.startswith("object"):
        return Reading(value=values[0])
    return Reading(values=tuple(values))


def _controller(spec: HpaSpec, tolerances: tuple[float, float] | None) -> HorizontalController:
    hpa = HorizontalController(spec)
    if tolerances is not None:
        down, up = tolerances
        hpa.spec = HpaSpec(
            spec.name,
            spec.min_replicas,
            spec.max_replicas,
            spec.metrics,
            Behavior(
                scale_up=ScalingRules(0.0, "Max", NO_WINDOWS.scale_up.policies, tolerance=up),
                scale_down=ScalingRules(0.0, "Max", NO_WINDOWS.scale_down.policies, tolerance=down),
            ),
        )
    return hpa


@pytest.mark.parametrize("case", REPLICA_CASES, ids=_case_id)
def test_replica_count_matches_kubernetes_replica_calculator(case: dict[str, Any]) -> None:
    metric_type, target_type = KINDS[case["kind"]]
    metric = MetricSpec(metric_type, "qps", target_type, case["target_milli"] / 1000.0)  # type: ignore[arg-type]
    unready = set(case.get("unready", []))
    pods = [Pod(f"pod-{i}", ready=i not in unready) for i in range(case["current"])]
    spec = HpaSpec("k8s", 1, 1000, (metric,), NO_WINDOWS)
    hpa = _controller(spec, case.get("tolerances"))
    decision = hpa.sync(NOW, case["current"], pods, [_reading(case["kind"], case["levels"], pods)])
    assert decision.metric_desired == case["expected"]


def _rules(raw: tuple[int, int, int, int, int] | None) -> ScalingRules:
    if raw is None:
        return ScalingRules(0.0, "Max", ())
    pods, pods_period, percent, percent_period, window = raw
    policies: list[ScalingPolicy] = []
    if pods:
        policies.append(ScalingPolicy("Pods", pods, float(pods_period)))
    if percent:
        policies.append(ScalingPolicy("Percent", percent, float(percent_period)))
    return ScalingRules(float(window), "Max", tuple(policies))


def _spread(changes: list[int], period: float = 120.0) -> list[_Event]:
    segment = period / len(changes) if changes else 0.0
    return [_Event(NOW - (period - segment * (i + 1) + segment / 2), c) for i, c in enumerate(changes)]


@pytest.mark.parametrize("case", RATE_CASES, ids=_case_id)
def test_rate_limit_matches_kubernetes_behavior_rate(case: dict[str, Any]) -> None:
    behavior = Behavior(scale_up=_rules(case.get("up_rules")), scale_down=_rules(case.get("down_rules")))
    hpa = HorizontalController(HpaSpec("k8s", case["minimum"], case["maximum"], (), behavior))
    hpa._up_events = _spread(case.get("up_events", []))
    hpa._down_events = _spread(case.get("down_events", []))
    replicas, reason = hpa._limit_with_behavior(NOW, case["current"], case["desired"], behavior)
    assert (replicas, reason) == (case["expected"], case["reason"])


@pytest.mark.parametrize("case", STABILIZATION_CASES, ids=_case_id)
def test_stabilization_matches_kubernetes_normalization(case: dict[str, Any]) -> None:
    behavior = Behavior(
        scale_up=ScalingRules(float(case["up_window"]), "Max", ()),
        scale_down=ScalingRules(float(case["down_window"]), "Max", ()),
    )
    hpa = HorizontalController(HpaSpec("k8s", 1, 1000, (), behavior))
    hpa._recommendations = [_Rec(NOW - ago, replicas) for replicas, ago in case["recommendations"]]
    assert hpa._stabilize(NOW, case["current"], case["desired"], behavior) == case["expected"]


@pytest.mark.parametrize("case", CONTROLLER_CASES, ids=_case_id)
def test_first_sync_matches_kubernetes_reconcile(case: dict[str, Any]) -> None:
    metric = MetricSpec("Pods", "load", "AverageValue", case["target_milli"] / 1000.0)
    pods = [Pod(f"pod-{i}") for i in range(case["current"])]
    behavior = Behavior() if case["behavior"] else None
    hpa = HorizontalController(HpaSpec("k8s", case["minimum"], case["maximum"], (metric,), behavior))
    if case.get("seed_empty"):
        hpa._seen = True  # Kubernetes' test hands the controller an empty (not absent) history
    decision = hpa.sync(NOW, case["current"], pods, [_reading("pods", case["levels"], pods)])
    assert decision.desired == case["expected"]


def test_new_hpa_with_behavior_does_not_scale_down_inside_its_window() -> None:
    metric = MetricSpec("Pods", "load", "AverageValue", 0.5)
    pods = [Pod(f"pod-{i}") for i in range(5)]
    hpa = HorizontalController(HpaSpec("k8s", 1, 10, (metric,), Behavior()))
    reading = Reading(per_pod={p.name: 0.1 for p in pods})
    assert hpa.sync(NOW, 5, pods, [reading]).desired == 5
    assert hpa.sync(NOW + 301.0, 5, pods, [reading]).desired < 5

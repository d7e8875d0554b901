"""The HPA controller against worked examples of the Kubernetes documentation and controller."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llmprep.errors import LabError
from llmprep.lab.hpa import (
    Behavior,
    HorizontalController,
    HpaSpec,
    MetricSpec,
    Pod,
    Reading,
    ScalingPolicy,
    ScalingRules,
    hpa_from_manifest,
    hpa_from_scaled_object,
    parse_quantity,
    plain_metric_replicas,
)
from llmprep.lab.timing import scaled_hpa


def pods(n: int, **kw: object) -> list[Pod]:
    return [Pod(f"p{i}", **kw) for i in range(n)]  # type: ignore[arg-type]


def per_pod(values: Sequence[float]) -> Reading:
    return Reading(per_pod={f"p{i}": v for i, v in enumerate(values)})


def spec(
    *,
    minimum: int = 1,
    maximum: int = 10,
    target: float = 1.0,
    behavior: Behavior | None = None,
    metrics: tuple[MetricSpec, ...] | None = None,
) -> HpaSpec:
    metrics = metrics or (MetricSpec("Pods", "signal", "AverageValue", target),)
    return HpaSpec("h", minimum, maximum, metrics, behavior)


NO_STABILIZATION = Behavior(
    scale_up=ScalingRules(0, "Max", (ScalingPolicy("Pods", 100, 15),)),
    scale_down=ScalingRules(0, "Max", (ScalingPolicy("Pods", 100, 15),)),
)


# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1000m", 1.0),
        ("1500m", 1.5),
        ("2", 2.0),
        ("0.5", 0.5),
        ("4k", 4000.0),
        ("1Ki", 1024.0),
        ("1e3", 1000.0),
        (3, 3.0),
    ],
)
def test_quantities_parse_as_kubernetes_writes_them(text: object, value: float) -> None:
    assert parse_quantity(text) == value


def test_a_malformed_quantity_names_its_field() -> None:
    with pytest.raises(LabError, match="averageValue"):
        parse_quantity("ten", "averageValue")


# --------------------------------------------------------------------------- algorithm details


@pytest.mark.parametrize(
    ("current", "values", "target", "desired"),
    [
        (1, [0.2], 0.1, 2),  # docs: 200m against 100m doubles the replicas
        (4, [0.05] * 4, 0.1, 2),  # docs: 50m against 100m halves them
        (3, [1.09] * 3, 1.0, 3),  # 9 % above target: inside the 10 % tolerance
        (3, [0.91] * 3, 1.0, 3),  # 9 % below target: inside the tolerance
        (3, [1.11] * 3, 1.0, 4),  # 11 % above: ceil(3 × 1.11) = 4
        (2, [3.0, 1.0], 1.0, 4),  # mean of 2.0 over 2 ready pods
        (4, [0.2, 0.2, 0.2, 0.2], 1.0, 1),  # ceil(4 × 0.2) = 1
    ],
)
def test_desired_replicas_is_the_ceiling_of_current_times_the_usage_ratio(
    current: int, values: list[float], target: float, desired: int
) -> None:
    hpa = HorizontalController(spec(target=target, behavior=NO_STABILIZATION))
    assert hpa.sync(0.0, current, pods(current), [per_pod(values)]).metric_desired == desired


def test_the_usage_mean_is_taken_in_whole_milli_units_as_the_controller_does() -> None:
    # (1001m + 1000m) / 2 = 1000m after integer division: exactly on target.
    replicas, usage = plain_metric_replicas(2, 1000, {"p0": 1001, "p1": 1000}, pods(2))
    assert (replicas, usage) == (2, 1000)


def test_pods_being_deleted_are_left_out_of_the_average() -> None:
    group = [Pod("p0"), Pod("p1"), Pod("p2", deleting=True)]
    replicas, _ = plain_metric_replicas(2, 1000, {"p0": 2000, "p1": 2000, "p2": 0}, group)
    assert replicas == 4


def test_pending_pods_count_as_zero_on_a_scale_up() -> None:
    # 2 ready pods at 3× target, 2 pending: ratio recomputed as (3+3+0+0)/4 = 1.5 over 4 pods.
    group = [Pod("p0"), Pod("p1"), Pod("p2", phase="Pending", ready=False), Pod("p3", phase="Pending", ready=False)]
    replicas, _ = plain_metric_replicas(4, 1000, {"p0": 3000, "p1": 3000}, group)
    assert replicas == 6


def test_pending_pods_are_ignored_on_a_scale_down() -> None:
    group = [Pod("p0"), Pod("p1"), Pod("p2", phase="Pending", ready=False)]
    replicas, _ = plain_metric_replicas(3, 1000, {"p0": 200, "p1": 200}, group)
    assert replicas == 1  # ceil(0.2 × 2 ready pods)


def test_a_pod_missing_its_metric_counts_as_at_target_on_a_scale_down() -> None:
    # Ready pods at 0.5: with the missing pod at 1.0 the mean is 0.667 over 3 → ceil(2.0) = 2.
    replicas, _ = plain_metric_replicas(3, 1000, {"p0": 500, "p1": 500}, pods(3))
    assert replicas == 2


def test_a_pod_missing_its_metric_counts_as_zero_on_a_scale_up() -> None:
    # (2000 + 2000 + 0) / 3 = 1333m → ceil(1.333 × 3) = 4.
    replicas, _ = plain_metric_replicas(3, 1000, {"p0": 2000, "p1": 2000}, pods(3))
    assert replicas == 4


def test_the_conservative_recount_never_reverses_the_direction() -> None:
    # Scale-up signal 1.2, but with two pods missing at 0 the mean falls below target: stay.
    replicas, _ = plain_metric_replicas(3, 1000, {"p0": 1200}, pods(3))
    assert replicas == 3


def test_no_metric_for_any_pod_fails_the_metric_and_nothing_scales() -> None:
    hpa = HorizontalController(spec(behavior=NO_STABILIZATION))
    decision = hpa.sync(0.0, 2, pods(2), [Reading(error="no metrics returned from custom metrics API")])
    assert decision.desired == 2 and decision.reason.startswith("FailedGetMetrics")


# --------------------------------------------------------------------------- multiple metrics


def test_with_several_metrics_the_largest_recommendation_wins() -> None:
    metrics = (MetricSpec("Pods", "a", "AverageValue", 1.0), MetricSpec("Pods", "b", "AverageValue", 1.0))
    hpa = HorizontalController(spec(metrics=metrics, behavior=NO_STABILIZATION))
    decision = hpa.sync(0.0, 2, pods(2), [per_pod([0.5, 0.5]), per_pod([2.0, 2.0])])
    assert [p.replicas for p in decision.proposals] == [1, 4] and decision.desired == 4


def test_a_missing_metric_blocks_a_scale_down_the_others_ask_for() -> None:
    metrics = (MetricSpec("Pods", "a", "AverageValue", 1.0), MetricSpec("Pods", "b", "AverageValue", 1.0))
    hpa = HorizontalController(spec(metrics=metrics, behavior=NO_STABILIZATION))
    assert hpa.sync(0.0, 4, pods(4), [per_pod([0.1] * 4), Reading(error="gone")]).desired == 4


def test_a_missing_metric_does_not_block_a_scale_up_the_others_ask_for() -> None:
    metrics = (MetricSpec("Pods", "a", "AverageValue", 1.0), MetricSpec("Pods", "b", "AverageValue", 1.0))
    hpa = HorizontalController(spec(metrics=metrics, behavior=NO_STABILIZATION))
    assert hpa.sync(0.0, 2, pods(2), [per_pod([2.0, 2.0]), None]).desired == 4


# --------------------------------------------------------------------------- min, max, limits


@pytest.mark.parametrize(
    ("current", "value", "minimum", "maximum", "desired"),
    [(2, 10.0, 1, 4, 4), (4, 0.01, 2, 8, 2), (6, 1.0, 1, 4, 4), (1, 1.0, 2, 4, 2)],
)
def test_the_result_stays_within_min_and_max_replicas(
    current: int, value: float, minimum: int, maximum: int, desired: int
) -> None:
    hpa = HorizontalController(spec(minimum=minimum, maximum=maximum, behavior=NO_STABILIZATION))
    assert hpa.sync(0.0, current, pods(current), [per_pod([value] * current)]).desired == desired


def test_without_behavior_a_scale_up_is_limited_to_twice_the_replicas_or_four() -> None:
    hpa = HorizontalController(spec(maximum=100))
    assert hpa.sync(0.0, 1, pods(1), [per_pod([50.0])]).desired == 4
    assert hpa.sync(15.0, 5, pods(5), [per_pod([50.0] * 5)]).desired == 10


def test_without_behavior_scale_down_waits_for_the_five_minute_window() -> None:
    hpa = HorizontalController(spec())
    assert hpa.sync(0.0, 4, pods(4), [per_pod([1.0] * 4)]).desired == 4
    assert hpa.sync(15.0, 4, pods(4), [per_pod([0.1] * 4)]).desired == 4  # 4 was recommended 15 s ago
    assert hpa.sync(299.0, 4, pods(4), [per_pod([0.1] * 4)]).desired == 4
    assert hpa.sync(301.0, 4, pods(4), [per_pod([0.1] * 4)]).desired == 1


# --------------------------------------------------------------------------- behavior


def test_default_behavior_scales_up_by_the_larger_of_100_percent_and_4_pods() -> None:
    hpa = HorizontalController(spec(maximum=100, behavior=Behavior()))
    assert hpa.sync(0.0, 1, pods(1), [per_pod([50.0])]).desired == 5  # 1 + 4 pods beats 1 + 100 %
    assert hpa.sync(10.0, 5, pods(5), [per_pod([50.0] * 5)]).desired == 5  # same 15 s period: 4 added already
    assert hpa.sync(16.0, 5, pods(5), [per_pod([50.0] * 5)]).desired == 10  # new period: 5 + 100 %


def test_docs_example_scale_down_at_most_ten_percent_or_four_pods_a_minute() -> None:
    # Docs "Scaling policies": 80 replicas going to 10 lose 8 in the first step; at 72 the
    # next step removes 8 again (10 % of 72 = 7.2, the limit rounds the replicas kept down).
    down = ScalingRules(0, "Max", (ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)))
    hpa = HorizontalController(spec(maximum=100, behavior=Behavior(scale_down=down)))
    assert hpa.sync(0.0, 80, pods(80), [per_pod([0.1] * 80)]).desired == 72
    assert hpa.sync(30.0, 72, pods(72), [per_pod([0.1] * 72)]).desired == 72  # within the same minute
    assert hpa.sync(61.0, 72, pods(72), [per_pod([0.1] * 72)]).desired == 64


def test_select_policy_min_picks_the_policy_allowing_the_smallest_change() -> None:
    down = ScalingRules(0, "Min", (ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)))
    hpa = HorizontalController(spec(maximum=100, behavior=Behavior(scale_down=down)))
    assert hpa.sync(0.0, 80, pods(80), [per_pod([0.1] * 80)]).desired == 76


def test_select_policy_disabled_turns_scaling_off_in_that_direction() -> None:
    down = ScalingRules(0, "Disabled", (ScalingPolicy("Percent", 100, 15),))
    hpa = HorizontalController(spec(behavior=Behavior(scale_down=down)))
    assert hpa.sync(0.0, 4, pods(4), [per_pod([0.1] * 4)]).desired == 4
    assert hpa.sync(1.0, 4, pods(4), [per_pod([9.0] * 4)]).desired == 8  # scale-up still works


def test_scale_up_stabilization_takes_the_lowest_recommendation_of_its_window() -> None:
    up = ScalingRules(60, "Max", (ScalingPolicy("Pods", 100, 15),))
    hpa = HorizontalController(spec(behavior=Behavior(scale_up=up, scale_down=NO_STABILIZATION.scale_down)))
    assert hpa.sync(0.0, 2, pods(2), [per_pod([1.0, 1.0])]).desired == 2
    assert hpa.sync(15.0, 2, pods(2), [per_pod([3.0, 3.0])]).desired == 2  # 2 is still in the window
    assert hpa.sync(61.0, 2, pods(2), [per_pod([3.0, 3.0])]).desired == 6


def test_scale_down_stabilization_takes_the_highest_recommendation_of_its_window() -> None:
    down = ScalingRules(300, "Max", (ScalingPolicy("Percent", 100, 15),))
    hpa = HorizontalController(spec(behavior=Behavior(scale_up=NO_STABILIZATION.scale_up, scale_down=down)))
    assert hpa.sync(0.0, 4, pods(4), [per_pod([1.0] * 4)]).desired == 4
    assert hpa.sync(100.0, 4, pods(4), [per_pod([0.5] * 4)]).desired == 4
    assert hpa.sync(200.0, 4, pods(4), [per_pod([0.25] * 4)]).desired == 4
    assert hpa.sync(301.0, 4, pods(4), [per_pod([0.25] * 4)]).desired == 2  # 4 left the window; 2 (t=100) did not
    assert hpa.sync(401.0, 2, pods(2), [per_pod([0.5] * 2)]).desired == 1


def test_a_per_direction_tolerance_replaces_the_global_one() -> None:
    up = ScalingRules(0, "Max", (ScalingPolicy("Pods", 100, 15),), tolerance=0.05)
    hpa = HorizontalController(spec(maximum=20, behavior=Behavior(scale_up=up, scale_down=NO_STABILIZATION.scale_down)))
    assert hpa.sync(0.0, 10, pods(10), [per_pod([1.08] * 10)]).desired == 11  # 8 % is outside 5 %


# --------------------------------------------------------------------------- manifests


HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "r"},
    "spec": {
        "minReplicas": 1,
        "maxReplicas": 4,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "triton:queue_compute:ratio"},
                    "target": {"type": "AverageValue", "averageValue": "1500m"},
                },
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
    },
}


def test_an_hpa_manifest_reads_with_the_api_servers_defaults_filled_in() -> None:
    parsed = hpa_from_manifest(HPA)
    assert parsed.metrics[0].target == 1.5 and parsed.metrics[0].target_milli == 1500
    assert parsed.behavior is not None
    assert parsed.behavior.scale_down.stabilization_window_s == 60
    assert parsed.behavior.scale_down.policies == (ScalingPolicy("Percent", 100, 15),)
    assert parsed.behavior.scale_up.policies == (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15))


def test_time_compression_divides_every_window_and_period() -> None:
    fast = scaled_hpa(hpa_from_manifest(HPA), 10)
    assert fast.behavior is not None
    assert fast.behavior.scale_down.stabilization_window_s == 6
    assert {p.period_s for p in fast.behavior.scale_up.policies} == {1.5}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("metrics", 0, "type"), "Resource", "Resource metrics need a kubelet"),
        (("metrics", 0, "pods", "target", "type"), "Utilization", "takes AverageValue"),
        (("metrics", 0, "pods", "target", "averageValue"), "lots", "not a Kubernetes quantity"),
        (("maxReplicas",), 0, "below minReplicas"),
    ],
)
def test_an_hpa_the_lab_cannot_run_is_refused_with_the_field_named(path: tuple, value: object, message: str) -> None:
    import copy

    doc = copy.deepcopy(HPA)
    node: dict = doc["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(LabError, match=message):
        hpa_from_manifest(doc)


def test_a_keda_scaled_object_becomes_external_average_value_metrics() -> None:
    obj = {
        "kind": "ScaledObject",
        "metadata": {"name": "r"},
        "spec": {
            "minReplicaCount": 1,
            "maxReplicaCount": 3,
            "triggers": [
                {"type": "prometheus", "metricType": "AverageValue", "metadata": {"query": "sum(x)", "threshold": "2"}}
            ],
        },
    }
    parsed = hpa_from_scaled_object(obj)
    assert parsed.metrics[0].type == "External" and parsed.metrics[0].query == "sum(x)"
    hpa = HorizontalController(parsed)
    # External AverageValue: ceil(total / threshold) = ceil(9 / 2) = 5, capped at max 3.
    assert hpa.sync(0.0, 1, pods(1), [Reading(values=(9.0,))]).desired == 3

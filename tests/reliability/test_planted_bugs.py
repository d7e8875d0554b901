"""Small plausible bugs the rest of the suite let through (issue 22): each case here fails on one of them.

Each test uses values where the right and the plausible wrong computation differ: a 2 x 4
parallelism (product 8, max 4), so "GPUs = max(tensor, pipeline)" cannot pass; more replicas
asked for than pods are ready, so "ratio x current replicas" cannot pass; usage ratios exactly
on the tolerance edges and recommendations exactly on a stabilization cutoff; a context count
that differs from waiting. Each planted bug was checked on a scratch copy of the package: it fails
the tests of its section here (and, for most, nothing else in the files that cover that code).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmprep
from llmprep import chart
from llmprep.lab.hpa import (
    Behavior,
    HorizontalController,
    HpaSpec,
    MetricSpec,
    Pod,
    Reading,
    ScalingPolicy,
    ScalingRules,
    Tolerances,
    plain_metric_replicas,
)
from llmprep.spec import parse_spec
from tests.chart.conftest import NAMESPACE, RELEASE, one, render


@pytest.mark.parametrize(("tensor", "pipeline", "gpus"), [(2, 4, 8), (4, 2, 8), (2, 2, 4), (1, 3, 3), (3, 1, 3)])
def test_a_spec_needs_tensor_times_pipeline_gpus(tensor: int, pipeline: int, gpus: int) -> None:
    spec = parse_spec(
        {"model": {"name": "gpt2", "tensorrtLlm": {"parallelism": {"tensor": tensor, "pipeline": pipeline}}}}
    )
    assert spec.parallelism.gpus == gpus


def _gpu_requests(objects: list[dict]) -> list[int]:
    out = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if obj.get("kind") == "LeaderWorkerSet":
            template = obj["spec"]["leaderWorkerTemplate"]
            pods = [
                template.get("leaderTemplate", template["workerTemplate"])["spec"],
                template["workerTemplate"]["spec"],
            ]
        else:
            pods = [pod] if pod else []
        for spec in pods:
            for c in spec["containers"]:
                limit = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
                if limit is not None:
                    out.append(int(limit))
    return out


@pytest.mark.parametrize(("tensor", "pipeline"), [(2, 2), (2, 4), (4, 2)])
def test_a_single_node_pod_asks_for_tensor_times_pipeline_gpus(tensor: int, pipeline: int) -> None:
    objects = render(
        sets=[
            f"model.tensorrtLlm.parallelism.tensor={tensor}",
            f"model.tensorrtLlm.parallelism.pipeline={pipeline}",
            "multinode.gpusPerNode=8",
        ]
    )
    deployment = one(objects, "Deployment")
    assert _gpu_requests([deployment]) == [tensor * pipeline]


# --------------------------------------------------------------------------- the HPA (llmprep.lab.hpa)
# Values where the right rule and the plausible wrong one give different counts. Read from
# kubernetes/kubernetes pkg/controller/podautoscaler: replica_calculator.go (the ratio times the
# *ready* pod count, `readyPodCount`), tolerances `isWithin` (both edges inside the band), and
# horizontal.go (stabilizeRecommendationWithBehaviors keeps recommendations strictly After the
# cutoff; the pre-behavior stabilizeRecommendation drops only those Before it).


def _pods(n: int, **kw: Any) -> list[Pod]:
    return [Pod(f"p{i}", **kw) for i in range(n)]


def _per_pod(values: list[float]) -> Reading:
    return Reading(per_pod={f"p{i}": v for i, v in enumerate(values)})


def _hpa(behavior: Behavior | None, metric: MetricSpec | None = None, maximum: int = 20) -> HorizontalController:
    metric = metric or MetricSpec("Pods", "signal", "AverageValue", 1.0)
    return HorizontalController(HpaSpec("h", 1, maximum, (metric,), behavior))


FREE = ScalingRules(0, "Max", (ScalingPolicy("Pods", 100, 15),))  # no window, no rate limit
FREE_BEHAVIOR = Behavior(scale_up=FREE, scale_down=FREE)


def test_a_pods_metric_scales_the_ready_pods_not_the_replica_count() -> None:
    # 6 replicas asked for, 3 pods exist, each at 1.5 × the target: ceil(1.5 × 3) = 5 (not 9).
    replicas, _ = plain_metric_replicas(6, 1000, {"p0": 1500, "p1": 1500, "p2": 1500}, _pods(3))
    assert replicas == 5


def test_the_controller_sizes_from_ready_pods_when_the_replica_count_runs_ahead() -> None:
    decision = _hpa(FREE_BEHAVIOR).sync(0.0, 6, _pods(3), [_per_pod([1.5, 1.5, 1.5])])
    assert (decision.metric_desired, decision.desired) == (5, 5)


def test_an_object_value_metric_multiplies_its_ratio_by_the_ready_pods() -> None:
    # 3 replicas, one still Pending: ratio 2 × 2 ready pods = 4 (not 2 × 3 = 6).
    metric = MetricSpec("Object", "queue", "Value", 10.0)
    pods = [*_pods(2), Pod("p2", phase="Pending", ready=False)]
    decision = _hpa(FREE_BEHAVIOR, metric).sync(0.0, 3, pods, [Reading(value=20.0)])
    assert decision.metric_desired == 4


@pytest.mark.parametrize("ratio", [1.1, 0.9])
def test_a_usage_ratio_exactly_on_the_tolerance_edge_is_inside_the_band(ratio: float) -> None:
    assert Tolerances().within(ratio)
    assert Tolerances(up=0.25, down=0.5).within(1.25) and Tolerances(up=0.25, down=0.5).within(0.5)


@pytest.mark.parametrize("milli", [1100, 900])
def test_ten_pods_exactly_on_the_tolerance_edge_do_not_scale(milli: int) -> None:
    # Outside the band 10 pods at 1.1 (0.9) would become 11 (9).
    replicas, _ = plain_metric_replicas(10, 1000, {f"p{i}": milli for i in range(10)}, _pods(10))
    assert replicas == 10
    decision = _hpa(FREE_BEHAVIOR).sync(0.0, 10, _pods(10), [_per_pod([milli / 1000] * 10)])
    assert decision.desired == 10


@pytest.mark.parametrize("total", [11.0, 9.0])
def test_object_and_external_targets_on_the_tolerance_edge_do_not_scale(total: float) -> None:
    value = MetricSpec("Object", "queue", "Value", 10.0)
    assert _hpa(FREE_BEHAVIOR, value).sync(0.0, 10, _pods(10), [Reading(value=total)]).desired == 10
    per_pod = MetricSpec("External", "queue", "AverageValue", 0.1)
    assert _hpa(FREE_BEHAVIOR, per_pod).sync(0.0, 10, _pods(10), [Reading(values=(total / 10,))]).desired == 10


def test_a_per_direction_tolerance_includes_its_edge_too() -> None:
    up = ScalingRules(0, "Max", (ScalingPolicy("Pods", 100, 15),), tolerance=0.2)
    hpa = _hpa(Behavior(scale_up=up, scale_down=FREE))
    assert hpa.sync(0.0, 10, _pods(10), [_per_pod([1.2] * 10)]).desired == 10
    assert hpa.sync(15.0, 10, _pods(10), [_per_pod([1.3] * 10)]).desired == 13


def test_a_recommendation_made_exactly_one_scale_up_window_ago_has_left_the_window() -> None:
    up = ScalingRules(60, "Max", (ScalingPolicy("Pods", 100, 15),))
    hpa = _hpa(Behavior(scale_up=up, scale_down=FREE))
    assert hpa.sync(0.0, 2, _pods(2), [_per_pod([1.0, 1.0])]).desired == 2
    assert hpa.sync(59.0, 2, _pods(2), [_per_pod([3.0, 3.0])]).desired == 2  # 2 (t=0) is still inside
    assert hpa.sync(60.0, 2, _pods(2), [_per_pod([3.0, 3.0])]).desired == 6  # t=0 is the cutoff: outside


def test_a_recommendation_made_exactly_one_scale_down_window_ago_has_left_the_window() -> None:
    down = ScalingRules(300, "Max", (ScalingPolicy("Percent", 100, 15),))
    hpa = _hpa(Behavior(scale_up=FREE, scale_down=down))
    assert hpa.sync(0.0, 4, _pods(4), [_per_pod([1.0] * 4)]).desired == 4
    assert hpa.sync(299.0, 4, _pods(4), [_per_pod([0.25] * 4)]).desired == 4
    assert hpa.sync(300.0, 4, _pods(4), [_per_pod([0.25] * 4)]).desired == 1


def test_without_behavior_the_downscale_window_keeps_its_cutoff_instant() -> None:
    # The pre-behavior rule drops only recommendations Before the cutoff: at exactly 300 s the
    # t=0 recommendation of 4 still holds the count; a moment later it is gone.
    hpa = _hpa(None)
    assert hpa.sync(0.0, 4, _pods(4), [_per_pod([1.0] * 4)]).desired == 4
    assert hpa.sync(300.0, 4, _pods(4), [_per_pod([0.25] * 4)]).desired == 4
    assert hpa.sync(300.5, 4, _pods(4), [_per_pod([0.25] * 4)]).desired == 1


# --------------------------------------------------------------------------- trtllm:requests_waiting
# Upstream's waiting = active − scheduled (tensorrtllm_backend v0.19.0 model_instance_state.cc:1441);
# context requests are a part of the scheduled ones, never added to waiting. Every fixture here
# gives a context count that differs from 0 and from waiting, so a sum over both cannot pass.

ACTIVE, SCHEDULED, CONTEXT, MAX = 9, 5, 3, 16  # waiting = 4


def _standin_module() -> types.ModuleType:
    path = Path(llmprep.__file__).parent / "templates" / "common" / "llmprep_stats.py"
    spec = importlib.util.spec_from_file_location("llmprep_models_planted_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_standin_exports_waiting_as_active_minus_scheduled_without_the_context_requests() -> None:
    stats = {
        "numActiveRequests": ACTIVE,
        "maxNumActiveRequests": MAX,
        "numQueuedRequests": 7,
        "inflightBatchingStats": {
            "numScheduledRequests": SCHEDULED,
            "numContextRequests": CONTEXT,
            "numGenRequests": SCHEDULED - CONTEXT,
        },
    }
    gauges = _standin_module().stats_to_gauges(stats)
    family = "nv_trt_llm_request_metrics"
    assert gauges[(family, "request_type", "waiting")] == ACTIVE - SCHEDULED
    assert gauges[(family, "request_type", "context")] == CONTEXT


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make system-packages)")


def _rules_from_chart(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "chart-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": chart.rule_groups(render())}, sort_keys=False))
    return path, NAMESPACE, f"{RELEASE}-7d9c5-abcde"


def _rules_from_monitoring(tmp_path: Path) -> tuple[Path, str, str]:
    exported = yaml.safe_load((chart.CHART_DIR.parent / "monitoring" / "prometheus-rule.yaml").read_text())
    path = tmp_path / "monitoring-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": exported["spec"]["groups"]}, sort_keys=False))
    return path, "default", "llmprep-7d9c5-abcde"


@needs_promtool
@pytest.mark.parametrize("rules", [_rules_from_chart, _rules_from_monitoring], ids=["chart", "monitoring"])
def test_the_waiting_rule_reads_the_waiting_series_alone_not_the_context_one(
    rules: Callable[[Path], tuple[Path, str, str]], tmp_path: Path
) -> None:
    rules_file, namespace, pod = rules(tmp_path)
    labels = f'namespace="{namespace}",pod="{pod}",model="tensorrt_llm",version="1"'
    series = [
        {"series": f'nv_trt_llm_request_metrics{{{labels},request_type="{kind}"}}', "values": f"{value}x40"}
        for kind, value in (
            ("waiting", ACTIVE - SCHEDULED),
            ("context", CONTEXT),
            ("scheduled", SCHEDULED),
            ("active", ACTIVE),
            ("max", MAX),
        )
    ]
    spec = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": "trtllm:requests_waiting",
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": f'trtllm:requests_waiting{{namespace="{namespace}",pod="{pod}"}}',
                                "value": ACTIVE - SCHEDULED,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "waiting-test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run([str(PROMTOOL), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

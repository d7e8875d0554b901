"""The PrometheusRule from the rendered chart, unit-tested with `promtool test rules`.

Recording rules: 2 pods × 4 models of this release (plus a pod of another release and one of
another namespace that must not leak in) with counters whose rates give known per-pod values.
Alerting rules: each alert firing and not firing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep import chart
from tests.chart.conftest import NAMESPACE, RELEASE, render

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make system-packages)")

PODS = ("gpt2-7d9c5-abcde", "gpt2-7d9c5-fghij")
OUTSIDERS = ((NAMESPACE, "gpt2-extra-7d9c5-kkkkk"), ("other", "gpt2-7d9c5-abcde"))
MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing")
STEP = 15  # seconds between input samples


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    return chart.rule_groups(
        render(
            sets=[
                "autoscaling.metric.name=triton:queue_compute:ratio",
                "autoscaling.metrics[0].name=trtllm:requests_waiting",
                "autoscaling.metrics[0].value=2",
            ]
        )
    )


@pytest.fixture(scope="module")
def rules_file(groups: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def promtool_test(rules_file: Path, tests: list[dict[str, Any]]) -> None:
    spec = {"rule_files": [str(rules_file)], "evaluation_interval": "6s", "tests": tests}
    test_file = rules_file.parent / f"test-{abs(hash(str(tests)))}.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run([str(PROMTOOL), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_pass_promtool_check(rules_file: Path) -> None:
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _counter(per_second: float, minutes: int = 10) -> str:
    """promtool's expanding notation for a counter growing at `per_second`."""
    return f"0+{per_second * STEP:g}x{minutes * 60 // STEP}"


def _series(name: str, namespace: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {"namespace": namespace, "pod": pod, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def _triton_pod(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
    """Pod j (0 or 1): per model i, queue (i+1)(j+1)·100 µs/s, compute 100 µs/s, (j+1) requests/s, …"""
    out: list[dict[str, str]] = []
    for i, model in enumerate(MODELS):
        m = {"model": model, "version": "1"}
        out += [
            _series("nv_inference_queue_duration_us", namespace, pod, _counter((i + 1) * (j + 1) * 100), **m),
            _series("nv_inference_compute_infer_duration_us", namespace, pod, _counter(100), **m),
            _series("nv_inference_request_success", namespace, pod, _counter(j + 1), **m),
            _series("nv_inference_request_duration_us", namespace, pod, _counter((i + 1) * 1000 * (j + 1) ** 2), **m),
            _series("nv_inference_pending_request_count", namespace, pod, f"{i + j}x40", **m),
        ]
    trt = {"model": "tensorrt_llm", "version": "1"}
    # As the backend reports them: waiting = active - scheduled (model_instance_state.cc:1441, v0.19.0).
    active, waiting = 8 + 2 * j, 3 + j
    for kind, value in (("waiting", waiting), ("scheduled", active - waiting), ("active", active)):
        out.append(_series("nv_trt_llm_request_metrics", namespace, pod, f"{value}x40", request_type=kind, **trt))
    for kind, value in (("fraction", 0.25 * (j + 1)), ("used", 100), ("max", 400)):
        out.append(
            _series(
                "nv_trt_llm_kv_cache_block_metrics", namespace, pod, f"{value:g}x40", kv_cache_block_type=kind, **trt
            )
        )
    return out


# Expected per pod j: ratio sum_i (i+1)(j+1) = 10(j+1); request duration 2500(j+1) µs; compute 100/(j+1) µs;
# pending sum_i (i+j) = 6+4j; waiting 3+j; in the engine: active 8+2j alone (waiting is part of active);
# KV-cache 0.25(j+1).
EXPECTED = {
    "triton:queue_compute:ratio": (10, 20),
    "triton:request_duration:average": (2500, 5000),
    "triton:compute_duration:average": (100, 50),
    "triton:pending_requests": (6, 10),
    "trtllm:requests_waiting": (3, 4),
    "trtllm:requests_in_engine": (8, 10),
    "trtllm:kv_cache:utilization": (0.25, 0.5),
}


@pytest.mark.parametrize("signal", sorted(EXPECTED))
def test_recording_rule_gives_one_series_per_pod_of_this_release(rules_file: Path, signal: str) -> None:
    series: list[dict[str, str]] = []
    for j, pod in enumerate(PODS):
        series += _triton_pod(NAMESPACE, pod, j)
    for j, (namespace, pod) in enumerate(OUTSIDERS):
        series += _triton_pod(namespace, pod, j)
    expected = [
        {"labels": f'{signal}{{namespace="{NAMESPACE}",pod="{pod}"}}', "value": value}
        for pod, value in zip(PODS, EXPECTED[signal], strict=True)
    ]
    promtool_test(
        rules_file,
        [
            {
                "interval": f"{STEP}s",
                "input_series": series,
                "promql_expr_test": [{"expr": signal, "eval_time": "5m", "exp_samples": expected}],
            }
        ],
    )


def test_duration_signals_are_zero_not_missing_when_a_pod_is_idle(rules_file: Path) -> None:
    idle = [
        _series(name, NAMESPACE, PODS[0], "0x40", model="ensemble", version="1")
        for name in (
            "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us",
            "nv_inference_request_success",
            "nv_inference_request_duration_us",
        )
    ]
    promtool_test(
        rules_file,
        [
            {
                "interval": f"{STEP}s",
                "input_series": idle,
                "promql_expr_test": [
                    {
                        "expr": signal,
                        "eval_time": "5m",
                        "exp_samples": [{"labels": f'{signal}{{namespace="{NAMESPACE}",pod="{PODS[0]}"}}', "value": 0}],
                    }
                    for signal in (
                        "triton:queue_compute:ratio",
                        "triton:request_duration:average",
                        "triton:compute_duration:average",
                    )
                ],
            }
        ],
    )


# --------------------------------------------------------------------------- alerts


def _alert_rule(groups: list[dict[str, Any]], name: str, metric: str | None = None) -> dict[str, Any]:
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == name and (metric is None or rule["labels"].get("metric") == metric):
                return dict(rule)
    raise AssertionError(f"no alert {name}")


def _expected_alert(rule: dict[str, Any], labels: dict[str, str], value: float | None = None) -> dict[str, Any]:
    """The alert promtool should see: rule labels + series labels, annotations with their templates expanded."""

    def expand(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        if value is not None:
            text = text.replace("{{ $value | humanizePercentage }}", f"{value * 100:.4g}%")
        return text

    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {k: expand(v) for k, v in rule["annotations"].items()},
    }


def _ready(pod: str, ready: int, minutes: int = 30) -> dict[str, str]:
    return _series(
        "kube_pod_status_ready", NAMESPACE, pod, f"{ready}x{minutes * 4}", condition="true", job="kube-state-metrics"
    )


def _phase(pod: str, phase: str, minutes: int = 30) -> dict[str, str]:
    return _series("kube_pod_status_phase", NAMESPACE, pod, f"1x{minutes * 4}", phase=phase, job="kube-state-metrics")


def _signal(pod: str, values: str, name: str = "triton:queue_compute:ratio") -> dict[str, str]:
    return _series(name, NAMESPACE, pod, values)


def _case(series: list[dict[str, str]], alertname: str, eval_time: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [{"eval_time": eval_time, "alertname": alertname, "exp_alerts": alerts}],
    }


def test_signal_missing_fires_for_a_ready_pod_without_the_series(rules_file: Path, groups: list[Any]) -> None:
    rule = _alert_rule(groups, "LlmprepAutoscalingSignalMissing", "triton:queue_compute:ratio")
    waiting = _alert_rule(groups, "LlmprepAutoscalingSignalMissing", "trtllm:requests_waiting")
    series = [
        _ready(PODS[0], 1),
        _ready(PODS[1], 1),
        _signal(PODS[0], "1x120"),
        _signal(PODS[0], "1x120", "trtllm:requests_waiting"),
        _signal(PODS[1], "1x120", "trtllm:requests_waiting"),
    ]
    labels = {"namespace": NAMESPACE, "pod": PODS[1]}
    assert waiting["labels"]["metric"] == "trtllm:requests_waiting"
    promtool_test(
        rules_file,
        [
            _case(series, "LlmprepAutoscalingSignalMissing", "10m", [_expected_alert(rule, labels)]),
            # not yet: the alert waits `for` (5m) before firing
            _case(series, "LlmprepAutoscalingSignalMissing", "3m", []),
        ],
    )


def test_signal_missing_fires_when_the_series_goes_stale(rules_file: Path, groups: list[Any]) -> None:
    rule = _alert_rule(groups, "LlmprepAutoscalingSignalMissing", "triton:queue_compute:ratio")
    series = [_ready(PODS[0], 1), _signal(PODS[0], "1x20 stale"), _signal(PODS[0], "1x120", "trtllm:requests_waiting")]
    promtool_test(
        rules_file,
        [
            _case(series, "LlmprepAutoscalingSignalMissing", "4m", []),
            _case(
                series,
                "LlmprepAutoscalingSignalMissing",
                "15m",
                [_expected_alert(rule, {"namespace": NAMESPACE, "pod": PODS[0]})],
            ),
        ],
    )


def test_signal_missing_stays_quiet_for_pods_not_ready_or_of_other_releases(rules_file: Path) -> None:
    series = [_ready(PODS[0], 0), _ready("gpt2-extra-7d9c5-kkkkk", 1)]
    promtool_test(rules_file, [_case(series, "LlmprepAutoscalingSignalMissing", "20m", [])])


def test_target_down_fires_only_for_the_pod_that_does_not_answer(rules_file: Path, groups: list[Any]) -> None:
    rule = _alert_rule(groups, "LlmprepTritonTargetDown")
    series = [
        _series("up", NAMESPACE, PODS[0], "1x40", job=f"{NAMESPACE}/{RELEASE}"),
        _series("up", NAMESPACE, PODS[1], "1x4 0x36", job=f"{NAMESPACE}/{RELEASE}"),
    ]
    promtool_test(
        rules_file,
        [
            _case(
                series,
                "LlmprepTritonTargetDown",
                "5m",
                [_expected_alert(rule, {"namespace": NAMESPACE, "pod": PODS[1]})],
            ),
            _case(series, "LlmprepTritonTargetDown", "1m30s", []),
        ],
    )


def _hpa(current: int, maximum: int = 4) -> list[dict[str, str]]:
    labels = f'namespace="{NAMESPACE}",horizontalpodautoscaler="{RELEASE}",job="kube-state-metrics"'
    return [
        {"series": f"kube_horizontalpodautoscaler_status_current_replicas{{{labels}}}", "values": f"{current}x120"},
        {"series": f"kube_horizontalpodautoscaler_spec_max_replicas{{{labels}}}", "values": f"{maximum}x120"},
    ]


@pytest.mark.parametrize(
    ("replicas", "signal", "fires"),
    [(4, "1.5", True), (3, "1.5", False), (4, "0.5", False)],
    ids=["at maximum and above target", "below maximum", "at maximum and below target"],
)
def test_scaling_at_maximum_fires_only_at_the_maximum_while_the_signal_stays_above_target(
    rules_file: Path, groups: list[Any], replicas: int, signal: str, fires: bool
) -> None:
    rule = _alert_rule(groups, "LlmprepScalingAtMaximum", "triton:queue_compute:ratio")
    series = [*_hpa(replicas), _signal(PODS[0], f"{signal}x120"), _signal(PODS[1], f"{signal}x120")]
    alerts = [_expected_alert(rule, {"namespace": NAMESPACE})] if fires else []
    promtool_test(
        rules_file,
        [
            _case(series, "LlmprepScalingAtMaximum", "20m", alerts),
            _case(series, "LlmprepScalingAtMaximum", "10m", []),  # `for` is 15m
        ],
    )


def test_model_not_ready_fires_for_a_running_pod_that_never_becomes_ready(rules_file: Path, groups: list[Any]) -> None:
    rule = _alert_rule(groups, "LlmprepModelNotReady")
    series = [
        _ready(PODS[0], 1),
        _phase(PODS[0], "Running"),
        _ready(PODS[1], 0),
        _phase(PODS[1], "Running"),
        _ready("gpt2-7d9c5-zzzzz", 0),
        _phase("gpt2-7d9c5-zzzzz", "Pending"),
    ]  # still in its init container
    promtool_test(
        rules_file,
        [
            _case(
                series, "LlmprepModelNotReady", "15m", [_expected_alert(rule, {"namespace": NAMESPACE, "pod": PODS[1]})]
            ),
            _case(series, "LlmprepModelNotReady", "5m", []),
        ],
    )


def test_request_failure_ratio_fires_for_the_failing_model_only(rules_file: Path, groups: list[Any]) -> None:
    rule = _alert_rule(groups, "LlmprepRequestFailureRatioHigh")
    series = [
        _series("nv_inference_request_success", NAMESPACE, PODS[0], _counter(9, 20), model="ensemble", version="1"),
        _series(
            "nv_inference_request_failure",
            NAMESPACE,
            PODS[0],
            _counter(1, 20),
            model="ensemble",
            version="1",
            reason="REJECTED",
        ),
        _series(
            "nv_inference_request_success", NAMESPACE, PODS[0], _counter(999, 20), model="preprocessing", version="1"
        ),
        _series(
            "nv_inference_request_failure",
            NAMESPACE,
            PODS[0],
            _counter(1, 20),
            model="preprocessing",
            version="1",
            reason="BACKEND",
        ),
    ]
    labels = {"namespace": NAMESPACE, "model": "ensemble"}
    promtool_test(
        rules_file,
        [
            _case(series, "LlmprepRequestFailureRatioHigh", "10m", [_expected_alert(rule, labels, value=0.1)]),
            _case(series, "LlmprepRequestFailureRatioHigh", "3m", []),
        ],
    )


def test_alert_thresholds_and_durations_come_from_values(tmp_path: Path) -> None:
    groups = chart.rule_groups(
        render(
            sets=[
                "monitoring.alerts.requestFailures.ratio=0.2",
                "monitoring.alerts.atMaximum.for=30m",
                "monitoring.alerts.labels.team=inference",
            ]
        )
    )
    failure = _alert_rule(groups, "LlmprepRequestFailureRatioHigh")
    assert failure["expr"].rstrip().endswith("> 0.2") and failure["labels"]["team"] == "inference"
    assert _alert_rule(groups, "LlmprepScalingAtMaximum")["for"] == "30m"


def test_every_alert_carries_a_runbook(groups: list[Any]) -> None:
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {r["alert"] for r in alerts} == {
        "LlmprepAutoscalingSignalMissing",
        "LlmprepTritonTargetDown",
        "LlmprepScalingAtMaximum",
        "LlmprepModelNotReady",
        "LlmprepRequestFailureRatioHigh",
    }
    assert all(len(r["annotations"]["runbook"]) > 80 for r in alerts)


def test_alerts_can_be_switched_off_and_window_and_interval_are_values() -> None:
    groups = chart.rule_groups(
        render(
            sets=[
                "monitoring.alerts.enabled=false",
                "monitoring.prometheusRule.window=2m",
                "monitoring.prometheusRule.interval=15s",
            ]
        )
    )
    assert [g["name"] for g in groups] == [f"{RELEASE}.signals"]
    assert groups[0]["interval"] == "15s"
    assert all("[2m]" in r["expr"] for r in groups[0]["rules"] if "rate(" in r["expr"])


def test_keda_alerts_watch_the_hpa_keda_creates() -> None:
    groups = chart.rule_groups(render(sets=["autoscaling.engine=keda"]))
    assert f'horizontalpodautoscaler="keda-hpa-{RELEASE}"' in _alert_rule(groups, "LlmprepScalingAtMaximum")["expr"]

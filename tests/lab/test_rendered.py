"""The lab takes every rule, target and interval from the chart's own output."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from llmprep.errors import LabError, SpecError
from llmprep.lab.hpa import parse_quantity
from llmprep.lab.rendered import prepare
from llmprep.lab.scenario import Scenario, load_scenario


@pytest.fixture(scope="module")
def default() -> Scenario:
    return load_scenario()


def test_the_hpa_metrics_and_targets_are_the_rendered_ones(default: Scenario) -> None:
    setup = prepare(default)
    hpa = next(o for o in setup.objects if o["kind"] == "HorizontalPodAutoscaler")
    rendered = [
        (m["pods"]["metric"]["name"], parse_quantity(m["pods"]["target"]["averageValue"]))
        for m in hpa["spec"]["metrics"]
    ]
    assert [(m.name, m.target) for m in setup.hpa.metrics] == rendered
    assert ("trtllm:requests_in_engine", 3.0) in rendered  # from the lab's values file
    assert (setup.hpa.min_replicas, setup.hpa.max_replicas) == (1, 4)


def test_speed_compresses_scrape_interval_and_rate_window_through_the_chart_values(default: Scenario) -> None:
    setup = prepare(replace(default, speed=5.0))
    assert setup.scrape_interval_s == pytest.approx(1.2)
    assert setup.rate_window_s == pytest.approx(12.0)
    signals = next(g for g in setup.rule_groups if g["name"].endswith(".signals"))
    assert signals["interval"] == "1200ms"
    assert "[12s]" in next(r["expr"] for r in signals["rules"] if r["record"] == "triton:queue_compute:ratio")


def test_at_speed_one_the_chart_renders_its_own_intervals_untouched(default: Scenario) -> None:
    setup = prepare(replace(default, speed=1.0))
    assert setup.compressed == {}
    assert setup.scrape_interval_s == 6.0 and setup.rate_window_s == 60.0


def test_the_model_spec_comes_from_the_rendered_configmap_with_the_scenarios_cost_model(default: Scenario) -> None:
    setup = prepare(replace(default, standin={"decodeMsPerStep": 7.5}))
    assert setup.spec.standin.decode_ms_per_step == 7.5
    assert "decodeMsPerStep: 7.5" in setup.model_yaml


def test_set_expressions_apply_after_the_values_files(default: Scenario) -> None:
    setup = prepare(default.with_overrides(sets=("autoscaling.replicas.maximum=3",)))
    assert setup.hpa.max_replicas == 3


def test_the_deployment_gives_probe_period_prestop_and_drain_time(default: Scenario) -> None:
    setup = prepare(default)
    deployment = next(o for o in setup.objects if o["kind"] == "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"]
    assert (setup.readiness_period_s, setup.pre_stop_s, setup.exit_timeout_s) == (probe, 5.0, 10)
    assert setup.drain_timeout_s == 60.0  # the chart's default `llmprep drain --timeout`
    assert setup.deployment == "lab" and setup.recorded


def test_the_keda_engine_becomes_external_metrics_with_the_charts_queries(default: Scenario) -> None:
    setup = prepare(default.with_overrides(sets=("autoscaling.engine=keda",)))
    assert setup.hpa.source == "ScaledObject"
    assert all(m.type == "External" and m.query for m in setup.hpa.metrics)


def test_keda_may_scale_to_zero_while_its_generated_hpa_keeps_a_minimum_of_one(default: Scenario) -> None:
    setup = prepare(default.with_overrides(sets=("autoscaling.engine=keda", "autoscaling.replicas.minimum=0")))
    assert setup.keda is not None and setup.keda.min_replica_count == 0
    assert setup.hpa.min_replicas == 1


def test_zero_replicas_without_autoscaling_is_refused_even_with_keda(default: Scenario) -> None:
    with pytest.raises(SpecError, match="autoscaling.replicas.minimum"):
        prepare(
            default.with_overrides(
                sets=("autoscaling.engine=keda", "autoscaling.enable=false", "autoscaling.replicas.minimum=0")
            )
        )


def test_without_autoscaling_the_lab_says_what_to_set(default: Scenario) -> None:
    with pytest.raises(LabError, match="autoscaling.enable=true"):
        prepare(default.with_overrides(sets=("autoscaling.enable=false",)))


def test_a_values_error_is_the_charts_one_line_message(default: Scenario) -> None:
    with pytest.raises(SpecError, match="autoscaling.replicas.minimum"):
        prepare(default.with_overrides(sets=("autoscaling.replicas.minimum=0",)))


def test_a_chart_folder_without_chart_yaml_is_refused(default: Scenario, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="--chart"):
        prepare(default, chart_dir=tmp_path)


@pytest.mark.parametrize("speed", [1.0, 5.0])
def test_a_broken_values_yaml_in_the_chart_folder_is_one_line(default: Scenario, tmp_path: Path, speed: float) -> None:
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: llmprep\nversion: 0.1.0\n")
    (tmp_path / "values.yaml").write_text("monitoring:\n  podMonitor: [unclosed\n")
    with pytest.raises(LabError, match=r"values\.yaml: not valid YAML at line \d+$") as caught:
        prepare(replace(default, speed=speed), chart_dir=tmp_path)
    assert "\n" not in str(caught.value)

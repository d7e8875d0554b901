"""The lab's one timing object: every period compressed by `speed`, clamped once, reported as run."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from llmprep.errors import LabError
from llmprep.lab import report
from llmprep.lab.rendered import prepare
from llmprep.lab.scenario import Scenario, load_scenario
from llmprep.lab.timing import PROBE_FLOOR_S, PROMETHEUS_FLOOR_S, Timing, compress, relist_interval_s

LAB = Path(__file__).resolve().parents[2] / "llmprep" / "lab"


@pytest.fixture(scope="module")
def default() -> Scenario:
    return load_scenario()


def _timing(scenario: Scenario) -> Timing:
    return Timing.of(prepare(scenario), scenario)


def test_every_period_is_its_cluster_value_divided_by_the_speed(default: Scenario) -> None:
    timing = _timing(replace(default, speed=5.0))
    assert timing.sync_period.lab_s == pytest.approx(default.sync_period_s / 5)
    assert timing.readiness_period.lab_s == pytest.approx(timing.readiness_period.cluster_s / 5)
    assert timing.scrape_interval.cluster_s == pytest.approx(5 * timing.scrape_interval.lab_s)
    assert timing.downscale_stabilization.lab_s == pytest.approx(60.0)
    assert not any(p.clamped for p in timing.periods().values())


def test_a_period_compressed_below_its_floor_runs_at_the_floor_and_says_so(default: Scenario) -> None:
    timing = _timing(replace(default, speed=200.0))  # readiness 5 s / 200, scrape 6 s / 200: under their floors
    assert timing.readiness_period.lab_s == PROBE_FLOOR_S and timing.readiness_period.clamped
    assert timing.scrape_interval.lab_s == PROMETHEUS_FLOOR_S and timing.scrape_interval.clamped


def test_the_report_shows_the_clamped_value_the_run_used(default: Scenario) -> None:
    scenario = replace(default, speed=100.0)
    setup = prepare(scenario)
    config = report.configuration(setup, Timing.of(setup, scenario))
    assert config["readiness_period_s"] == PROBE_FLOOR_S  # not 5 s / 100
    assert config["timing"]["readiness_period"] == {"cluster_s": 5.0, "lab_s": PROBE_FLOOR_S, "clamped": True}
    terms = {t["term"]: t for t in report.budget_terms(config, report.Timeline(), speed=100.0)}
    probe = terms["readiness probe period"]
    assert (probe["lab_s"], probe["cluster_s"], probe["clamped"]) == (PROBE_FLOOR_S, 5.0, True)


def test_the_controller_and_keda_read_compressed_windows_and_intervals(default: Scenario) -> None:
    scenario = replace(default, speed=10.0).with_overrides(sets=("autoscaling.engine=keda",))
    timing = _timing(scenario)
    assert timing.keda is not None and timing.keda_polling is not None and timing.keda_cooldown is not None
    assert (
        timing.keda.polling_interval_s == timing.keda_polling.lab_s == pytest.approx(timing.keda_polling.cluster_s / 10)
    )
    assert timing.keda.cooldown_period_s == pytest.approx(timing.keda_cooldown.cluster_s / 10)


@pytest.mark.parametrize(
    ("seconds", "speed", "floor", "expected"), [(15, 5, 0.0, 3.0), (0, 10, 0.0, 0.0), (1, 100, 0.2, 0.2)]
)
def test_compress_divides_and_clamps_at_the_floor(seconds: float, speed: float, floor: float, expected: float) -> None:
    assert compress(seconds, speed, floor) == pytest.approx(expected)


def test_no_module_of_the_lab_but_timing_divides_or_multiplies_by_the_speed() -> None:
    pattern = re.compile(r"[/*]\s*speed\b")
    offenders = [p.name for p in LAB.glob("*.py") if p.name != "timing.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_the_adapter_relist_interval_comes_from_the_values_file_given(tmp_path: Path) -> None:
    values = tmp_path / "adapter.values.yaml"
    values.write_text("metricsRelistInterval: 30s\n")
    assert relist_interval_s(values) == 30.0


def test_without_an_adapter_values_file_the_relist_interval_is_the_shipped_files() -> None:
    from llmprep.lab.adapter import ADAPTER_VALUES

    assert relist_interval_s(None) == relist_interval_s(ADAPTER_VALUES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metricsRelistInterval: [30s\n", r"not valid YAML at line \d+$"),
        ("- metricsRelistInterval\n", "not a mapping of values$"),
    ],
)
def test_a_broken_adapter_values_file_given_is_a_one_line_lab_error(tmp_path: Path, text: str, message: str) -> None:
    values = tmp_path / "adapter.values.yaml"
    values.write_text(text)
    with pytest.raises(LabError, match=message) as caught:
        relist_interval_s(values)
    assert "\n" not in str(caught.value) and str(values) in str(caught.value)

"""Lab scenarios: the embedded default, validation messages, command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep.errors import UsageError
from llmprep.lab.scenario import data_dir, load_scenario, parse_scenario

VALUES = data_dir() / "cpu-standin.values.yaml"


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "t",
        "values": [str(VALUES)],
        "speed": 10,
        "load": {"stages": [{"ramp": {"from": 1, "to": 4, "over": "5s"}}, {"hold": "5s"}]},
    }
    doc.update(changes)
    return doc


def test_the_embedded_default_scenario_loads_with_its_values_file() -> None:
    scenario = load_scenario()
    assert scenario.values_files == (VALUES,)
    assert scenario.speed > 1 and scenario.load.profile.duration > 0
    assert scenario.load.profile.peak() > scenario.load.profile.stages[0].start


def test_values_files_resolve_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "mine.values.yaml").write_text("autoscaling: {replicas: {maximum: 3}}\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_doc(values=["mine.values.yaml"])))
    assert load_scenario(path).values_files == (tmp_path / "mine.values.yaml",)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bogus": 1}, r"scenario\.bogus: unknown key"),
        ({"speed": 0}, r"scenario\.speed: must be above 0"),
        ({"speed": "fast"}, r"scenario\.speed: expected a number"),
        ({"values": ["missing.yaml"]}, r"scenario\.values: missing\.yaml not found"),
        ({"set": ["no-equals-sign"]}, r"scenario\.set"),
        (
            {"load": {"stages": [{"step": {"to": 2, "for": "forever"}}]}},
            r"scenario\.load\.stages: the lab needs a load that ends",
        ),
        ({"load": {"protocol": "udp", "stages": [{"step": {"to": 2, "for": "5s"}}]}}, r"scenario\.load\.protocol"),
        ({"load": {"stages": [{"step": {"to": 2, "for": "5s"}}], "inputTokens": 0}}, r"scenario\.load\.inputTokens"),
        ({"standin": {"decodeMs": 3}}, r"scenario\.standin\.decodeMs: unknown key"),
        ({"slo": {"p95LatencyMs": -1}}, r"scenario\.slo\.p95LatencyMs"),
        ({"settle": "soon"}, r"scenario\.settle"),
    ],
)
def test_an_invalid_scenario_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageError, match=field):
        parse_scenario(_doc(**changes))


def test_a_scenario_without_load_says_what_load_needs() -> None:
    doc = _doc()
    del doc["load"]
    with pytest.raises(UsageError, match=r"scenario\.load: required"):
        parse_scenario(doc)


def test_a_missing_scenario_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")


def test_command_line_values_and_sets_come_after_the_scenarios_and_speed_replaces(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("{}\n")
    scenario = parse_scenario(_doc(set=["a=1"])).with_overrides(
        values_files=(extra,), sets=("b=2",), speed=3.0, sync_period_s=5.0
    )
    assert scenario.values_files == (VALUES, extra)
    assert scenario.sets == ("a=1", "b=2")
    assert (scenario.speed, scenario.sync_period_s) == (3.0, 5.0)


@pytest.mark.parametrize(("speed", "sync"), [(0.0, None), (-1.0, None), (None, 0.0)])
def test_overrides_out_of_range_are_refused(speed: float | None, sync: float | None) -> None:
    with pytest.raises(UsageError):
        parse_scenario(_doc()).with_overrides(speed=speed, sync_period_s=sync)

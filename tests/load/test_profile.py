from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmprep.errors import UsageError
from llmprep.load.profile import Stage, constant, load_profile, parse_profile
from llmprep.units import parse_duration


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            [{"ramp": {"from": 1, "to": 8, "over": "60s"}}, {"hold": "120s"}, {"step": {"to": 2, "for": "1m"}}],
            [Stage("ramp", 1, 8, 60), Stage("hold", 8, 8, 120), Stage("step", 2, 2, 60)],
        ),
        (
            ["ramp 1 -> 8 over 60s", "hold 120s", "step to 2 for 1m"],
            [Stage("ramp", 1, 8, 60), Stage("hold", 8, 8, 120), Stage("step", 2, 2, 60)],
        ),
        (["ramp 1→8 clients over 60 s", "hold 2m"], [Stage("ramp", 1, 8, 60), Stage("hold", 8, 8, 120)]),
        (["step 3", "ramp to 6 over 10s"], [Stage("step", 3, 3, 0), Stage("ramp", 3, 6, 10)]),
        ([{"step": 4}, {"hold": "forever"}], [Stage("step", 4, 4, 0), Stage("hold", 4, 4, math.inf)]),
    ],
)
def test_profile_stages_read_the_same_in_mapping_and_one_line_form(stages: list, expected: list[Stage]) -> None:
    assert list(parse_profile({"stages": stages}).stages) == expected


@pytest.mark.parametrize(
    ("t", "level"), [(0, 1.0), (30, 4.5), (60, 8.0), (179.9, 8.0), (180, 2.0), (239.9, 2.0), (240, None)]
)
def test_the_level_follows_ramp_hold_and_step(t: float, level: float | None) -> None:
    profile = parse_profile({"stages": ["ramp 1 -> 8 over 60s", "hold 120s", "step to 2 for 60s"]})
    assert profile.level_at(t) == level


def test_a_rate_profile_allows_fractional_levels() -> None:
    profile = parse_profile({"unit": "rate", "stages": ["step to 0.5 for 10s"]})
    assert profile.unit == "rate" and profile.level_at(1) == 0.5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"stages": [{"hold": "60s"}]}, "profile.stages[0].hold"),
        ({"stages": [{"ramp": {"to": 8, "over": "60s"}}]}, "profile.stages[0].ramp.from"),
        ({"stages": ["step to 2", {"ramp": {"to": 8}}]}, "profile.stages[1].ramp.over"),
        ({"stages": ["step to 2", {"ramp": {"to": 8, "over": "soon"}}]}, "profile.stages[1].ramp.over"),
        ({"stages": [{"step": {"to": 2.5, "for": "1s"}}]}, "profile.stages[0].step.to"),
        ({"stages": [{"step": {"to": -1, "for": "1s"}}]}, "profile.stages[0].step.to"),
        ({"stages": [{"step": {"to": 1, "for": "1s", "extra": 1}}]}, "profile.stages[0].step.extra"),
        ({"stages": [{"jump": 3}]}, "profile.stages[0].jump"),
        ({"stages": ["teleport to 3"]}, "profile.stages[0]"),
        ({"stages": ["step to 1 for forever", "hold 1s"]}, "profile.stages[1]"),
        ({"stages": []}, "profile.stages"),
        ({"unit": "users", "stages": ["step to 1 for 1s"]}, "profile.unit"),
        ({"stages": ["step to 1"]}, "profile.stages"),
        ({"stage": ["step to 1 for 1s"]}, "profile.stage"),
    ],
)
def test_an_invalid_profile_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_profile(data)
    assert str(caught.value).startswith(field)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), (90, 90.0), ("90s", 90.0), ("1.5m", 90.0), ("250ms", 0.25), ("2h", 7200.0), ("forever", math.inf)],
)
def test_durations_accept_units(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "--duration") == seconds


def test_a_profile_file_is_read_and_a_bad_one_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "ramp.yaml"
    good.write_text("unit: clients\nstages:\n  - ramp: {from: 1, to: 8, over: 60s}\n  - hold: 120s\n")
    assert load_profile(good).duration == 180
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [ {ramp: {from: 1, to: 8, over: xx}} ]\n")
    with pytest.raises(UsageError, match=r"^bad.yaml.stages\[0\].ramp.over"):
        load_profile(bad)


def test_a_constant_profile_with_zero_duration_runs_until_stopped() -> None:
    assert constant("clients", 3, 0).level_at(1e9) == 3

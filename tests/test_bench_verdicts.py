"""The benchmarks' verdicts from lab results made up here: the lags and goals they report follow the rows.

The lab runs themselves are exercised by tests/test_bench_smoke.py (quick mode); these check the
judging on rows of our own making, including the configurations quick mode does not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import autoscaling_cost, surge_lag
from bench._lab import REGIMES, LabConfig, LabRun

SIGNAL = "trtllm:requests_queued"


def _run(name: str, rows: list[dict[str, Any]], decisions: list[dict[str, Any]] | None = None) -> LabRun:
    return LabRun(
        config=LabConfig(name, {}),
        rows=rows,
        summary={},
        requests=[],
        speed=3.0,
        scrape_s=2.0,
        evaluation_s=2.0,
        window_s=20.0,
        hpa="x",
        notes=[],
        out_dir=Path("."),
        decisions=decisions or [],
    )


def _rows(crossing_at: dict[float, float], until: float = 60.0) -> list[dict[str, Any]]:
    """Per-second rows where SIGNAL jumps from 0 to 3 at each step's `at + lag`, and back after 20 s."""
    rows = []
    for t in range(int(until)):
        high = any(at + lag <= t < at + 20 for at, lag in crossing_at.items())
        rows.append({"t": float(t), f"signal {SIGNAL}": 3.0 if high else 0.0})
    return rows


def test_signal_lag_is_the_first_row_at_or_over_the_target_after_each_step() -> None:
    run = _run("batch-bound: new defaults, HPA", _rows({10.0: 5.0, 40.0: 3.0}))
    (lag,) = [x for x in surge_lag.signal_lags(run, [10.0, 40.0], 15.0) if x.parts == ((SIGNAL, 2.0),)]
    assert lag.lags == [5.0, 3.0]


def test_a_signal_that_does_not_cross_within_the_high_phase_has_no_lag() -> None:
    run = _run("batch-bound: new defaults, HPA", _rows({10.0: 18.0}))
    (lag,) = [x for x in surge_lag.signal_lags(run, [10.0], 15.0) if x.parts == ((SIGNAL, 2.0),)]
    assert lag.lags == [None]


def test_a_composite_takes_per_step_the_first_of_its_inputs_to_cross() -> None:
    a = surge_lag.Lag("r", (("a", 2.0),), [5.0, None])
    b = surge_lag.Lag("r", (("b", 2.0),), [7.0, 4.0])
    both = surge_lag.composite_lag([a, b], "r", "new defaults", [("a", 2.0), ("b", 2.0)])
    assert both is not None and both.lags == [5.0, 4.0]


def test_the_decision_lag_counts_the_recommendation_before_the_replica_limits() -> None:
    decisions = [
        {"t": 9.0, "current": 1, "desired": 1, "metric_desired": 1},
        {"t": 14.0, "current": 1, "desired": 1, "metric_desired": 1},
        {"t": 19.0, "current": 1, "desired": 1, "metric_desired": 3},  # clamped at maximum 1, still counted
    ]
    run = _run("batch-bound: new defaults, KEDA", [], decisions)
    assert surge_lag.decision_lags(run, [10.0], 30.0) == [9.0]


@pytest.mark.parametrize(("lag", "verdict"), [(6.0, "met"), (6.5, "missed")])
def test_the_floor_goal_is_one_and_a_half_scrape_plus_evaluation(lag: float, verdict: str) -> None:
    run = _run("batch-bound: new defaults, HPA", _rows({10.0: lag}))
    found = surge_lag.Lag(run.config.name, ((SIGNAL, 2.0),), [lag])
    status, _ = surge_lag._status(found, run, [10.0])
    assert status.endswith(f"≤ 1.5× floor {verdict}")


def test_a_signal_over_its_target_before_the_step_cannot_tell_a_surge() -> None:
    run = _run("batch-bound: tutorials'", [{"t": float(t), f"signal {SIGNAL}": 3.0} for t in range(30)])
    found = surge_lag.Lag(run.config.name, ((SIGNAL, 2.0),), [0.0])
    assert "cannot tell a surge" in surge_lag._status(found, run, [10.0])[0]


def test_the_surge_section_renders_every_run_of_a_regime() -> None:
    runs = [_run(f"batch-bound: {name}", _rows({10.0: 4.0})) for name in ("tutorials'", "new defaults, HPA")]
    lags = [lag for run in runs for lag in surge_lag.signal_lags(run, [10.0], 15.0)]
    text = surge_lag.render([surge_lag.RegimeRuns(REGIMES[0], runs, lags)], [10.0], "python -m bench.surge_lag", 3.0)
    assert "### Batch-bound" in text and "Decision lag" in text and "new defaults, HPA" in text


def _cost(replica_s: float, over_pct: float) -> dict[str, Any]:
    return {"replica_s": replica_s, "over_pct": over_pct, "over": 0, "failed": 0, "requests": 100}


@pytest.mark.parametrize(
    ("replica_s", "over_pct", "oracle_goal", "saving_goal"),
    [
        (130.0, 0.5, "met", "met"),  # 1.3× the oracle, 35 % under the tutorials' 200
        (131.0, 0.5, "missed", "met"),  # just over 1.3×
        (120.0, 1.0, "missed", "met"),  # 1 % over the SLO is not < 1 %
        (141.0, 0.5, "missed", "missed"),  # 29.5 % fewer than the tutorials' is not 30 %
        (100.0, 3.0, "missed", "missed (more SLO misses: 3.00 % vs 2.00 %)"),
    ],
)
def test_cost_verdicts_apply_issue_19s_goals(
    replica_s: float, over_pct: float, oracle_goal: str, saving_goal: str
) -> None:
    runs = [
        (_run("batch-bound: tutorials'", []), _cost(200.0, 2.0)),
        (_run("batch-bound: new defaults", []), _cost(replica_s, over_pct)),
    ]
    result = autoscaling_cost.RegimeResult(REGIMES[0], 8, [], (100.0, 2), runs)
    _, ours = autoscaling_cost.verdicts(result)
    assert ours[0] == "new defaults"
    assert (ours[3], ours[5]) == (oracle_goal, saving_goal)


def test_an_aborted_cost_run_is_a_row_that_says_why() -> None:
    result = autoscaling_cost.RegimeResult(REGIMES[0], 8, [], (100.0, 2))
    result.aborted.append((LabConfig("batch-bound: new defaults, KEDA", {}), "replica x exited with code -11; see log"))
    (table,) = autoscaling_cost._profile_table(result, 2.0)
    assert "new defaults, KEDA: run aborted (replica x exited with code -11)" in table
    assert all(line.count("|") == table.splitlines()[0].count("|") for line in table.splitlines())

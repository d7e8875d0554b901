"""The lab's analysis of a run and the files it writes, on a small made-up run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from llmprep.lab import outputs, report
from llmprep.load.profile import parse_profile


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            [{"ramp": {"from": 1, "to": 12, "over": "20s"}}, {"hold": "50s"}, {"step": {"to": 1, "for": "100s"}}],
            (0.0, 70.0),
        ),
        (
            [{"step": {"to": 1, "for": "10s"}}, {"step": {"to": 8, "for": "30s"}}, {"ramp": {"to": 2, "over": "30s"}}],
            (10.0, 40.0),
        ),
        ([{"step": {"to": 4, "for": "60s"}}], (None, None)),
    ],
)
def test_surge_and_decline_are_read_off_the_load_profile(stages: list[Any], expected: tuple[Any, Any]) -> None:
    assert report.surge_and_decline(parse_profile({"stages": stages}).stages) == expected


def _rows() -> list[dict[str, Any]]:
    rows = []
    for t in range(0, 60):
        surge = 5 <= t < 30
        replicas = 1 if t < 12 else (2 if t < 45 else 1)
        rows.append(
            {
                "t": float(t),
                "load_level": 8 if surge else 1,
                "ok_per_s": 4.0,
                "e2e_p95_s": 2.5 if surge else 0.5,
                "ttft_p95_s": 0.1,
                "replicas_desired": replicas,
                "replicas_current": replicas,
                "replicas_ready": 1 if t < 15 else replicas,
                "replicas_draining": 1 if 45 <= t < 48 else 0,
                "signal w": 3.0 if 7 <= t < 32 else 0.2,
                "hpa w": 3.0 if 7 <= t < 32 else 0.2,
                "target w": 1.0,
            }
        )
    return rows


DECISIONS = [
    {"t": 9.0, "current": 1, "desired": 2, "reason": "DesiredWithinRange"},
    {"t": 45.0, "current": 2, "desired": 1, "reason": "DesiredWithinRange"},
]
REPLICAS = [
    {"name": "a", "created_t": -5.0, "ready_t": -1.0, "first_connection_t": 0.0},
    {"name": "b", "created_t": 9.0, "ready_t": 15.0, "first_connection_t": 16.5},
]


def test_the_timeline_follows_one_surge_from_detection_to_the_minimum() -> None:
    tl = report.analyse(
        _rows(), DECISIONS, [], REPLICAS, surge_at=5.0, decline_at=30.0, min_replicas=1, metrics=[("w", 1.0)]
    )
    assert (tl.signal_over_target_at, tl.scale_up_decision_at, tl.new_replica_ready_at) == (7.0, 9.0, 15.0)
    assert tl.first_request_on_new_at == 16.5
    assert (tl.scale_down_decision_at, tl.back_to_min_at) == (45.0, 48.0)


def test_the_budget_splits_the_time_to_relief_into_configured_and_measured_terms() -> None:
    tl = report.Timeline(
        surge_at=5.0,
        signal_over_target_at=7.0,
        scale_up_decision_at=9.0,
        new_replica_ready_at=15.0,
        first_request_on_new_at=16.5,
    )
    config = {
        "scrape_interval_s": 0.6,
        "rule_interval_s": 0.6,
        "rate_window_s": 6.0,
        "adapter_relist_s": 0.6,
        "sync_period_s": 1.5,
        "scale_up_stabilization_s": 0.0,
        "scale_down_stabilization_s": 30.0,
        "readiness_period_s": 0.5,
    }
    terms = {t["term"]: t for t in report.budget_terms(config, tl, speed=10)}
    assert terms["HPA sync period"]["cluster_s"] == 15.0
    assert terms["decision: signal over target to scale-up"]["lab_s"] == 2.0
    assert terms["total: surge to first request on the new replica"]["lab_s"] == 11.5


def _report() -> report.LabReport:
    rows = _rows()
    tl = report.analyse(
        rows, DECISIONS, [], REPLICAS, surge_at=5.0, decline_at=30.0, min_replicas=1, metrics=[("w", 1.0)]
    )
    configuration = {
        "speed": 10.0,
        "hpa": {
            "source": "HorizontalPodAutoscaler",
            "name": "lab",
            "min": 1,
            "max": 4,
            "behavior": "none",
            "metrics": [{"name": "w", "type": "Pods", "target": 1.0}],
        },
    }
    summary = {
        "peak_replicas": 2,
        "max_replicas": 4,
        "min_replicas": 1,
        "surge_to_decision_s": 4.0,
        "surge_to_ready_s": 10.0,
        "decline_to_min_s": 18.0,
        "requests": 240,
        "failed_requests": 0,
        "e2e_p95_s": 2.4,
        "slo_p95_s": 2.0,
        "seconds_over_slo": 25,
        "replica_seconds": 90,
    }
    return report.LabReport(
        scenario={"name": "made-up", "description": "", "unit": "clients"},
        configuration=configuration,
        rows=rows,
        columns=list(rows[0]),
        decisions=DECISIONS,
        events=[],
        requests={},
        timeline=tl,
        budget=[],
        summary=summary,
    )


def test_the_four_report_files_are_written_and_non_empty(tmp_path: Path) -> None:
    paths = outputs.write_all(_report(), tmp_path / "out")
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with paths["timeseries"].open() as handle:
        assert len(list(csv.DictReader(handle))) == 60
    data = json.loads(paths["json"].read_text())
    assert data["timeline"]["back_to_min_at"] == 48.0
    assert "| 9.0 | 1 → 2 |" in paths["markdown"].read_text()


def test_the_printed_summary_names_peak_replicas_reaction_times_and_failures() -> None:
    text = "\n".join(outputs.summary_lines(_report()))
    assert "peak replicas: 2" in text and "4.00 s" in text and "failed: 0" in text


def test_the_markdown_lists_requests_that_arrived_at_zero_replicas() -> None:
    made = _report()
    made.summary["from_zero"] = {"requests": 1, "failed": 0, "started_t": [20.0], "ttft_s": [5.25], "e2e_s": [5.6]}
    assert "| requests at zero replicas (failed), slowest first token | 1 (0), 5.25 s |" in outputs.markdown(made)

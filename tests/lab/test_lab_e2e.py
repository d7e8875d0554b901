"""The lab end to end: real tritonserver replicas, a real Prometheus with the chart's rules, real load.

One compressed surge (speed 10, about two minutes) runs once for the module; each test checks
one promise of the lab on its result. A second run is interrupted with SIGINT to show that
every process it started is gone afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep.lab.cluster import _LIVE_GROUPS
from llmprep.lab.run import LabResult, run_lab
from llmprep.lab.scenario import data_dir, load_scenario
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

SURGE = {
    "name": "ci-surge",
    "description": "A compressed surge for CI.",
    "values": [str(data_dir() / "cpu-standin.values.yaml")],
    "speed": 10,
    "load": {
        "protocol": "grpc",
        "unit": "clients",
        "stages": [{"ramp": {"from": 1, "to": 12, "over": "8s"}}, {"hold": "40s"}, {"step": {"to": 1, "for": "15s"}}],
        "inputTokens": 32,
        "connections": 8,
        "reconnectEvery": "2s",
    },
    "slo": {"p95LatencyMs": 3000},
    "settle": "90s",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabResult:
    folder = tmp_path_factory.mktemp("lab")
    path = folder / "surge.yaml"
    path.write_text(yaml.safe_dump(SURGE))
    return run_lab(load_scenario(path), out_dir=folder / "out")


def _during_load(result: LabResult) -> list[dict[str, Any]]:
    decline = result.report.timeline.decline_at or 0.0
    return [r for r in result.report.rows if r["t"] <= decline]


def test_replicas_rise_above_one_during_the_surge(lab: LabResult) -> None:
    assert max(r["replicas_ready"] for r in _during_load(lab)) > 1


def test_replicas_return_to_one_after_the_surge(lab: LabResult) -> None:
    last = lab.report.rows[-1]
    assert lab.report.summary["returned_to_min"]
    assert (last["replicas_current"], last["replicas_ready"], last["replicas_draining"]) == (1, 1, 0)


def test_no_request_fails_while_replicas_come_and_go(lab: LabResult) -> None:
    assert lab.report.summary["requests"] > 100
    assert lab.report.summary["failed_requests"] == 0
    assert lab.requests and [f for f in lab.requests if f.error is not None] == []


def test_every_recorded_signal_equals_the_charts_rule_applied_to_the_scraped_counters(lab: LabResult) -> None:
    check = lab.report.verification
    assert check["recording_rules_checked"] >= 2 * len(check["per_rule"]) > 0
    assert check["recording_rules_matched"] == check["recording_rules_checked"], check["mismatches"]


def test_the_hpa_got_every_metric_from_the_adapter_at_every_sync_during_the_load(lab: LabResult) -> None:
    decline = lab.report.timeline.decline_at or 0.0
    syncs = [d for d in lab.report.decisions if 0 <= d["t"] <= decline]
    assert syncs
    assert all(p["error"] is None and p["usage"] is not None for d in syncs for p in d["proposals"])


@pytest.mark.parametrize("name", ["timeseries.csv", "report.json", "report.md", "lab.png"])
def test_the_report_files_exist_and_are_not_empty(lab: LabResult, name: str) -> None:
    assert (lab.out_dir / name).stat().st_size > 0


def test_no_process_of_the_run_is_left(lab: LabResult) -> None:
    assert not _LIVE_GROUPS


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_ctrl_c_stops_every_process_the_lab_started(tmp_path: Path) -> None:
    scenario = tmp_path / "long.yaml"
    long = dict(SURGE, load=dict(SURGE["load"], stages=[{"step": {"to": 2, "for": "300s"}}]))
    scenario.write_text(yaml.safe_dump(long))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmprep.cli", "lab", "--scenario", str(scenario), "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((out / "logs" / "replicas").glob("*.log")) or not _processes_mentioning(str(tmp_path)):
            assert proc.poll() is None and time.monotonic() < deadline, "the lab never started a replica"
            time.sleep(0.5)
        time.sleep(5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert _processes_mentioning(str(tmp_path)) == []


def test_a_missing_prometheus_binary_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    result = run_cli("lab", "--out", str(tmp_path / "out"), env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "apt-get install -y prometheus" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

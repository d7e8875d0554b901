"""Scale to zero in the lab: KEDA takes the Deployment 1 → 0, wakes it 0 → 1 on a request, and back to 0.

One run (speed 10, about 70 s): the chart's ScaledObject with `autoscaling.replicas.minimum: 0`
and a 60 s cooldown (6 s in the lab), an idle start, one client for 12 s, idle again. The front
holds what arrives at zero replicas, as the KEDA HTTP add-on's interceptor does, and its pending
connections wake KEDA (llmprep/lab/control.py); a request that arrives at zero therefore waits for
the replica instead of failing. docs/lab.md ("Scale to zero") has the measured wait.
"""

from __future__ import annotations

import pytest
import yaml

from llmprep.lab.run import LabResult, run_lab
from llmprep.lab.scenario import data_dir, load_scenario

pytestmark = pytest.mark.slow

SCENARIO = {
    "name": "ci-scale-to-zero",
    "values": [str(data_dir() / "cpu-standin.values.yaml")],
    "set": ["autoscaling.engine=keda", "autoscaling.replicas.minimum=0", "autoscaling.keda.cooldownPeriod=60"],
    "speed": 10,
    "load": {
        "protocol": "grpc",
        "unit": "clients",
        "stages": [
            {"step": {"to": 0, "for": "12s"}},
            {"step": {"to": 1, "for": "12s"}},
            {"step": {"to": 0, "for": "4s"}},
        ],
        "connections": 2,
        "reconnectEvery": "2s",
    },
    "settle": "60s",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabResult:
    folder = tmp_path_factory.mktemp("scale-to-zero")
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return run_lab(load_scenario(path), out_dir=folder / "out")


def _reasons(lab: LabResult) -> list[str]:
    return [a["reason"] for a in lab.report.summary["keda_activations"]]


def test_keda_takes_the_idle_deployment_to_zero_before_any_request_wakes_it(lab: LabResult) -> None:
    # Never active yet: KEDA scales to zero at its first poll (keda_rules.py); the client's first call
    # (the model configuration llmprep load reads before it starts) may wake it again at once.
    assert _reasons(lab)[0] == "ScaledToZero"
    assert any(r["replicas_current"] == 0 and r["load_level"] == 0 for r in lab.report.rows)


def test_a_request_at_zero_replicas_wakes_keda_and_is_served(lab: LabResult) -> None:
    cold = lab.report.summary["from_zero"]
    assert "ScaledFromZero" in _reasons(lab)
    assert cold["requests"] >= 1 and cold["failed"] == 0
    assert len(cold["ttft_s"]) == cold["requests"]  # each got its first token once the replica was ready


def test_the_deployment_returns_to_zero_after_the_cooldown(lab: LabResult) -> None:
    last = lab.report.rows[-1]
    assert lab.report.summary["returned_to_min"] and lab.report.summary["min_replicas"] == 0
    assert (last["replicas_current"], last["replicas_ready"], last["replicas_draining"]) == (0, 0, 0)
    assert _reasons(lab)[-1] == "ScaledToZero"


def test_no_request_fails_across_zero_one_zero(lab: LabResult) -> None:
    assert lab.report.summary["requests"] > 5
    assert lab.report.summary["failed_requests"] == 0
    assert lab.report.summary["front"]["refused"] == 0


def test_the_report_names_the_scale_to_zero_configuration(lab: LabResult) -> None:
    timing = lab.report.configuration["timing"]
    assert timing["keda_cooldown_period"]["lab_s"] == pytest.approx(6.0)
    assert "keda_activations" in (lab.out_dir / "report.json").read_text()

"""checkov (kubernetes framework) finds no failing check in what the chart renders.

checkov runs from its own virtual environment (it pins packages the project's venv needs newer):
`$CHECKOV`, else /work/main/.venv-checkov/bin/checkov (`make setup` creates it). Each check we
deliberately do not meet is skipped in chart/.checkov.yaml with its reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, MODEL_FILES, ids, render
from tests.conftest import ROOT

CHECKOV = Path(os.environ.get("CHECKOV") or ROOT / ".venv-checkov" / "bin" / "checkov")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHECKOV.exists(), reason=f"checkov not installed at {CHECKOV} (make setup)"),
]
CONFIG = CHART / ".checkov.yaml"
CASES = [[], *([CHART / "values.yaml", f] for f in MODEL_FILES), [], []]
EXTRA_SETS = {
    len(CASES) - 2: ["autoscaling.engine=keda", "cache.persistentVolumeClaim.create=true"],
    len(CASES) - 1: ["model.pullSecret=hf-model-pull", "kubernetes.noService=true"],
}
CASE_IDS = ["defaults", *ids(MODEL_FILES), "keda and a created claim", "token and no service"]


def _checkov(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--config-file",
            str(CONFIG),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert reports and reports[0]["summary"]["resource_count"] > 0
    return [f for r in reports for f in r["results"]["failed_checks"]]


def test_all_cases_pass_every_checkov_check(tmp_path: Path) -> None:
    # One checkov run over every case (a run costs seconds; one directory per case keeps the report readable).
    for i, files in enumerate(CASES):
        objects = render(files, EXTRA_SETS.get(i, []))
        case = tmp_path / f"case-{i:02d}"
        case.mkdir()
        (case / "manifests.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    failed = _checkov(tmp_path)
    by_case = [
        (CASE_IDS[int(Path(f["file_path"]).parent.name.split("-")[1])], f["check_id"], f["resource"]) for f in failed
    ]
    assert by_case == []


def test_checkov_fails_a_manifest_that_breaks_a_check(tmp_path: Path) -> None:
    objects = render()
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump(deployment))
    assert "CKV_K8S_20" in {f["check_id"] for f in _checkov(tmp_path)}


def test_every_skipped_check_has_a_reason_and_is_listed_in_the_chart_readme() -> None:
    text = CONFIG.read_text()
    skipped = yaml.safe_load(text)["skip-check"]
    readme = (CHART / "README.md").read_text()
    for check in skipped:
        assert re.search(rf"#[^\n]+\n(#[^\n]+\n)*\s+- {check}\n", text), f"{check} has no reason comment"
        assert check in readme, f"{check} missing from chart/README.md"

"""Under CI=true a test skipped because a required tool is missing fails the run instead of passing silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBE = """
import pytest

def test_needs_a_tool():
    pytest.skip("frobnicate is not installed (apt-get install frobnicate)")

def test_skips_for_another_reason():
    pytest.skip("PyTorch is installed here: covered elsewhere")
"""


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "--rootdir", str(tmp_path), "-rs", str(probe)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_missing_tool_fails_the_run(tmp_path: Path, ci: str) -> None:
    result = run_probe(tmp_path, ci)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 skipped" in result.stdout
    assert "required tool is missing: " in result.stdout and "frobnicate" in result.stdout


def test_outside_ci_a_missing_tool_only_skips(tmp_path: Path) -> None:
    result = run_probe(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout


def test_ci_script_sets_ci_so_missing_tools_fail() -> None:
    assert "export CI=true" in (ROOT / ".ci" / "run").read_text()

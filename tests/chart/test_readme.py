"""chart/README.md lists every value: generated from values.yaml, checked here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from llmprep import chart
from tests.chart.conftest import CHART, RELEASE, render, values_of
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "chart_readme.py"


def _load_script() -> ModuleType:
    import importlib.util

    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_chart_readme_is_up_to_date_with_values_yaml() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_key_of_values_yaml_is_documented() -> None:
    rows, undocumented = _load_script().parse(CHART / "values.yaml")
    assert undocumented == []
    assert {"gpu", "model.name", "triton.image.name", "autoscaling.metric.value", "kubernetes.labels"} <= {
        r.key for r in rows
    }


def test_an_undocumented_key_is_reported(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("a:\n  # -- documented\n  b: 1\n  c: 2\n# -- a map documented whole\nd:\n  e: 1\n")
    rows, undocumented = _load_script().parse(values)
    assert ([r.key for r in rows], undocumented) == (["a.b", "d"], ["a.c"])


@pytest.mark.parametrize(
    ("sets", "warning"),
    [
        (["logging.tritonServer.verbose=true"], "logging.* are accepted"),
        (["model.tensorrtLlm.enable=true"], "model.tensorrtLlm.enable does nothing"),
    ],
)
def test_notes_warn_about_tutorial_keys_that_do_nothing(sets: list[str], warning: str) -> None:
    assert warning in chart.notes(values_of(sets=sets), release=RELEASE)
    assert warning not in chart.notes(values_of(), release=RELEASE)
    assert render(sets=sets)

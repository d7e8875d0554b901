"""From a wheel, not the checkout: the installed CLI finds its chart, dashboards, monitoring files and lab data.

The wheel is built from a copy of the checkout's files (what git tracks or would add), without
build isolation, and installed with `--no-deps` into a fresh venv outside the checkout; that venv
reaches the test venv's dependencies through a .pth line (whose own .pth files, the editable
install's finder among them, are then not run), so no network is needed and `llmprep` can only
come from the wheel. Besides `chart template` and `chart lint`, a short real `llmprep lab` runs
from that venv: the installed package's chart, rules, adapter values and stand-in profile, a real
tritonserver (the nvidia-pytriton wheel's) and Prometheus, a few seconds of load at speed 20
(about 20 s; the full surge is tests/lab/test_lab_e2e.py).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from llmprep import shipped
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
IMAGE = "registry.example.com/llmprep-triton:26.07"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site: Path
    cwd: Path

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=self.cwd, env=env, timeout=300)


def _listed() -> list[str]:
    """The checkout's files: what git tracks or would add (a tracked file since removed is not part of the tree)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    return [name for name in listed if name and (ROOT / name).is_file() and "__pycache__" not in name]


def _source_copy(target: Path) -> Path:
    for name in _listed():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = _source_copy(base / "src")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("llmprep-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # pip runs under the new venv's interpreter, which sees no llmprep yet: a clean install into it.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "llmprep-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd = base / "elsewhere"
    cwd.mkdir()
    return Installed(wheel=wheel, venv=venv, site=site, cwd=cwd)


@pytest.mark.parametrize(
    "member",
    [
        "llmprep/_data/chart/Chart.yaml",
        "llmprep/_data/chart/values.schema.json",
        "llmprep/_data/chart/templates/_helpers.tpl",
        "llmprep/_data/chart/models/gpt2.yaml",
        "llmprep/_data/chart/dashboards/llmprep-triton.json",
        "llmprep/_data/monitoring/prometheus-adapter.values.yaml",
        "llmprep/data/lab/default.scenario.yaml",
    ],
)
def test_the_wheel_carries_the_shipped_files(installed: Installed, member: str) -> None:
    assert member in zipfile.ZipFile(installed.wheel).namelist()


def test_every_data_file_of_the_checkout_is_in_the_wheel_at_its_place(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {
        (f"llmprep/_data/{path}" if path.split("/")[0] in shipped.SHIPPED_FOLDERS else path)
        for path in _listed()
        if path.split("/")[0] in shipped.SHIPPED_FOLDERS or path.startswith(("llmprep/templates/", "llmprep/data/"))
    }
    assert expected and not expected - names


def test_llmprep_is_imported_from_the_fresh_venv_not_the_checkout(installed: Installed) -> None:
    done = installed.run(
        "python", "-c", "import llmprep, llmprep.chart as c; print(llmprep.__file__); print(c.CHART_DIR)"
    )
    module, chart_dir = done.stdout.split()
    assert Path(module).is_relative_to(installed.site), done.stderr
    assert Path(chart_dir) == installed.site / "llmprep" / "_data" / "chart"


def test_chart_template_from_the_wheel_renders_the_gpt2_file(installed: Installed) -> None:
    done = installed.run(
        "llmprep",
        "chart",
        "template",
        "-f",
        str(ROOT / "chart" / "models" / "gpt2.yaml"),
        "--set",
        f"triton.image.name={IMAGE}",
    )
    assert done.returncode == 0, done.stderr
    kinds = {o["kind"] for o in yaml.safe_load_all(done.stdout) if o}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PrometheusRule"} <= kinds


def test_chart_lint_from_the_wheel_is_clean(installed: Installed) -> None:
    done = installed.run("llmprep", "chart", "lint", "--set", f"triton.image.name={IMAGE}")
    assert done.returncode == 0, done.stderr


def test_the_lab_from_the_wheel_reads_its_chart_scenario_and_adapter_rules(installed: Installed) -> None:
    assert installed.run("llmprep", "lab", "--help").returncode == 0
    done = installed.run(
        "python",
        "-c",
        (
            "from llmprep.lab import adapter; from llmprep.lab.rendered import prepare; "
            "from llmprep.lab.scenario import load_scenario; "
            "prepare(load_scenario()); print(len(adapter.load_rules())); print(adapter.ADAPTER_VALUES)"
        ),
    )
    assert done.returncode == 0, done.stderr
    rules, path = done.stdout.split()
    assert int(rules) >= 1 and Path(path).is_relative_to(installed.site)


def test_setup_py_copies_the_folders_the_package_looks_for() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    (listed,) = [
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SHIPPED_FOLDERS"
    ]
    assert tuple(listed) == shipped.SHIPPED_FOLDERS


SMOKE_SCENARIO = {
    "name": "wheel-smoke",
    "description": "A few seconds of load through the installed package.",
    "speed": 20,
    "load": {
        "protocol": "grpc",
        "unit": "clients",
        "stages": [{"step": {"to": 2, "for": "6s"}}],
        "inputTokens": 16,
        "outputTokens": 4,
        "connections": 2,
        "timeout": "30s",
    },
    "settle": "5s",
}


def test_a_short_lab_runs_from_the_wheel(installed: Installed) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not on PATH (make lab installs it)")
    profile = installed.site / "llmprep" / "data" / "lab" / "cpu-standin.values.yaml"
    scenario = installed.cwd / "smoke.scenario.yaml"
    scenario.write_text(yaml.safe_dump({**SMOKE_SCENARIO, "values": [str(profile)]}))
    out = installed.cwd / "lab-out"
    done = installed.run("llmprep", "lab", "--scenario", str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip().splitlines()[-1]) == out / "lab.png" and (out / "lab.png").is_file()
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["requests"] > 0 and summary["failed_requests"] == 0, summary

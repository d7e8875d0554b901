from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

MONITORING = ROOT / "monitoring"
SCRIPT = MONITORING / "install.sh"
RELEASES = ["node-feature-discovery", "nvidia-device-plugin", "prometheus", "dcgm-exporter", "prometheus-adapter"]


def install(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def printed_commands(output: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("+ ")]


def upgrades(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if c[:3] == ["helm", "upgrade", "--install"]]


@pytest.fixture
def fake_helm(tmp_path: Path) -> tuple[str, Path]:
    """A `helm` on PATH that records each call's arguments, one call per line."""
    log = tmp_path / "helm-calls.txt"
    helm = tmp_path / "bin" / "helm"
    helm.parent.mkdir()
    helm.write_text(f'#!/usr/bin/env bash\nprintf "%q " helm "$@" >> {log}\necho >> {log}\n')
    helm.chmod(0o755)
    return f"{helm.parent}:/usr/bin:/bin", log


def test_install_sh_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install -y shellcheck)")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dry_run_installs_the_services_in_dependency_order() -> None:
    result = install("--dry-run")
    assert result.returncode == 0, result.stderr
    assert [c[3] for c in upgrades(printed_commands(result.stdout))] == RELEASES


def test_every_chart_is_pinned_and_takes_an_existing_values_file() -> None:
    for command in upgrades(printed_commands(install("--dry-run").stdout)):
        version = command[command.index("--version") + 1]
        assert version[0].isdigit(), command
        values = Path(command[command.index("--values") + 1])
        assert values.parent == MONITORING and values.is_file(), command


def test_the_script_runs_exactly_what_dry_run_prints_and_twice_the_same(fake_helm: tuple[str, Path]) -> None:
    path, log = fake_helm
    assert install(path=path).returncode == 0
    assert install(path=path).returncode == 0
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    printed = printed_commands(install("--dry-run").stdout)
    assert calls == printed + printed
    assert not [c for c in calls if c[:2] == ["helm", "install"]]  # only upgrade --install: rerunnable


def test_skip_gpu_leaves_out_the_device_plugin_and_feature_discovery() -> None:
    commands = upgrades(printed_commands(install("--dry-run", "--skip-gpu").stdout))
    assert [c[3] for c in commands] == RELEASES[2:]


def test_the_namespace_option_moves_the_metrics_services_and_the_adapters_prometheus_url() -> None:
    commands = upgrades(printed_commands(install("--dry-run", "--namespace", "obs").stdout))
    assert [c[c.index("--namespace") + 1] for c in commands] == ["kube-system", "kube-system", "obs", "obs", "obs"]
    assert "prometheus.url=http://prometheus-kube-prometheus-prometheus.obs.svc" in commands[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--bogus"], "error: unknown option --bogus (see --help)"), (["--namespace"], "error: --namespace needs a value")],
)
def test_bad_options_are_one_line_errors_with_exit_code_2(args: list[str], message: str) -> None:
    result = install(*args)
    assert (result.returncode, result.stderr) == (2, message + "\n")


def test_without_helm_the_script_says_how_to_get_it() -> None:
    if shutil.which("helm", path="/usr/bin:/bin"):
        pytest.skip("helm is installed system-wide here")
    result = install(path="/usr/bin:/bin")
    assert result.returncode == 1 and result.stderr.startswith("error: helm not found on PATH")


@pytest.mark.parametrize("name", sorted(p.name for p in MONITORING.glob("*.values.yaml")))
def test_values_files_are_valid_yaml_with_resources(name: str) -> None:
    data = yaml.safe_load((MONITORING / name).read_text())
    text = yaml.safe_dump(data)
    assert "resources" in text and "limits" in text


def test_dcgm_exporter_maps_gpus_to_pods_only_on_gpu_nodes() -> None:
    values = yaml.safe_load((MONITORING / "dcgm-exporter.values.yaml").read_text())
    assert "--kubernetes=true" in values["arguments"]
    assert values["serviceMonitor"]["honorLabels"] is True
    assert values["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    assert values["resources"]["requests"] and values["resources"]["limits"]


def test_grafana_imports_dashboards_the_chart_labels() -> None:
    values = yaml.safe_load((MONITORING / "kube-prometheus-stack.values.yaml").read_text())
    sidecar = values["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["enabled"], sidecar["label"], sidecar["searchNamespace"]) == (True, "grafana_dashboard", "ALL")

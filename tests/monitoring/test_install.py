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
QUERIES = (["helm", "list"], ["helm", "get"])  # read-only look-ups of what the cluster already runs


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
    calls = [c for c in (shlex.split(line) for line in log.read_text().splitlines()) if c[:2] not in QUERIES]
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
    [
        (["--bogus"], "error: unknown option --bogus (see --help)"),
        (["--namespace"], "error: --namespace needs a value"),
    ],
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


# --------------------------------------------------------------------------- an adapter already there

EXISTING_VALUES = """rules:
  default: true
  custom:
    - seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
      metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"""


def cluster_helm(tmp_path: Path, releases: str, values: dict[str, str]) -> tuple[str, Path]:
    """A `helm` that records its calls and answers `helm list -A -o json` with `releases` and
    `helm get values NAME` with `values[NAME]` (the user values of that release)."""
    log = tmp_path / "helm-calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "releases.json").write_text(releases)
    for name, text in values.items():
        (tmp_path / f"values-{name}.yaml").write_text(text)
    helm = bin_dir / "helm"
    helm.write_text(f"""#!/usr/bin/env bash
printf "%q " helm "$@" >> {log}; echo >> {log}
if [ "$1" = list ]; then cat {tmp_path}/releases.json; fi
if [ "$1 $2" = "get values" ]; then cat {tmp_path}/values-$3.yaml 2>/dev/null; fi
exit 0
""")
    helm.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin", log


def release(name: str, namespace: str, chart: str) -> str:
    return (
        f'{{"name":"{name}","namespace":"{namespace}","revision":"3","updated":"2026-11-02 10:00:00 +0000 UTC",'
        f'"status":"deployed","chart":"{chart}","app_version":"v0.12.0"}}'
    )


THEIRS = (
    "["
    + ",".join(
        [
            release("kps", "observability", "kube-prometheus-stack-72.6.2"),
            release("custom-metrics", "observability", "prometheus-adapter-4.11.0"),
        ]
    )
    + "]"
)


def test_an_adapter_with_its_own_rules_is_never_upgraded_or_joined_by_a_second(tmp_path: Path) -> None:
    path, log = cluster_helm(tmp_path, THEIRS, {"custom-metrics": EXISTING_VALUES})
    result = install(path=path)
    assert result.returncode == 0, result.stderr
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    adapter_writes = [c for c in calls if c[:2] == ["helm", "upgrade"] and "prometheus-adapter" in " ".join(c)]
    assert adapter_writes == []
    assert ["helm", "get", "values", "custom-metrics", "--namespace", "observability", "--output", "yaml"] in calls


def test_the_script_prints_exactly_the_rules_to_add_to_the_existing_adapter(tmp_path: Path) -> None:
    path, _ = cluster_helm(tmp_path, THEIRS, {"custom-metrics": EXISTING_VALUES})
    out = install(path=path).stdout
    assert "prometheus-adapter release custom-metrics (namespace observability) was not installed by this script" in out
    printed = yaml.safe_load(out[out.index("The entries to add:") + len("The entries to add:") : out.index("\ndone:")])
    ours = yaml.safe_load((MONITORING / "prometheus-adapter.values.yaml").read_text())["rules"]["custom"]
    assert printed == ours
    assert "helm upgrade custom-metrics prometheus-community/prometheus-adapter -n observability --reuse-values" in out


def test_an_adapter_this_script_installed_is_upgraded_in_place(tmp_path: Path) -> None:
    ours = "[" + release("prometheus-adapter", "monitoring", "prometheus-adapter-4.10.0") + "]"
    path, log = cluster_helm(tmp_path, ours, {"prometheus-adapter": "llmprepManaged: true\nrules:\n  default: false\n"})
    result = install(path=path)
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    assert result.returncode == 0 and "not installed by this script" not in result.stdout
    assert [c[3] for c in upgrades(calls)] == RELEASES
    assert "llmprepManaged=true" in upgrades(calls)[-1]


def test_without_any_adapter_the_script_installs_one_marked_as_its_own(fake_helm: tuple[str, Path]) -> None:
    path, log = fake_helm
    install(path=path)
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    assert upgrades(calls)[-1][3] == "prometheus-adapter" and "llmprepManaged=true" in upgrades(calls)[-1]

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

MONITORING = ROOT / "monitoring"
SCRIPT = MONITORING / "install.sh"
RELEASES = ["node-feature-discovery", "nvidia-device-plugin", "prometheus", "dcgm-exporter", "prometheus-adapter"]
QUERIES = (["helm", "list"], ["helm", "get"])  # read-only look-ups of what the cluster already runs


# A `kubectl` on PATH that answers the script's read-only look-ups from JSON files in its directory
# (prometheuses.json: a list of Prometheus objects; apiservice.json: the custom metrics APIService),
# evaluating the script's own jsonpath template the way kubectl does (missing keys print nothing,
# maps print as compact JSON with sorted keys); without the file it fails as kubectl does when the
# CRD or the object is absent. Every call is appended to kubectl-calls.txt.
KUBECTL_STUB = r"""#!PYTHON
import json, pathlib, re, shlex, sys

here = pathlib.Path(__file__).resolve().parent
args = sys.argv[1:]
with open(here / "kubectl-calls.txt", "a") as log:
    log.write(shlex.join(["kubectl", *args]) + "\n")
files = {"prometheuses.monitoring.coreos.com": "prometheuses.json", "apiservice": "apiservice.json"}
kind = args[args.index("get") + 1] if "get" in args else ""
source = here / files.get(kind, "absent")
if not source.is_file():
    sys.exit("error: the server doesn't have a resource type " + repr(kind))
template = next(a for a in args if a.startswith("jsonpath="))[len("jsonpath="):]


def lookup(obj, path):
    for key in re.split(r"(?<!\\)\.", path.lstrip(".")):
        key = key.replace("\\.", ".")
        if not isinstance(obj, dict) or key not in obj:
            return ""
        obj = obj[key]
    return obj


def text(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "" if value is None else str(value)


def evaluate(template, obj):
    loop = re.fullmatch(r"\{range \.items\[\*\]\}(.*)\{end\}", template, re.S)
    if loop:
        return "".join(evaluate(loop.group(1), item) for item in obj["items"])
    out = []
    for part in re.finditer(r'\{("(?:[^"\\]|\\.)*"|[^}]*)\}|([^{]+)', template):
        if part.group(2):
            out.append(part.group(2))
        elif part.group(1).startswith('"'):
            out.append(json.loads(part.group(1)))
        else:
            out.append(text(lookup(obj, part.group(1))))
    return "".join(out)


data = json.loads(source.read_text())
sys.stdout.write(evaluate(template, {"items": data} if isinstance(data, list) else data))
"""


def write_kubectl(
    bin_dir: Path, prometheuses: list[dict[str, Any]] | None = None, apiservice: dict[str, Any] | None = None
) -> None:
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(KUBECTL_STUB.replace("#!PYTHON", f"#!{sys.executable}", 1))
    kubectl.chmod(0o755)
    if prometheuses is not None:
        (bin_dir / "prometheuses.json").write_text(json.dumps(prometheuses))
    if apiservice is not None:
        (bin_dir / "apiservice.json").write_text(json.dumps(apiservice))


@pytest.fixture(scope="module")
def no_cluster(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH where kubectl finds no cluster objects (and helm is whatever the machine has)."""
    bin_dir = tmp_path_factory.mktemp("no-cluster")
    write_kubectl(bin_dir)
    return f"{bin_dir}:{os.environ['PATH']}"


def install(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else NO_CLUSTER[0]}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


NO_CLUSTER = [os.environ["PATH"]]  # set by the autouse fixture below


@pytest.fixture(autouse=True)
def _no_cluster_by_default(no_cluster: str) -> None:
    NO_CLUSTER[0] = no_cluster


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
    write_kubectl(helm.parent)
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


def cluster_helm(
    tmp_path: Path,
    releases: str,
    values: dict[str, str],
    prometheuses: list[dict[str, Any]] | None = None,
    apiservice: dict[str, Any] | None = None,
) -> tuple[str, Path]:
    """A `helm` that records its calls and answers `helm list -A -o json` with `releases` and
    `helm get values NAME` with `values[NAME]` (the user values of that release), beside a
    `kubectl` that knows `prometheuses` and `apiservice` (none when None)."""
    log = tmp_path / "helm-calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_kubectl(bin_dir, prometheuses, apiservice)
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


def test_without_any_adapter_or_stack_the_stack_is_marked_as_its_own(fake_helm: tuple[str, Path]) -> None:
    path, log = fake_helm
    install(path=path)
    stack = upgrades([shlex.split(line) for line in log.read_text().splitlines()])[2]
    assert stack[3:5] == ["prometheus", "prometheus-community/kube-prometheus-stack"]
    assert "llmprepManaged=true" in stack


# --------------------------------------------------------------------------- a Prometheus stack already there


def prometheus_object(namespace: str, name: str, release: str | None, **spec: Any) -> dict[str, Any]:
    """A Prometheus object as the Prometheus Operator's CRD holds it (Helm annotates what it installs)."""
    metadata: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "labels": {"app": "kube-prometheus-stack-prometheus"},
    }
    if release:
        metadata["annotations"] = {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": metadata, "spec": spec}


KPS_DEFAULT_SELECTORS = {  # kube-prometheus-stack's defaults for release "kps" (…SelectorNilUsesHelmValues: true)
    "podMonitorSelector": {"matchLabels": {"release": "kps"}},
    "ruleSelector": {"matchLabels": {"release": "kps"}},
    "serviceMonitorSelector": {"matchLabels": {"release": "kps"}},
    "podMonitorNamespaceSelector": {},
    "ruleNamespaceSelector": {},
}
KPS_ONLY = "[" + release("kps", "observability", "kube-prometheus-stack-72.6.2") + "]"


def test_an_existing_kube_prometheus_stack_is_left_unchanged(tmp_path: Path) -> None:
    prometheus = prometheus_object(
        "observability", "kps-kube-prometheus-stack-prometheus", "kps", **KPS_DEFAULT_SELECTORS
    )
    path, log = cluster_helm(tmp_path, KPS_ONLY, {}, prometheuses=[prometheus])
    result = install(path=path)
    assert result.returncode == 0, result.stderr
    calls = upgrades([shlex.split(line) for line in log.read_text().splitlines()])
    assert [c[3] for c in calls] == [
        "node-feature-discovery",
        "nvidia-device-plugin",
        "dcgm-exporter",
        "prometheus-adapter",
    ]
    assert (
        "kube-prometheus-stack release kps (namespace observability) was not installed by this script" in result.stdout
    )
    # the adapter asks the stack's Prometheus (the operator's prometheus-operated Service) ...
    assert "prometheus.url=http://prometheus-operated.observability.svc" in calls[-1]
    # ... and dcgm-exporter's ServiceMonitor carries the label its serviceMonitorSelector wants
    assert "serviceMonitor.additionalLabels.release=kps" in calls[2]


def test_the_script_prints_exactly_the_labels_the_existing_prometheus_selects(tmp_path: Path) -> None:
    selectors = {
        **KPS_DEFAULT_SELECTORS,
        "ruleSelector": {"matchLabels": {"team": "ml", "app.kubernetes.io/part-of": "obs"}},
    }
    prometheus = prometheus_object("observability", "kps-kube-prometheus-stack-prometheus", "kps", **selectors)
    path, _ = cluster_helm(tmp_path, KPS_ONLY, {}, prometheuses=[prometheus])
    out = install(path=path).stdout
    assert "install each llmprep release with --set monitoring.podMonitor.labels.release=kps\n" in out
    assert (
        "--set monitoring.prometheusRule.labels.app\\.kubernetes\\.io/part-of=obs "
        "--set monitoring.prometheusRule.labels.team=ml\n"
    ) in out
    assert "NamespaceSelector is unset" not in out


def test_a_prometheus_operator_stack_without_helm_is_detected_through_its_prometheus_object(tmp_path: Path) -> None:
    prometheus = prometheus_object(
        "monitoring-system", "main", None, ruleSelector={"matchExpressions": [{"key": "role", "operator": "Exists"}]}
    )
    path, log = cluster_helm(tmp_path, "[]", {}, prometheuses=[prometheus])
    result = install(path=path)
    assert result.returncode == 0, result.stderr
    calls = upgrades([shlex.split(line) for line in log.read_text().splitlines()])
    assert "kube-prometheus-stack" not in " ".join(" ".join(c) for c in calls)
    out = result.stdout
    assert "Prometheus monitoring-system/main (Prometheus Operator, not installed with Helm) already runs" in out
    assert (
        "its podMonitorSelector is unset and selects none: set spec.podMonitorSelector: {} on Prometheus monitoring-system/main"
        in out
    )
    assert 'its ruleSelector is {"matchExpressions":[{"key":"role","operator":"Exists"}]}' in out
    assert "its podMonitorNamespaceSelector is unset: it only watches namespace monitoring-system" in out
    assert "prometheus.url=http://prometheus-operated.monitoring-system.svc" in calls[-1]


def test_the_stack_this_script_installed_is_upgraded_in_place(tmp_path: Path) -> None:
    ours = "[" + release("prometheus", "monitoring", "kube-prometheus-stack-72.6.2") + "]"
    prometheus = prometheus_object(
        "monitoring", "prometheus-kube-prometheus-prometheus", "prometheus", podMonitorSelector={}
    )
    path, log = cluster_helm(tmp_path, ours, {"prometheus": "llmprepManaged: true\n"}, prometheuses=[prometheus])
    result = install(path=path)
    calls = upgrades([shlex.split(line) for line in log.read_text().splitlines()])
    assert result.returncode == 0 and "not installed by this script" not in result.stdout
    assert [c[3] for c in calls] == RELEASES
    assert "prometheus.url=http://prometheus-kube-prometheus-prometheus.monitoring.svc" in calls[-1]


# --------------------------------------------------------------------------- an adapter applied without Helm

FOREIGN_APISERVICE = {
    "apiVersion": "apiregistration.k8s.io/v1",
    "kind": "APIService",
    "metadata": {"name": "v1beta1.custom.metrics.k8s.io"},
    "spec": {
        "service": {"namespace": "custom-metrics", "name": "custom-metrics-apiserver"},
        "group": "custom.metrics.k8s.io",
    },
}


def test_an_adapter_not_installed_with_helm_keeps_its_rules(tmp_path: Path) -> None:
    path, log = cluster_helm(tmp_path, "[]", {}, apiservice=FOREIGN_APISERVICE)
    result = install(path=path)
    assert result.returncode == 0, result.stderr
    calls = upgrades([shlex.split(line) for line in log.read_text().splitlines()])
    assert "prometheus-adapter" not in [c[3] for c in calls]
    out = result.stdout
    assert (
        "APIService v1beta1.custom.metrics.k8s.io is served by custom-metrics/custom-metrics-apiserver, "
        "a service not installed with Helm: left unchanged" in out
    )
    printed = yaml.safe_load(out[out.index("The entries to add:") + len("The entries to add:") : out.index("\ndone:")])
    assert printed == yaml.safe_load((MONITORING / "prometheus-adapter.values.yaml").read_text())["rules"]["custom"]


def test_the_apiservice_of_the_adapter_this_script_installed_does_not_block_its_upgrade(tmp_path: Path) -> None:
    ours = "[" + release("prometheus-adapter", "monitoring", "prometheus-adapter-4.10.0") + "]"
    apiservice = json.loads(json.dumps(FOREIGN_APISERVICE))
    apiservice["metadata"]["annotations"] = {
        "meta.helm.sh/release-name": "prometheus-adapter",
        "meta.helm.sh/release-namespace": "monitoring",
    }
    apiservice["spec"]["service"] = {"namespace": "monitoring", "name": "prometheus-adapter"}
    path, log = cluster_helm(tmp_path, ours, {"prometheus-adapter": "llmprepManaged: true\n"}, apiservice=apiservice)
    result = install(path=path)
    assert result.returncode == 0 and "left unchanged" not in result.stdout
    assert upgrades([shlex.split(line) for line in log.read_text().splitlines()])[-1][3] == "prometheus-adapter"


def test_the_kubectl_stub_prints_what_kubectl_prints(tmp_path: Path) -> None:
    """The stub's jsonpath evaluation agrees with kubectl's own (evaluated offline with --local)."""
    kubectl = shutil.which("kubectl", path="/usr/local/bin:/usr/bin:/bin")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    prometheus = prometheus_object("observability", "k8s", "kps", **KPS_DEFAULT_SELECTORS)
    template = next(
        line.split("fields='", 1)[1].rsplit("'", 1)[0] for line in SCRIPT.read_text().splitlines() if "fields='" in line
    )
    obj = tmp_path / "prometheus.json"
    obj.write_text(json.dumps(prometheus))
    real = subprocess.run(
        [kubectl, "label", "--local", "-f", str(obj), "x=y", "-o", f"jsonpath={template}"],
        capture_output=True,
        text=True,
    )
    assert real.returncode == 0, real.stderr
    write_kubectl(tmp_path, prometheuses=[prometheus])
    stub = subprocess.run(
        [
            str(tmp_path / "kubectl"),
            "get",
            "prometheuses.monitoring.coreos.com",
            "-o",
            f"jsonpath={{range .items[*]}}{template}{{end}}",
        ],
        capture_output=True,
        text=True,
    )
    assert stub.stdout == real.stdout and "observability|k8s|kps|observability|" in real.stdout

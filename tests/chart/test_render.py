"""The chart renders and lints with every values file we ship and every file users bring from the
tutorials, and every object is valid against strict schemas."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

from llmprep import chart
from llmprep.errors import SpecError, UsageError
from llmprep.spec import parse_spec
from tests.chart.conftest import (
    CHART,
    IMAGE,
    MODEL_FILES,
    NAMESPACE,
    RELEASE,
    TUTORIAL_FILES,
    TUTORIAL_MULTINODE,
    TUTORIAL_SINGLE,
    Objects,
    ids,
    one,
    render,
    values_of,
)
from tests.conftest import TUTORIAL_VALUES

# Kubernetes releases we validate against: the oldest the chart supports (Chart.yaml kubeVersion) and the newest known.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Custom resources, validated another way: the operators' below, LeaderWorkerSet in test_multinode.py.
CRD_GROUPS = {"monitoring.coreos.com", "keda.sh", "leaderworkerset.x-k8s.io"}
OUR_VALUES = CHART / "values.yaml"
# The single-node tutorial's own chart/values.yaml as it ships: what their README passes first.
TUTORIAL_AS_SHIPPED = TUTORIAL_VALUES / "single" / "values-as-shipped.yaml"

# Every file a user may install with: ours alone, ours + each model file, ours + each tutorial file.
CASES = [[], *([OUR_VALUES, f] for f in MODEL_FILES), *([OUR_VALUES, f] for f in TUTORIAL_FILES)]
CASE_IDS = ["defaults", *ids(MODEL_FILES), *ids(TUTORIAL_FILES)]


@pytest.fixture(scope="module", params=CASES, ids=CASE_IDS)
def rendered(request: pytest.FixtureRequest) -> Objects:
    return render(request.param)


# --------------------------------------------------------------------------- render, lint, schemas


def test_every_case_renders_the_server_objects(rendered: Objects) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {"ConfigMap", "PodMonitor", "PrometheusRule", "PodDisruptionBudget"} <= kinds
    # One workload: the Deployment, or the LeaderWorkerSet of a multi-node model file.
    assert len(kinds & {"Deployment", "LeaderWorkerSet"}) == 1


@pytest.mark.parametrize("files", CASES, ids=CASE_IDS)
def test_helm_lint_strict_finds_nothing(files: list[Path]) -> None:
    assert chart.lint(values_of(files), namespace=NAMESPACE) == []


def _builtin(objects: Objects) -> Objects:
    return [o for o in objects if o["apiVersion"].split("/")[0] not in CRD_GROUPS]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_builtin_object_validates_strictly(rendered: Objects, kube_version: str) -> None:
    for obj in _builtin(rendered):
        # SchemaNotFoundError (an unknown or removed apiVersion) fails the test as well.
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_strict_validation_catches_a_misspelt_key(defaults: Objects) -> None:
    deployment = copy.deepcopy(one(defaults, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def _strict(schema: Any) -> Any:
    """The pydantic JSON schema with additionalProperties: false on every object that lists its properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


OPERATOR_SCHEMAS = {
    kind: _strict(getattr(prometheus_operator, kind).model_json_schema(by_alias=True))
    for kind in ("PodMonitor", "PrometheusRule")
}


def _operator_errors(obj: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(OPERATOR_SCHEMAS[obj["kind"]])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_prometheus_operator_objects_validate_against_strict_crd_schemas(rendered: Objects) -> None:
    objects = [o for o in rendered if o["apiVersion"] == "monitoring.coreos.com/v1"]
    assert {o["kind"] for o in objects} == {"PodMonitor", "PrometheusRule"}
    for obj in objects:
        assert _operator_errors(obj) == [], obj["kind"]


def test_strict_crd_schema_catches_a_misspelt_key(defaults: Objects) -> None:
    monitor = copy.deepcopy(one(defaults, "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "6s"
    assert _operator_errors(monitor)


def test_only_objects_of_known_kinds_render(rendered: Objects) -> None:
    known = {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "Pod",
        "LeaderWorkerSet",
    }
    assert {o["kind"] for o in rendered} <= known


# --------------------------------------------------------------------------- the model spec contract


def _model_yaml(objects: Objects) -> dict[str, Any]:
    config = chart.find(objects, "ConfigMap", f"{RELEASE}-model")[0]
    return yaml.safe_load(config["data"]["model.yaml"])


def test_rendered_model_yaml_is_a_valid_model_spec(rendered: Objects) -> None:
    spec = parse_spec(_model_yaml(rendered))
    assert spec.name


@pytest.mark.parametrize("path", MODEL_FILES + TUTORIAL_FILES, ids=ids(MODEL_FILES + TUTORIAL_FILES))
def test_model_yaml_carries_the_files_gpu_and_model_settings(path: Path) -> None:
    given = yaml.safe_load(path.read_text())
    spec = parse_spec(_model_yaml(render([OUR_VALUES, path])))
    gpu = given["gpu"] if isinstance(given["gpu"], list) else [given["gpu"]]
    assert (list(spec.gpu), spec.name) == (gpu, given["model"]["name"])
    parallelism = given["model"].get("tensorrtLlm", {}).get("parallelism", {})
    assert spec.parallelism.tensor == parallelism.get("tensor", 1)


def test_a_whole_values_file_is_a_valid_model_spec_too() -> None:
    """Every top-level section the chart adds is one the spec knows to leave alone (spec.CHART_SECTIONS)."""
    values = yaml.safe_load(OUR_VALUES.read_text())
    values["model"] = {k: v for k, v in values["model"].items() if v != ""}
    assert parse_spec(values).name == "gpt2"


def test_values_defaults_of_the_model_section_are_the_specs_defaults() -> None:
    values = yaml.safe_load(OUR_VALUES.read_text())
    doc = {"gpu": values["gpu"], "model": {k: v for k, v in values["model"].items() if v != ""}}
    spec = parse_spec(doc)
    assert spec.to_values()["model"] == parse_spec({"model": {"name": spec.name}}).to_values()["model"]


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        keys.add(path)
        keys |= _schema_keys(sub, path + ".")
    return keys


def test_schema_of_the_model_section_accepts_exactly_the_specs_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    ours = _schema_keys(schema["properties"]["model"])
    spec_keys = _schema_keys_of_doc(
        parse_spec(
            {"model": {"name": "gpt2", "tokenizer": "t", "pullSecret": "s", "persistentVolumeClaim": "p"}}
        ).to_values()["model"]
    )
    # keys the spec reads but never writes back: the tutorials' enable and tokenizerType (both warn) and
    # the multi-node tutorial's conversion resources (the chart sizes the prepare container with them)
    conversion = {
        "tensorrtLlm.conversion",
        "tensorrtLlm.conversion.cpu",
        "tensorrtLlm.conversion.gpu",
        "tensorrtLlm.conversion.memory",
    }
    assert ours - spec_keys == {"tensorrtLlm.enable", "repository.tokenizerType", *conversion}
    assert spec_keys - ours == set()


def _schema_keys_of_doc(doc: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in doc.items():
        keys.add(f"{prefix}{name}")
        if isinstance(value, dict) and name != "options":
            keys |= _schema_keys_of_doc(value, f"{prefix}{name}.")
    return keys


# --------------------------------------------------------------------------- the tutorials' command lines


def _install(command: str) -> Objects:
    """Render `helm install NAME [CHART] --values F … --set S …` as written in the tutorials' text."""
    words = shlex.split(command)
    assert words[:2] == ["helm", "install"]
    files: list[Path] = []
    sets: list[str] = []
    positional: list[str] = []
    rest = iter(words[2:])
    for word in rest:
        if word in ("--values", "-f"):
            files.append(_tutorial_path(next(rest)))
        elif word == "--set":
            sets.append(next(rest))
        else:
            positional.append(word)
    return chart.render(chart.merge_values(files, sets), release=positional[0], namespace=NAMESPACE)


def _tutorial_path(path: str) -> Path:
    """A path of the tutorial's README, in our test data: `./chart/values.yaml` is *their* chart's
    values.yaml as it ships (its optional keys empty, YAML nulls), never ours."""
    name = Path(path).name
    return TUTORIAL_AS_SHIPPED if name == "values.yaml" else TUTORIAL_VALUES / "single" / name


TUTORIAL_COMMANDS = [
    f"helm install gpt2 --values ./chart/values.yaml --values ./chart/gpt2_values.yaml "
    f"--set 'triton.image.name={IMAGE}' ./chart/.",
    f"helm install llama-3-8b-instruct --values ./chart/values.yaml --values ./chart/llama-3-8b-instruct_values.yaml "
    f"--set 'triton.image.name={IMAGE}' ./chart/.",
    f"helm install llama-3-8b-h100 ./chart --values ./chart/values.yaml --values ./chart/llama-3-8b_values.yaml "
    f"--set 'triton.image.name={IMAGE}' --set 'gpu[0]=NVIDIA-H100-SXM5-80GB' "
    f"--set 'kubernetes.labels[0].model=llama-3-8b' --set 'kubernetes.noService=true'",
]


@pytest.mark.parametrize("command", TUTORIAL_COMMANDS, ids=["gpt2", "llama-3-8b-instruct", "multi-sku-pool"])
def test_tutorial_command_lines_install_unchanged(command: str) -> None:
    objects = _install(command)
    name = shlex.split(command)[2]
    assert one(objects, "Deployment")["metadata"]["name"] == name


def test_the_tutorial_commands_pass_their_values_yaml_as_shipped_with_its_nulls() -> None:
    """The README tests above read the tutorial's values.yaml, not ours: it must hold the nulls
    (`kubernetes.labels:` among them) that made the multi-SKU command fail."""
    for command in TUTORIAL_COMMANDS:
        first = shlex.split(command)[shlex.split(command).index("--values") + 1]
        assert _tutorial_path(first) == TUTORIAL_AS_SHIPPED
    shipped = yaml.safe_load(TUTORIAL_AS_SHIPPED.read_text())
    assert "labels" in shipped["kubernetes"] and shipped["kubernetes"]["labels"] is None
    assert shipped["autoscaling"]["metric"] == {"name": None, "value": None}


def test_helm_itself_cannot_index_a_null_a_values_file_left_and_we_read_it_as_absent() -> None:
    """Helm's strvals (the SDK's engine, Helm 4.2.3) refuses to walk a `--set` into a null:
    `unable to parse key: interface conversion: interface {} is nil, not []interface {}`; so the
    tutorial's multi-SKU command over their values.yaml failed under Helm too. We read the null
    as the absent key it stands for; a null the `--set` does not walk into stays."""
    import helm_python

    with pytest.raises(helm_python.HelmError, match="interface {} is nil"):
        helm_python.parse_set_string("kubernetes.labels=null,kubernetes.labels[0].model=llama-3-8b")
    with pytest.raises(helm_python.HelmError, match="interface {} is nil"):
        helm_python.parse_set_string("kubernetes.labels=null,kubernetes.labels.model=llama-3-8b")
    # The README's way with helm itself: --set-json replaces the null instead of walking into it.
    assert helm_python.parse_set_json('kubernetes.labels=null,kubernetes.labels=[{"model":"llama-3-8b"}]') == {
        "kubernetes": {"labels": [{"model": "llama-3-8b"}]}
    }
    assert '--set-json \'kubernetes.labels=[{"model":"llama-3-8b"}]\'' in (CHART / "README.md").read_text()
    nulls = {"kubernetes": {"labels": None, "tolerations": None}}
    assert chart.apply_sets(nulls, ["kubernetes.labels[0].model=llama-3-8b"]) == {
        "kubernetes": {"labels": [{"model": "llama-3-8b"}], "tolerations": None}
    }
    assert chart.apply_sets(nulls, ["kubernetes.labels.model=llama-3-8b"])["kubernetes"]["labels"] == {
        "model": "llama-3-8b"
    }
    assert chart.apply_sets({"a": [{"b": None}]}, ["a[0].b.c=1"]) == {"a": [{"b": {"c": 1}}]}
    # A scalar over a null, a list index over a list, and a null an earlier --set made are Helm's own.
    assert chart.apply_sets(nulls, ["kubernetes.labels=x"])["kubernetes"]["labels"] == "x"
    assert chart.apply_sets({"gpu": ["A", "B"]}, ["gpu[0]=X"]) == {"gpu": ["X", "B"]}
    with pytest.raises(UsageError, match="a is null"):
        chart.apply_sets({}, ["a=null", "a.b=1"])
    with pytest.raises(UsageError, match="a is null"):
        chart.apply_set({"a": None}, "a.b=1")


def test_merge_values_reads_a_files_null_under_a_set_as_absent(tmp_path: Path) -> None:
    shipped = chart.merge_values([TUTORIAL_AS_SHIPPED], ["kubernetes.labels[0].model=llama-3-8b"])
    assert shipped["kubernetes"]["labels"] == [{"model": "llama-3-8b"}]
    assert "tolerations" in shipped["kubernetes"] and shipped["kubernetes"]["tolerations"] is None


def test_chart_lint_of_the_tutorials_values_yaml_as_shipped_and_a_model_file_is_clean() -> None:
    """`llmprep chart lint -f <their values.yaml> -f <their gpt2_values.yaml>`: the nulls are read as
    Helm reads them at install, as `chart template` does, so lint gives the same verdict."""
    from tests.conftest import run_cli

    files = [TUTORIAL_AS_SHIPPED, TUTORIAL_VALUES / "single" / "gpt2_values.yaml"]
    assert chart.lint(chart.merge_values(files), namespace=NAMESPACE) == []
    done = run_cli("chart", "lint", *(a for f in files for a in ("-f", str(f))))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "anyOf" not in done.stdout + done.stderr


def test_chart_lint_reports_a_schema_error_once_in_one_line_per_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("autoscaling:\n  metric:\n    name: 5\n    value: [1]\n")
    (line,) = chart.lint(chart.merge_values([TUTORIAL_AS_SHIPPED, bad]), namespace=NAMESPACE)
    assert "\n" not in line and "anyOf" not in line and "at '/" not in line
    keys = sorted(part.split(": ")[-2] for part in line.split("; "))
    assert keys == ["autoscaling.metric.name", "autoscaling.metric.value"]


def test_multi_sku_command_replaces_only_the_first_gpu_and_keeps_the_pool_label() -> None:
    objects = _install(TUTORIAL_COMMANDS[2])
    pod = one(objects, "Deployment")["spec"]["template"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [
        "NVIDIA-H100-SXM5-80GB",
        "NVIDIA-A100-SXM4-40GB",
    ]
    assert pod["metadata"]["labels"]["model"] == "llama-3-8b"
    assert not chart.find(objects, "Service")


@pytest.mark.parametrize("path", TUTORIAL_SINGLE + TUTORIAL_MULTINODE, ids=ids(TUTORIAL_SINGLE + TUTORIAL_MULTINODE))
def test_tutorial_files_install_without_our_values_file_too(path: Path) -> None:
    """`helm install -f <tutorial file>` alone: the chart's own defaults fill the rest."""
    assert one(render([path]), "Deployment")


@pytest.mark.parametrize("flavour", ["single", "multinode"])
def test_tutorial_chart_values_files_install_unchanged(flavour: str) -> None:
    assert one(render([TUTORIAL_VALUES / flavour / "values.yaml"]), "Deployment")


def test_every_object_and_pod_carries_the_tutorials_app_label(defaults: Objects) -> None:
    for obj in defaults:
        if obj["kind"] == "Pod":  # the helm test pod: kept out of the release's selectors on purpose
            continue
        assert obj["metadata"]["labels"]["app"] == RELEASE, obj["kind"]
    pod = one(defaults, "Deployment")["spec"]["template"]["metadata"]
    assert pod["labels"]["app"] == RELEASE


# --------------------------------------------------------------------------- packaging, dashboards, notes


def test_helm_package_builds_an_archive_that_loads_and_renders_the_same(tmp_path: Path) -> None:
    import helm_python

    archive = Path(helm_python.package(str(CHART), destination=str(tmp_path)))
    assert archive.name == "llmprep-0.1.0.tgz"
    with helm_python.Chart.load(archive) as packaged:
        assert packaged.metadata["version"] == "0.1.0"
    values = values_of()
    from_archive = chart.render(values, release=RELEASE, namespace=NAMESPACE, chart_dir=archive)
    assert from_archive == chart.render(values, release=RELEASE, namespace=NAMESPACE)


def test_package_leaves_out_the_checkov_config(tmp_path: Path) -> None:
    import tarfile

    import helm_python

    archive = helm_python.package(str(CHART), destination=str(tmp_path))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "llmprep/values.schema.json" in names and "llmprep/.checkov.yaml" not in names


def test_grafana_dashboards_render_into_a_configmap_for_the_sidecar(defaults: Objects) -> None:
    dashboards = chart.find(defaults, "ConfigMap", f"{RELEASE}-dashboards")[0]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    for name, text in dashboards["data"].items():
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())


def test_dashboard_configmap_holds_exactly_the_json_files_in_the_chart(tmp_path: Path) -> None:
    import shutil

    copy_dir = tmp_path / "llmprep"
    shutil.copytree(CHART, copy_dir)
    for old in (copy_dir / "dashboards").glob("*.json"):
        old.unlink()
    tiny = Path(__file__).parent / "data" / "tiny-dashboard.json"
    shutil.copy(tiny, copy_dir / "dashboards" / "tiny.json")
    objects = chart.render(values_of(), release=RELEASE, namespace=NAMESPACE, chart_dir=copy_dir)
    dashboards = chart.find(objects, "ConfigMap", f"{RELEASE}-dashboards")[0]
    assert dashboards["data"] == {"tiny.json": tiny.read_text().rstrip("\n")}


def test_dashboards_can_be_switched_off() -> None:
    objects = render(sets=["monitoring.grafanaDashboard.enabled=false"])
    assert not chart.find(objects, "ConfigMap", f"{RELEASE}-dashboards")


def test_notes_name_the_release_and_the_next_commands() -> None:
    text = chart.notes(values_of(), release=RELEASE, namespace=NAMESPACE)
    assert f"--selector app={RELEASE}" in text
    assert "custom.metrics.k8s.io" in text and "port-forward service/gpt2" in text


def test_render_error_names_the_required_image() -> None:
    with pytest.raises(SpecError, match=r"^triton\.image\.name: "):
        chart.render({}, release=RELEASE)

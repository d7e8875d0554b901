"""A tutorial user's first day (issue 20): the cache is writable, GPU taints are tolerated as the
tutorials did, their values files install as their README passes them, upgrades have a path, and
the model files are sized for their model and use the proven signals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import CHART, RELEASE, container, one, render
from tests.conftest import TUTORIAL_VALUES

SINGLE = TUTORIAL_VALUES / "single"
AS_SHIPPED = SINGLE / "values-as-shipped.yaml"
RATIO = "triton:queue_compute:ratio"


def _pod(files: list[Path] = [], sets: list[str] = []) -> dict:  # noqa: B006 - never mutated
    return one(render(files, sets), "Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize("taint_value", [None, "present", "true"], ids=["no value", "present", "true"])
def test_the_gpu_taint_is_tolerated_whatever_its_value(taint_value: str | None) -> None:
    taint = {"key": "nvidia.com/gpu", "value": taint_value, "effect": "NoSchedule"}
    tolerated = any(
        t.get("key") == taint["key"]
        and t.get("effect") == taint["effect"]
        and (t.get("operator") == "Exists" or t.get("value") == taint["value"])
        for t in _pod()["tolerations"]
    )
    assert tolerated


def test_the_cache_owner_step_runs_before_prepare_on_a_hostpath_cache() -> None:
    names = [c["name"] for c in _pod()["initContainers"]]
    assert names[:2] == ["cache-owner", "prepare"]
    assert _pod()["volumes"][1]["hostPath"]["type"] == "DirectoryOrCreate"


@pytest.mark.parametrize("model", sorted(p.name for p in SINGLE.glob("*_values.yaml")))
def test_the_tutorial_values_yaml_as_shipped_installs_before_each_model_file(model: str) -> None:
    """Their README: --values ./chart/values.yaml --values ./chart/<model>_values.yaml (nulls included)."""
    assert one(render([AS_SHIPPED, SINGLE / model]), "Deployment")


def test_a_null_placeholder_leaves_the_chart_default_in_place() -> None:
    pod = _pod([AS_SHIPPED])
    assert container(render([AS_SHIPPED]), "triton")["resources"]["limits"]["cpu"] == "4"
    assert pod["volumes"][1]["hostPath"]["path"] == "/triton"


def test_a_null_in_a_later_file_removes_what_an_earlier_file_set(tmp_path: Path) -> None:
    later = tmp_path / "later.yaml"
    later.write_text("autoscaling:\n  metric:\n    name:\n    value:\n")
    hpa = one(render([SINGLE / "values.yaml", later]), "HorizontalPodAutoscaler")
    assert RATIO not in {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}


def test_the_tutorials_image_pull_policy_key_is_honoured() -> None:
    assert container(render([AS_SHIPPED, SINGLE / "gpt2_values.yaml"]), "triton")["imagePullPolicy"] == "Always"


def test_a_schema_error_is_one_line_per_key_naming_what_is_allowed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("autoscaling:\n  metric:\n    name: 5\n    value: [1]\n")
    with pytest.raises(SpecError) as caught:
        render([bad])
    message = str(caught.value)
    assert "\n" not in message and "anyOf" not in message
    parts = message.split("; ")
    assert sorted(p.split(":")[0] for p in parts) == ["autoscaling.metric.name", "autoscaling.metric.value"]
    value = next(p for p in parts if p.startswith("autoscaling.metric.value"))
    assert "string" in value and "number" in value


def test_the_tutorial_selector_differs_and_the_readme_gives_the_upgrade_sequence() -> None:
    """Deployment selectors are immutable: ours adds app.kubernetes.io/* labels to the tutorial's
    app=<release>, so `helm upgrade` of a tutorial release cannot patch it in place."""
    seed = yaml.safe_load((TUTORIAL_VALUES / "seed" / "selectors.yaml").read_text())["single"]
    theirs = {k: v.format(release=RELEASE) for k, v in seed["matchLabels"].items()}
    ours = one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert theirs.items() <= ours.items() and ours != theirs
    readme = (CHART / "README.md").read_text()
    assert "## Upgrading a tutorial release" in readme
    assert "kubectl delete deployment <release> --cascade=orphan" in readme


def _model(name: str) -> dict:
    return yaml.safe_load((CHART / "models" / name).read_text())


@pytest.mark.parametrize("name", ["gpt2.yaml", "opt125m.yaml"])
def test_a_small_model_fits_an_entry_gpu_node(name: str) -> None:
    """g4dn.xlarge (T4): 4 vCPU, 16 GiB; the pod's containers must fit beside the kubelet's reserve."""
    objects = render([CHART / "models" / name])
    for c in ("prepare", "triton"):
        limits = container(objects, c)["resources"]["limits"]
        assert float(limits["cpu"]) <= 2 and int(limits["memory"].removesuffix("Gi")) <= 8, (c, limits)


@pytest.mark.parametrize("path", sorted((CHART / "models").glob("*.yaml")), ids=lambda p: p.name)
def test_no_model_file_brings_back_the_rejected_queue_compute_ratio(path: Path) -> None:
    hpa = render([path])
    names = (
        {m["pods"]["metric"]["name"] for m in one(hpa, "HorizontalPodAutoscaler")["spec"]["metrics"]}
        if chart.find(hpa, "HorizontalPodAutoscaler")
        else set()
    )
    assert RATIO not in names
    assert "metric" not in (_model(path.name).get("autoscaling") or {})

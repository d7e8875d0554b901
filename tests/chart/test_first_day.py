"""A tutorial user's first day (issue 20): the cache is writable, GPU taints are tolerated as the
tutorials did, their values files install as their README passes them, upgrades have a path, and
the model files are sized for their model and use the proven signals."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

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


def _run_cache_owner(owner: dict[str, Any], tmp_path: Path, cache: Path | None = None) -> list[str]:
    """Run the cache-owner command with `chown` and `chmod` stand-ins that log their arguments
    (on `cache` in place of the pod's mount path; an empty folder stands in for a fresh hostPath)."""
    if cache is None:
        cache = tmp_path / "cache"
        cache.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for tool in ("chown", "chmod"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {shlex.quote(str(log))}\n')
        stub.chmod(0o755)
    done = subprocess.run(
        [*owner["command"], *owner.get("args", [])[:-1], str(cache)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_the_cache_owner_chowns_the_mounted_cache_for_the_pods_uid_and_nothing_else(tmp_path: Path) -> None:
    pod = _pod()
    owner = next(c for c in pod["initContainers"] if c["name"] == "cache-owner")
    prepare = next(c for c in pod["initContainers"] if c["name"] == "prepare")
    cache = next(m["mountPath"] for m in owner["volumeMounts"] if m["name"] == "cache")
    assert cache == next(m["mountPath"] for m in prepare["volumeMounts"] if m["name"] == "cache") == "/cache"
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 10001
    # The path reaches the script as $1, never spliced into the shell text.
    assert owner["command"][:2] == ["sh", "-c"] and cache not in owner["command"][2]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert _run_cache_owner(owner, tmp_path, fresh) == [f"chown 10001:10001 {fresh}", f"chmod 0770 {fresh}"]
    assert [m["name"] for m in owner["volumeMounts"]] == ["cache"]


def test_the_cache_owner_also_hands_over_what_a_root_pod_left_inside_the_cache(tmp_path: Path) -> None:
    # A tutorial's pods ran as root on the same hostPath: their folders inside must become ours too.
    owner = next(c for c in _pod()["initContainers"] if c["name"] == "cache-owner")
    cache = tmp_path / "cache"
    (cache / "hf" / "gpt2").mkdir(parents=True)
    (cache / "hf" / "gpt2" / "config.json").write_text("{}")
    calls = _run_cache_owner(owner, tmp_path, cache)
    assert calls[:2] == [f"chown 10001:10001 {cache}", f"chmod 0770 {cache}"]
    handed = " ".join(calls[2:])
    assert handed.startswith("chown -h 10001:10001 ")
    for inside in ("hf", "hf/gpt2", "hf/gpt2/config.json"):
        assert str(cache / inside) in handed


def test_the_cache_owner_runs_as_root_with_only_chown_and_fowner() -> None:
    owner = next(c for c in _pod()["initContainers"] if c["name"] == "cache-owner")
    context = owner["securityContext"]
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert not context.get("privileged", False)
    assert set(context) <= {
        "runAsUser",
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "capabilities",
    }


def test_no_cache_owner_step_where_fsgroup_or_the_node_makes_the_cache_writable() -> None:
    for sets in (
        ["cache.persistentVolumeClaim.create=true"],
        ["model.persistentVolumeClaim=llm-cache"],
        ["cache.hostPathOwner=false"],
    ):
        assert "cache-owner" not in [c["name"] for c in _pod(sets=sets)["initContainers"]], sets


def test_the_containers_readme_no_longer_says_fsgroup_makes_the_hostpath_cache_writable() -> None:
    text = (CHART.parent / "containers" / "README.md").read_text()
    assert "the cache volume is writable through `fsGroup`" not in text
    assert "`fsGroup` does not apply to hostPath" in text and "cache-owner" in text


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


def _seed() -> dict[str, Any]:
    single = yaml.safe_load((TUTORIAL_VALUES / "seed" / "selectors.yaml").read_text())["single"]
    return {
        key: ({k: v.format(release=RELEASE) for k, v in value.items()} if isinstance(value, dict) else value)
        for key, value in single.items()
    }


def test_the_tutorial_selector_differs_so_helm_upgrade_cannot_patch_it() -> None:
    """Deployment selectors are immutable: ours adds app.kubernetes.io/* labels to the tutorial's
    app=<release>, so `helm upgrade` of a tutorial release cannot patch it in place."""
    theirs = _seed()["matchLabels"]
    deployment = one(render(), "Deployment")
    ours = deployment["spec"]["selector"]["matchLabels"]
    assert theirs.items() <= ours.items() and ours != theirs
    assert deployment["metadata"]["name"] == _seed()["deploymentName"].format(release=RELEASE)


def _upgrade_section() -> tuple[str, list[list[str]]]:
    """The README's "Upgrading a tutorial release": its text and its sh block's commands as words."""
    readme = (CHART / "README.md").read_text()
    section = readme.split("## Upgrading a tutorial release", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(c, comments=True) for c in block.replace("\\\n", " ").splitlines()]
    return section, [c for c in commands if c]


def _selector_of(words: list[str]) -> str | None:
    for flag in ("-l", "--selector"):
        if flag in words:
            return words[words.index(flag) + 1]
    return next((w.split("=", 1)[1] for w in words if w.startswith("--selector=")), None)


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes' label-selector grammar as kubectl takes it: k=v, k==v, k!=v, k, !k, k in (…), k notin (…)."""
    for requirement in re.split(r",(?![^()]*\))", selector):
        requirement = requirement.strip()
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", requirement):
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (op == "in") != (key in labels and labels[key] in values):
                return False
        elif "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = re.split(r"==?", requirement, maxsplit=1)
            if labels.get(key) != value:
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif requirement not in labels:
            return False
    return True


def test_the_readme_upgrade_sequence_retires_the_tutorials_replicaset_and_nothing_of_ours() -> None:
    """`kubectl delete deployment --cascade=orphan` leaves the old ReplicaSet running; deleting its
    pods alone only has them recreated. The documented sequence deletes the ReplicaSet, with a
    selector that matches the tutorial's ReplicaSet and pods and none of the objects we render."""
    section, commands = _upgrade_section()
    release = RELEASE
    commands = [[w.replace("<release>", release) for w in c] for c in commands]
    verbs = [" ".join(c[:3]) for c in commands]
    assert commands[0] == ["kubectl", "delete", "deployment", release, "--cascade=orphan"]
    assert (
        verbs.index("kubectl delete replicaset")
        > verbs.index("kubectl rollout status")
        > verbs.index("helm upgrade " + release)
    )
    assert not any(c[:3] == ["kubectl", "delete", "pod"] or c[:3] == ["kubectl", "delete", "pods"] for c in commands)
    assert ["kubectl", "rollout", "status", f"deployment/{release}"] in commands

    seed = _seed()
    theirs_pod = {**seed["podLabels"], "pod-template-hash": seed["podTemplateHash"]}
    theirs_replicaset = dict(theirs_pod)  # the controller copies the pod template's labels, hash included
    objects = render()
    deployment = one(objects, "Deployment")
    ours_pod = {**deployment["spec"]["template"]["metadata"]["labels"], "pod-template-hash": "5d8f7c9b6"}
    selectors = [(c, _selector_of(c)) for c in commands if _selector_of(c)]
    assert selectors and any(c[:3] == ["kubectl", "delete", "replicaset"] for c, _ in selectors)
    for command, selector in selectors:
        assert selector is not None
        assert _matches(selector, theirs_replicaset) and _matches(selector, theirs_pod), command
        assert not _matches(selector, ours_pod), command
        for obj in objects:
            assert not _matches(selector, obj["metadata"].get("labels") or {}), (command, obj["kind"])
    # The GPU caveat: the orphans hold their GPUs while the new pods start.
    assert "GPU capacity" in section and "Pending" in section


def test_the_selector_grammar_used_by_the_upgrade_test() -> None:
    labels = {"app": "gpt2", "app.kubernetes.io/component": "server"}
    assert _matches("app=gpt2,!app.kubernetes.io/instance", labels)
    assert not _matches("app=gpt2,!app.kubernetes.io/component", labels)
    assert _matches("app==gpt2,app.kubernetes.io/component in (server, worker)", labels)
    assert not _matches("app!=gpt2", labels) and not _matches("tier", labels)
    assert _matches("app notin (other)", labels)


def _model(name: str) -> dict:
    return yaml.safe_load((CHART / "models" / name).read_text())


NODE_SIZES = yaml.safe_load((Path(__file__).parent / "data" / "gpu-node-sizes.yaml").read_text())["products"]
# Model files whose model needs more host memory than the smallest node of a product gives: the
# node memory (GiB) they are sized for, and why. Every other file must fit the smallest node of
# each product it names that has the pod's GPUs.
NEEDS_NODE_MEMORY = {
    "llama-3-8b.yaml": (64, "8 B in bf16, the chart's 32Gi defaults (the tutorials' sizes); see the file's header"),
    "mistral-7b.yaml": (64, "7 B in bf16, the chart's 32Gi defaults (the tutorials' sizes); see the file's header"),
}
# A node's allocatable share, as the EKS AMI reserves it (awslabs/amazon-eks-ami: kube-reserved
# memory 11 MiB × max pods + 255 MiB, CPU 6 % of the first core, 1 % of the second, 0.5 % of the
# third and fourth, 0.25 % of the rest; eviction threshold 100 MiB), with max pods 110, 5 % of the
# nominal memory the kernel keeps, and room for the GPU node's DaemonSets (device plugin, GPU
# feature discovery, DCGM exporter, CNI, kube-proxy): 0.5 CPU and 1 GiB.
DAEMONSETS = {"cpu": 0.5, "memory": 1.0}


def _allocatable(node: dict[str, Any]) -> dict[str, float]:
    cores = float(node["cpu"])
    reserved = 0.06 * min(cores, 1) + 0.01 * min(max(cores - 1, 0), 1) + 0.005 * min(max(cores - 2, 0), 2)
    reserved += 0.0025 * max(cores - 4, 0)
    memory = node["memoryGi"] * 0.95 - (255 + 11 * 110 + 100) / 1024
    return {"cpu": cores - reserved - DAEMONSETS["cpu"], "memory": memory - DAEMONSETS["memory"]}


def _quantity(value: Any, unit: str) -> float:
    text = str(value)
    if unit == "cpu":
        return float(text.removesuffix("m")) / 1000 if text.endswith("m") else float(text)
    for suffix, power in (("Ki", 1), ("Mi", 2), ("Gi", 3), ("Ti", 4)):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * 1024**power / 1024**3
    return float(text) / 1024**3


def _reserved(spec: dict[str, Any]) -> dict[str, float]:
    """What the scheduler reserves for a pod: per resource, the larger of its largest init container
    and its containers together (no sidecars here)."""
    out = {}
    for unit in ("cpu", "memory"):
        init = [_quantity(c["resources"]["requests"][unit], unit) for c in spec.get("initContainers", [])]
        main = sum(_quantity(c["resources"]["requests"][unit], unit) for c in spec["containers"])
        out[unit] = max([*init, main])
    return out


def _pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = [("pod", d["spec"]["template"]["spec"]) for d in chart.find(objects, "Deployment")]
    for group in chart.find(objects, "LeaderWorkerSet"):
        template = group["spec"]["leaderWorkerTemplate"]
        specs += [(role, template[f"{role}Template"]["spec"]) for role in ("leader", "worker")]
    return specs


@pytest.mark.parametrize("path", sorted((CHART / "models").glob("*.yaml")), ids=lambda p: p.name)
def test_every_model_file_fits_the_smallest_node_of_each_gpu_it_names(path: Path) -> None:
    """Issue 20 item 9: a model file sizes its containers for its model. Each pod must fit the
    smallest node (tests/chart/data/gpu-node-sizes.yaml) of every product it may run on that has the
    pod's GPUs, or, for a file in NEEDS_NODE_MEMORY, the smallest such node of that memory."""
    from llmprep import gpu_fit

    floor = NEEDS_NODE_MEMORY.get(path.name, (0, ""))[0]
    for role, spec in _pod_specs(render([path])):
        gpus = gpu_fit.pod_gpus(spec)
        reserved = _reserved(spec)
        term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        for product in term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]:
            assert product in NODE_SIZES, f"{product}: add its instances to tests/chart/data/gpu-node-sizes.yaml"
            fitting = [n for n in NODE_SIZES[product] if n["gpus"] >= gpus and n["memoryGi"] >= floor]
            assert fitting, f"{path.name}: no {product} node has {gpus} GPUs and {floor} GiB"
            node = min(fitting, key=lambda n: (n["gpus"], n["memoryGi"]))
            room = _allocatable(node)
            for unit in ("cpu", "memory"):
                assert reserved[unit] <= room[unit], (path.name, role, product, node["instance"], unit, reserved, room)


@pytest.mark.parametrize("name", sorted(NEEDS_NODE_MEMORY))
def test_a_model_file_sized_above_the_smallest_node_says_so_and_needs_it(name: str) -> None:
    """The exceptions are real: the file does not fit the smallest node, and its header says which it needs."""
    text = (CHART / "models" / name).read_text()
    assert "64 GiB" in text and "g5.4xlarge" in text
    (spec,) = [s for _, s in _pod_specs(render([CHART / "models" / name]))]
    smallest = _allocatable(NODE_SIZES["NVIDIA-A10G"][0])
    assert _reserved(spec)["memory"] > smallest["memory"]


@pytest.mark.parametrize("name", ["gpt2.yaml", "opt125m.yaml", "qwen2.5-0.5b-instruct-pytorch.yaml"])
def test_a_small_model_asks_for_less_than_the_chart_defaults(name: str) -> None:
    """The small models set their own sizes rather than the chart's 4 CPU / 32Gi."""
    objects = render([CHART / "models" / name])
    for c in ("prepare", "triton"):
        requests = container(objects, c)["resources"]["requests"]
        assert _quantity(requests["cpu"], "cpu") <= 2 and _quantity(requests["memory"], "memory") <= 10, (c, requests)


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

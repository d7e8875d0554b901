"""Pod security across every way the chart is installed: defaults, every chart/models/*.yaml, every
tutorial values file, and the switches that add objects. (checkov over the same renders runs in
tests/chart/test_checkov.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmprep import chart
from tests.chart.conftest import IMAGE, MODEL_FILES, TUTORIAL_FILES, ids

VALUES = chart.CHART_DIR / "values.yaml"
SWITCHES = {
    "keda": ["autoscaling.engine=keda"],
    "created claim": ["cache.persistentVolumeClaim.create=true"],
    "token secret, no service": ["model.pullSecret=hf-model-pull", "kubernetes.noService=true"],
    "service account": ["kubernetes.serviceAccount=llm-runner"],
    "network policy": ["networkPolicy.enabled=true"],
}
CASES: list[tuple[list[Path], list[str]]] = [
    ([], []),
    *(([VALUES, f], []) for f in MODEL_FILES),
    *(([VALUES, f], []) for f in TUTORIAL_FILES),
    *(([], sets) for sets in SWITCHES.values()),
]
CASE_IDS = ["defaults", *ids(MODEL_FILES), *ids(TUTORIAL_FILES), *SWITCHES]
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod", "LeaderWorkerSet"}
# The one container allowed root: it chowns a kubelet-created hostPath cache directory to the pod's
# uid (values.yaml `cache.hostPathOwner` says why); its exact privileges are pinned below.
CACHE_OWNER = "cache-owner"


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template of an object, named `Kind/name[/template]`."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        yield name, spec
    elif obj["kind"] == "LeaderWorkerSet":
        lws = spec["leaderWorkerTemplate"]
        for part in ("leaderTemplate", "workerTemplate"):
            if part in lws:
                yield f"{name}/{part}", lws[part]["spec"]
    elif obj["kind"] == "Job":
        yield name, spec["template"]["spec"]
    else:
        yield name, spec["template"]["spec"]


@pytest.fixture(scope="module", params=CASES, ids=CASE_IDS)
def pods(request: pytest.FixtureRequest) -> list[tuple[str, dict[str, Any]]]:
    files, sets = request.param
    objects = chart.render(chart.merge_values(files, [f"triton.image.name={IMAGE}", *sets]))
    found = [pod for obj in objects if obj["kind"] in POD_KINDS for pod in pod_specs(obj)]
    assert found, "no pod template rendered"
    return found


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def unprivileged(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in containers(pod) if c["name"] != CACHE_OWNER]


def test_every_container_runs_as_a_non_root_user(pods: list[tuple[str, dict[str, Any]]]) -> None:
    for name, pod in pods:
        for c in unprivileged(pod):
            assert effective(pod, c, "runAsNonRoot") is True, f"{name}/{c['name']}"
            assert effective(pod, c, "runAsUser") not in (None, 0), f"{name}/{c['name']}"


def test_every_container_drops_all_capabilities_and_cannot_escalate(pods: list[tuple[str, dict[str, Any]]]) -> None:
    for name, pod in pods:
        for c in containers(pod):
            context = c.get("securityContext", {})
            added = set(context.get("capabilities", {}).get("add") or [])
            assert "ALL" in context.get("capabilities", {}).get("drop", []), f"{name}/{c['name']}"
            assert added <= ({"CHOWN", "FOWNER"} if c["name"] == CACHE_OWNER else set()), f"{name}/{c['name']}"
            assert context.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']}"
            assert not context.get("privileged"), f"{name}/{c['name']}"


def test_every_container_runs_under_the_runtime_default_seccomp_profile(pods: list[tuple[str, dict[str, Any]]]) -> None:
    for name, pod in pods:
        for c in containers(pod):
            profile = effective(pod, c, "seccompProfile") or {}
            assert profile.get("type") == "RuntimeDefault", f"{name}/{c['name']}: {profile}"


def test_every_root_filesystem_is_read_only(pods: list[tuple[str, dict[str, Any]]]) -> None:
    for name, pod in pods:
        for c in containers(pod):
            assert c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}"


def test_no_pod_mounts_a_service_account_token(pods: list[tuple[str, dict[str, Any]]]) -> None:
    # Nothing in the pods calls the Kubernetes API (serve reads LeaderWorkerSet's variables, not the API).
    for name, pod in pods:
        assert pod.get("automountServiceAccountToken") is False, name


def test_no_pod_shares_the_host_namespaces(pods: list[tuple[str, dict[str, Any]]]) -> None:
    for name, pod in pods:
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name


# --------------------------------------------------------------------------- NetworkPolicy

RELEASE = "llm"


def network_policy(*sets: str) -> dict[str, Any] | None:
    objects = chart.render(chart.merge_values([], [f"triton.image.name={IMAGE}", *sets]), release=RELEASE)
    found = chart.find(objects, "NetworkPolicy")
    assert len(found) <= 1
    return found[0] if found else None


def test_the_network_policy_can_be_turned_off() -> None:
    assert network_policy("networkPolicy.enabled=false") is None


def test_the_network_policy_admits_only_tritons_ports_to_the_release_pods() -> None:
    policy = network_policy("networkPolicy.enabled=true")
    assert policy is not None
    objects = chart.render(chart.merge_values([], [f"triton.image.name={IMAGE}"]), release=RELEASE)
    pod_labels = chart.find(objects, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = sorted(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"])
    assert ports == [8000, 8001, 8002]


def test_inference_and_metrics_ports_admit_only_the_configured_peers() -> None:
    clients = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    values = chart.merge_values([], [f"triton.image.name={IMAGE}", "networkPolicy.enabled=true"])
    values["networkPolicy"].update({"inferenceFrom": [clients], "metricsFrom": [prometheus]})
    policy = chart.find(chart.render(values, release=RELEASE), "NetworkPolicy")[0]
    by_port = {p["port"]: rule.get("from") for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert by_port == {8000: [clients], 8001: [clients], 8002: [prometheus]}


def _cache_owner(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for obj in objects
        if obj["kind"] in POD_KINDS
        for _, pod in pod_specs(obj)
        for c in containers(pod)
        if c["name"] == CACHE_OWNER
    ]


def test_a_hostpath_cache_is_handed_to_the_pod_uid_by_a_root_step_with_only_chown_and_fowner() -> None:
    objects = chart.render(chart.merge_values([], [f"triton.image.name={IMAGE}"]))
    pod = chart.find(objects, "Deployment")[0]["spec"]["template"]["spec"]
    (owner,) = _cache_owner(objects)
    context = owner["securityContext"]
    assert pod["initContainers"][0]["name"] == CACHE_OWNER  # before prepare writes the cache
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert sorted(context["capabilities"]["add"]) == ["CHOWN", "FOWNER"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert [m["name"] for m in owner["volumeMounts"]] == ["cache"]
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    assert f"chown {uid}:{gid} " in owner["command"][-1]


@pytest.mark.parametrize(
    "sets",
    [["cache.persistentVolumeClaim.create=true"], ["model.persistentVolumeClaim=nfs"], ["cache.hostPathOwner=false"]],
    ids=["created claim", "named claim", "switched off"],
)
def test_no_root_step_runs_where_the_cache_needs_none(sets: list[str]) -> None:
    assert _cache_owner(chart.render(chart.merge_values([], [f"triton.image.name={IMAGE}", *sets]))) == []

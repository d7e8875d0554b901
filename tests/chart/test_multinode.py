"""Models larger than one node: the chart renders a LeaderWorkerSet whose groups serve one model.

No LWS controller or cluster runs here: the LeaderWorkerSet is checked against a strict schema
written from the CRD's OpenAPI (tests/chart/data/lws-schema.json), its pod templates against
Kubernetes' own PodTemplate schema, and its command lines by running `llmprep serve --dry-run`
with the variables the LWS controller sets.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import CHART, NAMESPACE, RELEASE, TUTORIAL_MULTINODE, Objects, ids, one, render, values_of
from tests.chart.test_checkov import CHECKOV, _checkov
from tests.conftest import ROOT, TUTORIAL_VALUES, run_cli

LWS_SCHEMA = json.loads((Path(__file__).parent / "data" / "lws-schema.json").read_text())
KUBE_VERSION = kubernetes_validate.latest_version()
MULTINODE_MODELS = sorted((CHART / "models").glob("*-multinode.yaml"))
LWS = f"{RELEASE}-lws"
GATE_REPO = ROOT / "tests" / "data" / "gate_repo"
SSH_FILES = {"id_ed25519", "authorized_keys", "ssh_host_ed25519_key", "known_hosts"}

# The smallest multi-node release: 16 GPUs in pods of 8, a shared claim, the ssh Secret.
BASE = [
    "model.tensorrtLlm.parallelism.tensor=8",
    "model.tensorrtLlm.parallelism.pipeline=2",
    "model.persistentVolumeClaim=llm-cache",
    "multinode.ssh.existingSecret=llm-ssh",
]
# The tutorial chart made one pod per GPU; gpusPerNode=1 reproduces that layout (gpusPerNode auto gives
# it without these sets: tests/chart/test_multinode_tutorial.py).
TUTORIAL_SETS = ["multinode.enabled=true", "multinode.gpusPerNode=1", "multinode.ssh.existingSecret=llm-ssh"]

CASES: list[tuple[list[Path], list[str]]] = [
    ([], BASE),
    *(([CHART / "values.yaml", f], []) for f in MULTINODE_MODELS),
    *(([TUTORIAL_VALUES / "multinode" / "values.yaml", f], TUTORIAL_SETS) for f in TUTORIAL_MULTINODE),
]
CASE_IDS = ["16 GPUs in pods of 8", *ids(MULTINODE_MODELS), *ids(TUTORIAL_MULTINODE)]


@pytest.fixture(scope="module")
def base() -> Objects:
    return render(sets=BASE)


@pytest.fixture(scope="module", params=CASES, ids=CASE_IDS)
def case(request: pytest.FixtureRequest) -> Objects:
    files, sets = request.param
    return render(files, sets)


def _lws(objects: Objects) -> dict[str, Any]:
    return one(objects, "LeaderWorkerSet")


def _template(objects: Objects, role: str) -> dict[str, Any]:
    return _lws(objects)["spec"]["leaderWorkerTemplate"][f"{role}Template"]


def _container(objects: Objects, role: str, name: str = "triton") -> dict[str, Any]:
    spec = _template(objects, role)["spec"]
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def _lws_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(LWS_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def _fails(sets: list[str], key: str) -> None:
    with pytest.raises(SpecError, match=re.escape(key)):
        render(sets=sets)


# --------------------------------------------------------------------------- the object and its schema


def test_every_multinode_case_renders_a_leaderworkerset_instead_of_a_deployment(case: Objects) -> None:
    kinds = [o["kind"] for o in case]
    assert kinds.count("LeaderWorkerSet") == 1 and "Deployment" not in kinds


def test_every_leaderworkerset_validates_against_the_strict_crd_schema(case: Objects) -> None:
    assert _lws_errors(_lws(case)) == []


@pytest.mark.parametrize("role", ["leader", "worker"])
def test_every_pod_template_validates_strictly_as_a_kubernetes_pod_template(case: Objects, role: str) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": f"{LWS}-{role}"},
        "template": _template(case, role),
    }
    kubernetes_validate.validate(template, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        (["spec"], "replica", 2),
        (["spec", "leaderWorkerTemplate"], "restartPolicy", "RecreateGroupOnRestart"),
        (["spec"], "startupPolicy", "LeaderFirst"),
        (["spec", "networkConfig"], "subdomainPolicy", "PerGroup"),
        (["spec", "leaderWorkerTemplate"], "size", 0),
    ],
)
def test_the_crd_schema_rejects_a_misspelt_key_or_an_unknown_value(
    base: Objects, path: list[str], key: str, value: Any
) -> None:
    lws = copy.deepcopy(_lws(base))
    node = lws
    for part in path:
        node = node[part]
    node[key] = value
    assert _lws_errors(lws)


def test_strict_pod_template_validation_catches_a_misspelt_key(base: Objects) -> None:
    template = copy.deepcopy(_template(base, "worker"))
    template["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": template},
            KUBE_VERSION,
            strict=True,
        )


def test_a_one_pod_group_recreates_on_failure_and_starts_workers_with_the_leader(base: Objects) -> None:
    spec = _lws(base)["spec"]
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    # LeaderReady would deadlock: the leader is ready only after its mpirun reached every worker.
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["networkConfig"] == {"subdomainPolicy": "Shared"}


def test_the_leaderworkerset_is_not_named_like_the_service_the_lws_controller_would_reuse(base: Objects) -> None:
    assert _lws(base)["metadata"]["name"] == LWS != one(base, "Service")["metadata"]["name"]


def test_a_long_release_name_keeps_worker_pod_names_within_a_dns_label() -> None:
    name = "a" * 53
    objects = chart.render(values_of(sets=BASE), release=name, namespace=NAMESPACE)
    lws = _lws(objects)["metadata"]["name"]
    assert len(f"{lws}-99-99") <= 63


# --------------------------------------------------------------------------- group size


@pytest.mark.parametrize(
    ("tensor", "pipeline", "per_node", "enabled", "size", "per_pod"),
    [
        (8, 2, 8, False, 2, 8),  # automatic: 16 GPUs > 8 per node
        (8, 4, 8, False, 4, 8),  # 4 nodes of 8
        (4, 4, 4, False, 4, 4),
        (8, 1, 4, False, 2, 4),
        (8, 1, 1, True, 8, 1),  # the tutorial's one pod per GPU
        (2, 1, 8, True, 1, 2),  # enabled, fits one node: a group of one pod
    ],
)
def test_group_size_is_gpus_divided_by_gpus_per_node(
    tensor: int, pipeline: int, per_node: int, enabled: bool, size: int, per_pod: int
) -> None:
    objects = render(
        sets=[
            *BASE,
            f"model.tensorrtLlm.parallelism.tensor={tensor}",
            f"model.tensorrtLlm.parallelism.pipeline={pipeline}",
            f"multinode.gpusPerNode={per_node}",
            f"multinode.enabled={str(enabled).lower()}",
        ]
    )
    assert _lws(objects)["spec"]["leaderWorkerTemplate"]["size"] == size
    for role, name in (("leader", "prepare"), ("leader", "triton"), ("worker", "triton")):
        resources = _container(objects, role, name)["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == str(per_pod)


@pytest.mark.parametrize(("tensor", "per_node"), [(8, 8), (4, 8), (1, 8)])
def test_a_model_that_fits_one_node_stays_a_deployment(tensor: int, per_node: int) -> None:
    objects = render(sets=[f"model.tensorrtLlm.parallelism.tensor={tensor}", f"multinode.gpusPerNode={per_node}"])
    assert one(objects, "Deployment") and not chart.find(objects, "LeaderWorkerSet")


def test_cpu_and_memory_defaults_follow_the_gpus_of_one_pod_not_of_the_group(base: Objects) -> None:
    limits = _container(base, "leader")["resources"]["limits"]
    assert (limits["cpu"], limits["memory"]) == ("8", "64Gi")


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (
            ["model.tensorrtLlm.parallelism.tensor=12", "model.tensorrtLlm.parallelism.pipeline=1"],
            "multinode.gpusPerNode",
        ),
        (["model.persistentVolumeClaim="], "model.persistentVolumeClaim"),
        (
            [
                "model.persistentVolumeClaim=",
                "cache.persistentVolumeClaim.create=true",
                "cache.persistentVolumeClaim.accessModes[0]=ReadWriteOnce",
            ],
            "cache.persistentVolumeClaim.accessModes",
        ),
        (["multinode.ssh.existingSecret="], "multinode.ssh.existingSecret"),
        (["multinode.topologyKey=kubernetes.io/hostname"], "multinode.topologyKey"),
        (["multinode.gang.provider=kueue"], "multinode.gang.queue"),
        (["multinode.waitWorkersSeconds=1800"], "triton.probes.startupFailureThreshold"),
    ],
)
def test_an_impossible_layout_fails_naming_the_key(sets: list[str], key: str) -> None:
    _fails([*BASE, *sets], key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("multinode.bogus", "1"),
        ("multinode.gang.provider", "coscheduling"),
        ("multinode.gpusPerNode", "0"),
        ("multinode.sshPort", "8000"),
        ("multinode.ssh.existingSecret", "Not_A_Name"),
    ],
)
def test_the_values_schema_rejects_unknown_multinode_keys_and_values(key: str, value: str) -> None:
    _fails([*BASE, f"{key}={value}"], key.split(".")[-1])


def test_a_one_pod_group_needs_no_ssh_secret() -> None:
    objects = render(
        sets=[
            "multinode.enabled=true",
            "model.tensorrtLlm.parallelism.tensor=2",
            "model.persistentVolumeClaim=llm-cache",
        ]
    )
    leader = _template(objects, "leader")["spec"]
    assert "--ssh-port" not in leader["containers"][0]["command"]
    assert not [v for v in leader["volumes"] if v["name"] == "model-spec-ssh"]


def test_a_created_readwritemany_claim_is_a_shared_cache_too() -> None:
    objects = render(sets=[*BASE, "model.persistentVolumeClaim=", "cache.persistentVolumeClaim.create=true"])
    for role in ("leader", "worker"):
        cache = next(v for v in _template(objects, role)["spec"]["volumes"] if v["name"] == "cache")
        assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": f"{RELEASE}-cache"}}


def test_leader_and_worker_mount_the_same_shared_claim(base: Objects) -> None:
    for role in ("leader", "worker"):
        cache = next(v for v in _template(base, role)["spec"]["volumes"] if v["name"] == "cache")
        assert cache["persistentVolumeClaim"]["claimName"] == "llm-cache"


# --------------------------------------------------------------------------- placement and gang scheduling


@pytest.mark.parametrize(
    ("sets", "annotation"),
    [
        ([], None),
        (["multinode.topologyKey=network.example.com/rack"], "network.example.com/rack"),
        (["multinode.topologyKey=cloud.google.com/gke-nodepool"], "cloud.google.com/gke-nodepool"),
    ],
)
def test_topology_key_sets_the_exclusive_topology_annotation(sets: list[str], annotation: str | None) -> None:
    annotations = _lws(render(sets=[*BASE, *sets]))["metadata"].get("annotations", {})
    assert annotations.get("leaderworkerset.sigs.k8s.io/exclusive-topology") == annotation


def test_hostname_topology_is_fine_for_one_pod_groups() -> None:
    objects = render(
        sets=[
            "multinode.enabled=true",
            "model.persistentVolumeClaim=llm-cache",
            "multinode.topologyKey=kubernetes.io/hostname",
        ]
    )
    annotations = _lws(objects)["metadata"]["annotations"]
    assert annotations["leaderworkerset.sigs.k8s.io/exclusive-topology"] == "kubernetes.io/hostname"


@pytest.mark.parametrize(
    ("sets", "queue_label", "scheduler", "volcano_queue"),
    [
        ([], None, None, None),
        (["multinode.gang.provider=kueue", "multinode.gang.queue=gpu-h100"], "gpu-h100", None, None),
        (["multinode.gang.provider=volcano"], None, "volcano", None),
        (["multinode.gang.provider=volcano", "multinode.gang.queue=research"], None, "volcano", "research"),
        (["multinode.schedulerName=my-gang-scheduler"], None, "my-gang-scheduler", None),
        (["multinode.gang.provider=volcano", "multinode.schedulerName=volcano-gpu"], None, "volcano-gpu", None),
    ],
)
def test_gang_settings_label_the_leaderworkerset_and_pick_the_scheduler(
    sets: list[str], queue_label: str | None, scheduler: str | None, volcano_queue: str | None
) -> None:
    lws = _lws(render(sets=[*BASE, *sets]))
    assert lws["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") == queue_label
    assert lws["metadata"].get("annotations", {}).get("scheduling.volcano.sh/queue-name") == volcano_queue
    for role in ("leader", "worker"):
        assert lws["spec"]["leaderWorkerTemplate"][f"{role}Template"]["spec"].get("schedulerName") == scheduler


def test_the_single_node_deployment_ignores_the_gang_scheduler() -> None:
    objects = render(sets=["multinode.schedulerName=volcano"])
    assert "schedulerName" not in one(objects, "Deployment")["spec"]["template"]["spec"]


# --------------------------------------------------------------------------- autoscaling reads leaders only


def test_hpa_scales_the_leaderworkerset(base: Objects) -> None:
    ref = one(base, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert ref == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": LWS}
    assert ref["name"] == _lws(base)["metadata"]["name"]


def test_keda_scales_the_leaderworkerset_on_leader_pods_only() -> None:
    objects = render(sets=[*BASE, "autoscaling.engine=keda"])
    scaled = one(objects, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": LWS,
    }
    for trigger in scaled["triggers"]:
        assert f'pod=~"{LWS}-[0-9]+"' in trigger["metadata"]["query"]


def test_the_lws_replicas_are_fixed_only_when_autoscaling_is_off() -> None:
    assert "replicas" not in _lws(render(sets=BASE))["spec"]
    fixed = render(sets=[*BASE, "autoscaling.enable=false", "autoscaling.replicas.minimum=3"])
    assert _lws(fixed)["spec"]["replicas"] == 3


@pytest.mark.parametrize("kind", ["Service", "PodMonitor"])
def test_service_and_podmonitor_select_leader_pods_only(base: Objects, kind: str) -> None:
    spec = one(base, kind)["spec"]
    selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
    assert selector["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


@pytest.mark.parametrize("kind", ["Service", "PodMonitor"])
def test_single_node_selectors_are_unchanged(kind: str) -> None:
    spec = one(render(), kind)["spec"]
    selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
    assert "leaderworkerset.sigs.k8s.io/worker-index" not in selector


@pytest.mark.parametrize(
    ("pod", "selected"),
    [
        (f"{LWS}-0", True),
        (f"{LWS}-12", True),
        (f"{LWS}-0-1", False),
        (f"{LWS}-3-7", False),
        (f"{RELEASE}-7d9f8b6c5d-x2x9k", False),
    ],
)
def test_recorded_signals_read_leader_pods_and_never_workers(base: Objects, pod: str, selected: bool) -> None:
    rule = one(base, "PrometheusRule")
    record = next(
        r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("record") == "triton:queue_compute:ratio"
    )
    pattern = re.search(r'pod=~"([^"]+)"', record["expr"])
    assert pattern is not None
    assert bool(re.fullmatch(pattern.group(1), pod)) is selected


def test_workers_expose_no_triton_ports_for_anything_to_scrape(base: Objects) -> None:
    worker_ports = {p["name"] for p in _container(base, "worker")["ports"]}
    leader_ports = {p["name"] for p in _container(base, "leader")["ports"]}
    assert worker_ports == {"ssh"} and leader_ports == {"http", "grpc", "metrics"}


def test_network_policy_admits_traffic_inside_a_group(base: Objects) -> None:
    ingress = one(base, "NetworkPolicy")["spec"]["ingress"]
    peers = [rule for rule in ingress if "ports" not in rule]
    assert peers == [{"from": [{"podSelector": {"matchLabels": {"leaderworkerset.sigs.k8s.io/name": LWS}}}]}]


# --------------------------------------------------------------------------- the pods' commands


def test_leader_and_worker_run_the_same_command(base: Objects) -> None:
    leader, worker = _container(base, "leader")["command"], _container(base, "worker")["command"]
    assert leader == worker
    assert leader[:6] == ["llmprep", "serve", "--spec", "/etc/llmprep/model.yaml", "--cache", "/cache"]
    assert leader[leader.index("--ssh-port") + 1] == "2222"


@pytest.mark.parametrize(("value", "flag"), [("waitWorkersSeconds=900", "900"), ("sshPort=2300", "2300")])
def test_wait_and_ssh_port_come_from_values(value: str, flag: str) -> None:
    command = _container(render(sets=[*BASE, f"multinode.{value}"]), "leader")["command"]
    option = "--wait-workers-secs" if value.startswith("wait") else "--ssh-port"
    assert command[command.index(option) + 1] == flag


def test_the_leader_prepares_into_the_shared_cache_and_the_workers_do_not(base: Objects) -> None:
    """A group always has a shared claim; the leader builds into it before its mpirun starts a rank
    on the workers, so a worker's prepare step would only reserve the conversion's memory."""
    assert _container(base, "leader", "prepare")["command"][:2] == ["llmprep", "prepare"]
    assert "initContainers" not in _template(base, "worker")["spec"]


def _model_yaml(objects: Objects, tmp_path: Path) -> Path:
    config = chart.find(objects, "ConfigMap", f"{RELEASE}-model")[0]
    path = tmp_path / "model.yaml"
    path.write_text(config["data"]["model.yaml"])
    return path


def _dry_run(objects: Objects, role: str, index: int, tmp_path: Path) -> dict[str, Any]:
    """`llmprep serve --dry-run` of the rendered command, in the environment the LWS controller gives group 0."""
    command = list(_container(objects, role)["command"][1:])
    command[command.index("--spec") + 1] = str(_model_yaml(objects, tmp_path))
    # Nothing is prepared here: serve the test repository instead of the (empty) cache.
    at = command.index("--cache")
    command[at : at + 2] = ["--repository", str(GATE_REPO)]
    size = str(_lws(objects)["spec"]["leaderWorkerTemplate"]["size"])
    env = {"LWS_LEADER_ADDRESS": f"{LWS}-0.{LWS}.{NAMESPACE}", "LWS_GROUP_SIZE": size, "LWS_WORKER_INDEX": str(index)}
    result = run_cli(*command, "--set", "model.tensorrtLlm.runtime=engine", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _mounted_ssh_files(objects: Objects, role: str) -> set[str]:
    spec = _template(objects, role)["spec"]
    mount = next(m for m in _container(objects, role)["volumeMounts"] if m["mountPath"] == "/etc/llmprep")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    items = [i for s in volume["projected"]["sources"] if "secret" in s for i in s["secret"]["items"]]
    return {f"/etc/llmprep/{i['path']}" for i in items}


def test_the_leader_command_runs_mpirun_over_the_whole_group(base: Objects, tmp_path: Path) -> None:
    plan = _dry_run(base, "leader", 0, tmp_path)
    assert Path(plan["argv"][0]).name == "mpirun"
    assert plan["hostfile"] == (
        f"{LWS}-0.{LWS}.{NAMESPACE} slots=8 max_slots=8\n{LWS}-0-1.{LWS}.{NAMESPACE} slots=8 max_slots=8\n"
    )
    assert plan["waitFor"] == [f"{LWS}-0-1.{LWS}.{NAMESPACE}:2222"]
    assert "waits up to 600 s for the workers" in plan["description"]


def test_the_leaders_ssh_files_are_where_the_chart_mounts_the_secret(base: Objects, tmp_path: Path) -> None:
    plan = _dry_run(base, "leader", 0, tmp_path)
    assert set(plan["needsFiles"]) <= _mounted_ssh_files(base, "leader")


def test_the_worker_command_runs_sshd_on_the_probed_port_with_the_mounted_keys(base: Objects, tmp_path: Path) -> None:
    plan = _dry_run(base, "worker", 1, tmp_path)
    argv = plan["argv"]
    assert Path(argv[0]).name == "sshd" and argv[argv.index("-p") + 1] == "2222"
    assert set(plan["needsFiles"]) <= _mounted_ssh_files(base, "worker")
    probe = _container(base, "worker")["readinessProbe"]
    port = next(p for p in _container(base, "worker")["ports"] if p["name"] == probe["tcpSocket"]["port"])
    assert port["containerPort"] == 2222


def test_ssh_keys_reach_the_serving_container_only_read_only_and_owner_only(base: Objects) -> None:
    for role in ("leader", "worker"):
        spec = _template(base, role)["spec"]
        volume = next(v for v in spec["volumes"] if v["name"] == "model-spec-ssh")
        secret = next(s["secret"] for s in volume["projected"]["sources"] if "secret" in s)
        assert secret["name"] == "llm-ssh"
        assert {i["key"] for i in secret["items"]} == SSH_FILES
        assert {i["mode"] for i in secret["items"]} == {0o400}
        if role == "leader":
            prepare = _container(base, role, "prepare")
            assert all(m["name"] != "model-spec-ssh" for m in prepare["volumeMounts"])
        mount = next(m for m in _container(base, role)["volumeMounts"] if m["name"] == "model-spec-ssh")
        assert mount["mountPath"] == "/etc/llmprep" and mount["readOnly"] is True


def test_only_workers_get_a_writable_sshd_run_folder(base: Objects) -> None:
    def mounts(role: str) -> set[str]:
        return {m["mountPath"] for m in _container(base, role)["volumeMounts"]}

    assert "/run/sshd" in mounts("worker") and "/run/sshd" not in mounts("leader")


@pytest.mark.parametrize("exit_timeout", [30, 60, 300])
def test_grace_period_covers_the_drain_and_workers_outlive_the_leaders_drain(exit_timeout: int) -> None:
    objects = render(
        sets=[
            *BASE,
            f"triton.exitTimeoutSeconds={exit_timeout}",
            "triton.preStopSeconds=15",
            "triton.drainTimeoutSeconds=40",
        ]
    )
    for role in ("leader", "worker"):
        spec = _template(objects, role)["spec"]
        assert spec["terminationGracePeriodSeconds"] >= 15 + 40 + exit_timeout + 15
    leader_hook = _container(objects, "leader")["lifecycle"]["preStop"]["exec"]["command"]
    assert leader_hook[:2] == ["llmprep", "drain"] and leader_hook[-4:] == ["--pause", "15", "--timeout", "40"]
    worker_sleep = int(_container(objects, "worker")["lifecycle"]["preStop"]["exec"]["command"][1])
    assert worker_sleep >= 15 + 40 + exit_timeout  # the leader's whole preStop, then its drain
    assert worker_sleep < _template(objects, "worker")["spec"]["terminationGracePeriodSeconds"]


# --------------------------------------------------------------------------- files users bring


@pytest.mark.parametrize("path", TUTORIAL_MULTINODE, ids=ids(TUTORIAL_MULTINODE))
def test_tutorial_multinode_files_make_one_pod_per_gpu_with_multinode_on(path: Path) -> None:
    files = [TUTORIAL_VALUES / "multinode" / "values.yaml", path]
    tensor = values_of(files)["model"]["tensorrtLlm"]["parallelism"]["tensor"]
    objects = render(files, TUTORIAL_SETS)
    assert _lws(objects)["spec"]["leaderWorkerTemplate"]["size"] == tensor


@pytest.mark.parametrize("path", MULTINODE_MODELS, ids=ids(MULTINODE_MODELS))
def test_multinode_model_files_span_two_nodes_of_eight_gpus(path: Path) -> None:
    objects = render([CHART / "values.yaml", path])
    assert _lws(objects)["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert _container(objects, "leader")["resources"]["limits"]["nvidia.com/gpu"] == "8"


@pytest.mark.parametrize("path", MULTINODE_MODELS, ids=ids(MULTINODE_MODELS))
def test_multinode_model_files_lint_clean(path: Path) -> None:
    assert chart.lint(values_of([CHART / "values.yaml", path]), namespace=NAMESPACE) == []


def test_notes_point_at_the_leader_pod() -> None:
    text = chart.notes(values_of(sets=BASE), release=RELEASE, namespace=NAMESPACE)
    assert f"LeaderWorkerSet {LWS}" in text and f"logs -f pod/{LWS}-0 -c prepare" in text


# --------------------------------------------------------------------------- policy (checkov)


@pytest.mark.slow
@pytest.mark.skipif(not CHECKOV.exists(), reason=f"checkov not installed at {CHECKOV} (make setup)")
def test_leader_and_worker_pods_pass_every_checkov_check(tmp_path: Path) -> None:
    # checkov does not know the LeaderWorkerSet kind: scan its pod templates as the Pods they become.
    for i, (files, sets) in enumerate(CASES):
        objects = render(files, sets)
        pods = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {**_template(objects, role)["metadata"], "name": f"{LWS}-{role}", "namespace": NAMESPACE},
                "spec": _template(objects, role)["spec"],
            }
            for role in ("leader", "worker")
        ]
        others = [o for o in objects if o["kind"] != "LeaderWorkerSet"]
        case = tmp_path / f"case-{i:02d}"
        case.mkdir()
        (case / "manifests.yaml").write_text(yaml.safe_dump_all([*others, *pods], sort_keys=False))
    failed = _checkov(tmp_path)
    by_case = [
        (CASE_IDS[int(Path(f["file_path"]).parent.name.split("-")[1])], f["check_id"], f["resource"]) for f in failed
    ]
    assert by_case == []


# --------------------------------------------------------------------------- the documented ssh Secret


def _readme_ssh_block() -> str:
    text = (CHART / "README.md").read_text()
    match = re.search(r"<!-- ssh-secret:[^\n]*-->\n```sh\n(.*?)```", text, re.S)
    assert match, "chart/README.md lost its ssh-secret block"
    return match.group(1)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed (openssh-client)")
def test_the_readmes_ssh_commands_create_the_four_keys_serve_expects(tmp_path: Path) -> None:
    got = tmp_path / "secret"
    got.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    # A stand-in for kubectl at the process boundary: it keeps the files it was given.
    kubectl.write_text(
        f'#!/bin/sh\nfor a in "$@"; do case "$a" in --from-file=*) cp "${{a#--from-file=}}" {got}/;; esac; done\n'
        f'echo "$@" > {tmp_path}/kubectl-args\n'
    )
    kubectl.chmod(0o755)
    done = subprocess.run(
        ["sh", "-euc", _readme_ssh_block()],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in got.iterdir()} == SSH_FILES
    assert (tmp_path / "kubectl-args").read_text().startswith("create secret generic llm-ssh ")
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(got / "id_ed25519")], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    assert (got / "authorized_keys").read_text().split()[:2] == public
    host_public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(got / "ssh_host_ed25519_key")], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    assert (got / "known_hosts").read_text().split()[:3] == ["*", *host_public]

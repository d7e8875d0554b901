"""The multi-node tutorial's values files render the tutorial's layout: one GPU per pod.

That tutorial's chart (triton-inference-server/tutorials, Deployment/Kubernetes/
TensorRT-LLM_Multi-Node_Distributed_Models/chart/templates/deployment.yaml, commit 81c510db) made
tensor × pipeline Deployments of one pod each, every pod asking for `nvidia.com/gpu: 1`, rank 0 the
leader running mpirun over the others. Its schema (values.schema.json, commit bb574d50) required `gpu`
as one string and `model.persistentVolumeClaim`. Our chart's `multinode.gpusPerNode: auto` reads
those two keys and gives such values pods of one GPU: a LeaderWorkerSet of tensor × pipeline pods
(or one Deployment pod for a one-GPU model), so the files schedule wherever the tutorial's pods did.
The only key the files need beyond their own is `multinode.ssh.existingSecret` (our mpirun reaches
workers over ssh, the tutorial's through `kubectl exec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmprep import chart, gpu_fit
from llmprep.errors import SpecError
from tests.chart.conftest import CHART, NAMESPACE, RELEASE, TUTORIAL_MULTINODE, Objects, ids, render, values_of
from tests.chart.test_multinode import LWS, _dry_run
from tests.conftest import TUTORIAL_VALUES

TUTORIAL_BASE = TUTORIAL_VALUES / "multinode" / "values.yaml"
SSH = ["multinode.ssh.existingSecret=llm-ssh"]
TABLE = gpu_fit.chart_table(CHART)
GROUPED = [
    p
    for p in TUTORIAL_MULTINODE
    if (values_of([TUTORIAL_BASE, p])["model"].get("tensorrtLlm") or {}).get("parallelism", {}).get("tensor", 1) > 1
]


def _files(path: Path) -> list[Path]:
    # The tutorial README's order: `--values ./chart/values.yaml --values ./chart/<model>_values.yaml`.
    return [TUTORIAL_BASE, path]


def _world(values: dict[str, Any]) -> int:
    parallelism = values["model"]["tensorrtLlm"]["parallelism"]
    return int(parallelism.get("tensor") or 1) * int(parallelism.get("pipeline") or 1)


def _layout(objects: Objects) -> tuple[int, list[int]]:
    """(pods of one replica, GPUs each pod's scheduler request holds) of the rendered workload."""
    groups = chart.find(objects, "LeaderWorkerSet")
    if groups:
        template = groups[0]["spec"]["leaderWorkerTemplate"]
        size = int(template["size"])
        leader = gpu_fit.pod_gpus(template["leaderTemplate"]["spec"])
        worker = gpu_fit.pod_gpus(template["workerTemplate"]["spec"])
        return size, [leader, *([worker] * (size - 1))]
    (deployment,) = chart.find(objects, "Deployment")
    return 1, [gpu_fit.pod_gpus(deployment["spec"]["template"]["spec"])]


@pytest.fixture(scope="module", params=TUTORIAL_MULTINODE, ids=ids(TUTORIAL_MULTINODE))
def tutorial(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Objects]:
    values = values_of(_files(request.param), SSH)
    return values, chart.render(values, release=RELEASE, namespace=NAMESPACE)


def test_every_tutorial_pod_asks_for_one_gpu_and_the_pods_hold_the_whole_world(
    tutorial: tuple[dict[str, Any], Objects],
) -> None:
    values, objects = tutorial
    pods, gpus = _layout(objects)
    assert gpus == [1] * pods
    assert pods * gpus[0] == _world(values)


def test_no_tutorial_pod_asks_for_more_gpus_than_its_products_nodes_have(
    tutorial: tuple[dict[str, Any], Objects],
) -> None:
    values, objects = tutorial
    assert TABLE is not None
    product = values["gpu"]
    assert product in TABLE, f"{product}: add its node size to chart/files/gpu-nodes.yaml"
    _, gpus = _layout(objects)
    assert max(gpus) <= TABLE[product].gpus_per_node


def test_a_tutorial_model_of_several_gpus_is_one_leaderworkerset_group_per_replica(
    tutorial: tuple[dict[str, Any], Objects],
) -> None:
    values, objects = tutorial
    kinds = [o["kind"] for o in objects]
    if _world(values) > 1:
        assert kinds.count("LeaderWorkerSet") == 1 and "Deployment" not in kinds
    else:
        assert kinds.count("Deployment") == 1 and "LeaderWorkerSet" not in kinds


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _bytes(quantity: Any) -> int:
    text = str(quantity)
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return int(float(text.removesuffix(suffix)) * factor)
    return int(float(text))


def _pod_memory(spec: dict[str, Any]) -> int:
    """What the scheduler reserves for a pod: the larger of its largest init container and its
    containers together (Kubernetes' effective request; the chart runs no sidecars)."""

    def asked(containers: list[dict[str, Any]]) -> list[int]:
        return [_bytes(c["resources"]["requests"]["memory"]) for c in containers]

    return max([*asked(spec.get("initContainers") or []), sum(asked(spec["containers"]))])


def _our_pods(objects: Objects) -> list[int]:
    """Memory each pod of one replica reserves: the leader first, then the workers (or the one pod)."""
    groups = chart.find(objects, "LeaderWorkerSet")
    if groups:
        template = groups[0]["spec"]["leaderWorkerTemplate"]
        size = int(template["size"])
        leader = _pod_memory(template["leaderTemplate"]["spec"])
        return [leader, *[_pod_memory(template["workerTemplate"]["spec"])] * (size - 1)]
    (deployment,) = chart.find(objects, "Deployment")
    return [_pod_memory(deployment["spec"]["template"]["spec"])]


def _theirs(values: dict[str, Any]) -> tuple[int, int]:
    """The tutorial chart's memory for these values: (its conversion Job, each of its serving pods).

    That chart (TensorRT-LLM_Multi-Node_Distributed_Models/chart, templates/job.yaml and
    deployment.yaml at 81c510db) ran one conversion Job asking `tensorrtLlm.conversion.memory` and
    tensor × pipeline pods of one GPU each asking `triton.resources.memory` (its default 8Gi ×
    max(4, GPUs of the pod) = 32Gi); the files' base values.yaml sets 32Gi.
    """
    job = _bytes(values["model"]["tensorrtLlm"]["conversion"]["memory"])
    pod = _bytes(values["triton"]["resources"].get("memory") or "32Gi")
    return job, pod


def test_only_the_pod_that_builds_asks_for_the_conversion_memory(tutorial: tuple[dict[str, Any], Objects]) -> None:
    """llama-2-70b: the tutorial asked for one 256Gi Job and 8 pods × 32Gi; every pod of ours once
    asked 256Gi for its prepare step (8 × 256Gi). Now the leader builds (the Job's memory, which it
    holds while it serves: a pod's reservation covers its init containers) and the workers ask what
    the tutorial's serving pods asked. So each pod fits where a tutorial pod or its Job fitted, and
    a replica never reserves more than the tutorial's Job and pods together."""
    values, objects = tutorial
    job, pod = _theirs(values)
    ours = _our_pods(objects)
    assert ours[0] == max(job, pod)
    assert ours[1:] == [pod] * (len(ours) - 1)
    assert sum(ours) <= job + pod * _world(values)


def test_a_groups_workers_run_no_prepare_step_and_mount_no_token() -> None:
    objects = render(_files(TUTORIAL_VALUES / "multinode" / "llama-2-70b_values.yaml"), SSH)
    template = chart.find(objects, "LeaderWorkerSet")[0]["spec"]["leaderWorkerTemplate"]
    worker = template["workerTemplate"]["spec"]
    leader = template["leaderTemplate"]["spec"]
    assert "initContainers" not in worker
    assert [c["name"] for c in leader["initContainers"]] == ["prepare"]
    # The token reaches the prepare step only: no container of a worker mounts it.
    assert all(m["name"] != "hf-token" for c in worker["containers"] for m in c["volumeMounts"])
    assert any(m["name"] == "hf-token" for m in leader["initContainers"][0]["volumeMounts"])


def test_the_gpu_warning_and_the_linter_stay_silent_for_the_tutorial_files(
    tutorial: tuple[dict[str, Any], Objects],
) -> None:
    values, _ = tutorial
    assert "GPUs, but" not in chart.notes(values, release=RELEASE, namespace=NAMESPACE)
    assert chart.lint(values, namespace=NAMESPACE) == []


@pytest.mark.parametrize("path", GROUPED, ids=ids(GROUPED))
def test_the_model_file_alone_with_the_claim_set_renders_the_same_layout(path: Path) -> None:
    alone = render([path], [*SSH, "model.persistentVolumeClaim=nfs-claim-autoscaling"])
    assert _layout(alone) == _layout(render(_files(path), SSH))


def test_a_tutorial_group_without_the_ssh_secret_is_refused_in_one_line_naming_it() -> None:
    with pytest.raises(SpecError, match=r"^multinode\.ssh\.existingSecret: [^\n]*$"):
        render(_files(TUTORIAL_VALUES / "multinode" / "llama-2-70b_values.yaml"))


# --------------------------------------------------------------------------- what auto leaves alone


@pytest.mark.parametrize(
    ("sets", "pods", "per_pod"),
    [
        (["multinode.gpusPerNode=4"], 2, 4),  # an explicit count wins over auto
        (["multinode.gpusPerNode=8"], 1, 8),
    ],
)
def test_an_explicit_gpus_per_node_overrides_the_tutorial_layout(sets: list[str], pods: int, per_pod: int) -> None:
    objects = render(_files(TUTORIAL_VALUES / "multinode" / "llama-2-70b_values.yaml"), [*SSH, *sets])
    assert _layout(objects) == (pods, [per_pod] * pods)


@pytest.mark.parametrize(
    "sets",
    [
        ["model.persistentVolumeClaim=llm-cache"],  # gpu stays a list
        ["gpu=NVIDIA-H100-80GB-HBM3"],  # a string, but no claim
    ],
    ids=["a list of products with a claim", "one product without a claim"],
)
def test_values_that_are_not_the_multinode_tutorials_keep_all_gpus_in_one_pod(sets: list[str]) -> None:
    objects = render(sets=["model.tensorrtLlm.parallelism.tensor=4", *sets])
    assert _layout(objects) == (1, [4])


# --------------------------------------------------------------------------- llmprep serve runs that group


def test_the_leader_of_a_tutorial_group_runs_one_rank_on_each_pod(tmp_path: Path) -> None:
    objects = render(_files(TUTORIAL_VALUES / "multinode" / "llama-2-70b_values.yaml"), SSH)
    plan = _dry_run(objects, "leader", 0, tmp_path)
    hosts = [f"{LWS}-0.{LWS}.{NAMESPACE}", *(f"{LWS}-0-{i}.{LWS}.{NAMESPACE}" for i in range(1, 8))]
    assert plan["hostfile"] == "".join(f"{h} slots=1 max_slots=1\n" for h in hosts)
    assert plan["waitFor"] == [f"{h}:2222" for h in hosts[1:]]
    assert "group of 8 pods × 1 GPUs" in plan["description"]


def test_a_worker_of_a_tutorial_group_runs_sshd_for_the_leaders_mpirun(tmp_path: Path) -> None:
    objects = render(_files(TUTORIAL_VALUES / "multinode" / "llama-2-7b_values.yaml"), SSH)
    plan = _dry_run(objects, "worker", 1, tmp_path)
    assert Path(plan["argv"][0]).name == "sshd"

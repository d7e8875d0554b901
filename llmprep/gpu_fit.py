"""Whether each rendered pod's GPUs fit on the usual node of the GPU products it may run on.

A pod that asks for more `nvidia.com/gpu` than any node of its product has stays Pending and
nothing in Kubernetes says why in advance (the multi-node tutorial's files did that: 8 GPUs a pod
on A10G nodes of 4). The chart ships a table of common products with their usual GPUs per node
and a source for each (`files/gpu-nodes.yaml`, owned by the chart):

    products:
      NVIDIA-A10G: {gpusPerNode: 4, source: "https://…"}

`llmprep chart lint` reads it and warns once per pod. The products a pod may run on are read from
the rendered pod's required node affinity on `nvidia.com/gpu.product` (what the chart makes of
the values' `gpu` list); a product the table does not know is not judged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep import files as userfiles
from llmprep.errors import SpecError

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
TABLE_PATH = Path("files") / "gpu-nodes.yaml"  # inside the chart folder


@dataclass(frozen=True)
class NodeShape:
    """The usual node of one GPU product: how many GPUs it has, and where that was read."""

    gpus_per_node: int
    source: str


@dataclass(frozen=True)
class PodGpus:
    """One rendered pod template: where it is, how many GPUs it asks for, which products it may run on."""

    where: str  # e.g. "LeaderWorkerSet/llmprep worker pod"
    gpus: int
    products: tuple[str, ...]


def read_table(path: Path) -> dict[str, NodeShape]:
    """The `products` table of a gpu-nodes.yaml file; one-line SpecError naming the key on a bad entry."""
    doc = userfiles.read_yaml(path, "GPU node table", SpecError)
    products = doc.get("products") if isinstance(doc, Mapping) else None
    if not isinstance(products, Mapping):
        raise SpecError(f"{path}: products: a map of product label to {{gpusPerNode, source}} is required")
    table: dict[str, NodeShape] = {}
    for label, entry in products.items():
        where = f"{path}: products.{label}"
        if not isinstance(entry, Mapping):
            raise SpecError(f"{where}: a map with gpusPerNode and source is required")
        count = entry.get("gpusPerNode")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SpecError(f"{where}.gpusPerNode: a whole number of at least 1 is required")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise SpecError(f"{where}.source: the URL or document the count was read from is required")
        table[str(label)] = NodeShape(gpus_per_node=count, source=source.strip())
    return table


def chart_table(chart_dir: Path) -> dict[str, NodeShape] | None:
    """The chart's table, or None when this chart ships none."""
    path = Path(chart_dir) / TABLE_PATH
    return read_table(path) if path.is_file() else None


def _quantity(value: Any) -> int:
    """A GPU count from a resources entry (an integer or its string; extended resources are whole)."""
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def _container_gpus(container: Mapping[str, Any]) -> int:
    resources = container.get("resources") or {}
    # The API server defaults an unset request to the limit; the scheduler reads requests.
    for part in ("requests", "limits"):
        amounts = resources.get(part) or {}
        if GPU_RESOURCE in amounts:
            return _quantity(amounts[GPU_RESOURCE])
    return 0


def pod_gpus(pod_spec: Mapping[str, Any]) -> int:
    """The GPUs the scheduler reserves for a pod, as Kubernetes' `AggregateContainerRequests` sums them.

    Read from kubernetes/kubernetes staging/src/k8s.io/component-helpers/resource/helpers.go
    (tests/data/k8s_pod_requests.yaml cites the lines): the app containers and the restartable
    (sidecar) init containers add up; a plain init container needs its own request plus the
    sidecars started before it; the pod needs the larger of the running sum and every init step.
    """
    running = sum(_container_gpus(c) for c in pod_spec.get("containers") or [])
    sidecars = 0
    init_peak = 0
    for container in pod_spec.get("initContainers") or []:
        gpus = _container_gpus(container)
        if container.get("restartPolicy") == "Always":
            sidecars += gpus
            running += gpus
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, gpus + sidecars)
    return max(running, init_peak)


def _products(pod_spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The product labels the pod's required node affinity allows (`In` on nvidia.com/gpu.product)."""
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    found: list[str] = []
    for term in required.get("nodeSelectorTerms") or []:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == PRODUCT_LABEL and expression.get("operator") == "In":
                found += [str(v) for v in expression.get("values") or [] if str(v) not in found]
    selected = (pod_spec.get("nodeSelector") or {}).get(PRODUCT_LABEL)
    if selected is not None and str(selected) not in found:
        found.append(str(selected))
    return tuple(found)


def _templates(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield f"Pod/{name}", spec
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield f"{kind}/{name} pod", (spec.get("template") or {}).get("spec") or {}
    elif kind == "LeaderWorkerSet":
        group = spec.get("leaderWorkerTemplate") or {}
        for role in ("leader", "worker"):
            template = group.get(f"{role}Template")
            if template:
                yield f"{kind}/{name} {role} pod", template.get("spec") or {}


def rendered_pods(objects: Sequence[Mapping[str, Any]]) -> list[PodGpus]:
    """Every pod template among the rendered objects that asks for at least one GPU."""
    pods = []
    for obj in objects:
        for where, spec in _templates(obj):
            gpus = pod_gpus(spec)
            if gpus:
                pods.append(PodGpus(where=where, gpus=gpus, products=_products(spec)))
    return pods


def warnings(objects: Sequence[Mapping[str, Any]], table: Mapping[str, NodeShape]) -> list[str]:
    """One line per pod that asks for more GPUs than the usual node of a product it may land on has."""
    lines = []
    for pod in rendered_pods(objects):
        small = [(p, table[p]) for p in pod.products if p in table and table[p].gpus_per_node < pod.gpus]
        if not small:
            continue
        nodes = "; ".join(
            f"{p} nodes usually have {shape.gpus_per_node} (source: {shape.source})" for p, shape in small
        )
        lines.append(
            f"{pod.where} asks for {pod.gpus} {GPU_RESOURCE}, but {nodes}: it may stay Pending there; "
            "lower the GPUs per pod (multinode.gpusPerNode, or tensor × pipeline) or drop that product from gpu"
        )
    return lines

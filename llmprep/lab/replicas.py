"""The replica calculator of the Kubernetes HPA controller: one metric's replica count.

Our own code after kubernetes/kubernetes pkg/controller/podautoscaler replica_calculator.go and
metrics/utilization.go (and kubernetes.io "Horizontal Pod Autoscaling", "Algorithm details"),
split out of llmprep/lab/hpa.py, which re-exports every public name here. Each function names
the upstream function it follows; tests/data/k8s_hpa_cases.py holds upstream's cases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

PodPhase = Literal["Pending", "Running", "Failed"]

# kube-controller-manager default ("Algorithm details"; --horizontal-pod-autoscaler-tolerance).
DEFAULT_TOLERANCE = 0.1


@dataclass(frozen=True)
class Pod:
    """What the controller reads of a pod: its phase, readiness and whether it is being deleted."""

    name: str
    phase: PodPhase = "Running"
    ready: bool = True
    deleting: bool = False


class MetricUnavailable(Exception):
    """The metrics API returned nothing for this metric ("unable to get metric …")."""


@dataclass(frozen=True)
class Tolerances:
    """`isWithin`: a usage ratio in [1 - down, 1 + up] changes nothing."""

    up: float = DEFAULT_TOLERANCE
    down: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        return (1.0 - self.down) <= ratio <= (1.0 + self.up)


def _usage_ratio(values: Sequence[int], target_milli: int) -> tuple[float, int]:
    """metrics/utilization.go GetMetricUsageRatio: integer mean in milli-units over the target."""
    current = sum(values) // len(values)
    return current / target_milli, current


def plain_metric_replicas(
    current_replicas: int,
    target_milli: int,
    metrics: Mapping[str, int],
    pods: Sequence[Pod],
    tolerances: Tolerances = Tolerances(),
) -> tuple[int, int]:
    """replica_calculator.go calcPlainMetricReplicas: a Pods metric averaged over pods.

    ("Algorithm details") `desired = ceil(readyPods × current/target)`, unchanged inside the
    tolerance. Pods being deleted or failed are ignored; pending pods are set aside, and on
    a scale-up counted as using 0; pods without a metric are counted as using the target on a
    scale-down and 0 on a scale-up; if that conservative re-count reverses the direction or
    lands inside the tolerance, the replica count stays. Returns (replicas, current milli-value).
    """
    if not pods:
        raise MetricUnavailable("no pods returned by selector while calculating replica count")
    ready_count = 0
    unready: list[str] = []
    missing: list[str] = []
    ignored: list[str] = []
    for pod in pods:  # groupPods; the readiness checks beyond Pending apply to CPU only
        if pod.deleting or pod.phase == "Failed":
            ignored.append(pod.name)
        elif pod.phase == "Pending":
            unready.append(pod.name)
        elif pod.name not in metrics:
            missing.append(pod.name)
        else:
            ready_count += 1
    usable = {name: v for name, v in metrics.items() if name not in ignored and name not in unready}
    if not usable:
        raise MetricUnavailable("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = _usage_ratio(list(usable.values()), target_milli)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.within(ratio):
            return current_replicas, usage
        return math.ceil(ratio * ready_count), usage
    # replica_calculator.go calcPlainMetricReplicas (after kubernetes#117845): missing pods are
    # filled only when the ready pods point one way: at the target below 1, at 0 above 1; at a
    # ratio of exactly 1 they are left out and the count stays.
    if missing and ratio < 1.0:
        for name in missing:
            usable[name] = target_milli
    elif missing and ratio > 1.0:
        for name in missing:
            usable[name] = 0
    if scale_up_with_unready:
        for name in unready:
            usable[name] = 0
    new_ratio, _ = _usage_ratio(list(usable.values()), target_milli)
    if tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current_replicas, usage
    new_replicas = math.ceil(new_ratio * len(usable))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (new_ratio > 1.0 and new_replicas < current_replicas):
        return current_replicas, usage
    return new_replicas, usage


def _ready_pod_count(pods: Sequence[Pod]) -> int:
    return sum(1 for p in pods if p.phase == "Running" and p.ready and not p.deleting)


def usage_ratio_replicas(current: int, ratio: float, pods: Sequence[Pod], tolerances: Tolerances) -> int:
    """getUsageRatioReplicaCount (Object and External metrics with a Value target)."""
    if current == 0:
        return math.ceil(ratio)
    if tolerances.within(ratio):
        return current
    return math.ceil(ratio * _ready_pod_count(pods))


def per_pod_total_replicas(status_replicas: int, total_milli: int, target_milli: int, tol: Tolerances) -> int:
    """GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas (AverageValue targets)."""
    ratio = total_milli / (target_milli * status_replicas) if status_replicas else math.inf
    if tol.within(ratio):
        return status_replicas
    return math.ceil(total_milli / target_milli)

"""The Kubernetes HorizontalPodAutoscaler, as its controller computes a replica count.

Our own code after the documented algorithm (kubernetes.io, "Horizontal Pod Autoscaling":
sections "Algorithm details", "Support for multiple metrics", "Configurable scaling behavior",
"Stabilization window", "Default behavior") and the controller it describes
(kubernetes/kubernetes pkg/controller/podautoscaler: horizontal.go, replica_calculator.go,
metrics/utilization.go). Each rule names the section or function it follows.

The controller here is a pure function of (time, spec.replicas, pods, metric readings) plus
the history it keeps between syncs (recommendations and scale events), so tests drive it
with worked examples and the lab drives it with live readings from Prometheus.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmprep.errors import LabError

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
MetricType = Literal["Pods", "Object", "External"]
TargetType = Literal["AverageValue", "Value"]
PodPhase = Literal["Pending", "Running", "Failed"]

# kube-controller-manager defaults ("Algorithm details"; flags of the same names).
DEFAULT_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
DEFAULT_SYNC_PERIOD_S = 15.0  # --horizontal-pod-autoscaler-sync-period
DEFAULT_DOWNSCALE_STABILIZATION_S = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
# horizontal.go, used only when an HPA has no `behavior` (the pre-behavior rate limit).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


# --------------------------------------------------------------------------- quantities

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$")
_SUFFIX = {
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}


def parse_quantity(value: Any, field_name: str = "quantity") -> float:
    """A Kubernetes quantity (`1500m`, `2`, `1.5`, `4Ki`, `1e3`) as a number."""
    if isinstance(value, bool):
        raise LabError(f"{field_name}: expected a Kubernetes quantity such as 1500m, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise LabError(f"{field_name}: {value!r} is not a Kubernetes quantity (e.g. 1500m, 2, 0.5)")
    number, suffix, exponent = match.groups()
    scale = 10.0 ** int(exponent) if exponent is not None else _SUFFIX[suffix or ""]
    return float(number) * scale


def milli_value(value: float) -> int:
    """`resource.Quantity.MilliValue()`: the value in thousandths, rounded up."""
    scaled = value * 1000.0
    nearest = round(scaled)
    # A float that is a whole number of milli-units up to binary noise stays that number.
    if abs(scaled - nearest) < 1e-6:
        return int(nearest)
    return math.ceil(scaled)


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class ScalingPolicy:
    """One `behavior.scaleUp|scaleDown.policies[]` entry."""

    type: PolicyType
    value: int
    period_s: float


@dataclass(frozen=True)
class ScalingRules:
    """`behavior.scaleUp` or `behavior.scaleDown` (`HPAScalingRules`)."""

    stabilization_window_s: float
    select_policy: SelectPolicy = "Max"
    policies: tuple[ScalingPolicy, ...] = ()
    tolerance: float | None = None  # per-direction tolerance (HPAConfigurableTolerance, Kubernetes 1.33+)


# "Default behavior": what the API server fills in for a direction the HPA's behavior leaves out.
DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_s=0.0,
    select_policy="Max",
    policies=(ScalingPolicy("Percent", 100, 15.0), ScalingPolicy("Pods", 4, 15.0)),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_s=DEFAULT_DOWNSCALE_STABILIZATION_S,
    select_policy="Max",
    policies=(ScalingPolicy("Percent", 100, 15.0),),
)


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class MetricSpec:
    """One entry of `spec.metrics` the lab can serve: a Pods, Object or External metric.

    `query` is set for KEDA's Prometheus triggers (External metrics whose value is a query).
    """

    type: MetricType
    name: str
    target_type: TargetType
    target: float
    selector: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None

    @property
    def target_milli(self) -> int:
        return milli_value(self.target)

    def describe(self) -> str:
        return f"{self.name} ({self.type}, {self.target_type} {self.target:g})"


@dataclass(frozen=True)
class HpaSpec:
    """The parts of an autoscaling/v2 HPA the controller reads."""

    name: str
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None = None  # None: the HPA has no `behavior` (legacy normalization)
    source: str = "HorizontalPodAutoscaler"

    def time_scaled(self, speed: float) -> HpaSpec:
        """This spec with every window and policy period divided by `speed` (lab time compression)."""
        if speed == 1 or self.behavior is None:
            return self
        b = self.behavior

        def rules(r: ScalingRules) -> ScalingRules:
            return dataclasses.replace(
                r,
                stabilization_window_s=r.stabilization_window_s / speed,
                policies=tuple(dataclasses.replace(p, period_s=p.period_s / speed) for p in r.policies),
            )

        return dataclasses.replace(self, behavior=Behavior(rules(b.scale_up), rules(b.scale_down)))


def _rules_from(raw: Any, default: ScalingRules, where: str) -> ScalingRules:
    """SetDefaults_HorizontalPodAutoscalerBehavior: a missing field takes the default's value."""
    if raw is None:
        return default
    if not isinstance(raw, Mapping):
        raise LabError(f"{where}: must be a mapping (stabilizationWindowSeconds, selectPolicy, policies)")
    window = raw.get("stabilizationWindowSeconds")
    select = raw.get("selectPolicy", default.select_policy)
    if select not in ("Max", "Min", "Disabled"):
        raise LabError(f"{where}.selectPolicy: {select!r} is not one of Max, Min, Disabled")
    policies = default.policies
    if raw.get("policies") is not None:
        items = raw["policies"]
        if not isinstance(items, list):
            raise LabError(f"{where}.policies: must be a list of {{type, value, periodSeconds}}")
        out = []
        for i, item in enumerate(items):
            at = f"{where}.policies[{i}]"
            if not isinstance(item, Mapping) or item.get("type") not in ("Pods", "Percent"):
                raise LabError(f"{at}.type: must be Pods or Percent")
            value, period = item.get("value"), item.get("periodSeconds")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LabError(f"{at}.value: must be a positive integer, got {value!r}")
            if not isinstance(period, int) or isinstance(period, bool) or not 0 < period <= 1800:
                raise LabError(f"{at}.periodSeconds: must be an integer from 1 to 1800, got {period!r}")
            out.append(ScalingPolicy(item["type"], value, float(period)))
        policies = tuple(out)
    tolerance = raw.get("tolerance")
    return ScalingRules(
        stabilization_window_s=float(window) if window is not None else default.stabilization_window_s,
        select_policy=select,
        policies=policies,
        tolerance=parse_quantity(tolerance, f"{where}.tolerance") if tolerance is not None else None,
    )


def behavior_from(raw: Any, where: str = "behavior") -> Behavior | None:
    """`spec.behavior` with the API server's defaults filled in; None when it is absent."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise LabError(f"{where}: must be a mapping with scaleUp and/or scaleDown")
    return Behavior(
        scale_up=_rules_from(raw.get("scaleUp"), DEFAULT_SCALE_UP, f"{where}.scaleUp"),
        scale_down=_rules_from(raw.get("scaleDown"), DEFAULT_SCALE_DOWN, f"{where}.scaleDown"),
    )


def _selector(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    labels = raw.get("matchLabels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def _metric_from(raw: Any, where: str) -> MetricSpec:
    if not isinstance(raw, Mapping):
        raise LabError(f"{where}: must be a mapping with a type")
    kind = raw.get("type")
    if kind not in ("Pods", "Object", "External"):
        raise LabError(
            f"{where}.type: the lab serves Pods, Object and External metrics, not {kind!r} "
            "(Resource metrics need a kubelet)"
        )
    body = raw.get(kind[0].lower() + kind[1:]) or {}
    metric = body.get("metric") or {}
    target = body.get("target") or {}
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise LabError(f"{where}.metric.name: required")
    target_type = target.get("type")
    if target_type == "AverageValue":
        value = target.get("averageValue")
    elif target_type == "Value" and kind != "Pods":
        value = target.get("value")
    else:
        allowed = "AverageValue" if kind == "Pods" else "AverageValue or Value"
        raise LabError(f"{where}.target.type: a {kind} metric takes {allowed}, not {target_type!r}")
    if value is None:
        raise LabError(f"{where}.target: {target_type} needs a value")
    parsed = parse_quantity(value, f"{where}.target")
    if parsed <= 0:
        raise LabError(f"{where}.target: must be above 0, got {value!r}")
    return MetricSpec(kind, name, target_type, parsed, _selector(metric.get("selector")))


def _replicas(raw: Any, default: int | None, where: str) -> int:
    if raw is None and default is not None:
        return default
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise LabError(f"{where}: must be a whole number of replicas, got {raw!r}")
    return raw


def hpa_from_manifest(obj: Mapping[str, Any]) -> HpaSpec:
    """An autoscaling/v2 HorizontalPodAutoscaler object (as rendered by the chart)."""
    name = str(obj.get("metadata", {}).get("name", "hpa"))
    spec = obj.get("spec") or {}
    metrics = spec.get("metrics") or []
    if not metrics:
        raise LabError(f"HorizontalPodAutoscaler {name}: spec.metrics is empty; the chart must render a metric")
    out = HpaSpec(
        name=name,
        min_replicas=_replicas(spec.get("minReplicas"), 1, "spec.minReplicas"),  # API default 1
        max_replicas=_replicas(spec.get("maxReplicas"), None, "spec.maxReplicas"),
        metrics=tuple(_metric_from(m, f"spec.metrics[{i}]") for i, m in enumerate(metrics)),
        behavior=behavior_from(spec.get("behavior"), "spec.behavior"),
    )
    _check_bounds(out)
    return out


def hpa_from_scaled_object(obj: Mapping[str, Any]) -> HpaSpec:
    """The HPA KEDA creates for a ScaledObject: one External metric per Prometheus trigger.

    KEDA's `metricType` defaults to AverageValue; its HPA has minReplicas = max(minReplicaCount, 1)
    (KEDA itself scales between 0 and 1, which the lab does not emulate) and the behavior of
    `advanced.horizontalPodAutoscalerConfig`.
    """
    name = str(obj.get("metadata", {}).get("name", "scaledobject"))
    spec = obj.get("spec") or {}
    metrics = []
    for i, trig in enumerate(spec.get("triggers") or []):
        where = f"spec.triggers[{i}]"
        if trig.get("type") != "prometheus":
            raise LabError(f"{where}.type: the lab serves prometheus triggers only, not {trig.get('type')!r}")
        meta = trig.get("metadata") or {}
        metric_type = trig.get("metricType", "AverageValue")
        if metric_type not in ("AverageValue", "Value"):
            raise LabError(f"{where}.metricType: {metric_type!r} is not AverageValue or Value")
        query, threshold = meta.get("query"), meta.get("threshold")
        if not query or threshold is None:
            raise LabError(f"{where}.metadata: needs query and threshold")
        metrics.append(
            MetricSpec("External", f"s{i}-prometheus", metric_type, parse_quantity(threshold, f"{where}.threshold"),
                       query=str(query))
        )
    if not metrics:
        raise LabError(f"ScaledObject {name}: spec.triggers is empty")
    advanced = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    out = HpaSpec(
        name=name,
        min_replicas=max(_replicas(spec.get("minReplicaCount"), 0, "spec.minReplicaCount"), 1),
        max_replicas=_replicas(spec.get("maxReplicaCount"), 100, "spec.maxReplicaCount"),
        metrics=tuple(metrics),
        behavior=behavior_from(advanced.get("behavior"), "spec.advanced.horizontalPodAutoscalerConfig.behavior"),
        source="ScaledObject",
    )
    _check_bounds(out)
    return out


def _check_bounds(spec: HpaSpec) -> None:
    if spec.min_replicas < 1:
        raise LabError("minReplicas: must be at least 1 (scale to zero is not emulated)")
    if spec.max_replicas < spec.min_replicas:
        raise LabError(f"maxReplicas ({spec.max_replicas}) is below minReplicas ({spec.min_replicas})")


# --------------------------------------------------------------------------- the controller


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
class Reading:
    """What the metrics API served for one metric spec.

    Pods: `per_pod` maps pod name to value (pods without a series are absent). Object: `value`.
    External: `values` (one per series; the controller sums them). `error` set: unavailable.
    """

    per_pod: Mapping[str, float] = field(default_factory=dict)
    value: float | None = None
    values: tuple[float, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Tolerances:
    """`isWithin`: a usage ratio in [1 - down, 1 + up] changes nothing."""

    up: float = DEFAULT_TOLERANCE
    down: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        return (1.0 - self.down) <= ratio <= (1.0 + self.up)


@dataclass(frozen=True)
class Proposal:
    """One metric's recommendation (or why it has none)."""

    metric: str
    replicas: int | None
    usage: float | None  # the current value the controller compared with the target
    target: float
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one sync."""

    time: float
    current: int
    desired: int
    metric_desired: int | None  # before stabilization and rate limits
    stabilized: int | None
    proposals: tuple[Proposal, ...]
    reason: str

    @property
    def rescale(self) -> bool:
        return self.desired != self.current


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
    if missing:
        fill = target_milli if ratio < 1.0 else 0
        for name in missing:
            usable[name] = fill
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


def _usage_ratio_replicas(current: int, ratio: float, pods: Sequence[Pod], tolerances: Tolerances) -> int:
    """getUsageRatioReplicaCount (Object and External metrics with a Value target)."""
    if current == 0:
        return math.ceil(ratio)
    if tolerances.within(ratio):
        return current
    return math.ceil(ratio * _ready_pod_count(pods))


def _per_pod_total_replicas(status_replicas: int, total_milli: int, target_milli: int, tol: Tolerances) -> int:
    """GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas (AverageValue targets)."""
    ratio = total_milli / (target_milli * status_replicas) if status_replicas else math.inf
    if tol.within(ratio):
        return status_replicas
    return math.ceil(total_milli / target_milli)


@dataclass(frozen=True)
class _Rec:
    time: float
    replicas: int


@dataclass(frozen=True)
class _Event:
    time: float
    change: int


class HorizontalController:
    """One HPA's controller: call `sync` every sync period with what the cluster looks like now."""

    def __init__(
        self,
        spec: HpaSpec,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        downscale_stabilization_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S,
    ) -> None:
        self.spec = spec
        self.tolerance = tolerance
        self.downscale_stabilization_s = downscale_stabilization_s
        self._recommendations: list[_Rec] = []
        self._up_events: list[_Event] = []
        self._down_events: list[_Event] = []

    def tolerances(self) -> Tolerances:
        b = self.spec.behavior
        up = b.scale_up.tolerance if b is not None and b.scale_up.tolerance is not None else self.tolerance
        down = b.scale_down.tolerance if b is not None and b.scale_down.tolerance is not None else self.tolerance
        return Tolerances(up=up, down=down)

    # -- one metric ---------------------------------------------------------------------------
    def _propose(self, metric: MetricSpec, reading: Reading | None, spec_replicas: int, pods: Sequence[Pod]) -> Proposal:
        tol = self.tolerances()
        target = metric.target_milli
        if reading is None or reading.error is not None:
            error = (reading.error if reading is not None else None) or "no metrics returned"
            return Proposal(metric.name, None, None, metric.target, f"unable to get metric {metric.name}: {error}")
        status_replicas = sum(1 for p in pods if not p.deleting)
        try:
            if metric.type == "Pods":
                values = {name: milli_value(v) for name, v in reading.per_pod.items()}
                replicas, usage = plain_metric_replicas(spec_replicas, target, values, pods, tol)
            elif metric.type == "Object" and metric.target_type == "Value":
                if reading.value is None:
                    raise MetricUnavailable("no value")
                usage = milli_value(reading.value)
                replicas = _usage_ratio_replicas(spec_replicas, usage / target, pods, tol)
            elif metric.type == "External" and metric.target_type == "Value":
                if not reading.values:
                    raise MetricUnavailable("no external metric series")
                usage = sum(milli_value(v) for v in reading.values)
                replicas = _usage_ratio_replicas(spec_replicas, usage / target, pods, tol)
            else:  # AverageValue on Object or External: the total over the target per pod
                total = [reading.value] if metric.type == "Object" and reading.value is not None else list(reading.values)
                if not total:
                    raise MetricUnavailable("no value")
                usage_total = sum(milli_value(v) for v in total)
                replicas = _per_pod_total_replicas(status_replicas, usage_total, target, tol)
                usage = math.ceil(usage_total / status_replicas) if status_replicas else usage_total
        except MetricUnavailable as exc:
            return Proposal(metric.name, None, None, metric.target, str(exc))
        return Proposal(metric.name, replicas, usage / 1000.0, metric.target)

    # -- one sync -------------------------------------------------------------------------------
    def sync(
        self, now: float, spec_replicas: int, pods: Sequence[Pod], readings: Sequence[Reading | None]
    ) -> Decision:
        """reconcileAutoscaler: the replica count this HPA sets now (`Decision.desired`).

        `readings[i]` is what the metrics API served for `spec.metrics[i]` (None: nothing).
        Records the recommendation and, when the count changes, the scale event.
        """
        spec = self.spec
        proposals: tuple[Proposal, ...] = ()
        metric_desired: int | None = None
        stabilized: int | None = None
        if spec_replicas == 0 and spec.min_replicas != 0:
            return Decision(now, 0, 0, None, None, (), "ScalingDisabled")
        if spec_replicas > spec.max_replicas:
            desired, reason = spec.max_replicas, "TooManyReplicas"
        elif spec_replicas < spec.min_replicas:
            desired, reason = spec.min_replicas, "TooFewReplicas"
        else:
            # "Support for multiple metrics": the largest recommendation wins; if a metric cannot
            # be read and the others would scale down, nothing changes (computeReplicasForMetrics).
            proposals = tuple(
                self._propose(m, readings[i] if i < len(readings) else None, spec_replicas, pods)
                for i, m in enumerate(spec.metrics)
            )
            valid = [p.replicas for p in proposals if p.replicas is not None]
            invalid = len(proposals) - len(valid)
            best = max(valid) if valid else 0
            if invalid >= len(proposals) or (invalid > 0 and best < spec_replicas):
                first = next(p.error for p in proposals if p.error is not None)
                return Decision(now, spec_replicas, spec_replicas, None, None, proposals, f"FailedGetMetrics: {first}")
            metric_desired = best
            if spec.behavior is None:
                stabilized = self._stabilize_legacy(now, metric_desired)
                desired, reason = self._limit_legacy(spec_replicas, stabilized)
            else:
                stabilized = self._stabilize(now, spec_replicas, metric_desired, spec.behavior)
                desired, reason = self._limit_with_behavior(now, spec_replicas, stabilized, spec.behavior)
        if desired != spec_replicas:
            self._store_event(now, spec_replicas, desired)
        return Decision(now, spec_replicas, desired, metric_desired, stabilized, proposals, reason)

    # -- without behavior (normalizeDesiredReplicas) ------------------------------------------
    def _stabilize_legacy(self, now: float, recommendation: int) -> int:
        """stabilizeRecommendation: the highest recommendation of the downscale window."""
        cutoff = now - self.downscale_stabilization_s
        highest = recommendation
        for rec in self._recommendations:
            if rec.time >= cutoff and rec.replicas > highest:
                highest = rec.replicas
        self._recommendations = [r for r in self._recommendations if r.time >= cutoff]
        self._recommendations.append(_Rec(now, recommendation))
        return highest

    def _limit_legacy(self, current: int, desired: int) -> tuple[int, str]:
        """convertDesiredReplicasWithRules: min/max, and at most max(2 × current, 4) on a scale-up."""
        scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
        if self.spec.max_replicas > scale_up_limit:
            maximum, why = scale_up_limit, "ScaleUpLimit"
        else:
            maximum, why = self.spec.max_replicas, "TooManyReplicas"
        if desired < self.spec.min_replicas:
            return self.spec.min_replicas, "TooFewReplicas"
        if desired > maximum:
            return maximum, why
        return desired, "DesiredWithinRange"

    # -- with behavior (normalizeDesiredReplicasWithBehaviors) ---------------------------------
    def _stabilize(self, now: float, current: int, recommendation: int, behavior: Behavior) -> int:
        """stabilizeRecommendationWithBehaviors ("Stabilization window").

        Scale-up takes the lowest recommendation of its window, scale-down the highest of its
        window; the result moves from the current count only as far as both allow.
        """
        up_cutoff = now - behavior.scale_up.stabilization_window_s
        down_cutoff = now - behavior.scale_down.stabilization_window_s
        up_rec = down_rec = recommendation
        for rec in self._recommendations:
            if rec.time > up_cutoff:
                up_rec = min(up_rec, rec.replicas)
            if rec.time > down_cutoff:
                down_rec = max(down_rec, rec.replicas)
        result = current
        if result < up_rec:
            result = up_rec
        if result > down_rec:
            result = down_rec
        keep_after = min(up_cutoff, down_cutoff)
        self._recommendations = [r for r in self._recommendations if r.time >= keep_after]
        self._recommendations.append(_Rec(now, recommendation))
        return result

    def _limit_with_behavior(self, now: float, current: int, desired: int, behavior: Behavior) -> tuple[int, str]:
        """convertDesiredReplicasWithBehaviorRate ("Scaling policies", "Default behavior")."""
        spec = self.spec
        if desired > current:
            limit = self._scale_up_limit(now, current, behavior.scale_up)
            limit = max(limit, current)  # no further scale-up until older events leave the period
            if spec.max_replicas > limit:
                maximum, why = limit, "ScaleUpLimit"
            else:
                maximum, why = spec.max_replicas, "TooManyReplicas"
            if desired > maximum:
                return maximum, why
        elif desired < current:
            limit = self._scale_down_limit(now, current, behavior.scale_down)
            limit = min(limit, current)
            if spec.min_replicas < limit:
                minimum, why = limit, "ScaleDownLimit"
            else:
                minimum, why = spec.min_replicas, "TooFewReplicas"
            if desired < minimum:
                return minimum, why
        return desired, "DesiredWithinRange"

    def _changes_in(self, events: list[_Event], now: float, period: float) -> int:
        """getReplicasChangePerPeriod: replicas added (or removed) within the last `period`."""
        cutoff = now - period
        return sum(e.change for e in events if e.time > cutoff)

    def _period_start(self, now: float, current: int, period: float) -> int:
        return current - self._changes_in(self._up_events, now, period) + self._changes_in(self._down_events, now, period)

    def _scale_up_limit(self, now: float, current: int, rules: ScalingRules) -> int:
        """calculateScaleUpLimitWithScalingRules: Max picks the policy allowing the most, Min the least."""
        if rules.select_policy == "Disabled" or not rules.policies:
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now, current, policy.period_s)
            if policy.type == "Pods":
                proposals.append(start + policy.value)
            else:  # rounded up, or a small deployment could never grow
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        return min(proposals) if rules.select_policy == "Min" else max(proposals)

    def _scale_down_limit(self, now: float, current: int, rules: ScalingRules) -> int:
        """calculateScaleDownLimitWithBehaviors: Max picks the policy allowing the most removal."""
        if rules.select_policy == "Disabled" or not rules.policies:
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now, current, policy.period_s)
            if policy.type == "Pods":
                proposals.append(start - policy.value)
            else:  # truncated toward zero, as Go's int32() conversion does
                proposals.append(int(start * (1 - policy.value / 100)))
        return max(proposals) if rules.select_policy == "Min" else min(proposals)

    def _store_event(self, now: float, before: int, after: int) -> None:
        """storeScaleEvent: only HPAs with behavior keep events; older than every period they go."""
        behavior = self.spec.behavior
        if behavior is None:
            return
        if after > before:
            longest = max((p.period_s for p in behavior.scale_up.policies), default=0.0)
            self._up_events = [e for e in self._up_events if e.time > now - longest]
            self._up_events.append(_Event(now, after - before))
        else:
            longest = max((p.period_s for p in behavior.scale_down.policies), default=0.0)
            self._down_events = [e for e in self._down_events if e.time > now - longest]
            self._down_events.append(_Event(now, before - after))

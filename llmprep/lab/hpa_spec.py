"""The HPA spec as the lab's controller reads it: quantities, metrics, behavior, bounds.

Split out of llmprep/lab/hpa.py (which re-exports every name here). Parses an autoscaling/v2
HorizontalPodAutoscaler, or the HPA a KEDA ScaledObject stands for, into `HpaSpec`; the rules
followed are named per function (kubernetes.io "Horizontal Pod Autoscaling", apimachinery
resource.Quantity, pkg/apis/autoscaling defaults).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from llmprep import units
from llmprep.errors import LabError

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
MetricType = Literal["Pods", "Object", "External"]
TargetType = Literal["AverageValue", "Value"]

# kube-controller-manager default ("Default behavior"; --horizontal-pod-autoscaler-downscale-stabilization).
DEFAULT_DOWNSCALE_STABILIZATION_S = 300.0


# --------------------------------------------------------------------------- quantities


def parse_quantity(value: Any, field_name: str = "quantity") -> float:
    """A Kubernetes quantity (`1500m`, `2`, `1.5`, `4Ki`, `1e3`) as a number; LabError naming the field."""
    try:
        return units.parse_quantity(value, field_name)
    except units.QuantityError as exc:
        raise LabError(str(exc)) from None


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
    # Compressed by `speed` in llmprep.lab.timing.scaled_hpa (the one module that divides by it).


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
    (KEDA itself scales between 0 and the minimum: llmprep/lab/keda.py) and the behavior of
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
            MetricSpec(
                "External",
                f"s{i}-prometheus",
                metric_type,
                parse_quantity(threshold, f"{where}.threshold"),
                query=str(query),
            )
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

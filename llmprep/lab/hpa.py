"""The Kubernetes HorizontalPodAutoscaler, as its controller computes a replica count.

Our own code after the documented algorithm (kubernetes.io, "Horizontal Pod Autoscaling":
sections "Algorithm details", "Support for multiple metrics", "Configurable scaling behavior",
"Stabilization window", "Default behavior") and the controller it describes
(kubernetes/kubernetes pkg/controller/podautoscaler: horizontal.go, replica_calculator.go,
metrics/utilization.go). Each rule names the section or function it follows. The spec (quantities,
metrics, behavior, manifest parsing) lives in llmprep/lab/hpa_spec.py, one metric's replica count
(replica_calculator.go) in llmprep/lab/replicas.py; both are re-exported here.

The controller here is a pure function of (time, spec.replicas, pods, metric readings) plus
the history it keeps between syncs (recommendations and scale events), so tests drive it
with worked examples and the lab drives it with live readings from Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmprep.lab.hpa_spec import (
    DEFAULT_DOWNSCALE_STABILIZATION_S,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    HpaSpec,
    MetricSpec,
    MetricType,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    TargetType,
    behavior_from,
    hpa_from_manifest,
    hpa_from_scaled_object,
    milli_value,
    parse_quantity,
)
from llmprep.lab.replicas import (
    DEFAULT_TOLERANCE,
    MetricUnavailable,
    Pod,
    Tolerances,
    per_pod_total_replicas,
    plain_metric_replicas,
    usage_ratio_replicas,
)

__all__ = [
    "DEFAULT_DOWNSCALE_STABILIZATION_S",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "DEFAULT_SYNC_PERIOD_S",
    "DEFAULT_TOLERANCE",
    "Behavior",
    "Decision",
    "HorizontalController",
    "HpaSpec",
    "MetricSpec",
    "MetricType",
    "MetricUnavailable",
    "Pod",
    "PolicyType",
    "Proposal",
    "Reading",
    "ScalingPolicy",
    "ScalingRules",
    "SelectPolicy",
    "TargetType",
    "Tolerances",
    "behavior_from",
    "hpa_from_manifest",
    "hpa_from_scaled_object",
    "milli_value",
    "parse_quantity",
    "plain_metric_replicas",
]

DEFAULT_SYNC_PERIOD_S = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
# horizontal.go, used only when an HPA has no `behavior` (the pre-behavior rate limit).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


# --------------------------------------------------------------------------- the controller


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
        self._seen = False
        self._up_events: list[_Event] = []
        self._down_events: list[_Event] = []

    def tolerances(self) -> Tolerances:
        b = self.spec.behavior
        up = b.scale_up.tolerance if b is not None and b.scale_up.tolerance is not None else self.tolerance
        down = b.scale_down.tolerance if b is not None and b.scale_down.tolerance is not None else self.tolerance
        return Tolerances(up=up, down=down)

    # -- one metric ---------------------------------------------------------------------------
    def _propose(
        self, metric: MetricSpec, reading: Reading | None, spec_replicas: int, pods: Sequence[Pod]
    ) -> Proposal:
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
                replicas = usage_ratio_replicas(spec_replicas, usage / target, pods, tol)
            elif metric.type == "External" and metric.target_type == "Value":
                if not reading.values:
                    raise MetricUnavailable("no external metric series")
                usage = sum(milli_value(v) for v in reading.values)
                replicas = usage_ratio_replicas(spec_replicas, usage / target, pods, tol)
            else:  # AverageValue on Object or External: the total over the target per pod
                total = (
                    [reading.value] if metric.type == "Object" and reading.value is not None else list(reading.values)
                )
                if not total:
                    raise MetricUnavailable("no value")
                usage_total = sum(milli_value(v) for v in total)
                replicas = per_pod_total_replicas(status_replicas, usage_total, target, tol)
                usage = math.ceil(usage_total / status_replicas) if status_replicas else usage_total
        except MetricUnavailable as exc:
            return Proposal(metric.name, None, None, metric.target, str(exc))
        return Proposal(metric.name, replicas, usage / 1000.0, metric.target)

    # -- one sync -------------------------------------------------------------------------------
    def sync(self, now: float, spec_replicas: int, pods: Sequence[Pod], readings: Sequence[Reading | None]) -> Decision:
        """reconcileAutoscaler: the replica count this HPA sets now (`Decision.desired`).

        `readings[i]` is what the metrics API served for `spec.metrics[i]` (None: nothing).
        Records the recommendation and, when the count changes, the scale event.
        """
        spec = self.spec
        proposals: tuple[Proposal, ...] = ()
        metric_desired: int | None = None
        stabilized: int | None = None
        # horizontal.go reconcileAutoscaler → recordInitialRecommendation, right after reading
        # the scale: the first sync of an HPA records the current count as a recommendation, so
        # a new HPA cannot scale down inside its stabilization window.
        if not self._seen:
            self._seen = True
            self._recommendations.append(_Rec(now, spec_replicas))
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
        return (
            current - self._changes_in(self._up_events, now, period) + self._changes_in(self._down_events, now, period)
        )

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

"""KEDA's operator for one ScaledObject, as the lab runs it: activation between 0 and the minimum.

Our own code after KEDA's source (kedacore/keda; rules and the copies read are listed with file
and commit in tests/data/keda_rules.py). KEDA does two things for a ScaledObject:
- it owns 0 ↔ min: every `pollingInterval` it asks each trigger whether it is active and, in
  `RequestScale` (pkg/scaling/executor/scale_scaledobjects.go), scales from 0 to
  max(minReplicaCount, 1) when one is, and to 0 once none has been for `cooldownPeriod`
  (only when minReplicaCount is 0);
- above that it creates an HPA (one External metric per trigger, AverageValue by default,
  minReplicas max(minReplicaCount, 1)), which Kubernetes' controller runs: here hpa.py's
  `HorizontalController`, with the spec `hpa_from_scaled_object` builds.
A push scaler (the KEDA HTTP add-on's external scaler) reports activity between polls; KEDA
calls the same `RequestScale` with it at once (`push`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmprep.errors import LabError
from llmprep.lab.hpa import HorizontalController, HpaSpec, hpa_from_scaled_object, parse_quantity

# KEDA's defaults for fields a ScaledObject leaves out (keda_rules.py: defaults).
DEFAULT_POLLING_INTERVAL_S = 30.0
DEFAULT_COOLDOWN_PERIOD_S = 300.0
DEFAULT_MIN_REPLICA_COUNT = 0
DEFAULT_ACTIVATION_THRESHOLD = 0.0


@dataclass(frozen=True)
class KedaSpec:
    """What KEDA's operator reads of a ScaledObject, and the HPA it generates."""

    hpa: HpaSpec
    min_replica_count: int
    polling_interval_s: float
    cooldown_period_s: float
    activation_thresholds: tuple[float, ...]

    @property
    def active_minimum(self) -> int:
        """scaleFromZero: the count KEDA sets when a trigger turns active at 0 replicas."""
        return max(self.min_replica_count, 1)


def _seconds(raw: Any, default: float, where: str) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise LabError(f"{where}: {raw!r} is not a whole number of seconds ≥ 0; set e.g. {int(default)}")
    return float(raw)


def keda_from_scaled_object(obj: Mapping[str, Any]) -> KedaSpec:
    """The operator's view of a rendered ScaledObject (spec.pollingInterval, cooldownPeriod, triggers)."""
    spec = obj.get("spec") or {}
    raw_min = spec.get("minReplicaCount", DEFAULT_MIN_REPLICA_COUNT)
    if isinstance(raw_min, bool) or not isinstance(raw_min, int) or raw_min < 0:
        raise LabError(f"spec.minReplicaCount: {raw_min!r} is not a whole number ≥ 0")
    thresholds = []
    for i, trig in enumerate(spec.get("triggers") or []):
        raw = (trig.get("metadata") or {}).get("activationThreshold")
        where = f"spec.triggers[{i}].metadata.activationThreshold"
        thresholds.append(DEFAULT_ACTIVATION_THRESHOLD if raw is None else parse_quantity(raw, where))
    return KedaSpec(
        hpa=hpa_from_scaled_object(obj),
        min_replica_count=raw_min,
        polling_interval_s=_seconds(spec.get("pollingInterval"), DEFAULT_POLLING_INTERVAL_S, "spec.pollingInterval"),
        cooldown_period_s=_seconds(spec.get("cooldownPeriod"), DEFAULT_COOLDOWN_PERIOD_S, "spec.cooldownPeriod"),
        activation_thresholds=tuple(thresholds),
    )


@dataclass(frozen=True)
class KedaDecision:
    time: float
    current: int
    desired: int
    active: bool
    reason: str


class KedaOperator:
    """One ScaledObject's operator loop: call `poll` every polling interval; `hpa` runs the generated HPA."""

    def __init__(self, spec: KedaSpec) -> None:
        self.spec = spec
        self.hpa = HorizontalController(spec.hpa)
        self.last_active: float | None = None

    def is_active(self, values: Sequence[float | None]) -> bool:
        """prometheus_scaler.go IsActive: a trigger is active when its query value > activationThreshold.

        The ScaledObject is active when any trigger is; a trigger whose query failed is not active.
        """
        return any(v is not None and v > t for v, t in zip(values, self.spec.activation_thresholds, strict=False))

    def poll(self, now: float, current: int, values: Sequence[float | None]) -> KedaDecision:
        """scale_handler checkScalers, every pollingInterval: the triggers' activity, then RequestScale."""
        return self.request_scale(now, current, self.is_active(values))

    def push(self, now: float, current: int, active: bool) -> KedaDecision:
        """scale_handler startPushScalers: a push scaler's activity goes to RequestScale between polls."""
        return self.request_scale(now, current, active)

    def request_scale(self, now: float, current: int, active: bool) -> KedaDecision:
        """scale_executor RequestScale: the replica count KEDA itself sets (or `current`: leave it to the HPA)."""
        spec = self.spec
        if current == 0 and active:
            self.last_active = now
            return KedaDecision(now, current, spec.active_minimum, True, "ScaledFromZero")
        if not active and current > 0 and spec.min_replica_count == 0:
            # scaleToZero: no stored activity (scaled outside KEDA) or the cooldown has passed.
            if self.last_active is None or self.last_active + spec.cooldown_period_s < now:
                return KedaDecision(now, current, 0, False, "ScaledToZero")
            return KedaDecision(now, current, current, False, "ScalerCooldown")
        if not active and current < spec.min_replica_count:
            return KedaDecision(now, current, spec.min_replica_count, False, "SetToMinReplicaCount")
        if active:
            self.last_active = now
        return KedaDecision(now, current, current, active, "NoChange")

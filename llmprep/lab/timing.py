"""Every period the lab runs, compressed by `speed` and clamped once, here.

`speed` divides the control loop's time constants so a five-minute window runs in CI time.
This module is the only place that divides by it: the chart's Prometheus durations before
rendering (`compress_duration`, through rendered.py), and after rendering every period the
front, the cluster, the controllers (hpa.py, keda.py), the metrics source and the report read
(`Timing.of`). Each period keeps its cluster value beside the lab value it ran at, so the
report shows what ran, clamps included.

A compressed period is clamped from below only where the lab cannot run a shorter one:
- Prometheus durations (scrape and evaluation intervals, rate window): 50 ms, below which
  Prometheus' own scheduling dominates;
- loop periods the lab's main loop steps through (HPA sync, KEDA polling, adapter relist):
  the loop's tick, 50 ms;
- the readiness probe period (the kubelet's probe and the front's health check, one period):
  200 ms, so probing a handful of replicas does not load the two cores the replicas share.
Windows and pauses (stabilization windows, policy periods, cooldown, preStop, drain timeout)
are not clamped: zero is a meaningful value for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmprep import files
from llmprep.errors import LabError
from llmprep.lab.hpa_spec import DEFAULT_DOWNSCALE_STABILIZATION_S, Behavior, HpaSpec, ScalingRules

if TYPE_CHECKING:
    from llmprep.lab.keda import KedaSpec
    from llmprep.lab.rendered import LabSetup
    from llmprep.lab.scenario import Scenario

LOOP_TICK_S = 0.05  # the lab's main loop sleeps this long between steps (run.py)
PROMETHEUS_FLOOR_S = 0.05
LOOP_FLOOR_S = LOOP_TICK_S
PROBE_FLOOR_S = 0.2


def compress(seconds: float, speed: float, floor: float = 0.0) -> float:
    """`seconds` of cluster time as lab seconds: divided by `speed`, never below `floor`."""
    return max(seconds / speed, floor)


def to_cluster(lab_s: float, speed: float) -> float:
    """Lab seconds back to cluster seconds (a configured term the report has no cluster value for)."""
    return lab_s * speed


def compress_duration(seconds: float, speed: float) -> float:
    """A Prometheus duration of the chart's values (interval, window), compressed before rendering."""
    return compress(seconds, speed, PROMETHEUS_FLOOR_S)


@dataclass(frozen=True)
class Period:
    """One period: its cluster value, the lab value it ran at, and whether the floor raised that value."""

    cluster_s: float
    lab_s: float
    clamped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"cluster_s": round(self.cluster_s, 6), "lab_s": round(self.lab_s, 6), "clamped": self.clamped}


def period(cluster_s: float, speed: float, floor: float = 0.0) -> Period:
    """`cluster_s` compressed by `speed`, clamped at `floor`."""
    return Period(cluster_s, compress(cluster_s, speed, floor), clamped=compress(cluster_s, speed) < floor)


def _scaled_rules(rules: ScalingRules, speed: float) -> ScalingRules:
    return dataclasses.replace(
        rules,
        stabilization_window_s=compress(rules.stabilization_window_s, speed),
        policies=tuple(dataclasses.replace(p, period_s=compress(p.period_s, speed)) for p in rules.policies),
    )


def scaled_hpa(spec: HpaSpec, speed: float) -> HpaSpec:
    """`spec` with every stabilization window and policy period compressed."""
    if speed == 1 or spec.behavior is None:
        return spec
    b = spec.behavior
    return dataclasses.replace(
        spec, behavior=Behavior(_scaled_rules(b.scale_up, speed), _scaled_rules(b.scale_down, speed))
    )


def rule_interval_s(groups: Sequence[Mapping[str, Any]], default: float) -> float:
    """The interval of the first rule group that records (as rendered), else `default`."""
    from llmprep.units import parse_duration

    for group in groups:
        if any("record" in r for r in group.get("rules", [])) and group.get("interval"):
            return parse_duration(group["interval"], "PrometheusRule group interval")
    return default


def relist_interval_s(path: Path | None = None) -> float:
    """The adapter's `metricsRelistInterval` from its values file (the adapter's default where it sets none: 1m).

    `path` None: the values file llmprep ships, 1m where there is none. A file that cannot be read or
    is not YAML is a one-line LabError.
    """
    from llmprep.lab import adapter
    from llmprep.units import parse_duration

    if path is None:
        if not adapter.ADAPTER_VALUES.is_file():
            return 60.0
        path = adapter.ADAPTER_VALUES
    data = files.read_yaml(path, "adapter values", LabError) or {}
    if not isinstance(data, Mapping):
        raise LabError(f"adapter values {path}: not a mapping of values")
    return parse_duration(data.get("metricsRelistInterval", "1m"), "metricsRelistInterval")


def _rendered(lab_s: float, key: str, compressed: Mapping[str, tuple[str, str]], speed: float) -> Period:
    """A Prometheus duration compressed through the chart's values: the cluster value is the one before."""
    from llmprep.units import parse_duration

    if key in compressed:
        cluster = parse_duration(compressed[key][0], key)
        return Period(cluster, lab_s, clamped=compress(cluster, speed) < PROMETHEUS_FLOOR_S)
    return Period(lab_s, lab_s)


@dataclass(frozen=True)
class Timing:
    """What the lab runs at, in lab seconds, with each period's cluster value (see the module's docstring)."""

    speed: float
    scrape_interval: Period
    rule_interval: Period
    rate_window: Period | None
    sync_period: Period
    downscale_stabilization: Period  # the controller's flag; used when the HPA has no behavior
    scale_up_stabilization: Period  # what the controller runs: the behavior's window, else 0
    scale_down_stabilization: Period  # the behavior's window, else the controller's flag
    readiness_period: Period
    pre_stop: Period
    drain_timeout: Period | None
    adapter_relist: Period
    hpa: HpaSpec  # the HPA spec with its windows and policy periods compressed
    keda: KedaSpec | None = None  # the ScaledObject's operator view, polling and cooldown compressed
    keda_polling: Period | None = None
    keda_cooldown: Period | None = None

    @classmethod
    def of(cls, setup: LabSetup, scenario: Scenario, adapter_values: Path | None = None) -> Timing:
        """The lab's timing for one scenario, from the chart's output and the adapter's values."""
        speed = scenario.speed
        compressed = setup.compressed
        scrape = _rendered(setup.scrape_interval_s, "monitoring.podMonitor.interval", compressed, speed)
        rules = _rendered(
            rule_interval_s(setup.rule_groups, setup.scrape_interval_s),
            "monitoring.prometheusRule.interval",
            compressed,
            speed,
        )
        window = None
        if setup.rate_window_s is not None:
            window = _rendered(setup.rate_window_s, "monitoring.prometheusRule.window", compressed, speed)
        flag = period(DEFAULT_DOWNSCALE_STABILIZATION_S, speed)
        behavior = setup.hpa.behavior
        up = Period(0.0, 0.0) if behavior is None else period(behavior.scale_up.stabilization_window_s, speed)
        down = flag if behavior is None else period(behavior.scale_down.stabilization_window_s, speed)
        keda = polling = cooldown = None
        if setup.keda is not None:
            polling = period(setup.keda.polling_interval_s, speed, LOOP_FLOOR_S)
            cooldown = period(setup.keda.cooldown_period_s, speed)
            keda = dataclasses.replace(
                setup.keda,
                hpa=scaled_hpa(setup.keda.hpa, speed),
                polling_interval_s=polling.lab_s,
                cooldown_period_s=cooldown.lab_s,
            )
        return cls(
            speed=speed,
            scrape_interval=scrape,
            rule_interval=rules,
            rate_window=window,
            sync_period=period(scenario.sync_period_s, speed, LOOP_FLOOR_S),
            downscale_stabilization=flag,
            scale_up_stabilization=up,
            scale_down_stabilization=down,
            readiness_period=period(setup.readiness_period_s, speed, PROBE_FLOOR_S),
            pre_stop=period(setup.pre_stop_s, speed),
            drain_timeout=None if setup.drain_timeout_s is None else period(setup.drain_timeout_s, speed),
            adapter_relist=period(relist_interval_s(adapter_values), speed, LOOP_FLOOR_S),
            hpa=scaled_hpa(setup.hpa, speed),
            keda=keda,
            keda_polling=polling,
            keda_cooldown=cooldown,
        )

    def periods(self) -> dict[str, Period]:
        """Every period by name (the report's `timing` table)."""
        named = {
            "scrape_interval": self.scrape_interval,
            "rule_interval": self.rule_interval,
            "rate_window": self.rate_window,
            "sync_period": self.sync_period,
            "downscale_stabilization": self.downscale_stabilization,
            "scale_up_stabilization": self.scale_up_stabilization,
            "scale_down_stabilization": self.scale_down_stabilization,
            "readiness_period": self.readiness_period,
            "pre_stop": self.pre_stop,
            "drain_timeout": self.drain_timeout,
            "adapter_relist": self.adapter_relist,
            "keda_polling_interval": self.keda_polling,
            "keda_cooldown_period": self.keda_cooldown,
        }
        return {k: v for k, v in named.items() if v is not None}

"""What the lab runs, taken from the chart's own output: rules, HPA, scrape interval, model spec.

The chart is rendered through Helm's engine (llmprep.chart) with the scenario's values. Every
rule, threshold, interval and probe period the lab uses is read from the rendered objects;
nothing is restated here. Time compression (`speed`) goes through the chart's own values for
what lives in PromQL or in the PodMonitor (scrape and evaluation intervals, rate window), so
the rules stay the chart's; the controller-side constants (sync period, stabilization windows,
policy periods, probe period, preStop) are compressed by llmprep.lab.timing when the lab runs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmprep import files
from llmprep.errors import LabError
from llmprep.lab.hpa import HpaSpec, hpa_from_manifest, hpa_from_scaled_object
from llmprep.lab.keda import KedaSpec, keda_from_scaled_object
from llmprep.lab.scenario import Scenario
from llmprep.spec import ModelSpec, deep_merge, parse_spec

RELEASE = "lab"
NAMESPACE = "lab"
# Values keys holding Prometheus durations of the control loop (scaled by `speed` before rendering).
MONITORING_DURATIONS = (
    "monitoring.podMonitor.interval",
    "monitoring.prometheusRule.interval",
    "monitoring.prometheusRule.window",
    "monitoring.alerts.interval",
)


@dataclass(frozen=True)
class LabSetup:
    """The chart's output as the lab uses it."""

    values: dict[str, Any]
    objects: list[dict[str, Any]]
    spec: ModelSpec
    model_yaml: str
    rule_groups: list[dict[str, Any]]
    recorded: tuple[str, ...]  # names the recording rules record
    hpa: HpaSpec  # as rendered (cluster time)
    deployment: str
    namespace: str
    pod_labels: Mapping[str, str]
    podmonitor: str
    scrape_interval_s: float  # lab time (already compressed through the values)
    readiness_period_s: float  # cluster time
    pre_stop_s: float  # cluster time
    exit_timeout_s: int
    speed: float
    compressed: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # key -> (cluster, lab)
    rate_window_s: float | None = None  # lab time (after compression)
    drain_timeout_s: float | None = None  # cluster time; None: the preStop hook only sleeps
    keda: KedaSpec | None = None  # the ScaledObject's operator view (cluster time); None: a plain HPA


def _get(doc: Mapping[str, Any], dotted: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    patch: Any = value
    for key in reversed(dotted.split(".")):
        patch = {key: patch}
    return deep_merge(doc, patch)


def _seconds(value: Any, where: str) -> float:
    from llmprep.units import parse_duration

    try:
        return parse_duration(value, where)
    except Exception as exc:
        raise LabError(f"{where}: {value!r} is not a duration the lab can compress ({exc})") from None


def compose_values(scenario: Scenario) -> dict[str, Any]:
    """The user values: scenario files, its stand-in block, command-line files, then every --set."""
    from llmprep import chart

    scenario_files = [p for p in scenario.values_files]
    values: dict[str, Any] = {}
    for path in scenario_files:
        values = deep_merge(values, chart.merge_values([path], []))
    if scenario.standin:
        values = deep_merge(values, {"model": {"standin": dict(scenario.standin)}})
    # Together, as `chart template` applies them: a null a file left under a --set path reads as absent.
    return chart.apply_sets(values, scenario.sets)


def chart_defaults(chart_dir: Path) -> dict[str, Any]:
    """The chart's own values.yaml, or a one-line LabError (missing, unreadable, not YAML, not a mapping)."""
    path = chart_dir / "values.yaml"
    defaults = files.read_yaml(path, "the chart's values", LabError, string_keys=False) or {}
    if not isinstance(defaults, dict):
        raise LabError(f"the chart's values {path}: not a mapping of values")
    return defaults


def compress(
    values: dict[str, Any], defaults: Mapping[str, Any], speed: float
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """`values` with the monitoring durations divided by `speed`, and what changed (`defaults`: the chart's)."""
    from llmprep.lab.prometheus import duration
    from llmprep.lab.timing import compress_duration

    if speed == 1:
        return values, {}
    effective = deep_merge(defaults, values)
    changed: dict[str, tuple[str, str]] = {}
    out = copy.deepcopy(values)
    for key in MONITORING_DURATIONS:
        raw = _get(effective, key)
        if raw is None:
            continue
        seconds = _seconds(raw, key)
        fast = duration(compress_duration(seconds, speed))
        out = _set(out, key, fast)
        changed[key] = (str(raw), fast)
    return out, changed


def _one(objects: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any] | None:
    found = [dict(o) for o in objects if o.get("kind") == kind]
    if len(found) > 1:
        names = ", ".join(str(o.get("metadata", {}).get("name")) for o in found)
        raise LabError(f"the chart rendered {len(found)} {kind} objects ({names}); the lab runs one release of one")
    return found[0] if found else None


def _container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    for container in containers:
        if container.get("name") == "triton":
            return dict(container)
    if containers:
        return dict(containers[0])
    raise LabError("the rendered Deployment has no container")


def _flag(command: Sequence[Any], name: str) -> str | None:
    args = [str(a) for a in command]
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def extract(
    values: dict[str, Any],
    objects: list[dict[str, Any]],
    *,
    speed: float,
    compressed: Mapping[str, tuple[str, str]] | None = None,
) -> LabSetup:
    """Pick what the lab runs out of the rendered objects."""
    from llmprep import chart

    hpa_obj = _one(objects, "HorizontalPodAutoscaler")
    scaled = _one(objects, "ScaledObject")
    if hpa_obj is not None:
        hpa = hpa_from_manifest(hpa_obj)
    elif scaled is not None:
        hpa = hpa_from_scaled_object(scaled)
    else:
        raise LabError("the chart rendered no HorizontalPodAutoscaler or ScaledObject; set autoscaling.enable=true")
    deployment = _one(objects, "Deployment")
    if deployment is None:
        raise LabError("the chart rendered no Deployment (the lab runs the single-node chart layout)")
    podmonitor = _one(objects, "PodMonitor")
    if podmonitor is None:
        raise LabError("the chart rendered no PodMonitor; set monitoring.podMonitor.enabled=true")
    groups = chart.rule_groups(objects)
    if not groups:
        raise LabError("the chart rendered no PrometheusRule groups; set monitoring.prometheusRule.enabled=true")
    model_yaml = None
    for cm in chart.find(objects, "ConfigMap"):
        data = cm.get("data") or {}
        if "model.yaml" in data:
            model_yaml = str(data["model.yaml"])
    if model_yaml is None:
        raise LabError("the chart rendered no ConfigMap with model.yaml")
    spec = parse_spec(yaml.safe_load(model_yaml), source="model.yaml")
    endpoints = podmonitor.get("spec", {}).get("podMetricsEndpoints") or [{}]
    interval = endpoints[0].get("interval") or "30s"  # the operator's default
    container = _container(deployment)
    readiness = (container.get("readinessProbe") or {}).get("periodSeconds", 10)  # Kubernetes' default
    pre_stop_cmd = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    pre_stop, drain_timeout = _pre_stop_hook([str(a) for a in pre_stop_cmd])
    exit_timeout = _flag(container.get("command", []) + container.get("args", []), "--exit-timeout-secs")
    labels = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    recorded = tuple(r["record"] for g in groups for r in g.get("rules", []) if "record" in r)
    return LabSetup(
        keda=keda_from_scaled_object(scaled) if hpa_obj is None and scaled is not None else None,
        values=values,
        objects=objects,
        spec=spec,
        model_yaml=model_yaml,
        rule_groups=groups,
        recorded=recorded,
        hpa=hpa,
        deployment=str(deployment["metadata"]["name"]),
        namespace=str(deployment["metadata"].get("namespace") or NAMESPACE),
        pod_labels={str(k): str(v) for k, v in labels.items()},
        podmonitor=str(podmonitor["metadata"]["name"]),
        scrape_interval_s=_seconds(interval, "PodMonitor interval"),
        readiness_period_s=float(readiness),
        pre_stop_s=pre_stop,
        exit_timeout_s=int(exit_timeout) if exit_timeout is not None else 30,
        drain_timeout_s=drain_timeout,
        speed=speed,
        compressed=dict(compressed or {}),
    )


def _pre_stop_hook(argv: Sequence[str]) -> tuple[float, float | None]:
    """(pause, drain timeout or None) of the container's preStop: `sleep N` or `llmprep drain ...`."""
    if len(argv) == 2 and argv[0] == "sleep":
        return _seconds(argv[1], "preStop sleep"), None
    if argv[:2] == ["llmprep", "drain"]:
        from llmprep.serve.drain import DEFAULT_PAUSE_S, DEFAULT_TIMEOUT_S

        pause = _flag(argv, "--pause")
        timeout = _flag(argv, "--timeout")
        return (
            DEFAULT_PAUSE_S if pause is None else _seconds(pause, "preStop drain --pause"),
            DEFAULT_TIMEOUT_S if timeout is None else _seconds(timeout, "preStop drain --timeout"),
        )
    return 0.0, None


def prepare(scenario: Scenario, chart_dir: Path | None = None) -> LabSetup:
    """Compose the values, compress time, render the chart and extract what the lab runs."""
    from llmprep import chart

    chart_path = Path(chart_dir) if chart_dir is not None else chart.CHART_DIR
    if not (chart_path / "Chart.yaml").is_file():
        raise LabError(f"--chart {chart_path}: no Chart.yaml there; point --chart at the llmprep chart folder")
    defaults = chart_defaults(chart_path)
    values = compose_values(scenario)
    values, changed = compress(values, defaults, scenario.speed)
    objects = chart.render(values, release=RELEASE, namespace=NAMESPACE, chart_dir=chart_path)
    setup = extract(values, objects, speed=scenario.speed, compressed=changed)
    window = _get(deep_merge(defaults, values), "monitoring.prometheusRule.window")
    if window is not None:
        setup = dataclasses.replace(setup, rate_window_s=_seconds(window, "monitoring.prometheusRule.window"))
    return setup

"""Reading a release's autoscaling from the cluster into plain data (`ReleaseStatus`).

Reads the cluster through the `kubernetes` client (kubeconfig or in-cluster): the release's
HorizontalPodAutoscalers (current and target value of each metric, current and desired
replicas, conditions), the workload they scale, its pods' readiness and the HPA's last
events. Every object that is missing or that RBAC hides becomes one line under "problems";
only a cluster that cannot be reached at all is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmprep.errors import LlmprepError
from llmprep.units import parse_quantity

RELEASE_LABELS = ("app.kubernetes.io/instance", "app")  # ours, then the tutorials' `app: <release>`
EVENTS_SHOWN = 5


class StatusError(LlmprepError):
    """The cluster cannot be reached or no credentials for it were found."""


# -- quantities ------------------------------------------------------------------------------------
# parse_quantity (llmprep.units) raises QuantityError, a ValueError: show_quantity catches that.


def show_quantity(text: str | None) -> str:
    """ "1500m" -> "1500m (1.5)"; plain numbers unchanged; None -> "<unknown>" as kubectl prints."""
    if text is None:
        return "<unknown>"
    try:
        value = parse_quantity(text)
    except ValueError:
        return str(text)
    plain = f"{value:g}"
    return str(text) if plain == str(text) else f"{text} ({plain})"


# -- what we collect -----------------------------------------------------------------------------------
@dataclass
class MetricStatus:
    """One HPA metric: its name, what the HPA aims for, and what it read last."""

    name: str
    type: str
    target: str
    current: str


@dataclass
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass
class ScalingEvent:
    time: str
    type: str
    reason: str
    message: str
    count: int


@dataclass
class PodStatus:
    name: str
    ready: bool
    phase: str
    restarts: int
    node: str
    started: str


@dataclass
class AutoscalerStatus:
    name: str
    target: str
    min_replicas: int
    max_replicas: int
    current_replicas: int
    desired_replicas: int
    last_scale_time: str
    metrics: list[MetricStatus] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    events: list[ScalingEvent] = field(default_factory=list)


@dataclass
class ReleaseStatus:
    """Everything `llmprep status` shows for one release, as data (`--json` prints it)."""

    release: str
    namespace: str
    autoscalers: list[AutoscalerStatus] = field(default_factory=list)
    pods: list[PodStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    collected_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the API ----------------------------------------------------------------------------------------------
class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class NotFound(Exception):
    pass


def connect(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from the kubeconfig (the given path(s) or ~/.kube/config), else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        if kubeconfig is not None or Path("~/.kube/config").expanduser().exists():
            config.load_kube_config(
                config_file=kubeconfig or str(Path("~/.kube/config").expanduser()),
                context=context,
                client_configuration=configuration,
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or "~/.kube/config"
        raise StatusError(
            f"no Kubernetes credentials: {str(exc).strip() or type(exc).__name__} "
            f"(kubeconfig {where}; set --kubeconfig or KUBECONFIG, or run inside the cluster)"
        ) from None
    configuration.retries = 0  # a dead API server should fail fast, not after urllib3's backoff
    return client.ApiClient(configuration)


def _status_message(exc: Any) -> str:
    try:
        body = json.loads(exc.body)
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a kubernetes client method; return the JSON object; map 403/404 and unreachable clusters."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        response = fn(*args, _preload_content=False, _request_timeout=10, **kwargs)
        return dict(json.loads(response.data))
    except ApiException as exc:
        if exc.status == 403:
            raise Forbidden(_status_message(exc)) from None
        if exc.status == 404:
            raise NotFound(_status_message(exc)) from None
        raise StatusError(f"the Kubernetes API answered {exc.status}: {_status_message(exc)}") from None
    except HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise StatusError(f"cannot reach the Kubernetes API: {reason}") from None


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# -- collecting -------------------------------------------------------------------------------------------
def _metric_key(metric: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(metric.get("type", ""))
    body = metric.get(kind[:1].lower() + kind[1:], {}) or {}
    name = body.get("name") or (body.get("metric") or {}).get("name", "")
    return kind, str(name)


def _target_text(target: Mapping[str, Any]) -> str:
    if "averageUtilization" in target:
        return f"{target['averageUtilization']}% (average utilisation)"
    if "averageValue" in target:
        return f"{show_quantity(str(target['averageValue']))} average per pod"
    if "value" in target:
        return f"{show_quantity(str(target['value']))} total"
    return "<unset>"


def _current_text(current: Mapping[str, Any] | None) -> str:
    if not current:
        return "<unknown>"
    if "averageUtilization" in current:
        return f"{current['averageUtilization']}%"
    if "averageValue" in current:
        return show_quantity(str(current["averageValue"]))
    if "value" in current:
        return show_quantity(str(current["value"]))
    return "<unknown>"


def _autoscaler(hpa: Mapping[str, Any]) -> AutoscalerStatus:
    spec, status = hpa.get("spec", {}), hpa.get("status", {})
    ref = spec.get("scaleTargetRef", {})
    currents = {_metric_key(m): m for m in status.get("currentMetrics") or []}
    metrics = []
    for metric in spec.get("metrics") or []:
        kind, name = _metric_key(metric)
        body = metric.get(kind[:1].lower() + kind[1:], {}) or {}
        current_metric = currents.get((kind, name))
        current_body = (current_metric or {}).get(kind[:1].lower() + kind[1:], {}) or {}
        metrics.append(
            MetricStatus(
                name=name,
                type=kind,
                target=_target_text(body.get("target", {})),
                current=_current_text(current_body.get("current")),
            )
        )
    return AutoscalerStatus(
        name=hpa["metadata"]["name"],
        target=f"{ref.get('kind', '?')}/{ref.get('name', '?')}",
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec.get("maxReplicas", 0)),
        current_replicas=int(status.get("currentReplicas", 0)),
        desired_replicas=int(status.get("desiredReplicas", 0)),
        last_scale_time=str(status.get("lastScaleTime") or ""),
        metrics=metrics,
        conditions=[
            Condition(str(c.get("type")), str(c.get("status")), str(c.get("reason", "")), str(c.get("message", "")))
            for c in status.get("conditions") or []
        ],
    )


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or event.get("metadata", {}).get("creationTimestamp")
        or ""
    )


def _pod(pod: Mapping[str, Any]) -> PodStatus:
    status = pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
    return PodStatus(
        name=pod["metadata"]["name"],
        ready=ready,
        phase=str(status.get("phase", "Unknown")),
        restarts=restarts,
        node=str(pod.get("spec", {}).get("nodeName") or ""),
        started=str(status.get("startTime") or ""),
    )


def collect(api_client: Any, release: str, namespace: str, events: int = EVENTS_SHOWN) -> ReleaseStatus:
    """Read the release's HPAs, scaled workloads, pods and HPA events; problems become lines."""
    from kubernetes import client

    autoscaling, apps, core = (
        client.AutoscalingV2Api(api_client),
        client.AppsV1Api(api_client),
        client.CoreV1Api(api_client),
    )
    result = ReleaseStatus(
        release=release, namespace=namespace, collected_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    def forbidden(what: str, exc: Forbidden) -> None:
        result.problems.append(f"cannot read {what} in namespace {namespace}: forbidden by RBAC ({exc})")

    hpas: list[dict[str, Any]] = []
    try:
        for label in RELEASE_LABELS:
            hpas = _call(
                autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace, label_selector=f"{label}={release}"
            ).get("items", [])
            if hpas:
                break
        if not hpas:
            result.problems.append(
                f"no HorizontalPodAutoscaler labelled {RELEASE_LABELS[0]}={release} or app={release} in namespace "
                f"{namespace}: autoscaling is off for this release (autoscaling.enable=false) or the name is wrong"
            )
    except Forbidden as exc:
        forbidden("HorizontalPodAutoscalers", exc)

    pod_selector: str | None = None
    for hpa in sorted(hpas, key=lambda h: str(h["metadata"]["name"])):
        scaler = _autoscaler(hpa)
        result.autoscalers.append(scaler)
        for condition in scaler.conditions:
            if condition.status == "False" and condition.type in ("AbleToScale", "ScalingActive"):
                result.problems.append(
                    f"HPA {scaler.name}: {condition.type} is False ({condition.reason}): {condition.message}"
                )
        kind, _, name = scaler.target.partition("/")
        if kind == "Deployment":
            try:
                deployment = _call(apps.read_namespaced_deployment, name, namespace)
                labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
                pod_selector = pod_selector or (_selector(labels) if labels else None)
            except NotFound:
                result.problems.append(
                    f"HPA {scaler.name} scales Deployment {name}, which does not exist in {namespace}"
                )
            except Forbidden as exc:
                forbidden(f"Deployment {name}", exc)
        try:
            items = _call(
                core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={scaler.name}",
            ).get("items", [])
            items.sort(key=_event_time)
            scaler.events = (
                []
                if events <= 0
                else [
                    ScalingEvent(
                        _event_time(e),
                        str(e.get("type", "")),
                        str(e.get("reason", "")),
                        str(e.get("message", "")),
                        int(e.get("count") or 1),
                    )
                    for e in items[-events:]
                ]
            )
        except Forbidden as exc:
            forbidden(f"events of HPA {scaler.name}", exc)

    try:
        # the scaled Deployment's selector, else the release labels (ours, then the tutorials')
        selectors = [pod_selector] if pod_selector else [f"{label}={release}" for label in RELEASE_LABELS]
        pods: list[dict[str, Any]] = []
        for selector in selectors:
            pods = _call(core.list_namespaced_pod, namespace, label_selector=selector).get("items", [])
            if pods:
                break
        result.pods = sorted((_pod(p) for p in pods), key=lambda p: p.name)
        if not pods:
            result.problems.append(f"no pods match {' or '.join(selectors)} in namespace {namespace}")
    except Forbidden as exc:
        forbidden("pods", exc)
    return result


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace kubectl would use: the context's, the pod's own in-cluster, else "default"."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig or str(Path("~/.kube/config").expanduser())
    if kubeconfig is not None or Path(path).exists():
        try:
            contexts, active = config.list_kube_config_contexts(config_file=path)
        except (ConfigException, OSError):
            return "default"
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        return str(((chosen or {}).get("context") or {}).get("namespace") or "default")
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def release_status(
    release: str,
    namespace: str | None,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    events: int = EVENTS_SHOWN,
) -> Callable[[], ReleaseStatus]:
    """A function that reads the release's status afresh on each call (connects once).

    `namespace` None means the kubeconfig context's namespace, as kubectl does.
    """
    api_client = connect(kubeconfig, context)
    where = namespace or default_namespace(kubeconfig, context)
    return lambda: collect(api_client, release, where, events=events)

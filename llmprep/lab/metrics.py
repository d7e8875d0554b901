"""The HPA's input as the cluster would serve it: prometheus-adapter for Pods metrics, KEDA for External.

Pods metrics go through llmprep.lab.adapter with the rules of monitoring/prometheus-adapter.values.yaml,
the file the cluster installs: discovery (series → metric names) is refreshed every
`metricsRelistInterval` (compressed by llmprep.lab.timing), and each HPA request runs the rule's
templated `metricsQuery` for the pods of the Deployment, as the adapter does. A metric that no
series provides yet is "unable to get metric", which the controller treats as Kubernetes does.
KEDA's Prometheus triggers are queried directly, their results summed as KEDA serves them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmprep.errors import LabError
from llmprep.lab.hpa import HpaSpec, Reading
from llmprep.lab.timing import relist_interval_s

if TYPE_CHECKING:
    from llmprep.lab.cluster import Cluster


class MetricsSource:
    """Answers the controller's metric requests from a running Prometheus."""

    def __init__(
        self,
        prometheus: Any,  # llmprep.lab.prometheus.PrometheusServer
        *,
        namespace: str,
        adapter_values: Path | None = None,
        relist_s: float | None = None,  # lab seconds (Timing.adapter_relist); None: the file's own interval
    ) -> None:
        from llmprep.lab import adapter

        self.prometheus = prometheus
        self.namespace = namespace
        self.adapter_values = Path(adapter_values) if adapter_values is not None else adapter.ADAPTER_VALUES
        if not self.adapter_values.is_file():
            raise LabError(
                f"prometheus-adapter rules not found at {self.adapter_values}: the lab serves the HPA through "
                "them; run it from the llmprep source tree (monitoring/prometheus-adapter.values.yaml)"
            )
        self.rules = adapter.load_rules(self.adapter_values)
        self.relist_cluster_s = relist_interval_s(self.adapter_values)
        self.relist_s = self.relist_cluster_s if relist_s is None else relist_s
        self._discovered: dict[str, Any] = {}
        self._next_relist = 0.0
        self.queries: dict[str, str] = {}  # metric -> the last PromQL sent for it

    def _relist(self) -> None:
        from llmprep.lab import adapter

        now = time.monotonic()
        if now >= self._next_relist:
            self._discovered = adapter.discover(self.rules, self.prometheus)
            self._next_relist = now + self.relist_s

    def readings(self, spec: HpaSpec, pods: Sequence[str]) -> list[Reading]:
        """One Reading per `spec.metrics` entry, for the pods the HPA's selector matches."""
        out: list[Reading] = []
        for metric in spec.metrics:
            try:
                if metric.type == "Pods":
                    out.append(Reading(per_pod=self.pod_values(metric.name, pods, metric.selector)))
                elif metric.query is not None:
                    samples = self.prometheus.query(metric.query)
                    self.queries[metric.name] = metric.query
                    if not samples:
                        out.append(Reading(error=f"prometheus query {metric.query!r} returned no series"))
                    else:
                        out.append(Reading(values=tuple(s.value for s in samples)))
                else:
                    out.append(Reading(error=f"the lab cannot serve {metric.type} metric {metric.name}"))
            except LabError as exc:
                out.append(Reading(error=str(exc)))
            except Exception as exc:  # an adapter or Prometheus failure is an unavailable metric
                out.append(Reading(error=f"{type(exc).__name__}: {exc}"))
        return out

    def wait_served(self, spec: HpaSpec, cluster: Cluster, timeout_s: float, stop: threading.Event) -> str:
        """Wait until every metric of `spec` is served for the cluster's pods; return what still fails ("": none)."""
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            cluster.tick()
            readings = self.readings(spec, [p.name for p in cluster.pods()])
            if all(r.error is None for r in readings):
                return ""
            if time.monotonic() > deadline:
                return "; ".join(r.error or "" for r in readings if r.error)
            time.sleep(0.2)
        return ""

    def pod_values(self, metric: str, pods: Sequence[str], selector: Any = None) -> dict[str, float]:
        """What the adapter serves for `metric` on `pods` (pods without a series left out)."""
        from llmprep.lab import adapter

        if not pods:
            raise LabError(f"unable to get metric {metric}: no pods")
        self._relist()
        resolved = self._discovered.get(metric)
        if resolved is None:
            raise LabError(f"unable to get metric {metric}: the adapter has not discovered it (no series yet)")
        query = adapter.pods_query(resolved.rule, resolved.series, self.namespace, list(pods), selector or None)
        self.queries[metric] = query
        pod_label = resolved.rule.label_for("pod")
        values = {
            s.labels[pod_label]: adapter.served_value(s.value)
            for s in self.prometheus.query(query)
            if s.labels.get(pod_label) in pods
        }
        if not values:
            raise LabError(f"unable to get metric {metric}: no metrics returned from custom metrics API")
        return values

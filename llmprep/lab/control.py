"""The lab's control plane: the HPA controller and, for a ScaledObject, KEDA's operator beside it.

Each steps on its own period from llmprep.lab.timing: the controller (llmprep/lab/hpa.py) every
HPA sync period, KEDA's operator (llmprep/lab/keda.py) every polling interval. Both read the
metrics as the cluster serves them (llmprep.lab.metrics) and set the Deployment's replicas.

Scale to zero (a ScaledObject with minReplicaCount 0): at zero replicas no pod exports the
triggers' series, KEDA's Prometheus scaler reads the empty result as 0 and nothing activates
(tests/data/keda_rules.py). What wakes the Deployment is a scaler in front of the pods; the lab
runs the KEDA HTTP add-on's: the front holds connections (llmprep/lab/front.py) and, every loop
tick while it holds one, its activity is pushed to KEDA's operator, as the add-on's external
push scaler streams it (`interceptor`).
"""

from __future__ import annotations

from typing import Any

from llmprep.lab.cluster import Cluster
from llmprep.lab.front import Front
from llmprep.lab.hpa import Decision, HorizontalController
from llmprep.lab.keda import KedaDecision, KedaOperator
from llmprep.lab.metrics import MetricsSource
from llmprep.lab.timing import Timing


class ControlPlane:
    """The autoscalers of one run; call `step` every loop tick with the time and the cluster."""

    def __init__(self, timing: Timing, source: MetricsSource, start: float, interceptor: Front | None = None) -> None:
        self.timing = timing
        self.source = source
        self.interceptor = interceptor if timing.keda is not None else None
        self.controller = HorizontalController(
            timing.hpa, downscale_stabilization_s=timing.downscale_stabilization.lab_s
        )
        self.keda = KedaOperator(timing.keda) if timing.keda is not None else None
        self.decisions: list[Decision] = []
        self.activations: list[KedaDecision] = []
        self.decision: Decision | None = None  # the last sync's
        self._next_sync = start
        self._next_poll = start

    def step(self, now: float, cluster: Cluster) -> None:
        """Sync the HPA and poll KEDA when their periods are due; scale the cluster as they decide."""
        hpa_spec = self.timing.hpa
        if now >= self._next_sync:
            sync_s = self.timing.sync_period.lab_s
            pods = cluster.pods()
            decision = self.controller.sync(
                now, cluster.desired, pods, self.source.readings(hpa_spec, [p.name for p in pods])
            )
            self.decision = decision
            self.decisions.append(decision)
            if decision.rescale:
                cluster.scale(decision.desired)
            self._next_sync = max(self._next_sync + sync_s, now + sync_s / 2)
        if self.keda is not None and self.interceptor is not None and self.interceptor.waiting > 0:
            self._apply(self.keda.push(now, cluster.desired, True), cluster)
        if self.keda is not None and now >= self._next_poll:
            polled = self.source.readings(hpa_spec, [p.name for p in cluster.pods()])
            values = [sum(r.values) if r.error is None and r.values else None for r in polled]
            self._apply(self.keda.poll(now, cluster.desired, values), cluster)
            poll_s = self.keda.spec.polling_interval_s
            self._next_poll = max(self._next_poll + poll_s, now + poll_s / 2)

    def _apply(self, activation: KedaDecision, cluster: Cluster) -> None:
        if activation.desired != activation.current:
            self.activations.append(activation)
        if activation.desired != cluster.desired:
            cluster.scale(activation.desired)

    @property
    def minimum(self) -> int:
        """The replica count the run settles at once the load is gone (0 for a ScaledObject allowing it)."""
        if self.timing.keda is not None and self.timing.keda.min_replica_count == 0:
            return 0
        return self.timing.hpa.min_replicas

    def as_rows(self, t0: float) -> list[dict[str, Any]]:
        """KEDA's activation decisions that changed the count, for the report."""
        return [
            {
                "t": round(a.time - t0, 3),
                "current": a.current,
                "desired": a.desired,
                "active": a.active,
                "reason": a.reason,
            }
            for a in self.activations
        ]

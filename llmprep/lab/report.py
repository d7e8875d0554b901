"""The lab's report as data: the timeline of a surge, the reaction-time budget, the summary.

The summary answers what a user tunes for: peak replicas, time from the surge to the scale-up
decision and to the new replica being ready, time back to the minimum after the load falls,
failed requests, and the reaction-time budget (issue 14 item 6): the configured terms taken
from the rendered chart and the adapter file, as the lab ran them (llmprep.lab.timing: clamps
included), and the terms the lab measured. llmprep.lab.outputs writes it to files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmprep.lab.recorder import signal_column
from llmprep.lab.timing import to_cluster

if TYPE_CHECKING:
    from llmprep.lab.cluster import Cluster, Event, Replica
    from llmprep.lab.hpa import Decision
    from llmprep.lab.recorder import Finished, Recorder
    from llmprep.lab.rendered import LabSetup
    from llmprep.lab.scenario import Scenario
    from llmprep.lab.timing import Timing


@dataclass
class Timeline:
    """What happened when, in seconds since the load started (None: did not happen)."""

    surge_at: float | None = None
    decline_at: float | None = None
    signal_over_target_at: float | None = None
    scale_up_decision_at: float | None = None
    new_replica_ready_at: float | None = None
    first_request_on_new_at: float | None = None
    scale_down_decision_at: float | None = None
    back_to_min_at: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 2) if v is not None else None) for k, v in vars(self).items()}


@dataclass
class LabReport:
    """Everything the lab writes, as data (report.json is this, plus the timeseries rows)."""

    scenario: dict[str, Any]
    configuration: dict[str, Any]
    rows: list[dict[str, Any]]
    columns: list[str]
    decisions: list[dict[str, Any]]
    events: list[dict[str, Any]]
    requests: dict[str, Any]
    timeline: Timeline
    budget: list[dict[str, Any]]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "configuration": self.configuration,
            "summary": self.summary,
            "timeline": self.timeline.as_dict(),
            "reaction_time_budget": self.budget,
            "requests": self.requests,
            "decisions": self.decisions,
            "events": self.events,
            "verification": self.verification,
            "notes": self.notes,
            "timeseries": self.rows,
        }


# --------------------------------------------------------------------------- analysis


def surge_and_decline(stages: Sequence[Any]) -> tuple[float | None, float | None]:
    """When the load first rises above its starting level, and when it first falls after its peak."""
    if not stages:
        return None, None
    base = stages[0].start
    peak = max(max(s.start, s.end) for s in stages)
    t, surge, decline, reached = 0.0, None, None, False
    for stage in stages:
        if surge is None and max(stage.start, stage.end) > base:
            surge = t
        if reached and decline is None and stage.end < peak:
            decline = t
        reached = reached or max(stage.start, stage.end) >= peak
        t += stage.duration
    return surge, decline


def analyse(
    rows: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    replicas: Sequence[Mapping[str, Any]],
    *,
    surge_at: float | None,
    decline_at: float | None,
    min_replicas: int,
    metrics: Sequence[tuple[str, float]],
    tolerance: float = 0.1,
) -> Timeline:
    """The timeline of one surge: detection, decision, readiness, first request, back to minimum."""
    tl = Timeline(surge_at=surge_at, decline_at=decline_at)
    if surge_at is not None:
        for row in rows:
            if row["t"] < surge_at:
                continue
            if any((row.get(signal_column(name)) or 0) > target * (1 + tolerance) for name, target in metrics):
                tl.signal_over_target_at = row["t"]
                break
        up = next((d for d in decisions if d["t"] >= surge_at and d["desired"] > d["current"]), None)
        if up is not None:
            tl.scale_up_decision_at = up["t"]
            new = [r for r in replicas if r["created_t"] is not None and r["created_t"] >= up["t"] - 1e-6]
            ready = sorted(r["ready_t"] for r in new if r["ready_t"] is not None)
            if ready:
                tl.new_replica_ready_at = ready[0]
            first = sorted(r["first_connection_t"] for r in new if r["first_connection_t"] is not None)
            if first:
                tl.first_request_on_new_at = first[0]
    if decline_at is not None:
        down = next((d for d in decisions if d["t"] >= decline_at and d["desired"] < d["current"]), None)
        if down is not None:
            tl.scale_down_decision_at = down["t"]
        peak_seen = False
        for row in rows:
            if row["t"] < decline_at:
                continue
            n_current, n_ready = row.get("replicas_current") or 0, row.get("replicas_ready") or 0
            if n_current > min_replicas:
                peak_seen = True
            if peak_seen and n_current == n_ready == min_replicas and not row.get("replicas_draining"):
                tl.back_to_min_at = row["t"]
                break
    return tl


def _gap(a: float | None, b: float | None) -> float | None:
    return round(b - a, 2) if a is not None and b is not None else None


def budget_terms(config: Mapping[str, Any], tl: Timeline, speed: float) -> list[dict[str, Any]]:
    """Issue 14 item 6: a surge's time to relief, term by term (lab seconds and cluster seconds).

    A configured term's cluster seconds come from `config["timing"]` (the value before
    compression; a clamped lab value is marked), or, without it, from the lab value and `speed`.
    """
    timing: Mapping[str, Mapping[str, Any]] = config.get("timing") or {}

    def term(
        name: str, lab: float | None, source: str, kind: str, moved_by: str, period: str = "", share: float = 1.0
    ) -> dict[str, Any]:
        cluster = None
        clamped = False
        if lab is not None and kind == "configured":
            known = timing.get(period)
            cluster = round(known["cluster_s"] * share if known else to_cluster(lab, speed), 2)
            clamped = bool(known and known.get("clamped"))
        return {
            "term": name,
            "lab_s": None if lab is None else round(lab, 3),
            "cluster_s": cluster,
            "kind": kind,
            "source": source,
            "moved_by": moved_by,
            "clamped": clamped,
        }

    c = config
    # A table: one term per row reads better than one argument per line.
    # fmt: off
    return [
        term("scrape interval", c["scrape_interval_s"], "PodMonitor interval", "configured",
             "monitoring.podMonitor.interval", "scrape_interval"),
        term("rule evaluation", c["rule_interval_s"], "PrometheusRule group interval", "configured",
             "monitoring.prometheusRule.interval", "rule_interval"),
        term("rate window (half, mean lag of a step)", c["rate_window_s"] / 2 if c.get("rate_window_s") else None,
             "PrometheusRule rate window", "configured", "monitoring.prometheusRule.window", "rate_window", 0.5),
        term("adapter relist", c["adapter_relist_s"], "prometheus-adapter metricsRelistInterval", "configured",
             "metricsRelistInterval (adapter values); only delays a new metric name", "adapter_relist"),
        term("HPA sync period", c["sync_period_s"], "kube-controller-manager --horizontal-pod-autoscaler-sync-period",
             "configured", "--sync-period (controller flag)", "sync_period"),
        term("scale-up stabilization", c["scale_up_stabilization_s"], "HPA behavior.scaleUp", "configured",
             "autoscaling.behavior.scaleUp.stabilizationWindowSeconds", "scale_up_stabilization"),
        term("scale-down stabilization", c["scale_down_stabilization_s"], "HPA behavior.scaleDown (or the flag)",
             "configured", "autoscaling.behavior.scaleDown.stabilizationWindowSeconds", "scale_down_stabilization"),
        term("readiness probe period", c["readiness_period_s"], "Deployment readinessProbe", "configured",
             "triton.probes.readinessPeriodSeconds", "readiness_period"),
        term("detection: surge to signal over target", _gap(tl.surge_at, tl.signal_over_target_at), "measured",
             "measured", "scrape, evaluation, window, the signal's own response"),
        term("decision: signal over target to scale-up", _gap(tl.signal_over_target_at, tl.scale_up_decision_at),
             "measured", "measured", "sync period, tolerance, scale-up stabilization"),
        term("replica start to ready (warm repository)", _gap(tl.scale_up_decision_at, tl.new_replica_ready_at),
             "measured", "measured", "model load time, startup and readiness probes"),
        term("ready to first request served", _gap(tl.new_replica_ready_at, tl.first_request_on_new_at), "measured",
             "measured", "Endpoints update, client connection reuse (reconnectEvery)"),
        term("total: surge to first request on the new replica", _gap(tl.surge_at, tl.first_request_on_new_at),
             "measured", "measured", "all of the above"),
    ]
    # fmt: on


# --------------------------------------------------------------------------- building the report


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 3)


def _first_crossing(rows: Sequence[Mapping[str, Any]], name: str, target: float, after: float | None) -> float | None:
    if after is None:
        return None
    for row in rows:
        value = row.get(signal_column(name))
        if row["t"] >= after and value is not None and value > target * 1.1:
            return float(row["t"])
    return None


def _event_row(event: Event, t0: float) -> dict[str, Any]:
    return {"t": round(event.time - t0, 3), "kind": event.kind, "replica": event.replica, "detail": event.detail}


def from_zero(finished: Sequence[Finished], replicas: Sequence[Replica], t0: float) -> dict[str, Any]:
    """Requests that started while no replica was in the Service's rotation, and how long they took.

    A replica is in rotation from ready until it is deleted (or stops). With scale to zero these
    are the requests the front held while KEDA woke the Deployment.
    """
    spans = [(r.ready_at, r.deleting_at or r.stopped_at or float("inf")) for r in replicas if r.ready_at is not None]
    cold = [f for f in finished if not any(a <= f.at - f.e2e < b for a, b in spans)]
    ok = [f for f in cold if f.error is None]
    ttft = [f.ttft for f in ok if f.ttft is not None]
    return {
        "requests": len(cold),
        "failed": len(cold) - len(ok),
        "started_t": [round(f.at - f.e2e - t0, 3) for f in cold],
        "ttft_s": [round(v, 3) for v in ttft],
        "e2e_s": [round(f.e2e, 3) for f in ok],
    }


def configuration(setup: LabSetup, timing: Timing, replicas: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What the run used, from the chart's output: every period as the lab ran it (clamps included)."""
    up_window, down_window = timing.scale_up_stabilization.lab_s, timing.scale_down_stabilization.lab_s
    return {
        "speed": timing.speed,
        "release": setup.deployment,
        "namespace": setup.namespace,
        "scrape_interval_s": timing.scrape_interval.lab_s,
        "rule_interval_s": timing.rule_interval.lab_s,
        "rate_window_s": None if timing.rate_window is None else timing.rate_window.lab_s,
        "adapter_relist_s": timing.adapter_relist.lab_s,
        "sync_period_s": timing.sync_period.lab_s,
        "scale_up_stabilization_s": up_window,
        "scale_down_stabilization_s": down_window,
        "readiness_period_s": timing.readiness_period.lab_s,
        "pre_stop_s": timing.pre_stop.lab_s,
        "drain_timeout_s": None if timing.drain_timeout is None else timing.drain_timeout.lab_s,
        "exit_timeout_s": setup.exit_timeout_s,
        "timing": {name: p.as_dict() for name, p in timing.periods().items()},
        "compressed_values": {k: {"cluster": v[0], "lab": v[1]} for k, v in setup.compressed.items()},
        "hpa": {
            "source": setup.hpa.source,
            "name": setup.hpa.name,
            "min": setup.hpa.min_replicas,
            "max": setup.hpa.max_replicas,
            "behavior": "set (API defaults filled in)"
            if setup.hpa.behavior
            else "none (controller defaults: 5 min scale-down stabilization, scale-up ≤ max(2×, 4))",
            "metrics": [
                {"name": m.name, "type": m.type, "target_type": m.target_type, "target": m.target, "query": m.query}
                for m in setup.hpa.metrics
            ],
        },
        "model": {"name": setup.spec.name, "runtime": setup.spec.runtime, "standin": vars(setup.spec.standin)},
        "replicas": list(replicas),
    }


def build_report(
    scenario: Scenario,
    setup: LabSetup,
    timing: Timing,
    *,
    recorder: Recorder,
    decisions: Sequence[Decision],
    cluster: Cluster,
    load_result: Any,
    verification: dict[str, Any],
    notes: list[str],
    t0: float,
    returned_to_min: bool,
    activations: Sequence[Mapping[str, Any]] = (),
    front: Mapping[str, int] | None = None,
    minimum: int | None = None,
) -> LabReport:
    """The report of one run: what it used (`configuration`), what happened, and the summary."""
    from llmprep.load.stats import percentile

    rows, columns = recorder.rows, recorder.columns()
    hpa_spec = timing.hpa
    minimum = hpa_spec.min_replicas if minimum is None else minimum  # 0: a ScaledObject scaling to zero
    decision_rows = [
        {
            "t": round(d.time - t0, 3),
            "current": d.current,
            "desired": d.desired,
            "metric_desired": d.metric_desired,
            "stabilized": d.stabilized,
            "reason": d.reason,
            "proposals": [vars(p) for p in d.proposals],
        }
        for d in decisions
    ]
    events = [_event_row(e, t0) for e in cluster.events]
    replicas = [
        {
            "name": r.name,
            "created_t": _rel(r.created_at, t0),
            "ready_t": _rel(r.ready_at, t0),
            "first_connection_t": _rel(r.first_connection_at, t0),
            "deleting_t": _rel(r.deleting_at, t0),
            "sigterm_t": _rel(r.sigterm_at, t0),
            "stopped_t": _rel(r.stopped_at, t0),
            "exit_code": r.exit_code,
            "log": str(r.log_path),
        }
        for r in cluster.replicas
    ]
    surge, decline = surge_and_decline(scenario.load.profile.stages)
    metric_targets = [(m.name, m.target) for m in hpa_spec.metrics]
    timeline = analyse(
        rows,
        decision_rows,
        events,
        replicas,
        surge_at=surge,
        decline_at=decline,
        min_replicas=minimum,
        metrics=metric_targets,
    )
    config = configuration(setup, timing, replicas)
    budget = budget_terms(config, timeline, timing.speed)
    finished = recorder.all_finished()
    ok = [f for f in finished if f.error is None]
    requests: dict[str, Any] = load_result.summary() if load_result is not None else {}
    requests = {k: v for k, v in requests.items() if k not in ("tokens_in", "tokens_out", "itl_s")}
    failed = requests.get("errors", sum(1 for f in finished if f.error is not None))
    slo_s = scenario.slo_p95_ms / 1000.0 if scenario.slo_p95_ms else None
    over = sum(1 for r in rows if slo_s is not None and r.get("e2e_p95_s") is not None and r["e2e_p95_s"] > slo_s)
    replica_seconds = sum((r.get("replicas_ready") or 0) for r in rows)
    summary = {
        "peak_replicas": max((r.get("replicas_ready") or 0 for r in rows), default=0),
        "peak_desired": max((r.get("replicas_desired") or 0 for r in rows), default=0),
        "max_replicas": setup.hpa.max_replicas,
        "min_replicas": minimum,
        "surge_to_decision_s": _gap(timeline.surge_at, timeline.scale_up_decision_at),
        "surge_to_ready_s": _gap(timeline.surge_at, timeline.new_replica_ready_at),
        "decline_to_min_s": _gap(timeline.decline_at, timeline.back_to_min_at),
        "returned_to_min": returned_to_min,
        "requests": requests.get("requests", len(finished)),
        "failed_requests": failed,
        "e2e_p95_s": percentile([f.e2e for f in ok], 95),
        "slo_p95_s": slo_s,
        "seconds_over_slo": over if slo_s is not None else None,
        "replica_seconds": replica_seconds,
        "seconds_at_max": sum(1 for r in rows if (r.get("replicas_ready") or 0) >= setup.hpa.max_replicas),
        # When each HPA input (averaged over pods) first left the tolerance band above its target after the
        # surge, and the physical floor of that lag: one scrape plus one rule evaluation (issue 8 item 1).
        "signal_crossings_s": {
            name: _gap(timeline.surge_at, _first_crossing(rows, name, target, timeline.surge_at))
            for name, target in metric_targets
        },
        "detection_floor_s": round(config["scrape_interval_s"] + config["rule_interval_s"], 3),
        "from_zero": from_zero(finished, cluster.replicas, t0),
        "keda_activations": list(activations),
        "front": dict(front or {}),
        "duration_s": rows[-1]["t"] if rows else 0.0,
    }
    scenario_info = {
        "name": scenario.name,
        "description": scenario.description,
        "source": str(scenario.source) if scenario.source else None,
        "values": [str(p) for p in scenario.values_files],
        "set": list(scenario.sets),
        "speed": scenario.speed,
        "sync_period_s": scenario.sync_period_s,
        "unit": scenario.load.profile.unit,
        "stages": [vars(s) for s in scenario.load.profile.stages],
        "protocol": scenario.load.protocol,
        "slo_p95_ms": scenario.slo_p95_ms,
    }
    return LabReport(
        scenario=scenario_info,
        configuration=config,
        rows=rows,
        columns=columns,
        decisions=decision_rows,
        events=events,
        requests=requests,
        timeline=timeline,
        budget=budget,
        summary=summary,
        notes=notes,
        verification=verification,
    )

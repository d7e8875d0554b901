"""KEDA's operator rules (tests/data/keda_rules.py) run against llmprep/lab/keda.py."""

from __future__ import annotations

from typing import Any

import pytest

from llmprep.errors import LabError
from llmprep.lab.hpa import Pod, Reading
from llmprep.lab.keda import KedaOperator, keda_from_scaled_object
from tests.data.keda_rules import OPERATOR_RULES, PUSH_RULES, SPEC_RULES


def scaled_object(**spec: Any) -> dict[str, Any]:
    trigger_meta = {"serverAddress": "http://prometheus:9090", "query": "sum(x)", "threshold": "4"}
    if "activation" in spec:
        trigger_meta["activationThreshold"] = str(spec.pop("activation"))
    body = {"maxReplicaCount": 4, "triggers": [{"type": "prometheus", "metadata": trigger_meta}]}
    body.update(spec)
    return {"kind": "ScaledObject", "metadata": {"name": "m"}, "spec": body}


@pytest.mark.parametrize("row", OPERATOR_RULES, ids=lambda r: r["rule"])
def test_operator_follows_keda_rule(row: dict[str, Any]) -> None:
    obj = scaled_object(minReplicaCount=row["minimum"], cooldownPeriod=row["cooldown"], activation=row["activation"])
    operator = KedaOperator(keda_from_scaled_object(obj))
    got = [operator.poll(t, current, [value]).desired for t, current, value, _ in row["steps"]]
    assert got == [want for *_, want in row["steps"]]


@pytest.mark.parametrize("row", PUSH_RULES, ids=lambda r: r["rule"])
def test_polled_and_pushed_activity_follow_keda_rule(row: dict[str, Any]) -> None:
    operator = KedaOperator(
        keda_from_scaled_object(scaled_object(minReplicaCount=row["minimum"], cooldownPeriod=row["cooldown"]))
    )
    got = [
        (operator.poll(t, current, [value]) if kind == "poll" else operator.push(t, current, bool(value))).desired
        for t, current, kind, value, _ in row["steps"]
    ]
    assert got == [want for *_, want in row["steps"]]


@pytest.mark.parametrize("row", SPEC_RULES, ids=lambda r: r["rule"])
def test_generated_spec_follows_keda_rule(row: dict[str, Any]) -> None:
    spec = keda_from_scaled_object(scaled_object())
    if row["field"] == "defaults":
        got: Any = dict(
            polling_interval_s=spec.polling_interval_s,
            cooldown_period_s=spec.cooldown_period_s,
            min_replica_count=spec.min_replica_count,
            activation=spec.activation_thresholds[0],
        )
    elif row["field"] == "hpa_min":
        got = spec.hpa.min_replicas
    else:
        m = spec.hpa.metrics[0]
        got = (m.type, m.target_type, m.target)
    assert got == row["expected"]


def test_generated_hpa_does_nothing_at_zero_replicas() -> None:
    operator = KedaOperator(keda_from_scaled_object(scaled_object(minReplicaCount=0)))
    decision = operator.hpa.sync(0.0, 0, [], [Reading(values=(100.0,))])
    assert (decision.desired, decision.reason) == (0, "ScalingDisabled")


def test_keda_scales_zero_to_one_to_zero_with_the_hpa_above_one() -> None:
    operator = KedaOperator(keda_from_scaled_object(scaled_object(minReplicaCount=0, cooldownPeriod=60)))
    replicas = operator.poll(0.0, 0, [1.0]).desired
    assert replicas == 1
    pods = [Pod("p0")]
    assert operator.hpa.sync(15.0, replicas, pods, [Reading(values=(12.0,))]).desired == 3
    assert operator.poll(30.0, 3, [0.0]).desired == 3  # cooling down; the HPA scales 3 → 1
    assert operator.poll(95.0, 1, [0.0]).desired == 0


def test_negative_cooldown_is_refused_naming_the_field() -> None:
    with pytest.raises(LabError, match="spec.cooldownPeriod"):
        keda_from_scaled_object(scaled_object(cooldownPeriod=-1))

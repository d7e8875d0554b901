"""Scale to zero, chart side: who may ask for it, what the refusal says, and what can wake it.

At zero replicas no pod exports the series the chart's Prometheus triggers read, and KEDA's scaler
reads the empty result as 0 (tests/data/keda_rules.py cites the source), so the chart renders
`autoscaling.keda.extraTriggers` verbatim for a trigger that sees requests while no pod runs, and
NOTES.txt warns when there is none.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import NAMESPACE, RELEASE, one, render, values_of

KEDA_ZERO = ["autoscaling.engine=keda", "autoscaling.replicas.minimum=0"]
# The KEDA HTTP add-on's trigger (kedacore/http-add-on docs/walkthrough.md, "Integrating HTTP
# Add-On Scaler with other KEDA scalers") and a gateway-side Prometheus trigger.
HTTP_ADDON: dict[str, Any] = {
    "type": "external-push",
    "metadata": {"httpScaledObject": "gpt2-http", "scalerAddress": "keda-http-add-on-external-scaler.keda:9090"},
}
GATEWAY: dict[str, Any] = {
    "type": "prometheus",
    "name": "wake-on-requests",
    "metadata": {
        "serverAddress": "http://prometheus.monitoring:9090",
        "query": 'sum(rate(gateway_requests_total{route="gpt2"}[1m]))',
        "threshold": "100",
        "activationThreshold": "0",
    },
}


def _with_triggers(triggers: list[dict[str, Any]], sets: list[str] = KEDA_ZERO) -> dict[str, Any]:
    values = values_of(sets=sets)
    values["autoscaling"].setdefault("keda", {})["extraTriggers"] = triggers
    return values


def _notes(values: dict[str, Any]) -> str:
    return chart.notes(values, release=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    "sets",
    [
        ["autoscaling.replicas.minimum=0"],  # the HPA engine
        ["autoscaling.replicas.minimum=0", "autoscaling.enable=false"],  # fixed replicas
        [*KEDA_ZERO, "autoscaling.enable=false"],
    ],  # keda named, but off
    ids=["hpa", "autoscaling off", "keda but autoscaling off"],
)
def test_zero_replicas_without_keda_is_refused_in_one_line_naming_the_key_and_the_fix(sets: list[str]) -> None:
    with pytest.raises(SpecError) as refused:
        render(sets=sets)
    message = str(refused.value)
    assert message.startswith("autoscaling.replicas.minimum: ") and "\n" not in message
    assert "autoscaling.engine=keda" in message and "autoscaling.keda.extraTriggers" in message


def test_keda_renders_a_minimum_of_zero() -> None:
    assert one(render(sets=KEDA_ZERO), "ScaledObject")["spec"]["minReplicaCount"] == 0


def test_extra_triggers_follow_the_charts_own_triggers_verbatim() -> None:
    objects = chart.render(_with_triggers([HTTP_ADDON, GATEWAY]), release=RELEASE, namespace=NAMESPACE)
    triggers = one(objects, "ScaledObject")["spec"]["triggers"]
    own = one(render(sets=KEDA_ZERO), "ScaledObject")["spec"]["triggers"]
    assert own and triggers == [*own, HTTP_ADDON, GATEWAY]


def test_extra_triggers_are_rendered_with_a_minimum_of_one_too() -> None:
    objects = chart.render(_with_triggers([GATEWAY], ["autoscaling.engine=keda"]), release=RELEASE, namespace=NAMESPACE)
    assert one(objects, "ScaledObject")["spec"]["triggers"][-1] == GATEWAY


@pytest.mark.parametrize(
    "bad", [["not-a-trigger"], {"type": "prometheus"}, "external-push"], ids=["a list of strings", "a map", "a string"]
)
def test_extra_triggers_must_be_a_list_of_objects(bad: Any) -> None:
    values = values_of(sets=KEDA_ZERO)
    values["autoscaling"]["keda"] = {"extraTriggers": bad}
    with pytest.raises(SpecError, match=r"^autoscaling\.keda\.extraTriggers"):
        chart.render(values, release=RELEASE, namespace=NAMESPACE)


def test_notes_warn_that_the_charts_triggers_alone_never_wake_a_deployment_at_zero() -> None:
    text = _notes(values_of(sets=KEDA_ZERO))
    assert "never wakes" in text and "autoscaling.keda.extraTriggers" in text
    assert "KEDA HTTP add-on" in text


def test_notes_drop_the_warning_once_a_trigger_may_wake_it() -> None:
    text = _notes(_with_triggers([HTTP_ADDON]))
    assert "never wakes" not in text
    assert "only the 1 trigger(s) of autoscaling.keda.extraTriggers can wake the Deployment" in " ".join(text.split())


def test_notes_say_nothing_about_zero_at_a_minimum_of_one() -> None:
    assert "scale to zero" not in _notes(values_of(sets=["autoscaling.engine=keda"])).lower()

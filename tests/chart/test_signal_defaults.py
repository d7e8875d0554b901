"""The chart's default autoscaling signals follow the signals proof (docs/signals.md, issue 14 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmprep import chart
from tests.chart.conftest import NAMESPACE, RELEASE, one, render, values_of
from tests.conftest import TUTORIAL_VALUES


def _notes(sets: list[str], files: list[Path] | None = None) -> str:
    return chart.notes(values_of(files or [], sets), release=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("files", "sets"),
    [
        ([], []),
        ([TUTORIAL_VALUES / "single" / "llama-2-7b-chat_values.yaml"], []),
        ([], ["autoscaling.engine=keda"]),
    ],
    ids=["defaults", "a tutorial values file", "keda"],
)
def test_the_tutorials_ratio_is_paired_with_the_proven_signals_by_default(files: list[Path], sets: list[str]) -> None:
    objects = render(files, sets)
    if "autoscaling.engine=keda" in sets:
        triggers = one(objects, "ScaledObject")["spec"]["triggers"]
        names = [t["metadata"]["query"].split("{")[0].removeprefix("sum(") for t in triggers]
    else:
        names = [m["pods"]["metric"]["name"] for m in one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]]
    assert names == ["triton:queue_compute:ratio", "trtllm:requests_waiting", "triton:pending_requests"]


@pytest.mark.parametrize(
    ("sets", "expected", "absent"),
    [
        ([], ["failed the signals proof", "paired with the proven signal"], ["Warning: no proven signal"]),
        (["autoscaling.metrics=null"], ["failed the signals proof", "Warning: no proven signal"], ["paired with"]),
        (["autoscaling.metric.name="], [], ["failed the signals proof", "Warning: no proven signal"]),
    ],
    ids=["defaults", "ratio alone", "proven signals only"],
)
def test_notes_say_whether_the_ratio_failed_the_proof_and_what_it_is_paired_with(
    sets: list[str], expected: list[str], absent: list[str]
) -> None:
    text = " ".join(_notes(sets).split())
    assert [p for p in expected if p not in text] == [] and [p for p in absent if p in text] == []

"""The chart's default autoscaling signals follow the signals proof (docs/signals.md, issue 14 item 3; issue 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmprep import chart
from tests.chart.conftest import NAMESPACE, RELEASE, one, render, values_of
from tests.conftest import TUTORIAL_VALUES


def _notes(sets: list[str], files: list[Path] | None = None) -> str:
    return chart.notes(values_of(files or [], sets), release=RELEASE, namespace=NAMESPACE)


PROVEN = ["trtllm:requests_waiting", "triton:pending_requests"]  # engine: waiting (KV-bound), pending (BLS)
PYTORCH = ["trtllm:requests_queued", "trtllm:requests_waiting"]  # queued (batch-bound), waiting (KV-bound)
RATIO = "triton:queue_compute:ratio"


def _metric_names(objects: list[dict[str, Any]]) -> list[str]:
    found = chart.find(objects, "ScaledObject")
    if found:
        return [t["metadata"]["query"].split("{")[0].removeprefix("sum(") for t in found[0]["spec"]["triggers"]]
    return [m["pods"]["metric"]["name"] for m in one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]]


@pytest.mark.parametrize(
    ("files", "sets", "names"),
    [
        ([], [], PROVEN),
        ([], ["autoscaling.engine=keda"], PROVEN),
        ([TUTORIAL_VALUES / "single" / "values.yaml"], [], [RATIO, *PROVEN]),
        ([TUTORIAL_VALUES / "single" / "llama-2-7b-chat_values.yaml"], [], [RATIO, *PROVEN]),
        ([TUTORIAL_VALUES / "single" / "llama-2-7b-chat_values.yaml"], ["autoscaling.metric.name="], PROVEN),
        ([], ["autoscaling.metric.name=triton:queue_compute:ratio"], [RATIO, *PROVEN]),
    ],
    ids=[
        "defaults",
        "keda",
        "the tutorials' values.yaml",
        "a tutorial file's target alone",
        "a tutorial file with the name emptied",
        "the ratio by name",
    ],
)
def test_the_defaults_scale_on_the_proven_signals_and_the_tutorials_ratio_only_when_asked(
    files: list[Path], sets: list[str], names: list[str]
) -> None:
    assert _metric_names(render(files, sets)) == names


@pytest.mark.parametrize(
    ("sets", "expected", "absent"),
    [
        ([], ["recorded but not scaled on"], ["paired with", "Warning: no proven signal"]),
        (
            ["autoscaling.metric.name=triton:queue_compute:ratio"],
            ["failed the signals proof", "paired with the proven"],
            ["Warning: no proven signal", "recorded but not scaled on"],
        ),
        (
            ["autoscaling.metric.name=triton:queue_compute:ratio", "autoscaling.metrics=null"],
            ["failed the signals proof", "Warning: no proven signal"],
            ["paired with"],
        ),
    ],
    ids=["defaults", "the ratio paired", "the ratio alone"],
)
def test_notes_say_whether_the_ratio_failed_the_proof_and_what_it_is_paired_with(
    sets: list[str], expected: list[str], absent: list[str]
) -> None:
    text = " ".join(_notes(sets).split())
    assert [p for p in expected if p not in text] == [] and [p for p in absent if p in text] == []


@pytest.mark.parametrize(
    ("sets", "names"),
    [
        (["model.tensorrtLlm.runtime=pytorch"], PYTORCH),
        (["model.tensorrtLlm.runtime=pytorch", "autoscaling.engine=keda"], PYTORCH),
        (["model.tensorrtLlm.runtime=engine"], PROVEN),
        (
            ["model.tensorrtLlm.runtime=pytorch", "autoscaling.metric.name=triton:queue_compute:ratio"],
            [RATIO, *PYTORCH],
        ),
        (
            [
                "model.tensorrtLlm.runtime=pytorch",
                "autoscaling.metric.name=triton:queue_compute:ratio",
                "autoscaling.metrics=null",
            ],
            [RATIO],
        ),
        (
            [
                "model.tensorrtLlm.runtime=pytorch",
                "autoscaling.metrics[0].name=trtllm:requests_in_engine",
                "autoscaling.metrics[0].value=3",
            ],
            ["trtllm:requests_in_engine"],
        ),
    ],
    ids=[
        "pytorch",
        "pytorch with keda",
        "engine",
        "pytorch with the ratio",
        "the ratio alone on pytorch",
        "a list of one's own replaces the defaults",
    ],
)
def test_the_default_inputs_follow_the_runtime_and_a_list_or_null_replaces_them(
    sets: list[str], names: list[str]
) -> None:
    assert _metric_names(render([], sets)) == names


def test_the_pytorch_defaults_target_two_requests_per_pod() -> None:
    hpa = one(render([], ["model.tensorrtLlm.runtime=pytorch"]), "HorizontalPodAutoscaler")
    assert [(m["pods"]["metric"]["name"], m["pods"]["target"]["averageValue"]) for m in hpa["spec"]["metrics"]] == [
        ("trtllm:requests_queued", "2"),
        ("trtllm:requests_waiting", "2"),
    ]


@pytest.mark.parametrize(
    ("sets", "expected", "absent"),
    [
        ([], ["No input is proven for the engine runtime"], ["Not set: trtllm:requests_queued"]),
        (["model.tensorrtLlm.runtime=pytorch"], [], ["No input is proven", "Not set: trtllm:requests_queued"]),
        (
            [
                "model.tensorrtLlm.runtime=pytorch",
                "autoscaling.metrics[0].name=trtllm:requests_waiting",
                "autoscaling.metrics[0].value=2",
            ],
            ["Not set: trtllm:requests_queued"],
            ["No input is proven"],
        ),
        (
            ["autoscaling.metrics[0].name=trtllm:requests_queued", "autoscaling.metrics[0].value=2"],
            ["No input is proven for the engine runtime", "a series only on llmprep's stand-in"],
            [],
        ),
    ],
    ids=["engine defaults", "pytorch defaults", "pytorch without the queue", "the queue on the engine runtime"],
)
def test_notes_say_plainly_where_no_input_is_proven(sets: list[str], expected: list[str], absent: list[str]) -> None:
    text = " ".join(_notes(sets).split())
    assert [p for p in expected if p not in text] == [] and [p for p in absent if p in text] == []


def test_the_pytorch_model_file_follows_the_charts_pytorch_defaults() -> None:
    from tests.conftest import ROOT

    path = ROOT / "chart" / "models" / "qwen2.5-0.5b-instruct-pytorch.yaml"
    assert _metric_names(render([path])) == PYTORCH

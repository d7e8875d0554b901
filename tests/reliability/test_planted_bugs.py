"""Small plausible bugs the rest of the suite let through (issue 22): each case here fails on one of them.

Each test uses values where the right and the plausible wrong computation differ: a 2 x 4
parallelism (product 8, max 4), so "GPUs = max(tensor, pipeline)" cannot pass.
"""

from __future__ import annotations

import pytest

from llmprep.spec import parse_spec
from tests.chart.conftest import one, render


@pytest.mark.parametrize(("tensor", "pipeline", "gpus"), [(2, 4, 8), (4, 2, 8), (2, 2, 4), (1, 3, 3), (3, 1, 3)])
def test_a_spec_needs_tensor_times_pipeline_gpus(tensor: int, pipeline: int, gpus: int) -> None:
    spec = parse_spec({"model": {"name": "gpt2", "tensorrtLlm": {"parallelism": {"tensor": tensor, "pipeline": pipeline}}}})
    assert spec.parallelism.gpus == gpus


def _gpu_requests(objects: list[dict]) -> list[int]:
    out = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if obj.get("kind") == "LeaderWorkerSet":
            template = obj["spec"]["leaderWorkerTemplate"]
            pods = [template.get("leaderTemplate", template["workerTemplate"])["spec"], template["workerTemplate"]["spec"]]
        else:
            pods = [pod] if pod else []
        for spec in pods:
            for c in spec["containers"]:
                limit = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
                if limit is not None:
                    out.append(int(limit))
    return out


@pytest.mark.parametrize(("tensor", "pipeline"), [(2, 2), (2, 4), (4, 2)])
def test_a_single_node_pod_asks_for_tensor_times_pipeline_gpus(tensor: int, pipeline: int) -> None:
    objects = render(sets=[f"model.tensorrtLlm.parallelism.tensor={tensor}",
                           f"model.tensorrtLlm.parallelism.pipeline={pipeline}", "multinode.gpusPerNode=8"])
    deployment = one(objects, "Deployment")
    assert _gpu_requests([deployment]) == [tensor * pipeline]

"""`llmprep chart template|lint`: the chart without a helm binary, from the command line."""

from __future__ import annotations

import yaml

from tests.chart.conftest import CHART, IMAGE
from tests.conftest import run_cli


def test_chart_template_prints_the_objects_for_the_values_and_sets() -> None:
    done = run_cli(
        "chart",
        "template",
        "gpt2",
        "-f",
        str(CHART / "models" / "gpt2.yaml"),
        "--set",
        f"triton.image.name={IMAGE}",
        "--set",
        "gpu[0]=NVIDIA-L4",
        "-n",
        "llm",
    )
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "llm"
    terms = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    products = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert products[0]["values"] == ["NVIDIA-L4", "NVIDIA-L4", "NVIDIA-A10G"]


def test_chart_template_on_a_bare_cluster_leaves_out_the_monitoring_objects() -> None:
    done = run_cli("chart", "template", "--set", f"triton.image.name={IMAGE}", "--api-versions", "v1")
    kinds = {o["kind"] for o in yaml.safe_load_all(done.stdout) if o}
    assert "PodMonitor" not in kinds and "Deployment" in kinds


def test_chart_template_with_a_bad_value_is_one_line_naming_the_key_and_exit_2() -> None:
    done = run_cli(
        "chart", "template", "--set", f"triton.image.name={IMAGE}", "--set", "model.tensorrtLlm.parallelism.tensor=two"
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "model.tensorrtLlm.parallelism.tensor" in done.stderr and "Traceback" not in done.stderr


def test_chart_lint_is_clean_with_the_image_set() -> None:
    done = run_cli("chart", "lint", "--set", f"triton.image.name={IMAGE}")
    assert done.returncode == 0, done.stderr

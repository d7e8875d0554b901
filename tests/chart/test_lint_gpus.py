"""`llmprep chart lint` warns, one line a pod, when a pod asks for more GPUs than its product's usual node has."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep import gpu_fit
from llmprep.errors import SpecError
from tests.chart.conftest import CHART, IMAGE, render
from tests.conftest import ROOT, run_cli

FIXTURE = ROOT / "tests" / "chart" / "data" / "gpu-nodes.fixture.yaml"
MULTINODE = CHART / "models" / "llama-3-70b-multinode.yaml"
# The chart's own table once the chart ships it; the fixture (same format) stands in until then.
TABLES = [FIXTURE] + ([CHART / gpu_fit.TABLE_PATH] if (CHART / gpu_fit.TABLE_PATH).is_file() else [])


@pytest.fixture
def table() -> dict[str, gpu_fit.NodeShape]:
    return gpu_fit.read_table(FIXTURE)


@pytest.fixture
def chart_with_table(tmp_path: Path) -> Path:
    """A copy of the chart that carries a GPU node table (its own, else the fixture)."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    if not (copy / gpu_fit.TABLE_PATH).is_file():
        (copy / "files").mkdir(exist_ok=True)
        shutil.copy(FIXTURE, copy / gpu_fit.TABLE_PATH)
    return copy


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_every_gpu_node_table_reads_with_a_count_and_a_source_per_product(path: Path) -> None:
    shapes = gpu_fit.read_table(path)
    assert shapes and all(s.gpus_per_node >= 1 and s.source for s in shapes.values())


def test_eight_gpus_a_pod_on_four_gpu_nodes_warns_once_for_the_leader_and_once_for_the_worker(table: Any) -> None:
    lines = gpu_fit.warnings(render([MULTINODE], ["gpu=NVIDIA-A10G"]), table)
    assert len(lines) == 2
    assert [line.split(" asks")[0] for line in lines] == [
        "LeaderWorkerSet/gpt2-lws leader pod",
        "LeaderWorkerSet/gpt2-lws worker pod",
    ]
    assert all("8 nvidia.com/gpu" in line and "NVIDIA-A10G nodes usually have 4" in line for line in lines)
    assert all("g5.12xlarge" in line for line in lines)  # the source is named


def test_pods_that_fit_their_products_nodes_have_no_warning(table: Any) -> None:
    assert gpu_fit.warnings(render([MULTINODE], ["gpu=NVIDIA-H100-80GB-HBM3"]), table) == []
    assert gpu_fit.warnings(render([CHART / "models" / "gpt2.yaml"]), table) == []


def test_a_product_the_table_does_not_know_is_not_judged(table: Any) -> None:
    assert gpu_fit.warnings(render([MULTINODE], ["gpu=NVIDIA-Unknown-GPU"]), table) == []


def test_only_the_listed_products_with_too_few_gpus_are_named(table: Any) -> None:
    lines = gpu_fit.warnings(render([MULTINODE], ["gpu={NVIDIA-H100-80GB-HBM3,NVIDIA-A10G}"]), table)
    assert len(lines) == 2
    assert all("NVIDIA-A10G" in line and "H100" not in line.split("but")[1] for line in lines)


def _gpu(n: int, **extra: Any) -> dict[str, Any]:
    return {"name": "c", "resources": {"limits": {"nvidia.com/gpu": n}}, **extra}


K8S_CASES = yaml.safe_load((ROOT / "tests" / "data" / "k8s_pod_requests.yaml").read_text())["cases"]


@pytest.mark.parametrize("case", K8S_CASES, ids=[c["name"].replace(" ", "-") for c in K8S_CASES])
def test_a_pods_gpus_are_summed_as_kubernetes_sums_requests(case: dict[str, Any]) -> None:
    spec = {
        "containers": [_gpu(n) for n in case["containers"]],
        "initContainers": [
            _gpu(c["gpus"], **({"restartPolicy": "Always"} if c.get("sidecar") else {})) for c in case["initContainers"]
        ],
    }
    assert gpu_fit.pod_gpus(spec) == case["gpus"]


@pytest.mark.parametrize(
    ("container", "gpus"),
    [
        ({"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}}, 2),
        ({"name": "c", "resources": {"limits": {"nvidia.com/gpu": 3}}}, 3),
        ({"name": "c"}, 0),
    ],
    ids=["requests-as-a-string", "a-limit-alone-is-the-request", "no-gpu"],
)
def test_a_containers_gpus_are_its_request_or_else_its_limit(container: dict[str, Any], gpus: int) -> None:
    assert gpu_fit.pod_gpus({"containers": [container]}) == gpus


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("products: []\n", "products"),
        ("products: {NVIDIA-L4: {gpusPerNode: 0, source: x}}\n", "products.NVIDIA-L4.gpusPerNode"),
        ("products: {NVIDIA-L4: {gpusPerNode: eight, source: x}}\n", "products.NVIDIA-L4.gpusPerNode"),
        ("products: {NVIDIA-L4: {gpusPerNode: 8}}\n", "products.NVIDIA-L4.source"),
        ("products: {NVIDIA-L4: 8}\n", "products.NVIDIA-L4"),
    ],
)
def test_a_bad_table_entry_is_one_line_naming_its_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "gpu-nodes.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as raised:
        gpu_fit.read_table(path)
    assert f"{path}: {key}:" in str(raised.value) and "\n" not in str(raised.value)


def test_chart_lint_prints_a_warning_line_per_pod_and_exits_0(chart_with_table: Path) -> None:
    done = run_cli(
        "chart",
        "lint",
        "--chart",
        str(chart_with_table),
        "-f",
        str(MULTINODE),
        "--set",
        f"triton.image.name={IMAGE}",
        "--set",
        "gpu=NVIDIA-A10G",
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2 and all("NVIDIA-A10G nodes usually have" in line for line in warned)


def test_chart_lint_strict_exits_1_on_the_gpu_warnings(chart_with_table: Path) -> None:
    done = run_cli(
        "chart",
        "lint",
        "--strict",
        "--chart",
        str(chart_with_table),
        "-f",
        str(MULTINODE),
        "--set",
        f"triton.image.name={IMAGE}",
        "--set",
        "gpu=NVIDIA-A10G",
    )
    assert done.returncode == 1
    assert done.stderr.count("warning:") == 2


def test_chart_lint_strict_of_pods_that_fit_exits_0(chart_with_table: Path) -> None:
    done = run_cli("chart", "lint", "--strict", "--chart", str(chart_with_table), "--set", f"triton.image.name={IMAGE}")
    assert done.returncode == 0, done.stderr
    assert "warning:" not in done.stderr


def test_chart_option_without_a_chart_there_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_cli("chart", "template", "--chart", str(tmp_path), "--set", f"triton.image.name={IMAGE}")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Chart.yaml" in done.stderr and "Traceback" not in done.stderr

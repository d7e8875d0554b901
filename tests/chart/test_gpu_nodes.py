"""chart/files/gpu-nodes.yaml (GPUs per node of common products, sources cited) and the NOTES.txt
warning when a pod asks for more GPUs than the named product's usual node has."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from llmprep import chart
from tests.chart.conftest import CHART, TUTORIAL_MULTINODE, values_of
from tests.conftest import TUTORIAL_VALUES

TABLE = yaml.safe_load((CHART / "files" / "gpu-nodes.yaml").read_text())
PRODUCTS = TABLE["products"]


def test_the_table_has_exactly_the_shape_the_cli_reads() -> None:
    assert set(TABLE) == {"products"}
    for label, row in PRODUCTS.items():
        assert set(row) == {"gpusPerNode", "source"}, label
        assert isinstance(row["gpusPerNode"], int) and row["gpusPerNode"] >= 1, label
        assert row["source"].strip(), label


@pytest.mark.parametrize(
    "label", ["Tesla-T4", "NVIDIA-A10G", "NVIDIA-L4", "NVIDIA-A100-SXM4-40GB", "NVIDIA-H100-80GB-HBM3"]
)
def test_the_common_products_are_listed(label: str) -> None:
    assert label in PRODUCTS


def _products(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _named_products() -> dict[str, str]:
    """Every GPU product our model files, the tutorials' values files and their README's command
    lines name, with where it was named."""
    from tests.chart.test_render import TUTORIAL_COMMANDS

    named: dict[str, str] = {}
    for path in [*sorted((CHART / "models").glob("*.yaml")), *sorted(TUTORIAL_VALUES.glob("*/*.yaml"))]:
        doc = yaml.safe_load(path.read_text()) or {}
        if isinstance(doc, dict) and "gpu" in doc:
            for product in _products(doc["gpu"]):
                named.setdefault(product, str(path.relative_to(CHART.parent)))
    for command in TUTORIAL_COMMANDS:
        for word in shlex.split(command):
            if word.startswith("gpu[") and "=" in word:
                named.setdefault(word.split("=", 1)[1], "the tutorials' multi-SKU pool command")
    return named


def test_every_gpu_product_our_model_files_and_the_tutorials_name_has_a_row() -> None:
    named = _named_products()
    assert {"NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-H100-SXM5-80GB"} <= set(named)
    missing = {product: where for product, where in named.items() if product not in PRODUCTS}
    assert not missing, f"add rows to chart/files/gpu-nodes.yaml for {missing}"


@pytest.mark.parametrize("label", ["NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-H100-SXM5-80GB"])
def test_the_added_rows_cite_where_their_count_was_read(label: str) -> None:
    source = PRODUCTS[label]["source"]
    assert "https://" in source and ("torchx" in source or "rapidsai" in source)


def notes(*sets: str) -> str:
    return chart.notes(values_of(sets=list(sets)))


def test_a_pod_with_more_gpus_than_the_products_nodes_is_warned_about() -> None:
    text = notes("gpu=NVIDIA-A10G", "model.tensorrtLlm.parallelism.tensor=8")
    assert "Warning: each pod asks for 8 GPUs, but NVIDIA-A10G nodes usually have 4" in text
    assert "multinode.gpusPerNode=4" in text and "g5.12xlarge" in text


@pytest.mark.parametrize(
    "sets",
    [
        ["gpu=NVIDIA-A10G", "model.tensorrtLlm.parallelism.tensor=4"],  # exactly one node's worth
        ["gpu=Some-Unlisted-GPU", "model.tensorrtLlm.parallelism.tensor=16", "multinode.gpusPerNode=16"],
        [],  # the chart's defaults
    ],
)
def test_a_pod_that_fits_or_an_unlisted_product_gives_no_warning(sets: list[str]) -> None:
    assert "Warning: each pod asks for" not in notes(*sets)


def test_every_listed_product_of_a_pod_list_is_checked() -> None:
    text = notes(
        "gpu[0]=Some-Unlisted-GPU",
        "gpu[1]=Tesla-T4",
        "model.tensorrtLlm.parallelism.tensor=16",
        "multinode.gpusPerNode=16",
    )
    assert "Tesla-T4 nodes usually have 4" in text


@pytest.mark.parametrize("path", TUTORIAL_MULTINODE, ids=lambda p: p.name)
def test_the_multinode_tutorials_files_render_their_notes(path: Path) -> None:
    values = chart.merge_values(
        [path.parent / "values.yaml", path],
        ["multinode.enabled=true", "multinode.gpusPerNode=1", "multinode.ssh.existingSecret=llm-ssh"],
    )
    assert "Warning: each pod asks for" not in chart.notes(values)

"""Rendering fixtures for the chart tests: values files, Helm's render, lookups by kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from llmprep import chart
from tests.conftest import ROOT, TUTORIAL_VALUES

CHART = ROOT / "chart"
MODEL_FILES = sorted((CHART / "models").glob("*.yaml"))
TUTORIAL_SINGLE = sorted((TUTORIAL_VALUES / "single").glob("*_values.yaml"))
TUTORIAL_MULTINODE = sorted((TUTORIAL_VALUES / "multinode").glob("*_values.yaml"))
TUTORIAL_FILES = TUTORIAL_SINGLE + TUTORIAL_MULTINODE
IMAGE = "registry.example.com/llmprep-triton:26.07"
RELEASE = "gpt2"
NAMESPACE = "llm"

Objects = list[dict[str, Any]]


def ids(paths: Iterable[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]


def values_of(files: Sequence[Path] = (), sets: Sequence[str] = ()) -> dict[str, Any]:
    """User values of `helm install -f … --set …`, with the one required value (the image) set first."""
    return chart.merge_values(list(files), [f"triton.image.name={IMAGE}", *sets])


def render(
    files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    *,
    api_versions: Iterable[str] | None = chart.DEFAULT_API_VERSIONS,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Objects:
    return chart.render(values_of(files, sets), release=release, namespace=namespace, api_versions=api_versions)


def one(objects: Objects, kind: str) -> dict[str, Any]:
    found = chart.find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(objects: Objects, name: str = "triton") -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] + pod["initContainers"] if c["name"] == name)


@pytest.fixture(scope="session")
def defaults() -> Objects:
    """The chart rendered with its defaults (plus the required image), in a cluster with the Prometheus operator."""
    return render()


@pytest.fixture
def render_with() -> Callable[..., Objects]:
    return render

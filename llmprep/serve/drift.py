"""The drift guard: refuse an artifact built for another pod (runtime, release, GPU, parallelism)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmprep.errors import ServeError


@dataclass(frozen=True)
class PodFacts:
    """What this pod has; None where it could not be observed."""

    trtllm_version: str | None = None
    gpu_product: str | None = None
    gpu_count: int | None = None


def check_drift(
    manifest: Mapping[str, Any] | None,
    pod: PodFacts,
    *,
    runtime: str,
    tensor: int,
    pipeline: int,
    ranks_here: int,
    standin: bool = False,
) -> str:
    """Refuse (ServeError, one line) an artifact built for another pod; return what was checked.

    Compares the manifest's runtime, TensorRT-LLM version, GPU product and tensor × pipeline
    with this pod's. A field the manifest left empty (built without a GPU) is not compared; a
    GPU product this pod cannot observe is reported as unchecked, not as a match.
    """
    if manifest is None:
        if standin:
            return "stand-in repository: no artifact manifest, so the drift guard is skipped"
        return "no artifact manifest for this repository (serve with --cache for the drift guard): guard skipped"
    inputs = manifest.get("inputs", manifest)
    problems: list[str] = []
    unchecked: list[str] = []

    def compare(label: str, built: Any, here: Any, fix: str) -> None:
        if built is None:
            return
        if here is None:
            unchecked.append(label)
            return
        if str(built) != str(here):
            problems.append(f"{label} {built} ≠ {here} here ({fix})")

    compare("runtime", inputs.get("runtime"), runtime, "prepare again with this runtime")
    built_version = inputs.get("trtllmVersion")
    if built_version is not None and pod.trtllm_version is None:
        problems.append(f"TensorRT-LLM {built_version} ≠ not installed here (use the image the artifact was built in)")
    else:
        compare("TensorRT-LLM", built_version, pod.trtllm_version, "prepare again in this image")
    compare("GPU product", inputs.get("gpuProduct"), pod.gpu_product, "prepare again on this GPU product")
    built_tp = (inputs.get("tensor"), inputs.get("pipeline"))
    if None not in built_tp and built_tp != (tensor, pipeline):
        problems.append(
            f"tensor × pipeline {built_tp[0]}×{built_tp[1]} ≠ {tensor}×{pipeline} in the spec (prepare again)"
        )
    if pod.gpu_count is not None and pod.gpu_count < ranks_here:
        problems.append(f"this pod sees {pod.gpu_count} GPU(s) but runs {ranks_here} rank(s) (request more GPUs)")
    key = manifest.get("key", "?")
    if problems:
        raise ServeError(f"refusing to serve artifact {key}: " + "; ".join(problems))
    note = f"drift guard: artifact {key} matches this pod"
    if unchecked:
        note += f" (not observable here, so unchecked: {', '.join(unchecked)})"
    return note

"""The installed TensorRT-LLM: its version and which runtimes it can serve.

Detection runs a child process of the chosen Python interpreter, so the answer is about the
interpreter that will run the build and the server (and a test double on PYTHONPATH/PATH
replaces the real package at that process boundary). The child locates the package and reads
its metadata without importing it: importing tensorrt_llm loads CUDA, torch and TensorRT and
takes many seconds, which a warm `prepare` cannot afford.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from llmprep import proc
from llmprep.errors import BuildError, ProcessError, SpecError

# The last release that still has trtllm-build and the TensorRT engine backend, and the image
# that ships it (DESIGN.md: one image serves both runtimes).
LAST_ENGINE_RELEASE = "1.2.1"
ENGINE_IMAGE = "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"

_PROBE = r"""
import importlib.metadata, importlib.util, json, os, re, shutil, sys
spec = importlib.util.find_spec("tensorrt_llm")
if spec is None or not spec.submodule_search_locations:
    print(json.dumps({"installed": False})); sys.exit(0)
pkg = list(spec.submodule_search_locations)[0]
try:
    version = importlib.metadata.version("tensorrt_llm")
except importlib.metadata.PackageNotFoundError:
    version = None
if version is None:
    try:
        text = open(os.path.join(pkg, "version.py")).read()
        version = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
    except (OSError, AttributeError):
        version = "unknown"
print(json.dumps({
    "installed": True,
    "version": version,
    "package_dir": pkg,
    "engine": os.path.isfile(os.path.join(pkg, "commands", "build.py")),
    "pytorch": os.path.isdir(os.path.join(pkg, "_torch")),
    "trtllm_build": shutil.which("trtllm-build"),
}))
"""


@dataclass(frozen=True)
class TrtllmInfo:
    version: str
    package_dir: Path
    engine: bool  # trtllm-build and the TensorRT engine backend are there
    pytorch: bool  # the PyTorch backend (LLM API) is there
    trtllm_build: str | None  # the trtllm-build executable on PATH, if any
    python: str  # the interpreter it belongs to

    @property
    def runtimes(self) -> tuple[str, ...]:
        return tuple(r for r, ok in (("engine", self.engine), ("pytorch", self.pytorch)) if ok)

    def build_command(self) -> list[str]:
        """How to call trtllm-build: the executable if on PATH, else its module."""
        if self.trtllm_build:
            return [self.trtllm_build]
        return [self.python, "-m", "tensorrt_llm.commands.build"]


def detect(python: str = sys.executable) -> TrtllmInfo | None:
    """The TensorRT-LLM installed for `python`, or None when there is none."""
    try:
        lines = proc.run([python, "-c", _PROBE], timeout=60)
    except ProcessError as exc:
        raise BuildError(f"cannot inspect the Python at {python}: {exc}") from None
    data = json.loads(lines[-1]) if lines else {}
    if not data.get("installed"):
        return None
    return TrtllmInfo(
        version=str(data["version"]),
        package_dir=Path(data["package_dir"]),
        engine=bool(data["engine"]),
        pytorch=bool(data["pytorch"]),
        trtllm_build=data.get("trtllm_build"),
        python=python,
    )


def resolve_runtime(requested: str, info: TrtllmInfo | None) -> str:
    """`auto` → what the installed release can do; an explicit choice it cannot honour is an error."""
    if info is None:
        raise BuildError(
            "TensorRT-LLM is not installed for this Python; run inside "
            f"{ENGINE_IMAGE} (TensorRT-LLM {LAST_ENGINE_RELEASE}) or install the `build` extra"
        )
    if requested == "auto":
        if info.engine:
            return "engine"
        if info.pytorch:
            return "pytorch"
        raise BuildError(
            f"TensorRT-LLM {info.version} at {info.package_dir} has neither trtllm-build nor the PyTorch backend"
        )
    if requested == "engine" and not info.engine:
        raise SpecError(
            f"model.tensorrtLlm.runtime: engine needs TensorRT-LLM {LAST_ENGINE_RELEASE} or earlier (the last "
            f"release with trtllm-build); the installed TensorRT-LLM is {info.version}, which only has the PyTorch "
            f"backend: set runtime to pytorch or auto, or use {ENGINE_IMAGE}"
        )
    if requested == "pytorch" and not info.pytorch:
        raise SpecError(
            f"model.tensorrtLlm.runtime: pytorch needs a TensorRT-LLM with the PyTorch backend (1.0 or later, e.g. "
            f"{LAST_ENGINE_RELEASE}); the installed TensorRT-LLM is {info.version}: set runtime to engine or auto"
        )
    return requested

"""Old flat module paths (`llmprep.hub`, `llmprep.prometheus`, …) kept importable after the regrouping.

An import of an old path loads the module at its new home, registers it under both names (so
state and monkeypatching are shared) and warns once with the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {
    "llmprep.adapter": "llmprep.lab.adapter",
    "llmprep.build": "llmprep.artifacts.build",
    "llmprep.cache": "llmprep.artifacts.cache",
    "llmprep.converters": "llmprep.artifacts.converters",
    "llmprep.drain": "llmprep.serve.drain",
    "llmprep.gpu": "llmprep.artifacts.gpu",
    "llmprep.hub": "llmprep.artifacts.hub",
    "llmprep.plan": "llmprep.artifacts.capacity",
    "llmprep.prepare": "llmprep.artifacts.prepare",
    "llmprep.prometheus": "llmprep.lab.prometheus",
    "llmprep.triton": "llmprep.serve.triton",
    "llmprep.trtllm": "llmprep.artifacts.trtllm",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[new] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed at its new home. The import system has just set the old path's spec
        # on it: give the module its own back, so it still names where it lives.
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())

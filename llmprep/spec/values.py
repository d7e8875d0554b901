"""Values documents as Helm treats them: merging one onto another, setting a dotted key.

Pure functions of the documents, importing nothing else of llmprep but its errors, so that the
chart's renderer can use them without importing the spec's reader (which uses the chart's `--set`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmprep.errors import SpecError


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` onto `base` as Helm merges values files: maps merge, the rest replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of `doc` with `a.b.c` set to `value` (maps are created as needed)."""
    keys = [k for k in dotted.split(".") if k]
    if not keys:
        raise SpecError(f"--set {dotted!r}: the key is empty; write it as model.tensorrtLlm.dataType=bfloat16")
    patch: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        patch = {key: patch}
    return deep_merge(doc, patch)

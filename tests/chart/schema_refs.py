"""The chart's values schema with every local `$ref` replaced by its `$defs` entry.

chart/values.schema.json names its repeated patterns once under `$defs` (quantity, duration, DNS
name, …). Tests that walk the schema key by key (`properties` down to the scalars) read the
inlined form, so a key typed through `$ref` is seen with its type and bounds.
"""

from __future__ import annotations

import copy
from typing import Any


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with `{"$ref": "#/$defs/X", …siblings}` merged into `$defs.X` (siblings win), `$defs` dropped."""
    defs = schema.get("$defs", {})

    def resolve(node: Any, seen: tuple[str, ...] = ()) -> Any:
        if isinstance(node, list):
            return [resolve(v, seen) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: resolve(v, seen) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref")
        if ref is None:
            return out
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in defs:
            raise KeyError(f"$ref {ref!r}: not a local $defs entry")
        if name in seen:
            raise ValueError(f"$ref {ref!r}: refers to itself through {' -> '.join(seen)}")
        target = resolve(copy.deepcopy(defs[name]), (*seen, name))
        return {**target, **out}

    inlined = resolve({k: v for k, v in schema.items() if k != "$defs"})
    assert isinstance(inlined, dict)
    return inlined

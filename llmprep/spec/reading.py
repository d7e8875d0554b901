"""Reading the spec: values files in order, `--set` through Helm's parser, overrides; and back to YAML."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from llmprep.errors import LlmprepError, SpecError
from llmprep.spec.fields import kind_of
from llmprep.spec.model import ModelSpec
from llmprep.spec.parse import parse_spec
from llmprep.spec.values import deep_merge, set_path


def read_yaml(path: Path) -> Any:
    """Read one YAML document, turning every failure into a one-line SpecError."""
    from llmprep import files

    return files.read_yaml(path, "spec file", SpecError)


def load_spec(
    paths: Iterable[Path] = (),
    *,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
) -> ModelSpec:
    """Read values files in order (later wins), apply `--set` expressions (Helm's parser), then overrides."""
    doc: dict[str, Any] = dict(base or {})
    for path in paths:
        data = read_yaml(Path(path))
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise SpecError(f"{path}: must be a mapping of values keys, got {kind_of(data)}")
        doc = deep_merge(doc, data)
    if sets:
        from llmprep.chart import apply_sets  # Helm's --set grammar, applied as `chart template` applies it

        try:
            doc = apply_sets(doc, sets)
        except SpecError:
            raise
        except LlmprepError as exc:
            raise SpecError(str(exc)) from None
    for key, value in (overrides or {}).items():
        doc = set_path(doc, key, value)
    return parse_spec(doc)


def dump_spec(spec: ModelSpec) -> str:
    """The spec as YAML, round-trippable through load_spec."""
    return yaml.safe_dump(spec.to_values(), sort_keys=False)

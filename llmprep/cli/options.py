"""What every command group shares: the stderr console, option aliases, spec reading, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llmprep.spec import ModelSpec, load_spec

console = Console(stderr=True)
# `--debug` of the root callback; `main` reads it to decide between one line and a traceback.
state = {"debug": False}

SpecOption = Annotated[
    list[Path] | None,
    typer.Option("--spec", "-f", help="Values or model.yaml file; repeat to layer files (later wins)."),
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override one spec key, e.g. model.tensorrtLlm.parallelism.tensor=2.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout only.")]


def read_spec(spec_files: list[Path] | None, sets: list[str] | None, **flags: Any) -> ModelSpec:
    """The spec from files, then `--set` overrides, then named flags that were given."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    spec = load_spec(spec_files or [], overrides=overrides, sets=sets or [])
    for warning in spec.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    return spec


def emit_json(data: Any) -> None:
    """Programs read stdout: JSON and nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

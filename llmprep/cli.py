"""The `llmprep` command line: parse options, call one domain function, report errors.

Domain modules never import typer and never exit; this module turns their errors into one
line on stderr with exit code 2 (bad input) or 1 (failed work). `--debug` shows tracebacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llmprep import __version__
from llmprep.errors import LlmprepError
from llmprep.spec import ModelSpec, dump_spec, load_spec, parse_assignment

app = typer.Typer(
    name="llmprep",
    help="Prepare, serve, load-test and autoscale TensorRT-LLM models on Triton Inference Server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}

SpecOption = Annotated[
    list[Path] | None,
    typer.Option("--spec", "-f", help="Values or model.yaml file; repeat to layer files (later wins)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one spec key, e.g. model.tensorrtLlm.parallelism.tensor=2."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout only.")]


def _version(value: bool) -> None:
    if value:
        print(f"llmprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


def read_spec(spec_files: list[Path] | None, sets: list[str] | None, **flags: Any) -> ModelSpec:
    """The spec from files, then `--set` overrides, then named flags that were given."""
    overrides: dict[str, Any] = dict(parse_assignment(s) for s in sets or [])
    overrides.update({k: v for k, v in flags.items() if v is not None})
    spec = load_spec(spec_files or [], overrides=overrides)
    for warning in spec.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    return spec


def emit_json(data: Any) -> None:
    """Programs read stdout: JSON and nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


spec_app = typer.Typer(help="Validate and show the model spec.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")


@spec_app.command("show")
def spec_show(spec: SpecOption = None, set_: SetOption = None, as_json: JsonOption = False) -> None:
    """Validate the spec and print it with every default filled in."""
    parsed = read_spec(spec, set_)
    if as_json:
        emit_json(parsed.to_values())
    else:
        sys.stdout.write(dump_spec(parsed))


# Commands of the other modules register below, one block each.


def main() -> None:
    """Console-script entry point."""
    try:
        app(standalone_mode=False)
    except LlmprepError as exc:
        if _state["debug"]:
            raise
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("[red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()

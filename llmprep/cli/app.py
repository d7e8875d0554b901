"""The `llmprep` command line: the typer app that registers every command and group, and `main`.

Each command lives in its group's module (`prepare`, `serve`, `lab`, `cluster`) and parses its
options, calls one domain function and reports; domain modules never import typer and never exit.
`main` turns their errors into one line on stderr with exit code 2 (bad input) or 1 (failed work);
`--debug` shows tracebacks. Nothing imports this module but `llmprep.cli` and `__main__`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from llmprep import __version__
from llmprep.cli import cluster, lab, prepare, serve
from llmprep.cli.options import console, state
from llmprep.errors import LlmprepError

app = typer.Typer(
    name="llmprep",
    help="Prepare, serve, load-test and autoscale TensorRT-LLM models on Triton Inference Server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
    state["debug"] = debug


# Single commands first, then the groups: the order `llmprep --help` lists them in.
app.command("status")(cluster.status_cmd)
app.command("download")(prepare.download_cmd)
app.command("build")(prepare.build_cmd)
app.command("prepare")(prepare.prepare_cmd)
app.command("plan")(prepare.plan_cmd)
app.command("repo")(serve.repo_cmd)
app.command("load")(lab.load_cmd)
app.command("serve")(serve.serve_cmd)
app.command("drain")(serve.drain_cmd)
app.command("lab")(lab.lab_cmd)
app.add_typer(prepare.spec_app, name="spec")
app.add_typer(prepare.cache_app, name="cache")
app.add_typer(cluster.chart_app, name="chart")


def _one_line(message: str, limit: int = 2000) -> str:
    """An error as one line of bounded length (a pasted 10 MB value must not come back whole)."""
    line = " ".join(message.split())
    return line if len(line) <= limit else f"{line[: limit - 1]}…"


def main() -> None:
    """Console-script entry point."""
    try:
        # Without standalone mode typer returns (not raises) the codes of typer.Exit and Ctrl-C.
        code = app(standalone_mode=False)
    except LlmprepError as exc:
        if state["debug"]:
            raise
        console.print(f"[red]error:[/] {escape(_one_line(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("[red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # usage errors: click's, or (typer ≥ 0.2x) those of typer's own copy of click
        import click

        usage_errors: tuple[type[Exception], ...] = (click.ClickException,)
        if hasattr(typer, "TyperException"):
            usage_errors += (typer.TyperException,)
        if isinstance(exc, usage_errors) and hasattr(exc, "show"):
            exc.show()
            sys.exit(int(getattr(exc, "exit_code", 2)))
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

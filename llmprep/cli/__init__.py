"""The command line (`llmprep …`): the typer app and `main`, its entry point."""

from llmprep.cli.app import app, main

__all__ = ["app", "main"]

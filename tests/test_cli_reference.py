"""docs/cli.md is the `--help` of every command, and the check fails, naming the command, when they part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "cli_reference.py"
DOC = ROOT / "docs" / "cli.md"


def check(doc: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "-o", str(doc)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_docs_cli_md_matches_the_help_of_every_command() -> None:
    done = check(DOC)
    assert done.returncode == 0, done.stderr


def test_every_command_and_group_has_a_section() -> None:
    sections = [line for line in DOC.read_text().splitlines() if line.startswith("## `")]
    for name in (
        "llmprep",
        "llmprep prepare",
        "llmprep cache rm",
        "llmprep chart lint",
        "llmprep lab",
        "llmprep serve",
    ):
        assert f"## `{name}`" in sections


def _drop_section(text: str, name: str) -> str:
    head, _, rest = text.partition(f"## `{name}`\n")
    return head + rest[rest.index("\n## `") + 1 :]


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda t: t.replace("until no client is connected.", "until no client is left."), "`llmprep drain`"),
        (lambda t: _drop_section(t, "llmprep cache rm"), "`llmprep cache rm`"),
        (lambda t: t + "\n## `llmprep gone`\n\n```text\nUsage: llmprep gone\n```\n", "`llmprep gone`"),
    ],
    ids=["help-text-changed", "section-missing", "command-removed"],
)
def test_a_stale_doc_fails_the_check_naming_the_command(tmp_path: Path, edit: object, named: str) -> None:
    doc = tmp_path / "cli.md"
    doc.write_text(edit(DOC.read_text()))  # type: ignore[operator]
    done = check(doc)
    assert done.returncode == 1
    assert named in done.stderr and done.stderr.count("`llmprep") == 1

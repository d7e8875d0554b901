"""The benchmarks in bench/ run end to end in their tiny mode and write their own section.

No timed assertions: these check that each script runs, writes a table with the machine,
date and command line between its markers, and leaves every other section alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import markers, write_section
from tests.conftest import ROOT

OTHER = "<!-- bench:other:begin -->\nkept as it was\n<!-- bench:other:end -->"


def _run(module: str, out: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _section(text: str, name: str) -> str:
    begin, end = markers(name)
    assert text.count(begin) == 1 and text.count(end) == 1, f"section {name} missing or repeated"
    return text[text.index(begin) : text.index(end)]


def test_writing_a_section_replaces_only_that_section(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    write_section("one", "first", out)
    write_section("two", "second", out)
    write_section("one", "first again", out)
    text = out.read_text()
    assert "first again" in _section(text, "one") and "first\n" not in _section(text, "one")
    assert "second" in _section(text, "two")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "name", "expected", "args"),
    [
        (
            "bench.warm_start",
            "warm_start",
            ["`llmprep prepare`: cold vs warm cache", "warm (restart)", "`engine`", "`pytorch`"],
            (),
        ),
        (
            "bench.load_overhead",
            "load_overhead",
            ["floor (gRPC stream)", "llmprep load (gRPC)", "llmprep load (HTTP)", "server TTFT mean ms"],
            ("--no-aiperf",),
        ),
        (
            "bench.surge_lag",
            "surge_lag",
            ["`trtllm:requests_waiting` ≥ 2", "`triton:queue_compute:ratio` ≥ 1", "× floor"],
            (),
        ),
        (
            "bench.autoscaling_cost",
            "autoscaling_cost",
            ["Measured capacity", "oracle (measured capacity, per second)", "× oracle"],
            (),
        ),
    ],
)
def test_benchmark_runs_in_quick_mode_and_writes_its_section(
    tmp_path: Path, module: str, name: str, expected: list[str], args: tuple[str, ...]
) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n" + OTHER + "\n")
    result = _run(module, out, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    section = _section(text, name)
    for line in ("- machine: ", "- date: ", f"- command: `python -m {module} --quick --out {out}"):
        assert line in section
    for word in expected:
        assert word in section
    assert OTHER in text

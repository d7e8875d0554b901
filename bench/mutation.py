"""Mutation testing (issue 22, item 11): how many small planted changes the suite catches.

`mutmut` (3.x) plants one change at a time in a module (an operator flipped, a constant off by
one, a comparison made strict, ...) and runs the tests that cover it; a mutant the tests still
pass on "survived". The score is killed / (killed + survived); mutants that time out count as
killed, ones mutmut could not run are listed apart.

The run happens in a scratch copy of the repository (mutmut writes a `mutants/` tree and its own
config next to the code), so the working tree is never touched. Each module has the test files
that cover it, so a run finishes in minutes, not the suite's 20; not part of CI.

    python -m bench.mutation --module lab/hpa          # one module
    python -m bench.mutation --module load/stats --module spec
    python -m bench.mutation --list                    # the modules and their tests

Writes the section `mutation` of docs/benchmarks.md (one row per module run; rows of modules not
run this time are kept).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import DOCS, ROOT, VENV_BIN, command_line, machine_line, markers, now_utc, table, write_section

NAME = "mutation"
# module (under llmprep/) -> the test files that cover it
MODULES: dict[str, tuple[str, ...]] = {
    "lab/hpa": ("tests/lab/test_hpa.py", "tests/lab/test_hpa_kubernetes.py", "tests/reliability/test_planted_bugs.py"),
    "load/stats": ("tests/load/test_prompts_and_stats.py",),
    "lab/replicas": (
        "tests/lab/test_hpa.py",
        "tests/lab/test_hpa_kubernetes.py",
        "tests/reliability/test_planted_bugs.py",
    ),
    "spec/parse": ("tests/test_spec.py", "tests/test_spec_properties.py", "tests/reliability/test_planted_bugs.py"),
    "artifacts/cache": ("tests/test_cache.py", "tests/reliability/test_cache_faults.py"),
}
COPY = ("llmprep", "tests", "chart", "bench", "pyproject.toml", "clients", "monitoring", "containers")
STATUS = re.compile(
    r"^\s*(?P<name>\S+): (?P<status>killed|survived|timeout|suspicious|no tests|skipped|"
    r"segfault|not checked|check was interrupted by user|caught by type check)\s*$"
)


def _config(module: str) -> str:
    tests = "\n    ".join(MODULES[module])
    return (
        "[mutmut]\n"
        "source_paths = llmprep\n"
        f"only_mutate = llmprep/{module}.py\n"
        "also_copy =\n    chart\n    bench\n    clients\n    monitoring\n    containers\n"
        f"pytest_add_cli_args_test_selection =\n    {tests}\n"
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n    -x\n"
    )


def run_module(module: str, workdir: Path, timeout: float) -> dict[str, object]:
    """mutmut run on one module in a scratch copy; the counts by status."""
    scratch = workdir / module.replace("/", "_")
    scratch.mkdir(parents=True)
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, scratch / name)
    (scratch / "setup.cfg").write_text(_config(module))
    mutmut = str(VENV_BIN / "mutmut")
    started = time.monotonic()
    done = subprocess.run(
        [mutmut, "run", "--max-children", "2"], cwd=scratch, capture_output=True, text=True, timeout=timeout
    )
    took = time.monotonic() - started
    listing = subprocess.run(
        [mutmut, "results", "--all", "true"], cwd=scratch, capture_output=True, text=True, timeout=120
    )
    counts: dict[str, int] = {}
    survivors: list[str] = []
    for line in listing.stdout.splitlines():
        match = STATUS.match(line)
        if match:
            counts[match["status"]] = counts.get(match["status"], 0) + 1
            if match["status"] == "survived":
                survivors.append(match["name"])
    if not counts:
        raise SystemExit(
            f"mutmut on {module} gave no results (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}"
        )
    return {"module": module, "counts": counts, "survivors": survivors, "seconds": took}


def _row(result: dict[str, object]) -> list[object]:
    counts = result["counts"]
    assert isinstance(counts, dict)
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("caught by type check", 0)
    survived = counts.get("survived", 0)
    other = sum(counts.values()) - killed - survived
    score = f"{100 * killed / (killed + survived):.1f} %" if killed + survived else "–"
    tests = ", ".join(f"`{t}`" for t in MODULES[str(result["module"])])
    return [
        f"`llmprep/{result['module']}.py`",
        sum(counts.values()),
        killed,
        survived,
        other,
        score,
        f"{float(result['seconds']) / 60:.1f}",
        tests,
    ]  # type: ignore[arg-type]


HEADERS = ["module", "mutants", "killed", "survived", "not run", "score", "minutes", "tests run"]


def _old_rows(path: Path) -> dict[str, str]:
    """The rows of the current section, by module, so a run of one module keeps the others."""
    if not path.exists():
        return {}
    text = path.read_text()
    begin, end = markers(NAME)
    if begin not in text:
        return {}
    section = text[text.index(begin) : text.index(end)]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `llmprep/([a-z_/]+)\.py` \|.*$", section, re.M)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="module to mutate (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per module")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    if args.list or not args.module:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    if not (VENV_BIN / "mutmut").exists():
        print(f"mutmut is not installed in {VENV_BIN}: {VENV_BIN}/pip install mutmut", file=sys.stderr)
        return 1
    rows = _old_rows(args.out)
    survivors: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="llmprep-mutmut-") as tmp:
        for module in args.module:
            result = run_module(module, Path(tmp), args.timeout)
            rows[module] = "| " + " | ".join(str(c) for c in _row(result)) + " |"
            survivors[module] = list(result["survivors"])  # type: ignore[call-overload]
    lines = [
        "## Mutation score (issue 22, item 11)",
        "",
        f"- machine: {machine_line()}",
        f"- last run: {now_utc()}; command: `{command_line('bench.mutation')}` (or `make mutate MODULE=…`)",
        "- mutmut 3 in a scratch copy; each module against the test files that cover it (`python -m bench.mutation "
        "--list`); killed includes timeouts; not run = no tests / suspicious / skipped. Not in CI.",
        "",
        *table(HEADERS, []).splitlines(),
        *(rows[m] for m in sorted(rows)),
    ]
    for module, names in survivors.items():
        if names:
            shown = ", ".join(f"`{n}`" for n in names[:12]) + (
                f" and {len(names) - 12} more" if len(names) > 12 else ""
            )
            lines += ["", f"Survivors in `{module}` this run ({len(names)}): {shown}."]
    write_section(NAME, "\n".join(lines), args.out)
    print("\n".join(rows[m] for m in sorted(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

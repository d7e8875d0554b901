"""Timings the tests no longer assert (issue 22, item 10), measured by running those tests.

Tests assert behaviour (who waits where, that failures stop, that arrivals follow their seeded
schedule, why the drain ended); the durations and ratios they used to bound are measured here.
Each such test calls `record(name, **values)`, which writes one JSON line to the file named by
$LLMPREP_TIMINGS and does nothing otherwise. This script runs the tests `--runs` times with that
variable set and writes the medians (and ranges) to its section of docs/benchmarks.md.

    python -m bench.timed_tests [--runs 3] [--quick] [--out FILE]

`--quick` runs each test once and leaves out the lab test (a cluster of real servers, ~1 min).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ENV = "LLMPREP_TIMINGS"

# (pytest node id, whether it needs the lab's cluster of real servers)
TESTS: list[tuple[str, bool]] = [
    ("tests/test_drain.py::test_the_command_waits_for_a_real_client_to_close_its_connection", False),
    ("tests/load/test_load_e2e.py::test_an_open_loop_sends_poisson_arrivals_at_the_rate", False),
    (
        "tests/e2e/test_standin_queueing.py::test_hand_off_keeps_tritons_queue_flat_while_requests_wait_in_the_engine",
        False,
    ),
    (
        "tests/e2e/test_standin_queueing.py::test_queue_in_triton_makes_requests_wait_in_tritons_queue_under_overload",
        False,
    ),
    (
        "tests/reliability/test_lab_drain.py::"
        "test_a_replica_killed_under_load_leaves_the_rotation_and_is_replaced_with_bounded_failures",
        True,
    ),
]

# name -> (title, {value key: (column header, digits)}), in the order the section shows them
SHOWN: dict[str, tuple[str, dict[str, tuple[str, int]]]] = {
    "drain_exit": (
        "`llmprep drain`: a real client closes its connection",
        {"after_close_s": ("drain exits after the close, s", 2)},
    ),
    "poisson_arrivals": (
        "`llmprep load` open loop, 40 req/s for 2 s (80 expected)",
        {
            "sent": ("requests sent", 0),
            "scheduled": ("seeded draws that fit 2 s (+ 50 ms)", 0),
            "spearman": ("rank correlation of gaps with the schedule", 3),
            "slope": ("slope of gap on draw", 2),
        },
    ),
    "standin_queue": (
        "stand-in on tritonserver, 8 streaming clients, 2 in flight",
        {
            "queue_share": ("Triton queue time / client latency", 3),
            "compute_share": ("Triton compute time / client latency", 3),
        },
    ),
    "kill_window": (
        "lab: `kill -9` of 1 of 3 replicas under streaming load",
        {
            "out_of_rotation_s": ("out of the front's rotation after, s", 2),
            "last_failure_s": ("last failed request started after the kill, s", 2),
            "failed": ("failed requests", 0),
            "after": ("requests after the kill", 0),
        },
    ),
}


def record(name: str, **values: Any) -> None:
    """Append one measurement for the benchmark (no-op unless $LLMPREP_TIMINGS names a file)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"name": name, **values}) + "\n")


def run_tests(runs: int, *, with_lab: bool, log: Path) -> list[dict[str, Any]]:
    root = Path(__file__).resolve().parent.parent
    ids = [node for node, lab in TESTS if with_lab or not lab]
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids],
            cwd=root,
            env={**os.environ, ENV: str(log), "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise SystemExit(f"timed_tests: the tests failed; no section written\n{tail}")
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def _group_key(row: dict[str, Any], keys: dict[str, tuple[str, int]]) -> str:
    labels = [f"{k}={v}" for k, v in row.items() if k != "name" and k not in keys]
    return ", ".join(labels) or "–"


def section(rows: list[dict[str, Any]], runs: int, command: str) -> str:
    from bench._common import fmt, median, section_header, table

    lines = section_header("Timings moved out of the tests (issue 22, item 10)", command)
    lines += [
        "The tests below assert behaviour only; these are the durations and ratios they once bounded,",
        f"measured by running them ({runs} run(s); median, with min–max over every recorded case).",
        "",
    ]
    for name, (title, keys) in SHOWN.items():
        mine = [r for r in rows if r.get("name") == name]
        if not mine:
            continue
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in mine:
            groups[_group_key(row, keys)].append(row)
        body = []
        for label, group in sorted(groups.items()):
            cells: list[object] = [label, len(group)]
            for key, (_header, digits) in keys.items():
                values = [float(r[key]) for r in group if r.get(key) is not None]
                if not values:
                    cells.append("–")
                    continue
                mid = fmt(median(values), digits)
                cells.append(
                    mid if len(values) == 1 else f"{mid} ({fmt(min(values), digits)}–{fmt(max(values), digits)})"
                )
            body.append(cells)
        lines += [f"### {title}", "", table(["case", "n", *[h for h, _ in keys.values()]], body), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from bench._common import DOCS, command_line, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run, without the lab test")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_tests(runs, with_lab=not args.quick, log=Path(tmp) / "timings.jsonl")
    write_section("timed_tests", section(rows, runs, command_line("bench.timed_tests", argv)), args.out)
    print(f"wrote the timed_tests section of {args.out} ({len(rows)} measurements)")


if __name__ == "__main__":
    main()

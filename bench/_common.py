"""What every benchmark shares: the machine's description, statistics, and writing its section.

Each benchmark owns one section of docs/benchmarks.md, between two HTML comment markers
(`<!-- bench:NAME:begin -->` … `<!-- bench:NAME:end -->`); writing a section replaces only that
section, so the scripts never clobber each other. The file is rewritten atomically.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
VENV_BIN = Path(sys.executable).parent

HEADER = """# Benchmarks

Measured numbers, written by the scripts in `bench/` (one command each; see `bench/README.md`).
Each section names the machine, the date and the exact command line, and measures every compared
configuration side by side in the same run. Re-run a script to replace its section.
"""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    """`uname -m`, cores, CPU model, Python: one line for a section's header."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran this benchmark, as a user would type it (`python -m bench.NAME ARGS`)."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def section_header(title: str, command: str) -> list[str]:
    """The lines every section starts with."""
    return [
        f"## {title}",
        "",
        f"- machine: {machine_line()}",
        f"- date: {now_utc()}; 1-minute load average as the run ended: {os.getloadavg()[0]:.2f} "
        "(other work on this shared machine adds noise)",
        f"- command: `{command}`",
        "",
    ]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def write_section(name: str, body: str, path: Path = DOCS) -> None:
    """Replace (or append) the section `name` of `path`, leaving every other section as it was."""
    begin, end = markers(name)
    text = path.read_text() if path.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    start = text.find(begin)
    stop = text.find(end, start + 1) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        text = text[:start] + block + text[stop + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    from llmprep.files import write_text_atomic

    write_text_atomic(path, text, mode=0o644)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), linear between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"  # None and NaN print as a dash


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""
    if len(x) != len(y) or len(x) < 2:
        return 0.0
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return 0.0 if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)

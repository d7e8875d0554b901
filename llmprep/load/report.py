"""Reporting: a live status line while the run goes, a final table, JSON and CSV files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmprep.files import write_text_atomic
from llmprep.load.runner import LoadResult
from llmprep.load.stats import Sample, SecondStats

CSV_FIELDS = ("start", "target", "e2e", "ttft", "itl", "tokens_in", "tokens_out", "error", "detail")


def report_dict(result: LoadResult) -> dict[str, Any]:
    """The whole run as JSON-ready data: config, summary (percentiles), timeline, every sample."""
    return {
        "config": result.config,
        "started_at": result.started_at,
        "duration_s": result.duration,
        "max_error_rate": result.max_error_rate,
        "passed": result.passed,
        "notes": result.notes,
        "summary": result.summary(),
        "timeline": [snap.to_dict() for snap in result.timeline],
        "samples": [sample.to_dict() for sample in result.samples],
    }


def write_json(result: LoadResult, path: Path) -> None:
    write_text_atomic(path, json.dumps(report_dict(result), indent=1) + "\n")


def write_csv(result: LoadResult, path: Path) -> None:
    """One row per request; times in seconds."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for sample in result.samples:
        writer.writerow(sample.to_dict())
    write_text_atomic(path, buffer.getvalue())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def status_line(snap: SecondStats, unit: str) -> Text:
    level = f"{snap.level:.0f} clients" if unit == "clients" else f"{snap.level:.2f} req/s target"
    errors = f"[red]{snap.total_errors} errors[/]" if snap.total_errors else "0 errors"
    return Text.from_markup(
        f"t={snap.t:5.0f}s  {level}  in flight {snap.in_flight}  {snap.requests_per_s:6.1f} req/s  "
        f"{snap.output_tokens_per_s:7.0f} tok/s  TTFT p50/p95 {_ms(snap.ttft_p50)}/{_ms(snap.ttft_p95)} ms  "
        f"latency p50/p95 {_ms(snap.e2e_p50)}/{_ms(snap.e2e_p95)} ms  {errors}"
    )


class LiveStatus:
    """A one-line live view, refreshed from the runner's per-second callback."""

    def __init__(self, console: Console, unit: str) -> None:
        self.unit = unit
        self._live = Live(Text("starting…"), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveStatus:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, snap: SecondStats) -> None:
        self._live.update(status_line(snap, self.unit))


def summary_table(result: LoadResult) -> Table:
    """The final table: latency distributions in ms, token counts, throughput and errors."""
    summary = result.summary()
    table = Table(title=f"llmprep load: {summary['requests']} requests in {summary['duration_s']:.1f} s")
    table.add_column("metric")
    for column in ("mean", "p50", "p90", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    rows = (
        ("time to first token (ms)", "ttft_s", 1000.0),
        ("inter-token latency (ms)", "itl_s", 1000.0),
        ("end-to-end latency (ms)", "e2e_s", 1000.0),
        ("input tokens", "tokens_in", 1.0),
        ("output tokens", "tokens_out", 1.0),
    )
    for label, key, scale in rows:
        dist = summary[key]
        table.add_row(
            label,
            *(
                "-" if dist[c] is None else f"{dist[c] * scale:.1f}"
                for c in ("mean", "p50", "p90", "p95", "p99", "max")
            ),
        )
    classes = ", ".join(f"{k}: {v}" for k, v in sorted(summary["errors_by_class"].items()))
    table.caption = (
        f"{summary['requests_per_s']:.2f} req/s, {summary['output_tokens_per_s']:.0f} output tok/s; "
        f"errors {summary['errors']} ({summary['error_rate']:.2%}{'; ' + classes if classes else ''}); "
        f"cancelled at stop {summary['cancelled']}; dropped {summary['dropped']}"
    )
    return table


def first_errors(samples: list[Sample], limit: int = 3) -> list[str]:
    """A few distinct error messages, to say why requests failed."""
    seen: dict[str, None] = {}
    for sample in samples:
        if sample.error and sample.error != "cancelled":
            seen.setdefault(f"{sample.error} from {sample.target}: {sample.detail}", None)
            if len(seen) >= limit:
                break
    return list(seen)

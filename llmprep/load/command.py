"""What `llmprep load` does once its options are parsed: build the config, run live, report, judge."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from llmprep.errors import LoadError, UsageError
from llmprep.load.profile import Profile, constant, load_profile
from llmprep.load.prompts import load_prompts
from llmprep.load.report import LiveStatus, first_errors, status_line, summary_table, write_csv, write_json
from llmprep.load.runner import LoadConfig, LoadResult, run_load
from llmprep.load.stats import SecondStats
from llmprep.units import parse_duration


@dataclass
class LoadOptions:
    """The command line's options, as given."""

    urls: list[str]
    protocol: str = "grpc"
    model: str = "ensemble"
    concurrency: int | None = None
    rate: float | None = None
    profile: Path | None = None
    duration: str = "60s"
    input_tokens: float = 128
    input_stddev: float = 0
    output_tokens: float = 64
    output_stddev: float = 0
    prompts: Path | None = None
    seed: int = 0
    report: Path | None = None
    csv: Path | None = None
    max_error_rate: float = 0.01
    timeout: float = 60.0
    fixed_output: bool = True
    extra_inputs: list[str] = field(default_factory=list)
    connections: int = 1
    reconnect_every: str = "0"
    wait_ready: str = "0"
    max_in_flight: int = 10_000
    max_samples: int | None = None
    progress: str = "live"  # live (a terminal), lines (a status line every 10 s, for logs) or none


def _profile(options: LoadOptions) -> Profile:
    given = [
        name
        for name, value in (
            ("--concurrency", options.concurrency),
            ("--rate", options.rate),
            ("--profile", options.profile),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: give only one of --concurrency, --rate and --profile")
    if options.profile is not None:
        return load_profile(options.profile)
    duration = parse_duration(options.duration, "--duration")
    if options.rate is not None:
        if options.rate <= 0:
            raise UsageError(f"--rate: must be above 0 requests per second, got {options.rate:g}")
        return constant("rate", options.rate, duration)
    concurrency = 1 if options.concurrency is None else options.concurrency
    if concurrency < 1:
        raise UsageError(f"--concurrency: must be at least 1, got {concurrency}")
    return constant("clients", concurrency, duration)


def build_config(options: LoadOptions) -> LoadConfig:
    """A validated LoadConfig from command-line options."""
    extra: dict[str, str] = {}
    for item in options.extra_inputs:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--extra-input {item!r}: expected NAME=VALUE, e.g. end_id=-1")
        extra[name.strip()] = value.strip()
    prompts = None
    if options.prompts is not None:
        prompts = load_prompts(
            options.prompts, output_tokens=options.output_tokens, output_stddev=options.output_stddev, seed=options.seed
        )
    config = LoadConfig(
        targets=list(options.urls),
        profile=_profile(options),
        protocol=options.protocol,
        model=options.model,
        prompts=prompts,
        input_tokens=options.input_tokens,
        input_stddev=options.input_stddev,
        output_tokens=options.output_tokens,
        output_stddev=options.output_stddev,
        seed=options.seed,
        timeout=options.timeout,
        max_error_rate=options.max_error_rate,
        fixed_output=options.fixed_output,
        extra_inputs=extra,
        connections=options.connections,
        reconnect_every=parse_duration(options.reconnect_every, "--reconnect-every"),
        wait_ready=parse_duration(options.wait_ready, "--wait-ready"),
        max_in_flight=options.max_in_flight,
        max_samples=options.max_samples,
    )
    config.validate()
    return config


def run_command(
    options: LoadOptions, console: Console, out: Console | None, emit: Callable[[Any], None] | None = None
) -> LoadResult:
    """Run, show progress on `console`, print the table on `out` (or the summary through `emit`),
    write the files; LoadError when the error rate is over budget."""
    config = build_config(options)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # asked twice: stop now, without draining
            raise KeyboardInterrupt
        stop.set()  # finish in-flight requests, then report

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        if options.progress == "live":
            with LiveStatus(console, config.profile.unit) as live:
                result = run_load(config, on_second=live.update, stop_event=stop)
        elif options.progress == "lines":

            def _line(snap: SecondStats) -> None:
                if round(snap.t) % 10 == 0:
                    console.print(status_line(snap, config.profile.unit), highlight=False, soft_wrap=True)

            result = run_load(config, on_second=_line, stop_event=stop)
        else:
            result = run_load(config, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if options.report is not None:
        write_json(result, options.report)
    if options.csv is not None:
        write_csv(result, options.csv)
    if emit is not None:
        emit({"passed": result.passed, "notes": result.notes, "summary": result.summary()})
    elif out is not None:
        out.print(summary_table(result))
    if not result.passed:
        summary = result.summary()
        why = "; ".join(first_errors(result.samples))
        raise LoadError(
            f"error rate {result.error_rate:.2%} is above --max-error-rate {config.max_error_rate:.2%} "
            f"({summary['errors']} of {summary['requests']} requests: {summary['errors_by_class']}); first: {why}"
        )
    return result

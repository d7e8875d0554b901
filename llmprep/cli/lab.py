"""Load and the lab: `load` (the streaming load generator) and `lab` (the local autoscaling lab)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from llmprep.cli.options import JsonOption, console, emit_json


def load_cmd(
    url: Annotated[list[str], typer.Option("--url", help="Triton HOST:PORT or Service name; repeat for round-robin.")],
    protocol: Annotated[str, typer.Option(help="grpc (ModelStreamInfer) or http (generate_stream).")] = "grpc",
    model: Annotated[
        str, typer.Option(help="ensemble, tensorrt_llm_bls or the llmapi tensorrt_llm model.")
    ] = "ensemble",
    concurrency: Annotated[
        int | None, typer.Option(help="Closed loop: N clients, each sends its next request when one ends.")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Open loop: Poisson arrivals at R requests per second.")] = None,
    profile: Annotated[Path | None, typer.Option(help="YAML stages: ramp / hold / step of clients or rate.")] = None,
    duration: Annotated[str, typer.Option(help="With --concurrency/--rate: 60s, 5m, or forever.")] = "60s",
    input_tokens: Annotated[float, typer.Option(help="Synthetic prompt length, mean (tokens).")] = 128,
    input_stddev: Annotated[float, typer.Option(help="Synthetic prompt length, standard deviation.")] = 0,
    output_tokens: Annotated[float, typer.Option(help="Requested output length, mean (tokens).")] = 64,
    output_stddev: Annotated[float, typer.Option(help="Requested output length, standard deviation.")] = 0,
    prompts: Annotated[
        Path | None, typer.Option(help='JSONL prompts: {"text": ..., "output_tokens": N} a line.')
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for prompts and arrivals.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write every sample and the percentiles as JSON.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write one CSV row per request.")] = None,
    max_error_rate: Annotated[float, typer.Option(help="Exit 1 when the error rate is above this fraction.")] = 0.01,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 60.0,
    fixed_output: Annotated[
        bool, typer.Option(help="Ask for exactly the output length (min_length/min_tokens/ignore_eos).")
    ] = True,
    extra_input: Annotated[
        list[str] | None, typer.Option(help="Send another model input, NAME=VALUE (e.g. end_id=-1).")
    ] = None,
    connections: Annotated[int, typer.Option(help="Connections per target (each balanced by kube-proxy).")] = 1,
    reconnect_every: Annotated[
        str, typer.Option(help="Re-open connections this often (e.g. 30s) so new pods get load; 0 = never.")
    ] = "0",
    wait_ready: Annotated[
        str, typer.Option(help="Keep trying to reach the model this long at start (e.g. 10m).")
    ] = "0",
    max_in_flight: Annotated[
        int, typer.Option(help="Open loop: drop (and count) arrivals beyond this many in flight.")
    ] = 10_000,
    max_samples: Annotated[
        int | None, typer.Option(help="Keep only the latest N samples in memory (for runs without end).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send streaming LLM requests to Triton and report TTFT, inter-token and end-to-end latency."""
    from llmprep.load.command import LoadOptions, run_command

    options = LoadOptions(
        urls=url,
        protocol=protocol,
        model=model,
        concurrency=concurrency,
        rate=rate,
        profile=profile,
        duration=duration,
        input_tokens=input_tokens,
        input_stddev=input_stddev,
        output_tokens=output_tokens,
        output_stddev=output_stddev,
        prompts=prompts,
        seed=seed,
        report=report,
        csv=csv,
        max_error_rate=max_error_rate,
        timeout=timeout,
        fixed_output=fixed_output,
        extra_inputs=extra_input or [],
        connections=connections,
        reconnect_every=reconnect_every,
        wait_ready=wait_ready,
        max_in_flight=max_in_flight,
        max_samples=max_samples,
        progress="none" if as_json else ("live" if console.is_terminal else "lines"),
    )
    run_command(options, console, None if as_json else Console(), emit_json if as_json else None)


def lab_cmd(
    values: Annotated[
        list[Path] | None, typer.Option("--values", "-f", help="Chart values file, after the scenario's; repeatable.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Helm --set expression, after every values file; repeatable.")
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option("--scenario", help="Scenario file (load, values, cost model, speed, SLO); default: embedded."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for timeseries.csv, report.json, report.md, lab.png.")
    ] = Path("lab-out"),
    sync_period: Annotated[
        str | None,
        typer.Option("--sync-period", help="HPA sync period in cluster time, e.g. 15s (divided by --speed)."),
    ] = None,
    speed: Annotated[
        float | None, typer.Option("--speed", help="Time compression of the control loop (scenario default, e.g. 5).")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Chart folder (default: the chart shipped with llmprep).")
    ] = None,
) -> None:
    """Run the chart's rules and HPA against real Triton replicas, Prometheus and a load; plot the result."""
    from llmprep.lab.run import run_command

    try:
        result = run_command(
            scenario_file=scenario,
            values_files=values or [],
            sets=set_ or [],
            out_dir=out,
            sync_period=sync_period,
            speed=speed,
            chart_dir=chart,
            console=console,
        )
    except KeyboardInterrupt:  # a second Ctrl-C: clean-up ran in the lab's finally blocks
        console.print("[red]interrupted[/]")
        sys.exit(130)
    sys.stdout.write(f"{result.paths['plot']}\n")
    if result.interrupted:  # the first Ctrl-C stops the lab gracefully; say so in the exit code
        console.print("[red]interrupted[/]: the report covers the run up to the interruption")
        sys.exit(130)

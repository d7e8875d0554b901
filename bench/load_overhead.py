"""Load-generator overhead: `llmprep load` vs aiperf vs a bare tritonclient gRPC loop, same server, same load.

One real tritonserver (nvidia-pytriton's Triton 2.51) serves two models from bench/models:
`fast` (answers at once: the generator is the bottleneck) and `stream` (decoupled, 16 responses
10 ms apart: TTFT and per-token handling). Every generator runs as its own process on the same
machine, against the same model, at the same concurrency, in rounds (each round runs every
generator once, so drift hits all alike):

- `floor (gRPC unary)` / `floor (gRPC stream)`: bench/floor.py, the least a Python client can do;
- `llmprep load (gRPC)` and `llmprep load (HTTP)`: the CLI, as users run it;
- `aiperf (HTTP)`: aiperf in its own venv (.venv-aiperf), template endpoint on Triton's
  `generate` / `generate_stream`, the tiny tokenizer from a local path.

Server-side time comes from Triton's statistics API (`/v2/models/<m>/stats`, the delta over each
run): for `fast`, success time per request (receipt to response). For the decoupled `stream`
model Triton's request time ends when `execute()` hands the request off, so server-side TTFT =
queue + compute_input (statistics API) + the model's own `execute()`→first-response time (its
`bench_first_response_seconds_total` counter on /metrics).

    python -m bench.load_overhead                 # full run (~12 min on 2 cores)
    python -m bench.load_overhead --quick         # 2-s runs, one round, no aiperf unless installed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench._common import DOCS, ROOT, command_line, fmt, median, percentile, section_header, table, write_section

NAME = "load_overhead"
MODELS = Path(__file__).resolve().parent / "models"
AIPERF = ROOT / ".venv-aiperf" / "bin" / "aiperf"
INPUT_TOKENS = 16
OUTPUT_TOKENS = 16


@dataclass
class Run:
    """One generator's run: what the client saw and what the server counted meanwhile."""

    generator: str
    requests: int
    seconds: float
    latency_s: list[float]
    ttft_s: list[float]
    cpu_s: float
    server: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")


@dataclass(frozen=True)
class Server:
    http: str
    grpc: str
    metrics: str


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def server_counters(server: Server, model: str) -> dict[str, float]:
    """Triton's cumulative statistics for `model` (count and ns per phase) plus the stream model's counters."""
    stats = _get_json(f"{server.http}/v2/models/{model}/stats")["model_stats"][0]["inference_stats"]
    out = {
        f"{phase}_{key}": float(stats[phase][key])
        for phase in ("success", "queue", "compute_input", "compute_infer")
        for key in ("count", "ns")
    }
    with urllib.request.urlopen(server.metrics, timeout=10) as response:
        text = response.read().decode()
    for name in ("bench_first_response_seconds_total", "bench_first_responses_total"):
        match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+-]+)$", text, re.M)
        out[name] = float(match.group(1)) if match else 0.0
    return out


def server_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Per-request server-side means (seconds) over one run."""
    d = {k: after[k] - before[k] for k in after}
    count = d["success_count"] or float("nan")
    first = d["bench_first_responses_total"]
    out = {
        "requests": d["success_count"],
        "latency_s": d["success_ns"] / count / 1e9,
        "queue_s": d["queue_ns"] / count / 1e9,
        "compute_input_s": d["compute_input_ns"] / count / 1e9,
    }
    out["ttft_s"] = (
        out["queue_s"] + out["compute_input_s"] + d["bench_first_response_seconds_total"] / first
        if first
        else float("nan")
    )
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_process(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600, cwd: Path = ROOT
) -> tuple[str, float]:
    cpu = _children_cpu()
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}… failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc.stdout, _children_cpu() - cpu


def run_floor(server: Server, model: str, concurrency: int, duration: float, rpc: str) -> Run:
    argv = [
        sys.executable,
        "-m",
        "bench.floor",
        "--url",
        server.grpc,
        "--model",
        model,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--rpc",
        rpc,
        "--max-tokens",
        str(OUTPUT_TOKENS),
        "--prompt",
        "hello " * INPUT_TOKENS,
    ]
    if model == "stream":
        argv.append("--stream-input")
    out, cpu = _run_process(argv)
    data = json.loads(out)
    if data["errors"]:
        raise RuntimeError(f"bench.floor: {data['errors']} requests failed on {model}")
    return Run(f"floor (gRPC {rpc})", data["requests"], data["seconds"], data["latency_s"], data["ttft_s"], cpu)


def run_llmprep(server: Server, model: str, concurrency: int, duration: float, protocol: str, work: Path) -> Run:
    report = work / f"llmprep-{model}-{protocol}.json"
    url = server.grpc if protocol == "grpc" else server.http.removeprefix("http://")
    argv = [
        sys.executable,
        "-m",
        "llmprep.cli",
        "load",
        "--url",
        url,
        "--protocol",
        protocol,
        "--model",
        model,
        "--concurrency",
        str(concurrency),
        "--duration",
        f"{duration:g}s",
        "--input-tokens",
        str(INPUT_TOKENS),
        "--output-tokens",
        str(OUTPUT_TOKENS),
        "--report",
        str(report),
        "--json",
    ]
    _, cpu = _run_process(argv)
    data = json.loads(report.read_text())
    samples = [s for s in data["samples"] if not s.get("error")]
    name = f"llmprep load ({'gRPC' if protocol == 'grpc' else 'HTTP'})"
    return Run(
        name,
        len(samples),
        float(data["summary"]["duration_s"]),
        [s["e2e"] for s in samples],
        [s["ttft"] for s in samples if s.get("ttft") is not None],
        cpu,
    )


def write_aiperf_templates(work: Path) -> dict[str, Path]:
    paths = {}
    for model, stream in (("fast", False), ("stream", True)):
        path = work / f"aiperf-{model}.jinja"
        stream_field = ', "stream": true' if stream else ""
        body = '{"text_input": {{ text|tojson }}, "max_tokens": {{ max_tokens or ' + str(OUTPUT_TOKENS) + " }}"
        body += stream_field + "}"
        path.write_text(body + "\n")
        paths[model] = path
    return paths


def run_aiperf(server: Server, model: str, concurrency: int, duration: float, work: Path, tokenizer: Path) -> Run:
    stream = model == "stream"
    artifacts = work / f"aiperf-{model}-{time.monotonic_ns()}"
    template = write_aiperf_templates(work)[model]
    argv = [
        str(AIPERF),
        "profile",
        "-m",
        model,
        "--endpoint-type",
        "template",
        "--custom-endpoint",
        f"/v2/models/{model}/{'generate_stream' if stream else 'generate'}",
        "--url",
        server.http,
        "--extra-inputs",
        f"payload_template:{template}",
        "--extra-inputs",
        "response_field:text_output",
        "--tokenizer",
        str(tokenizer),
        "--concurrency",
        str(concurrency),
        "--benchmark-duration",
        f"{duration:g}",
        "--prompt-input-tokens-mean",
        str(INPUT_TOKENS),
        "--prompt-output-tokens-mean",
        str(OUTPUT_TOKENS),
        "--ui-type",
        "none",
        "--output-artifact-dir",
        str(artifacts),
        "--no-server-metrics",
        "--no-gpu-telemetry",
        *(["--streaming"] if stream else []),
    ]
    _, cpu = _run_process(argv, cwd=work)
    data = json.loads((artifacts / "profile_export_aiperf.json").read_text())
    latencies: list[float] = []
    ttfts: list[float] = []
    for line in (artifacts / "profile_export.jsonl").read_text().splitlines():
        record = json.loads(line)
        metrics = record.get("metrics") or {}
        if (
            record.get("metadata", {}).get("benchmark_phase", "profiling") != "profiling"
            or "request_latency" not in metrics
        ):
            continue
        latencies.append(metrics["request_latency"]["value"] / 1000)
        ttft = metrics.get("time_to_first_token")
        ttfts.append((ttft or metrics["request_latency"])["value"] / 1000)
    seconds = float(data["benchmark_duration"]["avg"])
    shutil.rmtree(artifacts, ignore_errors=True)
    return Run("aiperf (HTTP)", len(latencies), seconds, latencies, ttfts, cpu)


def measured(server: Server, model: str, go: Callable[[], Run]) -> Run:
    before = server_counters(server, model)
    run = go()
    run.server = server_delta(before, server_counters(server, model))
    return run


def _ms(value: float) -> str:
    return fmt(value * 1000, 2)


def summarize(runs: Sequence[Run], floor_name: str) -> list[dict[str, Any]]:
    """Per generator: medians over rounds of throughput, client p50/mean, server mean, overheads."""
    by: dict[str, list[Run]] = {}
    for run in runs:
        by.setdefault(run.generator, []).append(run)
    floors = by.get(floor_name, [])
    floor_p50 = median([percentile(r.latency_s, 50) for r in floors])
    floor_tput = median([r.throughput for r in floors])
    floor_ttft = median([percentile(r.ttft_s, 50) for r in floors])
    rows = []
    for name, group in by.items():
        tput = median([r.throughput for r in group])
        p50 = median([percentile(r.latency_s, 50) for r in group])
        mean = median([sum(r.latency_s) / len(r.latency_s) for r in group if r.latency_s])
        server = median([r.server.get("latency_s", float("nan")) for r in group])
        ttft_p50 = median([percentile(r.ttft_s, 50) for r in group])
        ttft_mean = median([sum(r.ttft_s) / len(r.ttft_s) for r in group if r.ttft_s])
        server_ttft = median([r.server.get("ttft_s", float("nan")) for r in group])
        cpu_ms = median([r.cpu_s / r.requests * 1000 for r in group if r.requests])
        rows.append(
            {
                "generator": name,
                "rounds": len(group),
                "throughput": tput,
                "vs_floor": tput / floor_tput,
                "p50": p50,
                "mean": mean,
                "server": server,
                "overhead_mean": mean - server,
                "p50_over_floor": p50 - floor_p50,
                "ttft_p50": ttft_p50,
                "ttft_mean": ttft_mean,
                "server_ttft": server_ttft,
                "ttft_overhead": ttft_mean - server_ttft,
                "ttft_p50_over_floor": ttft_p50 - floor_ttft,
                "cpu_ms": cpu_ms,
                "requests": sum(r.requests for r in group),
            }
        )
    return rows


def verdicts(rows: Sequence[Mapping[str, Any]], floor_name: str) -> list[str]:
    """The issue's three targets for `llmprep load (gRPC)`, each met or missed."""
    by = {r["generator"]: r for r in rows}
    ours = by.get("llmprep load (gRPC)")
    if ours is None:
        return []
    out = []
    aiperf = by.get("aiperf (HTTP)")
    if aiperf is not None:
        ok = ours["throughput"] >= aiperf["throughput"]
        out.append(
            f"throughput ≥ aiperf's: {fmt(ours['throughput'], 0)} vs {fmt(aiperf['throughput'], 0)} req/s "
            f"— {'met' if ok else 'missed'}"
        )
    ok = ours["vs_floor"] >= 0.8
    out.append(f"throughput ≥ 80 % of {floor_name}: {fmt(ours['vs_floor'] * 100, 0)} % — {'met' if ok else 'missed'}")
    ok = ours["p50_over_floor"] <= 0.001
    out.append(f"p50 latency ≤ 1 ms over {floor_name}: {_ms(ours['p50_over_floor'])} ms — {'met' if ok else 'missed'}")
    return out


def render_fast(rows: Sequence[Mapping[str, Any]], concurrency: int, floor_name: str) -> list[str]:
    lines = [
        table(
            [
                "generator",
                "req/s",
                "% of floor",
                "client p50 ms",
                "client mean ms",
                "server mean ms",
                "client − server (mean) ms",
                "p50 over floor ms",
                "client CPU ms/req (incl. start)",
                "requests",
            ],
            [
                [
                    r["generator"],
                    fmt(r["throughput"], 0),
                    fmt(r["vs_floor"] * 100, 0),
                    _ms(r["p50"]),
                    _ms(r["mean"]),
                    _ms(r["server"]),
                    _ms(r["overhead_mean"]),
                    _ms(r["p50_over_floor"]),
                    fmt(r["cpu_ms"], 2),
                    r["requests"],
                ]
                for r in rows
            ],
        )
    ]
    lines += ["", f"Targets for `llmprep load` (gRPC) at concurrency {concurrency}, against {floor_name}:", ""]
    lines += [f"- {v}" for v in verdicts(rows, floor_name)]
    return lines


def render_stream(rows: Sequence[Mapping[str, Any]], concurrency: int, floor_name: str) -> list[str]:
    lines = [
        table(
            [
                "generator",
                "req/s",
                "% of floor",
                "TTFT p50 ms",
                "TTFT mean ms",
                "server TTFT mean ms",
                "TTFT client − server ms",
                "TTFT p50 over floor ms",
                "e2e p50 ms",
                "p50 over floor ms",
                "client CPU ms/req (incl. start)",
                "requests",
            ],
            [
                [
                    r["generator"],
                    fmt(r["throughput"], 1),
                    fmt(r["vs_floor"] * 100, 0),
                    _ms(r["ttft_p50"]),
                    _ms(r["ttft_mean"]),
                    _ms(r["server_ttft"]),
                    _ms(r["ttft_overhead"]),
                    _ms(r["ttft_p50_over_floor"]),
                    _ms(r["p50"]),
                    _ms(r["p50_over_floor"]),
                    fmt(r["cpu_ms"], 2),
                    r["requests"],
                ]
                for r in rows
            ],
        )
    ]
    lines += ["", f"Targets for `llmprep load` (gRPC) at concurrency {concurrency}, against {floor_name}:", ""]
    lines += [f"- {v}" for v in verdicts(rows, floor_name)]
    return lines


def start_server(work: Path) -> Any:
    from llmprep.proc import free_port
    from llmprep.serve.triton import TritonProcess

    repository = work / "models"
    shutil.copytree(MODELS, repository, ignore=shutil.ignore_patterns("__pycache__"))
    server = TritonProcess(
        repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=work / "triton.log",
        exit_timeout_secs=2,
    )
    server.start()
    server.wait_ready(120)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-s runs, one round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=8, help="clients on the fast model")
    parser.add_argument("--stream-concurrency", type=int, default=16, help="clients on the streaming model")
    parser.add_argument("--no-aiperf", action="store_true", help="leave aiperf out")
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file whose section is written")
    args = parser.parse_args(argv)
    rounds, duration = (1, 2.0) if args.quick else (args.rounds, args.duration)
    use_aiperf = AIPERF.exists() and not args.no_aiperf
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        from llmprep.tinytok import write_tiny_tokenizer

        tokenizer = write_tiny_tokenizer(work / "tokenizer")
        triton = start_server(work)
        server = Server(triton.http_url, triton.grpc_url, triton.metrics_url)
        results: dict[str, list[Run]] = {"fast": [], "stream": []}
        try:
            plans: dict[str, list[Callable[[], Run]]] = {}
            for model, conc in (("fast", args.concurrency), ("stream", args.stream_concurrency)):
                plan: list[Callable[[], Run]] = []
                if model == "fast":
                    plan.append(partial(run_floor, server, model, conc, duration, "unary"))
                plan += [
                    partial(run_floor, server, model, conc, duration, "stream"),
                    partial(run_llmprep, server, model, conc, duration, "grpc", work),
                    partial(run_llmprep, server, model, conc, duration, "http", work),
                ]
                if use_aiperf:
                    plan.append(partial(run_aiperf, server, model, conc, duration, work, tokenizer))
                plans[model] = plan
            for model, plan in plans.items():
                plan[0]()  # warm the model and the page cache; not counted
                for index in range(rounds):
                    print(f"{model}: round {index + 1}/{rounds}", flush=True)
                    for go in plan:
                        run = measured(server, model, go)
                        print(
                            f"  {run.generator}: {run.throughput:.1f} req/s, p50 "
                            f"{percentile(run.latency_s, 50) * 1000:.2f} ms",
                            flush=True,
                        )
                        results[model].append(run)
        finally:
            triton.stop()
    # `llmprep load` calls a model that is not decoupled with ModelInfer (one response), a decoupled one
    # with a ModelStreamInfer stream per request: each is held against the floor making the same call.
    fast_rows = summarize(results["fast"], "floor (gRPC unary)")
    stream_rows = summarize(results["stream"], "floor (gRPC stream)")
    lines = section_header("Load-generator overhead (issue 8, item 4)", command_line("bench.load_overhead", argv))
    lines += [
        f"One tritonserver 2.51 (CPU) serving `bench/models`; every generator is its own process on the same 2 cores as "
        f"the server, {rounds} round(s) of {duration:g} s per generator, generators interleaved within each round; the "
        f"table shows medians over rounds. Prompts of {INPUT_TOKENS} tokens asking for {OUTPUT_TOKENS}. "
        "*server* = Triton's statistics API over the same run. *client CPU* = user + system CPU of the generator's "
        "process tree per request, its start-up included (aiperf starts several processes and loads a tokenizer). aiperf: "
        + ("aiperf " + _aiperf_version() if use_aiperf else "not run")
        + ".",
        "",
        f"### `fast` model (answers at once), concurrency {args.concurrency}",
        "",
    ]
    lines += [
        "`fast` is not decoupled, so `llmprep load` calls it with `ModelInfer`, as the unary floor does; `floor (gRPC "
        "stream)` shows what a stream per request (the call a decoupled model needs) costs the same client.",
        "",
    ]
    lines += render_fast(fast_rows, args.concurrency, "floor (gRPC unary)")
    lines += [
        "",
        f"### `stream` model (decoupled, {OUTPUT_TOKENS} responses 10 ms apart), concurrency {args.stream_concurrency}",
        "",
        "Server-side TTFT = queue + compute_input (statistics API) + the model's own `execute()`→first response (its "
        "counter on /metrics): Triton's request time for a decoupled model ends when `execute()` hands the request off.",
        "",
    ]
    lines += render_stream(stream_rows, args.stream_concurrency, "floor (gRPC stream)")
    body = "\n".join(lines) + "\n"
    write_section(NAME, body, args.out)
    print(body)
    return 0


def _aiperf_version() -> str:
    try:
        out = subprocess.run([str(AIPERF), "--version"], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())

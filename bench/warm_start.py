"""Warm start: `llmprep prepare` on a cold vs a warm cache, and a replica's time to ready, cold vs warm.

Part 1 runs `llmprep prepare` through the CLI, as the chart's init container does, against the
TensorRT-LLM test doubles (tests/doubles: this machine has no TensorRT-LLM and no GPU) and an
offline Hugging Face Hub cache. Cold = an empty artifact cache (download from the Hub cache,
convert + build for the engine runtime, write the repository); warm = the same command again.
The doubles' own work (convert_checkpoint.py and trtllm-build, which on a GPU take minutes) is
timed separately by re-running their recorded command lines, so llmprep's own cold cost is
cold minus doubles. `llmprep --version` is the floor any CLI call pays (Python start + imports).

Part 2 starts `llmprep serve --repository` of a stand-in repository (llmprep.repo, tiny
tokenizer) and times until `/v2/health/ready`: cold = the first start after writing the
repository; warm = a restart of the same repository (page cache and Python bytecode warm).

    python -m bench.warm_start            # the full run (~2 min on 2 cores)
    python -m bench.warm_start --quick    # one repetition of each, for the smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._common import DOCS, ROOT, command_line, fmt, median, section_header, table, write_section

NAME = "warm_start"
REPO = "acme/tiny-llama"
WARM_TARGET_S = 1.0


@dataclass
class Timed:
    wall_s: float
    inner_s: float | None = None  # what the command itself reports (`--json` "seconds")


def _cli(args: Sequence[str], env: Mapping[str, str], timeout: float = 300) -> tuple[Timed, dict[str, object]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "llmprep.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"llmprep {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    inner = data.get("seconds")
    return Timed(wall, float(inner) if isinstance(inner, (int, float)) else None), data


def _rerun_doubles(calls: Sequence[dict[str, object]], env: Mapping[str, str], scratch: Path) -> float:
    """Re-run the recorded convert/build command lines into fresh folders; their total wall time."""
    total = 0.0
    converted = scratch / "converted"
    engines = scratch / "engines"
    scratch.mkdir(parents=True, exist_ok=True)
    for call in calls:
        raw = call["argv"]
        argv = [str(a) for a in raw] if isinstance(raw, list) else []
        for flag, value in (
            ("--output_dir", converted if call["tool"] == "convert" else engines),
            ("--checkpoint_dir", converted),
        ):
            if flag in argv:
                argv[argv.index(flag) + 1] = str(value)
        command = [sys.executable, *argv] if argv[0].endswith(".py") else argv
        started = time.perf_counter()
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            env={**os.environ, **env, "LLMPREP_DOUBLE_LOG": ""},
            cwd=scratch,
            timeout=300,
        )
        total += time.perf_counter() - started
    shutil.rmtree(converted, ignore_errors=True)
    shutil.rmtree(engines, ignore_errors=True)
    return total


def bench_prepare(work: Path, kind: str, cold_runs: int, warm_runs: int) -> dict[str, object]:
    """Cold and warm `llmprep prepare` for one TensorRT-LLM double (`engine` 1.2.1 or `pytorch` 1.3.0)."""
    from tests.doubles import install_release, make_hub_cache, tiny_checkpoint_files

    base = work / f"prepare-{kind}"
    rel = install_release(base, kind)
    hub = base / "hub"
    make_hub_cache(hub, REPO, tiny_checkpoint_files())
    env = dict(rel.env)
    colds: list[Timed] = []
    doubles: list[float] = []
    cache = base / "cache-0"
    for index in range(cold_runs):
        cache = base / f"cache-{index}"
        rel.log.unlink(missing_ok=True)
        timed, data = _cli(
            ["prepare", "--set", f"model.name={REPO}", "--cache", str(cache), "--hub-cache", str(hub), "--json"], env
        )
        if not data.get("built"):
            raise RuntimeError(f"cold prepare {index} did not build: {data}")
        colds.append(timed)
        doubles.append(_rerun_doubles(rel.calls(), env, base / f"scratch-{index}") if rel.calls() else 0.0)
    warms: list[Timed] = []
    for _ in range(warm_runs):
        # No Hub cache at all: a warm start must not need one.
        timed, data = _cli(
            [
                "prepare",
                "--set",
                f"model.name={REPO}",
                "--cache",
                str(cache),
                "--hub-cache",
                str(base / "no-hub"),
                "--json",
            ],
            env,
        )
        if data.get("built"):
            raise RuntimeError(f"warm prepare built again: {data}")
        warms.append(timed)
    tools = sorted({str(c["tool"]) for c in rel.calls()})
    return {
        "kind": kind,
        "runtime": data.get("runtime", kind),
        "cold": colds,
        "warm": warms,
        "doubles": doubles,
        "tools": tools,
    }


def bench_cli_floor(runs: int) -> list[float]:
    """`llmprep --version`: the interpreter start and imports every CLI call pays."""
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "llmprep.cli", "--version"], check=True, capture_output=True, cwd=ROOT)
        out.append(time.perf_counter() - started)
    return out


def _time_to_ready(repository: Path, log_path: Path, timeout: float = 120) -> float:
    """Start `llmprep serve --repository` and return seconds until /v2/health/ready; then stop it (SIGTERM)."""
    from llmprep.proc import free_port
    from llmprep.serve.triton import http_ok

    http, grpc, metrics = free_port(), free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "llmprep.cli",
        "serve",
        "--repository",
        str(repository),
        "--address",
        "127.0.0.1",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--exit-timeout-secs",
        "2",
    ]
    with log_path.open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True
        )
    try:
        deadline = started + timeout
        while True:
            if http_ok(f"http://127.0.0.1:{http}/v2/health/ready", timeout=0.5):
                return time.perf_counter() - started
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llmprep serve exited with {proc.returncode}; log {log_path} ends: {tail}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"llmprep serve not ready after {timeout} s; log: {log_path}")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _ready_with_retry(repository: Path, log_path: Path, failures: list[str]) -> float:
    """Time to ready; a start that dies (e.g. a port another process took meanwhile) is retried and counted."""
    for attempt in range(3):
        try:
            return _time_to_ready(repository, log_path.with_suffix(f".{attempt}.log"))
        except RuntimeError as exc:
            failures.append(str(exc)[-300:])
    raise RuntimeError(f"llmprep serve failed to start 3 times: {failures[-1]}")


def bench_ready(work: Path, cold_runs: int, warm_runs: int) -> dict[str, list[float]]:
    """Replica time-to-ready: each cold start follows a fresh write of the repository; warm = restarts."""
    from llmprep.repo import write_repository
    from llmprep.spec import parse_spec

    spec = parse_spec({"model": {"name": "gpt2"}}).with_runtime("engine")
    writes: list[float] = []
    colds: list[float] = []
    warms: list[float] = []
    failures: list[str] = []
    repository = work / "repo-0"
    for index in range(cold_runs):
        repository = work / f"repo-{index}"
        started = time.perf_counter()
        write_repository(spec, out_dir=repository, engine="standin")
        writes.append(time.perf_counter() - started)
        colds.append(_ready_with_retry(repository, work / f"serve-{index}.log", failures))
    for index in range(warm_runs):
        warms.append(_ready_with_retry(repository, work / f"serve-warm-{index}.log", failures))
    for line in failures:
        print(f"a start failed and was retried: {line}", file=sys.stderr)
    return {"write": writes, "cold": colds, "warm": warms, "failed_starts": [float(len(failures))]}


def _ms(values: Sequence[float]) -> str:
    return fmt(median(values) * 1000, 0)


def _range_ms(values: Sequence[float]) -> str:
    return f"{min(values) * 1000:.0f}–{max(values) * 1000:.0f}" if values else "–"


def render(
    results: Sequence[dict[str, object]], floor: Sequence[float], ready: Mapping[str, list[float]], command: str
) -> str:
    lines = section_header("Warm start (issue 8, item 3)", command)
    lines += [
        "### `llmprep prepare`: cold vs warm cache",
        "",
        "Through the CLI (`python -m llmprep.cli prepare … --json`, a new process each time, as the init container runs "
        "it) with the TensorRT-LLM test doubles and an offline Hub cache. Times are medians (range in brackets) of the "
        "process's wall time; *in-process* is the `seconds` the command reports (without interpreter start and imports). "
        "*doubles* is the convert + build work of the test doubles, re-run alone from their recorded command lines "
        "(on a GPU this is the minutes-long part); *llmprep's own* = cold − doubles.",
        "",
    ]
    rows = []
    for r in results:
        cold = [t.wall_s for t in r["cold"]]  # type: ignore[attr-defined]
        warm = [t.wall_s for t in r["warm"]]  # type: ignore[attr-defined]
        warm_inner = [t.inner_s for t in r["warm"] if t.inner_s is not None]  # type: ignore[attr-defined]
        cold_inner = [t.inner_s for t in r["cold"] if t.inner_s is not None]  # type: ignore[attr-defined]
        doubles = list(r["doubles"])  # type: ignore[call-overload]
        own = [c - d for c, d in zip(cold, doubles, strict=True)]
        verdict = "met" if median(warm) <= WARM_TARGET_S else "missed"
        rows.append(
            [
                f"`{r['runtime']}` ({', '.join(r['tools']) or 'no build tools'})",  # type: ignore[arg-type]
                f"{_ms(cold)} ({_range_ms(cold)})",
                _ms(cold_inner),
                _ms(doubles),
                _ms(own),
                f"{_ms(warm)} ({_range_ms(warm)})",
                _ms(warm_inner),
                f"{len(r['cold'])}/{len(r['warm'])}",  # type: ignore[arg-type]
                f"≤ {WARM_TARGET_S * 1000:.0f} ms: {verdict}",
            ]
        )
    lines.append(
        table(
            [
                "runtime (doubles run)",
                "cold wall ms",
                "cold in-process ms",
                "doubles ms",
                "llmprep's own cold ms",
                "warm wall ms",
                "warm in-process ms",
                "runs cold/warm",
                "warm target",
            ],
            rows,
        )
    )
    lines += [
        "",
        f"`llmprep --version` (interpreter start + CLI imports, the floor of any CLI call): "
        f"{_ms(floor)} ms median ({_range_ms(floor)}, {len(floor)} runs).",
        "",
    ]
    lines += [
        "### Replica time to ready: cold vs warm",
        "",
        "`llmprep serve --repository R --address 127.0.0.1` of a stand-in repository (`llmprep.repo.write_repository"
        '(spec, engine="standin")`: the in-flight batching layout with the stand-in `tensorrt_llm` model and the tiny '
        "tokenizer), timed from the process start to the first `200` from `/v2/health/ready` (polled every 20 ms). "
        "Cold = the first start after writing the repository (a new repository each time); warm = restarting the last "
        "one after a SIGTERM stop. Real tritonserver 2.51 (nvidia-pytriton wheel), Python backend, CPU only.",
        "",
    ]
    lines.append(
        table(
            ["start", "median s", "min s", "max s", "runs"],
            [
                [
                    "write the repository (in-process)",
                    fmt(median(ready["write"]), 2),
                    fmt(min(ready["write"]), 2),
                    fmt(max(ready["write"]), 2),
                    len(ready["write"]),
                ],
                [
                    "cold (first start after writing)",
                    fmt(median(ready["cold"]), 2),
                    fmt(min(ready["cold"]), 2),
                    fmt(max(ready["cold"]), 2),
                    len(ready["cold"]),
                ],
                [
                    "warm (restart)",
                    fmt(median(ready["warm"]), 2),
                    fmt(min(ready["warm"]), 2),
                    fmt(max(ready["warm"]), 2),
                    len(ready["warm"]),
                ],
            ],
        )
    )
    failed = int(ready.get("failed_starts", [0.0])[0])
    if failed:
        lines += ["", f"{failed} start(s) exited before ready and were retried (not timed); see the run's stderr."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warm_start", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of each (smoke test)")
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file whose section is written")
    args = parser.parse_args(argv)
    cold_runs, warm_runs = (1, 1) if args.quick else (3, 5)
    ready_cold, ready_warm = (1, 1) if args.quick else (3, 3)
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        work = Path(tmp)
        results = []
        for kind in ("engine", "pytorch"):
            print(f"prepare with the {kind} double: {cold_runs} cold, {warm_runs} warm", flush=True)
            results.append(bench_prepare(work, kind, cold_runs, warm_runs))
        floor = bench_cli_floor(1 if args.quick else 5)
        print(f"replica time to ready: {ready_cold} cold, {ready_warm} warm", flush=True)
        (work / "serve").mkdir()
        ready = bench_ready(work / "serve", ready_cold, ready_warm)
    body = render(results, floor, ready, command_line("bench.warm_start", argv))
    write_section(NAME, body, args.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`llmprep load` against a real tritonserver and a decoupled model that streams like the ensemble."""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bench.timed_tests import record
from llmprep.errors import LoadError
from llmprep.load import LoadConfig, LoadGenerator, Sample, SecondStats, constant, parse_profile, run_load
from llmprep.serve.triton import TritonProcess
from tests.conftest import free_port, run_cli

MODEL = "llm_stream"  # tests/load/data/repo: 2 ms a token, natural end of sequence after 3 tokens
PROTOCOLS = ["grpc", "http"]


def url(triton: TritonProcess, protocol: str) -> str:
    return f"127.0.0.1:{triton.grpc_port if protocol == 'grpc' else triton.http_port}"


def config(triton: TritonProcess, protocol: str = "grpc", **overrides: object) -> LoadConfig:
    fields: dict = {
        "targets": [url(triton, protocol)],
        "protocol": protocol,
        "model": MODEL,
        "profile": constant("clients", 2, 1.0),
        "input_tokens": 16,
        "output_tokens": 6,
        "timeout": 20.0,
    }
    fields.update(overrides)
    return LoadConfig(**fields)


def max_overlap(samples: list[Sample]) -> int:
    """The most requests that were open at one moment."""
    events = sorted(
        [(s.start, 1) for s in samples] + [(s.start + s.e2e, -1) for s in samples], key=lambda e: (e[0], e[1])
    )
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_closed_loop_streams_every_request_to_the_requested_length(triton: TritonProcess, protocol: str) -> None:
    result = run_load(config(triton, protocol))
    assert result.samples and all(s.ok for s in result.samples)
    assert {s.tokens_out for s in result.samples} == {6}
    assert all(s.ttft is not None and s.itl is not None and 0 < s.ttft < s.e2e for s in result.samples)
    assert max_overlap(result.samples) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_fixed_output_the_model_ends_at_its_own_end_of_sequence(triton: TritonProcess, protocol: str) -> None:
    result = run_load(config(triton, protocol, fixed_output=False))
    assert {s.tokens_out for s in result.samples} == {3}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_extra_end_id_input_reaches_the_model_typed_from_its_config(triton: TritonProcess, protocol: str) -> None:
    result = run_load(config(triton, protocol, fixed_output=False, extra_inputs={"end_id": "-1"}))
    assert {s.tokens_out for s in result.samples} == {6}  # the test model never ends a sequence with end_id -1


def ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0] * len(values)
    for rank, index in enumerate(order):
        out[index] = rank
    return out


def rank_correlation(x: list[float], y: list[float]) -> float:
    """Spearman's rho (no ties in continuous gaps)."""
    n, rx, ry = len(x), ranks(x), ranks(y)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True)) / (n * (n * n - 1))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_open_loop_sends_poisson_arrivals_at_the_rate(triton: TritonProcess, protocol: str) -> None:
    rate, duration, seed = 40.0, 2.0, 7
    result = run_load(config(triton, protocol, profile=constant("rate", rate, duration), seed=seed))
    assert result.samples and all(s.ok for s in result.samples) and result.dropped == 0
    # The arrivals are the generator's seeded exponential draws (llmprep.load.runner: Random(seed + 1)),
    # each sent once its gap has passed since the last send: never early, however busy the machine, so
    # the n-th request starts no earlier than the sum of the first n draws. (That they are sent on time,
    # exactly at those sums, is asserted in virtual time by tests/load/test_schedule_virtual_time.py;
    # how closely a real run follows them is measured by bench/timed_tests.py from the record below.)
    draws = random.Random(seed + 1)
    schedule = list(itertools.accumulate(draws.expovariate(rate) for _ in range(10 * int(rate * duration))))
    starts = sorted(s.start for s in result.samples)
    assert len(starts) < len(schedule)
    early = [
        (n, start, due)
        for n, (start, due) in enumerate(zip(starts, schedule[: len(starts)], strict=True))
        if start < due - 1e-6
    ]
    assert early == [], f"requests sent before their draw was due: {early[:3]}"
    fit = sum(1 for due in schedule if due <= duration + 0.05)
    if len(starts) >= 3:
        gaps = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
        drawn = [b - a for a, b in zip(schedule[: len(starts) - 1], schedule[1 : len(starts)], strict=True)]
        mean_d, mean_g = sum(drawn) / len(drawn), sum(gaps) / len(gaps)
        spread = sum((d - mean_d) ** 2 for d in drawn)
        slope = sum((d - mean_d) * (g - mean_g) for d, g in zip(drawn, gaps, strict=True)) / spread if spread else None
        record(
            "poisson_arrivals",
            protocol=protocol,
            sent=len(starts),
            scheduled=fit,
            spearman=rank_correlation(gaps, drawn),
            slope=slope,
        )


def test_a_two_stage_profile_switches_the_clients_live(triton: TritonProcess) -> None:
    profile = parse_profile({"stages": ["step to 1 for 1.5s", "step to 4 for 1.5s"]})
    seconds: list[SecondStats] = []
    result = run_load(config(triton, profile=profile), on_second=seconds.append)
    first = [s for s in result.samples if s.start + s.e2e < 1.5]
    second = [s for s in result.samples if s.start > 1.6]
    assert max_overlap(first) == 1 and max_overlap(second) == 4
    assert [snap.level for snap in seconds][:3] == [1, 4, 4]
    assert seconds == result.timeline


def test_a_ramp_down_lets_clients_finish_their_request_and_stop(triton: TritonProcess) -> None:
    profile = parse_profile({"stages": ["step to 4 for 1s", "step to 1 for 1.5s"]})
    result = run_load(config(triton, profile=profile))
    assert all(s.ok for s in result.samples)
    assert max_overlap([s for s in result.samples if s.start > 1.5]) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_over_the_timeout_is_classed_as_timeout(triton: TritonProcess, protocol: str) -> None:
    result = run_load(config(triton, protocol, output_tokens=200, timeout=0.1, profile=constant("clients", 1, 0.5)))
    assert result.samples and {s.error for s in result.samples} == {"timeout"}


def test_a_dead_target_among_live_ones_is_counted_as_unavailable(triton: TritonProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = run_load(config(triton, targets=[url(triton, "grpc"), dead]))
    by_target = {(s.target, s.error) for s in result.samples}
    assert by_target == {(url(triton, "grpc"), None), (dead, "unavailable")}
    assert not result.passed


def test_a_run_without_end_stops_when_asked_and_serves_snapshots(triton: TritonProcess) -> None:
    generator = LoadGenerator(config(triton, profile=constant("clients", 2, 0)))
    stop, seen, results = threading.Event(), [], []
    thread = threading.Thread(target=lambda: results.append(generator.run_sync(on_sample=seen.append, stop_event=stop)))
    thread.start()
    snapshot_seen = threading.Event()
    for _ in range(300):
        if generator.snapshot() is not None:
            snapshot_seen.set()
            break
        snapshot_seen.wait(0.05)
    stop.set()
    thread.join(60)
    assert not thread.is_alive() and snapshot_seen.is_set()
    assert results[0].samples == seen and len(seen) > 0


def test_a_model_that_is_not_there_is_reported_by_name(triton: TritonProcess) -> None:
    with pytest.raises(LoadError, match="cannot read model 'nope'"):
        run_load(config(triton, model="nope"))


def test_the_cli_writes_a_report_and_a_csv_with_every_sample(triton: TritonProcess, tmp_path: Path) -> None:
    report, table = tmp_path / "out" / "run.json", tmp_path / "run.csv"
    done = run_cli(
        "load",
        "--url",
        url(triton, "grpc"),
        "--model",
        MODEL,
        "--concurrency",
        "2",
        "--duration",
        "1s",
        "--output-tokens",
        "4",
        "--report",
        str(report),
        "--csv",
        str(table),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    rows = list(csv.DictReader(table.open()))
    assert len(data["samples"]) == len(rows) == data["summary"]["requests"] > 0
    assert data["passed"] is True and set(data["summary"]["ttft_s"]) >= {"p50", "p95", "p99"}
    assert "time to first token" in done.stdout


@pytest.mark.parametrize(("limit", "code"), [("0.01", 1), ("0.6", 0)])
def test_the_cli_exit_code_follows_the_error_budget(
    triton: TritonProcess, tmp_path: Path, limit: str, code: int
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"text": "tell me a story", "output_tokens": 4}\n{"text": "please FAIL now", "output_tokens": 4}\n'
    )
    report = tmp_path / "run.json"
    done = run_cli(
        "load",
        "--url",
        url(triton, "http"),
        "--protocol",
        "http",
        "--model",
        MODEL,
        "--rate",
        "20",
        "--duration",
        "1.5s",
        "--prompts",
        str(prompts),
        "--max-error-rate",
        limit,
        "--report",
        str(report),
    )
    assert done.returncode == code, done.stderr
    assert json.loads(report.read_text())["summary"]["errors_by_class"]["server"] > 0
    if code:
        assert "error rate" in done.stderr and "asked to fail" in done.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unreachable_server_is_reported_and_never_hangs(protocol: str) -> None:
    done = run_cli(
        "load",
        "--url",
        f"127.0.0.1:{free_port()}",
        "--protocol",
        protocol,
        "--duration",
        "1s",
        "--timeout",
        "5",
        timeout=60,
    )
    assert done.returncode == 1
    assert "no target answered" in done.stderr and "Traceback" not in done.stderr


def test_bad_options_exit_2_naming_the_option(triton: TritonProcess) -> None:
    done = run_cli("load", "--url", url(triton, "grpc"), "--concurrency", "2", "--rate", "3")
    assert done.returncode == 2 and "--concurrency and --rate" in done.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reconnecting_and_several_connections_lose_no_request(triton: TritonProcess, protocol: str) -> None:
    result = run_load(config(triton, protocol, connections=3, reconnect_every=0.3, profile=constant("clients", 3, 1.5)))
    assert len(result.samples) > 10 and all(s.ok for s in result.samples)


def test_an_open_loop_over_its_in_flight_cap_drops_and_counts_arrivals(triton: TritonProcess) -> None:
    result = run_load(config(triton, profile=constant("rate", 100, 1.0), output_tokens=100, max_in_flight=2))
    assert result.dropped > 0 and result.summary()["dropped"] == result.dropped
    assert max_overlap(result.samples) <= 2


def test_waiting_for_a_server_that_never_comes_ends_with_the_reason(tmp_path: Path) -> None:
    done = run_cli("load", "--url", f"127.0.0.1:{free_port()}", "--wait-ready", "2s", "--duration", "1s", timeout=60)
    assert done.returncode == 1 and "no target answered" in done.stderr


def test_a_bad_profile_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    profile = tmp_path / "ramp.yaml"
    profile.write_text("stages:\n  - ramp: {from: 1, to: 8, over: soon}\n")
    done = run_cli("load", "--url", "127.0.0.1:1", "--profile", str(profile))
    assert done.returncode == 2 and "ramp.yaml.stages[0].ramp.over" in done.stderr


def test_a_run_keeps_only_the_latest_samples_when_asked(triton: TritonProcess) -> None:
    seen: list[Sample] = []
    result = run_load(config(triton, max_samples=5), on_sample=seen.append)
    assert len(seen) > 5 and result.samples == seen[-5:]


def test_a_stop_while_waiting_for_the_server_ends_the_wait() -> None:
    stop = threading.Event()
    generator = LoadGenerator(
        LoadConfig(targets=[f"127.0.0.1:{free_port()}"], profile=constant("clients", 1, 1), wait_ready=600, timeout=2)
    )
    errors: list[Exception] = []

    def run() -> None:
        try:
            generator.run_sync(stop_event=stop)
        except LoadError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and "no target answered" in str(errors[0])


def served(triton: TritonProcess) -> float:
    """Requests the test model has answered so far, from Triton's metrics."""
    with urllib.request.urlopen(triton.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{") and f'model="{MODEL}"' in line
    )


def test_sigterm_drains_reports_and_exits_cleanly_like_a_client_pod_stopping(
    triton: TritonProcess, tmp_path: Path
) -> None:
    report = tmp_path / "run.json"
    before = served(triton)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmprep.cli",
            "load",
            "--url",
            url(triton, "grpc"),
            "--model",
            MODEL,
            "--concurrency",
            "2",
            "--duration",
            "forever",
            "--output-tokens",
            "4",
            "--report",
            str(report),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        while served(triton) <= before and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    data = json.loads(report.read_text(), parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert "time to first token" in out and data["summary"]["requests"] > 0
    assert data["config"]["stages"][0]["duration"] is None  # forever, written as JSON null

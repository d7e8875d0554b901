"""Time to first response and requests in flight as our models count them, on the lab's own parts:
stand-in repositories served by a real tritonserver 2.51, scraped by a real Prometheus that runs the
chart's rules, and the dashboard's queries asked of it.

Triton 2.51 exports no first-response histogram of its own (tests/data/triton_latency_metrics.csv),
so what the dashboard's time-to-first-token panels show in the lab is our models'
llmprep_first_response_histogram_ms, through the chart's `triton:first_response_ms:p95` fallback.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmprep import chart
from llmprep.lab.prometheus import PrometheusServer, ScrapeTarget
from llmprep.tinytok import write_tiny_tokenizer
from tests.conftest import ROOT
from tests.e2e.conftest import Server, grpc_stream, launch, metric, running, text_inputs

pytestmark = pytest.mark.slow

FAST = {"decodeMsPerStep": 2, "prefillMsPerToken": 0}
NAMESPACE, RELEASE = "llm", "gpt2"
PODS = {"engine": "gpt2-7d9c-engin", "pytorch": "gpt2-7d9c-torch"}
FIRST = "llmprep_first_response_histogram_ms_count"
IN_FLIGHT = "llmprep_requests_in_flight"
DASHBOARD = json.loads((ROOT / "chart" / "dashboards" / "llmprep-triton.json").read_text())
# The entry model a client streams from, and the model of ours that times its first response.
ENTRIES = {
    "bls": ("engine", "tensorrt_llm_bls", "tensorrt_llm_bls"),
    "llmapi": ("pytorch", "tensorrt_llm", "tensorrt_llm"),
    # The ensemble's first response is timed by the stand-in engine (arrival to first output).
    "ensemble": ("engine", "ensemble", "tensorrt_llm"),
}
ENGINE_STANDIN = ROOT / "llmprep" / "templates" / "standin" / "engine_model.py"


@dataclass
class Lab:
    servers: dict[str, Server]
    prometheus: PrometheusServer


def chart_rules(folder: Path) -> Path:
    """The chart's recorded signals for release gpt2 in namespace llm, with the chart's default window and interval."""
    import yaml

    values = chart.merge_values([], ["triton.image.name=registry.example/llmprep-triton:26.07"])
    groups = [g for g in chart.rule_groups(chart.render(values, release=RELEASE, namespace=NAMESPACE))]
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def stream(server: Server, model: str, max_tokens: int = 8) -> list[str]:
    inputs = text_inputs("llmapi" if server.runtime == "pytorch" else model, max_tokens, stream=True)
    return grpc_stream(server, model, inputs)


def scrape(server: Server) -> str:
    with urllib.request.urlopen(server.process.metrics_url, timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("first-response")
    tokenizer = write_tiny_tokenizer(tmp / "tokenizer")
    started = {runtime: launch(tmp, tokenizer, runtime, **FAST) for runtime in PODS}
    with running(started) as servers:
        targets = [
            ScrapeTarget(
                f"127.0.0.1:{server.process.metrics_port}", labels={"namespace": NAMESPACE, "pod": PODS[runtime]}
            )
            for runtime, server in servers.items()
        ]
        with PrometheusServer(targets=targets, rule_files=[chart_rules(tmp)]) as prometheus:
            prometheus.wait_for('up{job="triton"} == 1', lambda r: len(r) == len(PODS), timeout=60)
            yield Lab(servers, prometheus)


@pytest.mark.parametrize("entry", ["bls", "llmapi"])
def test_our_model_times_the_first_response_of_every_streamed_request(lab: Lab, entry: str) -> None:
    runtime, model, timer = ENTRIES[entry]
    server = lab.servers[runtime]
    before = metric(scrape(server), FIRST, model=timer)
    for _ in range(3):
        assert len(stream(server, model)) >= 1
    assert metric(scrape(server), FIRST, model=timer) == before + 3


@pytest.mark.skipif(
    "FirstResponse" not in ENGINE_STANDIN.read_text(),
    reason="the stand-in engine does not time its first response yet (the ensemble's timer)",
)
def test_the_stand_in_engine_times_the_ensembles_first_response(lab: Lab) -> None:
    runtime, model, timer = ENTRIES["ensemble"]
    server = lab.servers[runtime]
    before = metric(scrape(server), FIRST, model=timer)
    for _ in range(3):
        stream(server, model)
    assert metric(scrape(server), FIRST, model=timer) == before + 3


@pytest.mark.parametrize("entry", ["bls", "llmapi"])
def test_a_request_is_in_flight_until_its_final_response(lab: Lab, entry: str) -> None:
    runtime, model, counter = ENTRIES[entry]
    server = lab.servers[runtime]
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(metric(scrape(server), IN_FLIGHT, model=counter))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        stream(server, model, max_tokens=400)  # about a second of decoding at 2 ms a step
    finally:
        done.set()
        watcher.join()
    assert max(seen) == 1
    assert metric(scrape(server), IN_FLIGHT, model=counter) == 0


def _load(lab: Lab, seconds: float) -> None:
    """Streamed requests to every entry model of both pods, for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for runtime, model, _ in (ENTRIES["bls"], ENTRIES["llmapi"], ENTRIES["ensemble"]):
            stream(lab.servers[runtime], model)


def _panel(title: str) -> list[str]:
    (panel,) = [p for p in DASHBOARD["panels"] if p.get("title") == title]
    exprs = [t["expr"].replace("$__rate_interval", "1m") for t in panel["targets"]]
    return [re.sub(r"\$(namespace|pod)", lambda m: {"namespace": NAMESPACE, "pod": ".*"}[m.group(1)], e) for e in exprs]


def test_the_recorded_rule_and_the_dashboards_panels_show_time_to_first_response(lab: Lab) -> None:
    # Triton 2.51 has no family of its own: the rule's fallback to ours is what gives the value.
    assert not lab.prometheus.query("nv_inference_first_response_histogram_ms_count")
    loader = threading.Thread(target=_load, args=(lab, 20.0))
    loader.start()
    try:
        samples = lab.prometheus.wait_for(
            "triton:first_response_ms:p95 > 0", lambda r: len(r) == len(PODS), timeout=60, interval=1.0
        )
        assert {s.labels["pod"] for s in samples} == set(PODS.values())
        assert all(0 < s.value < 30_000 for s in samples)
        for title in ("Time to first response per pod (p95)", "Time to first response (p50, p95)"):
            for expr in _panel(title):
                values = [s.value for s in lab.prometheus.wait_for(expr, timeout=30)]
                assert values and all(math.isfinite(v) and v > 0 for v in values), (title, expr, values)
    finally:
        loader.join()

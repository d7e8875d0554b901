"""Running lab scenarios for the benchmarks: values files per configuration, the run, per-request samples.

The benchmarks drive the lab's library API (`llmprep.lab.run.run_lab`) with scenarios built
here. Each configuration is a values file layered after the lab's `cpu-standin.values.yaml`,
so the chart, its rules and its HPA are what a user would install with those values.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The seed's monitoring (NVIDIA's tutorial): 6 s scrape, 6 s evaluation, rate over 1 m, and the
# queue-to-compute ratio at 1 (1000m) per pod, with no HPA behavior (controller defaults).
SEED_MONITORING = {"podMonitor": {"interval": "6s"}, "prometheusRule": {"interval": "6s", "window": "1m"}}
SEED_METRIC = {"name": "triton:queue_compute:ratio", "value": "1000m"}

# The chart's default HPA inputs before issue 19 (both runtimes; the engine runtime keeps them):
# the waiting count and Triton's pending requests, 2 per pod each.
PREVIOUS_DEFAULTS = (
    {"name": "trtllm:requests_waiting", "value": "2"},
    {"name": "triton:pending_requests", "value": "2"},
)
# The PyTorch runtime's llmapi model, streaming: the runtime TensorRT-LLM keeps after mid-2026 and
# the one whose default inputs issue 19 changed.
PYTORCH_STREAMING = {"model": {"tensorrtLlm": {"runtime": "pytorch"}, "repository": {"llmapiDecoupled": True}}}

INPUT_TOKENS = 32  # the lab's prompts: short, so the batch of 4 limits a replica (batch-bound)
# KV-bound: longer prompts on a KV pool that holds 4 sequences while the batcher admits 8, so past
# 4 clients admitted requests wait for blocks (upstream's `waiting` = active - scheduled) and past 8
# the rest wait in the executor's queue. The load's prompts are words, and the lab's tiny tokenizer
# makes 96 of them 241-496 tokens (measured: with 256-token blocks each sequence took 2); blocks of
# 512 tokens make one block a sequence.
KV_INPUT_TOKENS = 96
KV_STANDIN: Mapping[str, Any] = {"maxInFlight": 8, "tokensPerBlock": 512, "kvCacheBlocks": 4}


@dataclass(frozen=True)
class Regime:
    """What limits a replica: its batch (the KV cache ample) or its KV cache (long sequences)."""

    name: str
    standin: Mapping[str, Any]
    input_tokens: int
    note: str


REGIMES = (
    Regime(
        "batch-bound", {}, INPUT_TOKENS, "4 requests at once, KV cache ample; the excess waits in the executor's queue"
    ),
    Regime(
        "kv-bound",
        KV_STANDIN,
        KV_INPUT_TOKENS,
        "the batcher admits 8 but the KV pool holds 4 sequences; admitted requests wait for blocks",
    ),
)


@dataclass(frozen=True)
class LabConfig:
    """One compared configuration: chart values layered after the lab's stand-in values."""

    name: str
    values: Mapping[str, Any]
    standin: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    input_tokens: int = INPUT_TOKENS


DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"  # the one value the chart requires


def chart_defaults() -> dict[str, Any]:
    """The chart's own values.yaml (what `helm install` uses when a values file says nothing)."""
    from llmprep import chart

    return dict(yaml.safe_load((Path(chart.CHART_DIR) / "values.yaml").read_text()) or {})


def default_metrics(runtime: str = "engine") -> list[dict[str, str]]:
    """The chart's default HPA inputs for a runtime as the chart renders them (`autoscaling.metric`
    when it names one, then `autoscaling.metrics`, whose default `[]` stands for the runtime's inputs)."""
    from llmprep import chart

    values = chart.merge_values([], [f"triton.image.name={DEFAULT_IMAGE}", f"model.tensorrtLlm.runtime={runtime}"])
    (hpa,) = chart.find(chart.render(values), "HorizontalPodAutoscaler")
    return [
        {"name": m["pods"]["metric"]["name"], "value": str(m["pods"]["target"]["averageValue"])}
        for m in hpa["spec"]["metrics"]
    ]


def lab_values() -> dict[str, Any]:
    from llmprep.lab.scenario import data_dir

    return dict(yaml.safe_load((data_dir() / "cpu-standin.values.yaml").read_text()) or {})


def scenario_doc(
    config: LabConfig,
    values_file: Path,
    *,
    stages: Sequence[Any],
    speed: float,
    slo_ms: float | None,
    settle: str = "120s",
    protocol: str = "grpc",
) -> dict[str, Any]:
    from llmprep.lab.scenario import data_dir

    doc: dict[str, Any] = {
        "name": config.name,
        "description": config.note or config.name,
        "values": [str(data_dir() / "cpu-standin.values.yaml"), str(values_file)],
        "speed": speed,
        "load": {
            "protocol": protocol,
            "unit": "clients",
            "stages": list(stages),
            "inputTokens": config.input_tokens,
            "connections": 8,
            "reconnectEvery": "2s",
            "timeout": "60s",
        },
        "standin": dict(config.standin),
        "settle": settle,
    }
    if slo_ms is not None:
        doc["slo"] = {"p95LatencyMs": slo_ms}
    return doc


@contextmanager
def _keep_requests(into: list[Any]) -> Iterator[None]:
    """Keep the lab recorder's per-request records (the report has only per-second rows)."""
    import llmprep.lab.run as lab_run

    original = lab_run.Recorder

    class KeepingRecorder(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            into.append(self)

    lab_run.Recorder = KeepingRecorder  # type: ignore[misc]
    try:
        yield
    finally:
        lab_run.Recorder = original  # type: ignore[misc]


@dataclass
class LabRun:
    config: LabConfig
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    requests: list[Any]  # llmprep.lab.recorder.Finished
    speed: float
    scrape_s: float
    evaluation_s: float
    window_s: float | None
    hpa: str
    notes: list[str]
    out_dir: Path
    decisions: list[dict[str, Any]] = field(default_factory=list)  # the HPA's syncs (llmprep.lab.report)
    events: list[dict[str, Any]] = field(default_factory=list)  # replicas' lifecycle (llmprep.lab.report)


def run_config(
    config: LabConfig,
    work: Path,
    *,
    stages: Sequence[Any],
    speed: float,
    slo_ms: float | None,
    settle: str = "120s",
    quiet: bool = True,
) -> LabRun:
    """Run one configuration through the lab; its report lands in `work/<name>/`."""
    from rich.console import Console

    from llmprep.lab.rendered import prepare
    from llmprep.lab.run import run_lab
    from llmprep.lab.scenario import parse_scenario

    folder = work / config.name.replace(" ", "-").replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    values_file = folder / "values.yaml"
    values_file.write_text(yaml.safe_dump(dict(config.values), sort_keys=False))
    doc = scenario_doc(config, values_file, stages=stages, speed=speed, slo_ms=slo_ms, settle=settle)
    scenario = parse_scenario(doc, source=folder / "scenario.yaml")
    setup = prepare(scenario)
    recorders: list[Any] = []
    console = Console(stderr=True, quiet=quiet)
    with _keep_requests(recorders):
        result = run_lab(scenario, out_dir=folder / "out", console=console)
    evaluation = next(
        (
            float(_seconds(g["interval"]))
            for g in setup.rule_groups
            if g.get("interval") and any("record" in r for r in g.get("rules", []))
        ),
        setup.scrape_interval_s,
    )
    return LabRun(
        config=config,
        rows=result.report.rows,
        summary=result.report.summary,
        requests=recorders[-1].all_finished() if recorders else [],
        speed=speed,
        scrape_s=setup.scrape_interval_s,
        evaluation_s=evaluation,
        window_s=setup.rate_window_s,
        hpa=", ".join(m.describe() for m in setup.hpa.metrics),
        notes=list(result.report.notes),
        out_dir=folder / "out",
        decisions=list(result.report.decisions),
        events=list(result.report.events),
    )


def _seconds(value: Any) -> float:
    from llmprep.units import parse_duration

    return parse_duration(value, "interval")


def clients_at(stages: Sequence[Any], t: float) -> float:
    """The load profile's level (clients) at `t` seconds, from the parsed profile."""
    from llmprep.load.profile import parse_profile

    profile = parse_profile({"unit": "clients", "stages": list(stages)})
    level = profile.level_at(t) if t < profile.duration else None
    return float(level) if level is not None else 0.0


def profile_duration(stages: Sequence[Any]) -> float:
    from llmprep.load.profile import parse_profile

    duration = parse_profile({"unit": "clients", "stages": list(stages)}).duration
    return duration if math.isfinite(duration) else float("nan")


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-lab-")

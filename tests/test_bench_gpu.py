"""bench/gpu_run.py: the CPU-side halves (render, report) and the analysis of a GPU run's files.

The GPU half runs only on the GPU machine (docs/benchmarks.md, "GPU run"); here its files are
written synthetically, with known shapes, so the analysis and the report can be checked.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import pytest

from bench import gpu_run
from bench._common import markers


def _write_run(src: Path, *, stages: list[dict], rows: int = 120) -> None:
    """A GPU run's files: a load that rises to 30 clients, a signal that follows it, a flat GPU."""
    src.mkdir(parents=True)
    t0 = 1_800_000_000.0
    columns = [
        "t",
        "time",
        "load_level",
        "replicas_ready",
        "e2e_p95_s",
        "signal triton:queue_compute:ratio",
        "signal trtllm:requests_waiting",
        "signal triton:pending_requests",
    ]
    with (src / "timeseries.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(rows):
            clients = 2 if i < 30 else (2 + (i - 30)) if i < 58 else 30 if i < 90 else 2
            waiting = max(0.0, clients - 8) / 2
            writer.writerow([i, t0 + i, clients, 1 + (waiting > 2), 0.3 + waiting / 10, 1.2 + (i % 3) / 10, waiting, 0])
    with (src / "nvml.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "gpu_util_pct", "mem_util_pct", "mem_used_mib"])
        for k in range(rows * 4):
            writer.writerow([t0 - 1 + k / 4, 95 + (k % 5), 40, 8000])
    doc = {"speed": 3, "load": {"stages": stages}}
    (src / "run.json").write_text(
        json.dumps(
            {
                "started": t0,
                "ended": t0 + rows,
                "scenario": doc,
                "nvml_error": None,
                "samples": rows * 4,
                "interrupted": False,
                "standin": {"torch_width": 2048, "torch_layers": 8},
                "hpa": [{"name": "trtllm:requests_waiting", "target": 2.0}],
            }
        )
    )
    summary = {
        "peak_replicas": 2,
        "requests": 900,
        "failed_requests": 0,
        "e2e_p95_s": 1.1,
        "surge_to_decision_s": 6.0,
        "surge_to_ready_s": 14.0,
        "replica_seconds": 150,
    }
    (src / "report.json").write_text(json.dumps({"summary": summary}))
    (src / "calibrate.json").write_text(
        json.dumps(
            {
                "gpu": "NVIDIA H200",
                "torch": "2.11.0",
                "rows": [
                    {
                        "width": 2048,
                        "layers": 8,
                        "params_m": 404.8,
                        "batch": 8,
                        "processes": 1,
                        "ms_per_step": 11.13,
                        "steps_per_s_total": 89.9,
                        "gpu_util_pct": 92.8,
                    }
                ],
            }
        )
    )
    (src / "env.json").write_text(json.dumps({"machine": "x86_64, 16 cores, NVIDIA H200"}))


STAGES = [
    {"step": {"to": 2, "for": "30s"}},
    {"ramp": {"from": 2, "to": 30, "over": "28s"}},
    {"hold": "32s"},
    {"step": {"to": 2, "for": "30s"}},
]


def test_analysis_ranks_a_signal_that_follows_the_load_above_a_saturated_gpu(tmp_path: Path) -> None:
    _write_run(tmp_path / "run", stages=STAGES)
    got = gpu_run.analyse(tmp_path / "run")
    assert [p["phase"] for p in got["phases"]] == ["base", "ramp", "high", "low"]
    high = next(p for p in got["phases"] if p["phase"] == "high")
    base = next(p for p in got["phases"] if p["phase"] == "base")
    assert high["clients_mean"] == pytest.approx(30) and base["clients_mean"] == pytest.approx(2)
    assert 95 <= base["gpu_util_mean"] <= 99  # NVML samples joined per second
    assert got["quality"]["trtllm:requests_waiting"]["rho_clients"] > 0.9
    assert abs(got["quality"]["triton:pending_requests"]["rho_clients"] or 0.0) < 0.01  # constant: no correlation
    assert got["quality"]["gpu_util"]["rho_clients"] < 0.5


def test_report_writes_its_section_and_plot_and_leaves_other_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_run(tmp_path / "run", stages=STAGES)
    monkeypatch.setattr(gpu_run, "IMG", tmp_path / "img")
    out = tmp_path / "benchmarks.md"
    out.write_text("<!-- bench:other:begin -->\nkept\n<!-- bench:other:end -->\n")
    assert gpu_run.main(["report", "--from", str(tmp_path / "run"), "--out", str(out)]) == 0
    text = out.read_text()
    begin, end = markers("gpu_run")
    section = text[text.index(begin) : text.index(end)]
    for expected in (
        "- machine: x86_64, 16 cores, NVIDIA H200",
        "- date: 2027-01-15",
        "python -m bench.gpu_run report",
        "| base |",
        "| high |",
        "GPU utilisation (NVML)",
        "ρ with clients",
        "| 2048 | 8 | 404.8 |",
        "img/gpu-lab.png",
        "width 2048, 8 layers",
        "`trtllm:requests_waiting` ≥ 2",
    ):
        assert expected in section, expected
    assert "kept" in text
    png = (tmp_path / "img" / "gpu-lab.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.parametrize(
    ("xs", "ys", "rho"),
    [([1, 2, 3, 4], [10, 20, 30, 40], 1.0), ([1, 2, 3, 4], [4, 3, 2, 1], -1.0), ([1, 2, 2, 3], [1, 5, 5, 9], 1.0)],
)
def test_spearman(xs: list[float], ys: list[float], rho: float) -> None:
    assert gpu_run.spearman(xs, ys) == pytest.approx(rho)


def test_render_pickles_the_charts_setup_with_the_torch_stand_in(tmp_path: Path) -> None:
    setup_file = gpu_run.render(tmp_path, 512, 2, [{"step": {"to": 2, "for": "10s"}}], 3.0, "t", "10s")
    bundle = pickle.loads(setup_file.read_bytes())
    setup = bundle["setup"]
    standin = setup.spec.standin
    assert (standin.compute, standin.torch_width, standin.torch_layers) == ("torch", 512, 2)
    assert setup.rule_groups and setup.hpa.metrics  # the chart's own rules and HPA, rendered by Helm's SDK
    assert "torchWidth: 512" in setup.model_yaml  # the ConfigMap the pods read
    assert bundle["scenario"].speed == 3.0


def test_docs_section_is_what_the_committed_gpu_run_files_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/benchmarks.md's GPU section is regenerated, byte for byte, from bench/results/."""
    results = "bench/results/gpu-h200-2026-12-03"
    monkeypatch.setattr(gpu_run, "IMG", tmp_path / "img")
    monkeypatch.chdir(gpu_run.ROOT)
    out = tmp_path / "benchmarks.md"
    gpu_run.main(["report", "--from", results, "--out", str(out)])
    begin, end = markers("gpu_run")
    docs = (gpu_run.ROOT / "docs" / "benchmarks.md").read_text()
    fresh = out.read_text().replace(f" --out {out}", "")  # the command line as the docs show it
    assert fresh[fresh.index(begin) : fresh.index(end)] == docs[docs.index(begin) : docs.index(end)]


def test_gpu_env_script_is_shellcheck_clean() -> None:
    import shutil
    import subprocess

    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (make test installs it)")
    result = subprocess.run([shellcheck, str(gpu_run.ROOT / "bench" / "gpu_env.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout

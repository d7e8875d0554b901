"""GPU run (issue 8, item 5): the lab on one GPU, the stand-in computing with PyTorch, 1→4 replicas sharing it.

The GPU machine has PyTorch but no package registry, so Helm's SDK (244 MB) cannot go there.
The run is therefore four steps, two on each machine:

  kit        (here)  pack what the GPU machine lacks into .gpukit/: the nvidia-pytriton wheel's
                     tritonserver, numpy 1.26 for Python 3.12, tritonclient, prometheus, promtool
  render     (here)  render the chart with the GPU scenario's values through Helm's SDK and
                     pickle the lab's setup (rules, HPA, spec) and scenario into .gpukit/
  calibrate  (GPU)   time one torch step of the stand-in per model size and batch, and the
                     aggregate steps/s of 1, 2 and 4 processes sharing the GPU
  run        (GPU)   run the lab from the pickled setup while sampling NVML every 0.25 s
  report     (here)  write the `gpu_run` section of docs/benchmarks.md and docs/img/gpu-*.png
                     from the files that came back

On the GPU machine: `. bench/gpu_env.sh` first (the virtual environment over the machine's PyTorch).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import pickle
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench._common import DOCS, command_line, fmt, machine_line, section_header, spearman, table, write_section

NAME = "gpu_run"
ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / ".gpukit"
IMG = ROOT / "docs" / "img"

# The stand-in's model on the GPU (calibrated on the H200: bench/gpu_run.py calibrate).
WIDTH, LAYERS = 2048, 8
MAX_IN_FLIGHT, OUTPUT_TOKENS = 8, 32
SPEED = 3.0
# Closed-loop streaming clients, lab seconds: idle-ish base, a ramp to several replicas' worth, back down.
STAGES: list[dict[str, Any]] = [
    {"step": {"to": 2, "for": "20s"}},
    {"ramp": {"from": 2, "to": 32, "over": "45s"}},
    {"hold": "75s"},
    {"step": {"to": 2, "for": "60s"}},
]
BASE_CLIENTS = 2


# --------------------------------------------------------------------------- kit (here)


def pack_kit(kit: Path) -> None:
    """Everything the GPU machine lacks, compressed to fit the 64 MiB a device call carries."""
    import subprocess
    import sysconfig
    import tempfile

    kit.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    excluded = [f"--exclude=python_backend_stubs/{v}" for v in ("3.8", "3.9", "3.10", "3.11", "3.13")]
    excluded += ["--exclude=__pycache__", "--exclude=libpython3-*"]  # the 3.13 stub's libpython
    subprocess.run(
        f"tar {' '.join(excluded)} -cf - pytriton/tritonserver nvidia_pytriton.libs | xz -T2 -6 "
        f"> {kit / 'pytriton-site.tar.xz'}",
        shell=True,
        cwd=site,
        check=True,
    )
    for tool in ("prometheus", "promtool"):
        found = shutil.which(tool)
        if found is None:
            raise SystemExit(f"{tool} not found on PATH: run `make setup` first")
        subprocess.run(f"xz -T2 -9 -c {found} > {kit / (tool + '.xz')}", shell=True, check=True)
    whl = kit / "whl"
    whl.mkdir(exist_ok=True)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux_2_28_x86_64",
        "-d",
    ]
    # tritonclient's gRPC client imports rapidjson; numpy is packed below, the rest is on the machine.
    subprocess.run([*pip, str(whl), "tritonclient==2.73.0", "python-rapidjson==1.25"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*pip, tmp, "numpy==1.26.4"], check=True)
        unpacked = Path(tmp) / "numpy"
        subprocess.run(f"unzip -q {tmp}/numpy-*.whl -d {unpacked}", shell=True, check=True)
        for tests in list(unpacked.rglob("tests")):
            shutil.rmtree(tests, ignore_errors=True)
        for unused in ("numpy/f2py", "numpy/distutils", "numpy/_pyinstaller"):
            shutil.rmtree(unpacked / unused, ignore_errors=True)
        subprocess.run(
            f"tar -cf - . | xz -T2 -9 > {kit / 'numpy-1.26.4-cp312.tar.xz'}", shell=True, cwd=unpacked, check=True
        )
    total = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    print(f"kit: {kit} ({total / 2**20:.1f} MiB)")


# --------------------------------------------------------------------------- render (here)


def gpu_values(width: int, layers: int) -> dict[str, Any]:
    return {
        "model": {
            "standin": {
                "compute": "torch",
                "torchWidth": width,
                "torchLayers": layers,
                "maxInFlight": MAX_IN_FLIGHT,
                "outputTokens": OUTPUT_TOKENS,
            }
        },
        "autoscaling": {"replicas": {"minimum": 1, "maximum": 4}},
    }


def scenario_doc(values_file: Path, stages: Sequence[Any], speed: float, settle: str = "90s") -> dict[str, Any]:
    from llmprep.lab.scenario import data_dir

    return {
        "name": "gpu",
        "description": "the stand-in on PyTorch on one GPU; replicas share it",
        "values": [str(data_dir() / "cpu-standin.values.yaml"), str(values_file)],
        "speed": speed,
        "load": {
            "protocol": "grpc",
            "unit": "clients",
            "stages": list(stages),
            "inputTokens": 32,
            "connections": 16,
            "reconnectEvery": "2s",
            "timeout": "60s",
        },
        "slo": {"p95LatencyMs": 3000},
        "settle": settle,
    }


def render(
    kit: Path, width: int, layers: int, stages: Sequence[Any], speed: float, name: str, settle: str = "90s"
) -> Path:
    from llmprep.lab.prometheus import check_rules
    from llmprep.lab.rendered import prepare
    from llmprep.lab.scenario import parse_scenario

    kit.mkdir(parents=True, exist_ok=True)
    values_file = kit / f"{name}.values.yaml"
    values_file.write_text(yaml.safe_dump(gpu_values(width, layers), sort_keys=False))
    doc = scenario_doc(values_file, stages, speed, settle)
    scenario = parse_scenario(doc, source=None, base_dir=kit)
    setup = prepare(scenario, None)
    rules = kit / f"{name}.rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": setup.rule_groups}, sort_keys=False))
    check_rules(rules)  # the same promtool check the lab runs, here before the trip
    out = kit / f"{name}.setup.pkl"
    out.write_bytes(pickle.dumps({"scenario": scenario, "setup": setup, "doc": doc}))
    print(f"rendered: {out} ({setup.hpa.source} on {', '.join(m.name for m in setup.hpa.metrics)})")
    return out


# --------------------------------------------------------------------------- NVML (GPU)


class NvmlSampler(threading.Thread):
    """GPU utilisation as DCGM's exporter reads it (NVML: % of time a kernel ran), every `period_s`."""

    def __init__(self, period_s: float = 0.25) -> None:
        super().__init__(name="nvml-sampler", daemon=True)
        self.period_s = period_s
        self.samples: list[tuple[float, float, float, float]] = []  # time, gpu %, memory-bus %, MiB used
        self.stop_event = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            while not self.stop_event.is_set():
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                self.samples.append((time.time(), float(rates.gpu), float(rates.memory), memory.used / 2**20))
                self.stop_event.wait(self.period_s)
        except Exception as exc:  # the run goes on without NVML; the report says so
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> list[tuple[float, float, float, float]]:
        self.stop_event.set()
        self.join(timeout=5)
        return list(self.samples)

    def mean_between(self, start: float, end: float) -> float | None:
        values = [s[1] for s in list(self.samples) if start <= s[0] <= end]
        return statistics.fmean(values) if values else None


def write_nvml(samples: Sequence[tuple[float, float, float, float]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "gpu_util_pct", "mem_util_pct", "mem_used_mib"])
        writer.writerows(samples)


# --------------------------------------------------------------------------- calibrate (GPU)


def _steps_in_process(
    width: int, layers: int, batch: int, seconds: float, ready: Any, vocab: int, results: Any
) -> None:
    sys.path.insert(0, str(ROOT / "llmprep" / "templates" / "common"))
    from types import SimpleNamespace

    from llmprep_standin import torch_step

    step = torch_step(vocab, width=width, layers=layers)
    jobs = [SimpleNamespace(input_ids=list(range(32)), generated=[]) for _ in range(batch)]
    for _ in range(5):
        step(jobs, [])  # warm-up (kernel selection, allocator)
    ready.wait()  # every process warmed up before the timed part
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        step(jobs, [])
        count += 1
    results.put(count / (time.perf_counter() - began))


def calibrate(
    sizes: Sequence[tuple[int, int]], batches: Sequence[int], processes: Sequence[int], seconds: float, vocab: int = 512
) -> dict[str, Any]:
    """ms per step alone, and steps/s of N processes stepping at once (replicas sharing the GPU)."""
    import multiprocessing as mp

    import torch

    ctx = mp.get_context("spawn")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU)"
    out: dict[str, Any] = {"gpu": device, "torch": torch.__version__, "rows": []}
    for width, layers in sizes:
        params = layers * 12 * width * width + 2 * vocab * width
        for batch in batches:
            for n in processes:
                results = ctx.Queue()
                ready = ctx.Barrier(n + 1)
                procs = [
                    ctx.Process(target=_steps_in_process, args=(width, layers, batch, seconds, ready, vocab, results))
                    for _ in range(n)
                ]
                for p in procs:
                    p.start()
                sampler = NvmlSampler(0.1)
                sampler.start()
                ready.wait(timeout=180)
                began = time.time()
                rates = [results.get(timeout=180) for _ in procs]
                for p in procs:
                    p.join(timeout=30)
                sampler.stop()
                util = sampler.mean_between(began + 0.5, began + seconds - 0.2)
                row = {
                    "width": width,
                    "layers": layers,
                    "params_m": round(params / 1e6, 1),
                    "batch": batch,
                    "processes": n,
                    "steps_per_s_each": [round(r, 1) for r in rates],
                    "steps_per_s_total": round(sum(rates), 1),
                    "ms_per_step": round(1000.0 / statistics.fmean(rates), 2),
                    "gpu_util_pct": None if util is None else round(util, 1),
                }
                out["rows"].append(row)
                print(json.dumps(row), flush=True)
    return out


# --------------------------------------------------------------------------- run (GPU)


def run(setup_file: Path, out: Path) -> int:
    from llmprep.lab.run import run_lab

    bundle = pickle.loads(setup_file.read_bytes())
    out.mkdir(parents=True, exist_ok=True)
    sampler = NvmlSampler(0.25)
    sampler.start()
    started = time.time()
    try:
        result = run_lab(bundle["scenario"], out_dir=out / "lab", setup=bundle["setup"])
    finally:
        samples = sampler.stop()
        write_nvml(samples, out / "nvml.csv")
    setup = bundle["setup"]
    meta = {
        "started": started,
        "ended": time.time(),
        "nvml_error": sampler.error,
        "samples": len(samples),
        "scenario": bundle["doc"],
        "interrupted": result.interrupted,
        "standin": dataclasses.asdict(setup.spec.standin),
        "hpa": [{"name": m.name, "target": m.target} for m in setup.hpa.metrics],
    }
    (out / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    return 0


# --------------------------------------------------------------------------- report (here)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def join_nvml(rows: Sequence[dict[str, str]], nvml: Sequence[dict[str, str]]) -> list[float | None]:
    """Mean NVML utilisation over each lab row's second."""
    samples = [(float(s["time"]), float(s["gpu_util_pct"])) for s in nvml]
    out: list[float | None] = []
    for row in rows:
        end = float(row["time"])
        values = [u for t, u in samples if end - 1.0 < t <= end]
        out.append(statistics.fmean(values) if values else None)
    return out


def rolling(values: Sequence[float | None], width: int) -> list[float | None]:
    out: list[float | None] = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - width + 1) : i + 1] if v is not None]
        out.append(statistics.fmean(window) if window else None)
    return out


SIGNALS = (("triton:queue_compute:ratio", 1.0), ("trtllm:requests_waiting", 2.0), ("triton:pending_requests", 2.0))


def phases(rows: Sequence[dict[str, str]], doc: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(name, start, end) in lab seconds from the load start, from the scenario's stages."""
    from bench._lab import _seconds

    t, out = 0.0, []
    names = iter(["base", "ramp", "high", "low"])
    for stage in doc["load"]["stages"]:
        kind, body = next(iter(stage.items()))
        length = _seconds(body if kind == "hold" else body.get("over") or body.get("for"))
        out.append((next(names, kind), t, t + length))
        t += length
    return out


def analyse(src: Path) -> dict[str, Any]:
    rows = _read_csv(src / "timeseries.csv")
    nvml = _read_csv(src / "nvml.csv")
    meta = json.loads((src / "run.json").read_text())
    report = json.loads((src / "report.json").read_text())
    util = join_nvml(rows, nvml)
    series: dict[str, list[float | None]] = {
        "clients": [_num(r.get("load_level")) for r in rows],
        "replicas": [_num(r.get("replicas_ready")) for r in rows],
        "gpu_util": util,
        "e2e_p95": [_num(r.get("e2e_p95_s")) for r in rows],
        "ok_per_s": [_num(r.get("ok_per_s")) for r in rows],
    }
    for name, _ in SIGNALS:
        series[name] = [_num(r.get(f"signal {name}")) for r in rows]
    t = [float(r["t"]) for r in rows]  # seconds since the load started
    spans = phases(rows, meta["scenario"])
    table_rows = []
    for name, start, end in spans:
        idx = [i for i, x in enumerate(t) if start + 3 <= x < end]  # skip each phase's first seconds

        def mean(key: str, idx: list[int] = idx) -> float | None:
            vals = [series[key][i] for i in idx if series[key][i] is not None]
            return statistics.fmean(vals) if vals else None  # type: ignore[arg-type]

        def spread(key: str, idx: list[int] = idx) -> float | None:
            vals = [series[key][i] for i in idx if series[key][i] is not None]
            return statistics.pstdev(vals) if len(vals) > 1 else None  # type: ignore[arg-type]

        table_rows.append(
            {
                "phase": name,
                "start": start,
                "end": end,
                **{f"{k}_mean": mean(k) for k in series},
                "gpu_util_sd": spread("gpu_util"),
                "ratio_sd": spread("triton:queue_compute:ratio"),
            }
        )
    during = [i for i, x in enumerate(t) if 0 <= x <= spans[-1][2]]
    quality = {}
    for key in ("gpu_util", *[n for n, _ in SIGNALS]):
        if key not in series:
            continue
        pairs = [
            (series["clients"][i], series[key][i])
            for i in during
            if series["clients"][i] is not None and series[key][i] is not None
        ]
        lat = [
            (series["e2e_p95"][i], series[key][i])
            for i in during
            if series["e2e_p95"][i] is not None and series[key][i] is not None
        ]
        quality[key] = {
            "rho_clients": spearman([a for a, _ in pairs], [b for _, b in pairs]),  # type: ignore[misc]
            "rho_p95": spearman([a for a, _ in lat], [b for _, b in lat]),  # type: ignore[misc]
        }
    return {
        "rows": rows,
        "t": t,
        "series": series,
        "phases": table_rows,
        "quality": quality,
        "meta": meta,
        "report": report,
        "nvml_samples": len(nvml),
    }


def plot(analysis: Mapping[str, Any], path: Path, speed: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = analysis["t"]
    s = analysis["series"]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, s["clients"], color="tab:gray", label="offered load (clients)")
    ax.set_ylabel("clients")
    twin = ax.twinx()
    twin.step(t, s["replicas"], color="tab:blue", where="post", label="replicas ready")
    twin.set_ylabel("replicas")
    twin.set_ylim(0, 5)
    ax.set_title("The lab on one H200: the stand-in on PyTorch, replicas sharing the GPU")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")
    ax = axes[1]
    ax.plot(t, s["gpu_util"], color="tab:green", alpha=0.45, label="GPU utilisation, NVML, 1 s (DCGM_FI_DEV_GPU_UTIL)")
    ax.plot(
        t,
        rolling(s["gpu_util"], max(1, round(60 / speed))),
        color="tab:green",
        label=f"same, mean over {60 / speed:g} lab s (1 m in cluster time)",
    )
    ax.set_ylabel("GPU util %")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    ax.plot(t, s["triton:queue_compute:ratio"], color="tab:red", label="triton:queue_compute:ratio (per pod)")
    ax.axhline(1.0, color="tab:red", linestyle=":", label="its seed target (1000m)")
    ax.set_ylabel("queue:compute")
    twin = ax.twinx()
    twin.plot(t, s["trtllm:requests_waiting"], color="tab:purple", label="trtllm:requests_waiting (per pod)")
    twin.axhline(2.0, color="tab:purple", linestyle=":", label="its target (2)")
    twin.set_ylabel("requests waiting")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    ax.plot(t, s["e2e_p95"], color="tab:orange", label="p95 end-to-end (trailing 5 s)")
    ax.set_ylabel("seconds")
    ax.set_xlabel("lab seconds from the load's start")
    ax.legend(loc="upper left")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def render_section(
    src: Path,
    analysis: Mapping[str, Any],
    calib: Mapping[str, Any] | None,
    command: str,
    machine: str,
    date: str,
    plot_name: str,
) -> str:
    meta = analysis["meta"]
    doc = meta["scenario"]
    report = analysis["report"]
    speed = float(doc["speed"])
    st = meta.get("standin") or {}
    hpa = ", ".join(f"`{m['name']}` ≥ {m['target']:g}" for m in meta.get("hpa") or []) or "–"
    lines = section_header("GPU run (issue 8, item 5)", command)
    # The run happened on the GPU machine; this machine only wrote the report.
    lines[2:4] = [
        f"- machine: {machine}",
        f"- date: {date} (the lab run; the report was written from its files)",
        "- on the GPU machine: `. bench/gpu_env.sh && python -m bench.gpu_run calibrate --out OUT/calibrate.json"
        " && python -m bench.gpu_run run --setup .gpukit/gpu.setup.pkl --out OUT/run`",
    ]
    lines += [
        "",
        "The lab (real tritonserver 2.51 from the nvidia-pytriton wheel, real Prometheus 2.42 with the chart's rules, "
        "the chart's HPA spec) on one GPU. The stand-in engine runs each generation step through a random-weight "
        f"PyTorch transformer on the GPU (`model.standin.compute: torch`, width {st.get('torch_width', '–')}, "
        f"{st.get('torch_layers', '–')} layers, {st.get('max_in_flight', '–')} requests in flight, "
        f"{st.get('output_tokens', '–')} tokens each): real GPU work, not a real LLM. Replicas 1–4 are "
        "tritonserver processes sharing the one GPU (time-sliced, no MPS); the HPA scales them on the chart's "
        f"defaults ({hpa}). Speed {speed:g}: "
        "every control-loop constant divided by it. The chart was rendered on the CPU machine with Helm's SDK and "
        "the rendered setup carried over (`bench/gpu_run.py`); GPU utilisation is NVML's, sampled every 0.25 s "
        "beside the lab (what DCGM's exporter reports as `DCGM_FI_DEV_GPU_UTIL`).",
        "",
    ]
    if calib:
        lines += [
            "### One stand-in step on the GPU, alone and shared",
            "",
            f"{calib.get('gpu')}, PyTorch {calib.get('torch')}. Each process runs the stand-in's step "
            "function back to back (`python -m bench.gpu_run calibrate`); N processes = N replicas sharing "
            "the GPU.",
            "",
        ]
        crow = [
            [
                r["width"],
                r["layers"],
                r["params_m"],
                r["batch"],
                r["processes"],
                r["ms_per_step"],
                r["steps_per_s_total"],
                fmt(r["gpu_util_pct"], 0),
            ]
            for r in calib["rows"]
        ]
        lines += [
            table(
                ["width", "layers", "M params", "batch", "processes", "ms/step (each)", "steps/s (all)", "GPU util %"],
                crow,
            ),
            "",
        ]
    lines += [
        "### Load, replicas and signals per phase",
        "",
        f"Closed-loop streaming clients: {json.dumps(doc['load']['stages'])}; means over each phase "
        "(its first 3 s left out); signals are the per-pod averages Prometheus recorded.",
        "",
    ]
    prow = []
    for p in analysis["phases"]:
        prow.append(
            [
                p["phase"],
                f"{p['start']:.0f}–{p['end']:.0f}",
                fmt(p["clients_mean"], 1),
                fmt(p["replicas_mean"], 2),
                fmt(p["gpu_util_mean"], 0),
                fmt(p["gpu_util_sd"], 0),
                fmt(p["triton:queue_compute:ratio_mean"], 3),
                fmt(p["trtllm:requests_waiting_mean"], 2),
                fmt(p["triton:pending_requests_mean"], 2),
                fmt(p["ok_per_s_mean"], 1),
                fmt(p["e2e_p95_mean"], 2),
            ]
        )
    lines += [
        table(
            [
                "phase",
                "lab s",
                "clients",
                "replicas ready",
                "GPU util % mean",
                "GPU util % sd (1 s)",
                "queue:compute",
                "requests waiting",
                "pending",
                "requests/s",
                "p95 e2e s",
            ],
            prow,
        ),
        "",
    ]
    lines += [
        "### Which signal follows the load",
        "",
        "Spearman rank correlation, over every second of the load, of each signal with the offered load and "
        "with the trailing-5 s p95 latency.",
        "",
    ]
    qrow = []
    names = {"gpu_util": "GPU utilisation (NVML)"}
    for key, q in analysis["quality"].items():
        qrow.append([names.get(key, f"`{key}`"), fmt(q["rho_clients"]), fmt(q["rho_p95"])])
    lines += [table(["signal", "ρ with clients", "ρ with p95 latency"], qrow), ""]
    summary = report.get("summary") or {}
    lines += [
        f"Lab report: peak replicas {summary.get('peak_replicas', '–')}, requests "
        f"{summary.get('requests', '–')} ({summary.get('failed_requests', '–')} failed), p95 end-to-end "
        f"{fmt(summary.get('e2e_p95_s'))} s; surge → scale-up decision {fmt(summary.get('surge_to_decision_s'), 1)}"
        f" lab s, → new replica ready {fmt(summary.get('surge_to_ready_s'), 1)} lab s; replica-seconds "
        f"{summary.get('replica_seconds', '–')}. NVML samples: {analysis['nvml_samples']}"
        + (f" (NVML error: {meta['nvml_error']})" if meta.get("nvml_error") else "")
        + ".",
        "",
        f"![GPU run: load and replicas, GPU utilisation, queue:compute vs requests waiting, p95](img/{plot_name})",
        "",
    ]
    return "\n".join(lines)


def report_cmd(src: Path, out: Path, argv: Sequence[str] | None, machine: str, date: str) -> None:
    analysis = analyse(src)
    speed = float(analysis["meta"]["scenario"]["speed"])
    plot_name = "gpu-lab.png"
    IMG.mkdir(parents=True, exist_ok=True)
    plot(analysis, IMG / plot_name, speed)
    if (src / "lab.png").exists():
        shutil.copy2(src / "lab.png", IMG / "gpu-lab-run.png")
    calib_file = src / "calibrate.json"
    calib = json.loads(calib_file.read_text()) if calib_file.exists() else None
    body = render_section(src, analysis, calib, command_line("bench.gpu_run", argv), machine, date, plot_name)
    write_section(NAME, body, out)
    print(body)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("kit", help="pack .gpukit/ (here, with pip and the project's venv)")
    p.add_argument("--kit", type=Path, default=KIT)
    p = sub.add_parser("render", help="render the chart for the GPU scenario (here)")
    p.add_argument("--kit", type=Path, default=KIT)
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--layers", type=int, default=LAYERS)
    p.add_argument("--speed", type=float, default=SPEED)
    p.add_argument("--quick", action="store_true", help="a 40 s profile (a smoke run)")
    p = sub.add_parser("calibrate", help="time the stand-in's torch step (GPU)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sizes", default="1024x8,2048x8,4096x8", help="WIDTHxLAYERS,…")
    p.add_argument("--batches", default="8")
    p.add_argument("--processes", default="1,2,4")
    p.add_argument("--seconds", type=float, default=4.0)
    p = sub.add_parser("run", help="run the lab from a rendered setup (GPU)")
    p.add_argument("--setup", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("report", help="write docs from a GPU run's files (here)")
    p.add_argument("--from", dest="src", type=Path, required=True)
    p.add_argument("--out", type=Path, default=DOCS)
    p.add_argument("--machine", default="", help="the GPU machine's line (default: read from the run's env.json)")
    p.add_argument("--date", default="", help="when the GPU run ran (default: the run's start)")
    args = parser.parse_args(argv)
    if args.cmd == "kit":
        pack_kit(args.kit)
    elif args.cmd == "render":
        stages = (
            [{"step": {"to": 2, "for": "10s"}}, {"step": {"to": 12, "for": "20s"}}, {"step": {"to": 2, "for": "10s"}}]
            if args.quick
            else STAGES
        )
        render(
            args.kit,
            args.width,
            args.layers,
            stages,
            args.speed,
            "quick" if args.quick else "gpu",
            "10s" if args.quick else "45s",
        )
    elif args.cmd == "calibrate":
        sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
        out = calibrate(
            sizes,
            [int(b) for b in args.batches.split(",")],  # type: ignore[arg-type]
            [int(n) for n in args.processes.split(",")],
            args.seconds,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    elif args.cmd == "run":
        return run(args.setup, args.out)
    elif args.cmd == "report":
        env_file = args.src / "env.json"
        env = json.loads(env_file.read_text()) if env_file.exists() else {}
        run_meta = json.loads((args.src / "run.json").read_text())
        date = args.date or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run_meta["started"]))
        report_cmd(args.src, args.out, argv, args.machine or env.get("machine") or machine_line(), date)
    return 0


if __name__ == "__main__":
    sys.exit(main())

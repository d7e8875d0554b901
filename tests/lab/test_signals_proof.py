"""The signals proof (bench/signals_proof.py): one runtime, short mode, through the real lab.

The module runs the engine/ensemble case once (levels 0, 1×, 2×, 4× one replica's capacity,
20 s each, about two minutes with real tritonserver and Prometheus) and checks the recorded
table; the verdict rules themselves are checked on tables of hand-made series.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "bench" / "signals_proof.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("signals_proof", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["signals_proof"] = module
    spec.loader.exec_module(module)
    return module


proof = _load()


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("signals")
    assert proof.main(["--case", "engine-ensemble", "--short", "--out", str(out), "--plots", str(out / "img")]) == 0
    doc = json.loads((out / "signals.json").read_text())
    doc["_out"] = str(out)
    return doc


@pytest.mark.slow
def test_the_recorded_table_has_one_row_per_signal_with_a_verdict(short_run: dict[str, Any]) -> None:
    (result,) = short_run["results"]
    assert [(v["signal"], v["verdict"] in ("proven", "not proven")) for v in result["verdicts"]] == [
        (name, True) for name in proof.SIGNALS
    ]


@pytest.mark.slow
def test_the_markdown_table_and_the_runtime_plot_are_written(short_run: dict[str, Any]) -> None:
    out = Path(short_run["_out"])
    table = (out / "signals.md").read_text()
    assert all(f"`{name}`" in table for name in proof.SIGNALS)
    assert (out / "img" / "signals-engine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_requests_waiting_stays_near_zero_past_saturation_when_the_kv_cache_is_ample(short_run: dict[str, Any]) -> None:
    # Upstream's waiting is active - scheduled (issue 18 item 6): at 4x capacity (16 clients) the batch
    # is full (maxInFlight 4), the KV cache is ample, everything admitted is scheduled, and the
    # other ~12 requests wait in the executor's queue, which this family does not count. This is
    # why the chart's defaults await their re-proof (docs/signals.md).
    (result,) = short_run["results"]
    waiting = next(v for v in result["verdicts"] if v["signal"] == "trtllm:requests_waiting")
    assert max(m or 0 for m in waiting["medians"]) < 1
    assert waiting["verdict"] == "not proven"


@pytest.mark.slow
def test_triton_counts_no_pending_request_when_the_engine_hands_off(short_run: dict[str, Any]) -> None:
    (result,) = short_run["results"]
    pending = next(v for v in result["verdicts"] if v["signal"] == "triton:pending_requests")
    assert pending["verdict"] == "not proven" and max(m or 0 for m in pending["medians"]) < 1


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([1, 2, 3, 4], [1, 2, 3, 4], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        ([1, 2, 3, 4], [0, 0, 0, 0], 0.0),
        ([1, 2, 3], [1, 1, 2], 0.866),
    ],
)
def test_spearman_rank_correlation_matches_hand_computed_values(x: list[float], y: list[float], expected: float) -> None:
    assert round(proof.spearman(x, y), 3) == expected


def _rows(signal: list[float], p95: list[float]) -> list[dict[str, Any]]:
    return [{"t": float(t), "signal s": s, "e2e_p95_s": p} for t, (s, p) in enumerate(zip(signal, p95, strict=True))]


@pytest.mark.parametrize(
    ("signal", "p95", "expected"),
    [
        # rises through the levels and crosses 2 at t=4, p95 passes 1 s at t=6
        ([0, 0, 1, 1, 3, 3, 5, 5], [0.5, 0.5, 0.6, 0.6, 0.8, 0.8, 1.5, 1.5], "proven"),
        # rises, but crosses its target only after p95 passed the SLO
        ([0, 0, 0, 0, 1, 1, 3, 3], [0.5, 0.5, 0.6, 1.5, 1.5, 1.5, 1.5, 1.5], "not proven"),
        # above its target at every level and falling: not monotone
        ([3, 3, 3, 3, 2.5, 2.5, 2, 2], [0.5, 0.5, 0.6, 0.6, 0.8, 0.8, 1.5, 1.5], "not proven"),
        # flat at zero
        ([0, 0, 0, 0, 0, 0, 0, 0], [0.5, 0.5, 0.6, 0.6, 0.8, 0.8, 1.5, 1.5], "not proven"),
    ],
)
def test_a_signal_is_proven_only_when_it_rises_and_crosses_before_the_slo(
    signal: list[float], p95: list[float], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proof, "SIGNALS", ("s",))
    case = proof.Case("c", "engine", "ensemble", None)
    windows = [(1.0, 0.0, 0.0, 2.0), (2.0, 2.0, 2.0, 4.0), (3.0, 4.0, 4.0, 6.0), (4.0, 6.0, 6.0, 8.0)]
    verdicts, _ = proof.judge(case, _rows(signal, p95), windows, {"s": (2.0, "test")}, 1.0)
    assert verdicts[0].verdict == expected

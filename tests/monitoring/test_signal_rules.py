"""The signals that see the executor's queue (issue 19), each under `promtool test rules`.

Time to first response from Triton's first-response histogram (facts read from Triton core's source:
tests/data/triton_latency_metrics.csv) or, per pod where Triton exports none (Triton 2.51), from our
models' llmprep_first_response_histogram_ms; batch fullness (active / max), the executor's queue and the
requests in flight our own Python models count. Two pods of this release, one pod of another release
and one of another namespace that must never leak in.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep.lab.prometheus import PrometheusError
from llmprep.lab.prometheus import test_rules as promtool_test_rules
from tests.conftest import ROOT
from tests.monitoring.conftest import NAMESPACE, chart_rules

pytestmark = pytest.mark.skipif(
    not any((Path(d) / "promtool").exists() for d in os.environ["PATH"].split(":")),
    reason="promtool is not installed (make system-packages)",
)

TABLE = list(csv.DictReader((ROOT / "tests" / "data" / "triton_latency_metrics.csv").open()))
PODS = ("gpt2-7d9c-abcde", "gpt2-7d9c-fghij")
OUTSIDERS = ((NAMESPACE, "gpt2-extra-7d9c-kkkkk"), ("other", "gpt2-7d9c-abcde"))
STEP = 15  # seconds between input samples


def fact(name: str, branch: str = "r26.06") -> str:
    (row,) = [r for r in TABLE if r["fact"] == name and r["branch"] == branch]
    return row["value"]


FAMILY = fact("histogram family name")
BOUNDS = [float(b) for b in fact("default bucket bounds (ms)").split()]


def _stats() -> Any:
    spec = importlib.util.spec_from_file_location(
        "llmprep_stats_rules", ROOT / "llmprep" / "templates" / "common" / "llmprep_stats.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Our models' histogram (llmprep_stats.FirstResponse): the fallback where a pod has no Triton family.
OURS = _stats().FIRST_RESPONSE_FAMILY
OUR_BOUNDS = [float(b) for b in _stats().FIRST_RESPONSE_BUCKETS_MS]


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = chart_rules(tmp_path_factory.mktemp("rules"))
    return list(yaml.safe_load(path.read_text())["groups"])


@pytest.fixture(scope="module")
def rules_file(groups: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signal-rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def record(groups: list[dict[str, Any]], name: str) -> str:
    (expr,) = [r["expr"] for g in groups for r in g["rules"] if r.get("record") == name]
    return str(expr)


def series(name: str, namespace: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, "pod": pod, **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def counter(per_second: float, minutes: int = 10) -> str:
    """promtool's expanding notation for a counter growing at `per_second`."""
    return f"0+{per_second * STEP:g}x{minutes * 60 // STEP}"


def histogram(
    namespace: str, pod: str, model: str, per_bucket: dict[str, float], family: str = FAMILY
) -> list[dict[str, str]]:
    """A first-response histogram of one model (Triton's, or ours with family=OURS): requests per second
    falling in each bucket (by upper bound)."""
    out, total = [], 0.0
    bounds = OUR_BOUNDS if family == OURS else BOUNDS
    for bound in [*(f"{b:g}" for b in bounds), "+Inf"]:
        total += per_bucket.get(bound, 0.0)
        out.append(series(f"{family}_bucket", namespace, pod, counter(total), model=model, version="1", le=bound))
    out.append(series(f"{family}_count", namespace, pod, counter(total), model=model, version="1"))
    return out


def expect(rules_file: Path, input_series: list[dict[str, str]], signal: str, values: tuple[float, ...]) -> None:
    spec = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "6s",
        "tests": [
            {
                "interval": f"{STEP}s",
                "input_series": input_series,
                "promql_expr_test": [
                    {
                        "expr": signal,
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{signal}{{namespace="{NAMESPACE}",pod="{pod}"}}', "value": value}
                            for pod, value in zip(PODS, values, strict=True)
                        ],
                    }
                ],
            }
        ],
    }
    path = rules_file.parent / f"test-{signal.replace(':', '_')}-{abs(hash(str(input_series)))}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    promtool_test_rules(path)


def everywhere(make: Any) -> list[dict[str, str]]:
    """The same input for our two pods (j = 0, 1) and, with j = 0, 1 again, for the two outsiders."""
    out: list[dict[str, str]] = []
    for j, pod in enumerate(PODS):
        out += make(NAMESPACE, pod, j)
    for j, (namespace, pod) in enumerate(OUTSIDERS):
        out += make(namespace, pod, j + 7)
    return out


def test_the_first_response_rule_reads_the_histogram_triton_core_exports(groups: list[dict[str, Any]]) -> None:
    expr = record(groups, "triton:first_response_ms:p95")
    assert f"{FAMILY}_bucket" in expr and re.search(r"histogram_quantile\(0\.95,", expr)
    assert re.search(r"by \(namespace, pod, model, le\)", expr)  # a quantile per model, never mixed across models


def test_the_first_response_rule_falls_back_to_our_models_histogram_per_pod(groups: list[dict[str, Any]]) -> None:
    expr = record(groups, "triton:first_response_ms:p95")
    assert f"{OURS}_bucket" in expr and f"{OURS}_count" in expr
    # Triton's family first: `or` keeps its series of a pod and takes ours only where it has none.
    assert expr.index(f"{FAMILY}_bucket") < expr.index(f"{OURS}_bucket")


def test_triton_2_51_has_no_first_response_histogram_and_later_cores_do() -> None:
    assert fact("flag that turns the first-response histogram on", "r24.10") == "absent"
    assert fact("flag that turns the first-response histogram on", "r24.11") == "histogram_latencies=true"
    assert fact("histogram family name", "r24.11") == FAMILY


def test_time_to_first_response_is_the_95th_percentile_of_the_slowest_model_per_pod(rules_file: Path) -> None:
    # Pod 0: the ensemble's first responses all fall in (100, 500] ms -> p95 = 100 + 0.95 x 400 = 480.
    # Pod 1: in (500, 2000] -> 500 + 0.95 x 1500 = 1925. Preprocessing answers within 100 ms on both
    # and must not pull the pod's value down.
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        slow = {"500": 10.0} if j % 2 == 0 else {"2000": 4.0}
        return histogram(namespace, pod, "ensemble", slow) + histogram(namespace, pod, "preprocessing", {"100": 40.0})

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (480, 1925))


def test_time_to_first_response_is_zero_not_missing_when_a_pod_is_idle(rules_file: Path) -> None:
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        return [
            series(f"{FAMILY}_{kind}", namespace, pod, "7x40", model="ensemble", version="1", **extra)
            for kind, extra in [
                *(("bucket", {"le": f"{b:g}"}) for b in BOUNDS),
                ("bucket", {"le": "+Inf"}),
                ("count", {}),
            ]
        ]

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (0, 0))


def test_time_to_first_response_stops_at_the_last_finite_bucket(rules_file: Path) -> None:
    # Everything slower than 5000 ms: Prometheus answers the highest finite bound, as docs/monitoring.md says.
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        return histogram(namespace, pod, "ensemble", {"+Inf": 3.0} if j % 2 == 0 else {"5000": 3.0})

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (BOUNDS[-1], 4850))  # 2000 + 0.95 x 3000


def test_time_to_first_response_comes_from_our_models_where_triton_exports_no_histogram(rules_file: Path) -> None:
    # Triton 2.51 (the lab): only our family. Pod 0: BLS's first responses in (250, 500] ms -> p95 = 250 +
    # 0.95 x 250 = 487.5; pod 1: in (1000, 2000] -> 1950. The engine behind BLS answers within 50 ms and
    # must not pull the pod's value down.
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        slow = {"500": 10.0} if j % 2 == 0 else {"2000": 4.0}
        return histogram(namespace, pod, "tensorrt_llm_bls", slow, OURS) + histogram(
            namespace, pod, "tensorrt_llm", {"50": 40.0}, OURS
        )

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (487.5, 1950))


def test_tritons_histogram_wins_over_ours_where_a_pod_exports_both(rules_file: Path) -> None:
    # Pod 0 exports both (a newer Triton serving our models): Triton's (100, 500] -> 480, never ours
    # (all in (5000, 10000] -> 9750). Pod 1 has ours alone: (1000, 2000] -> 1950.
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        ours = histogram(namespace, pod, "tensorrt_llm_bls", {"10000": 5.0} if j % 2 == 0 else {"2000": 4.0}, OURS)
        return ours + (histogram(namespace, pod, "tensorrt_llm_bls", {"500": 10.0}) if j % 2 == 0 else [])

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (480, 1950))


def test_tritons_idle_histogram_still_wins_over_ours(rules_file: Path) -> None:
    # Where Triton exports the family it is the source even while idle (0), so a pod never switches
    # between two bucket layouts as traffic comes and goes; ours answers on pod 1 alone.
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        ours = histogram(namespace, pod, "tensorrt_llm_bls", {"2000": 4.0}, OURS)
        idle = [
            series(f"{FAMILY}_{kind}", namespace, pod, "7x40", model="tensorrt_llm_bls", version="1", **extra)
            for kind, extra in [
                *(("bucket", {"le": le}) for le in [*(f"{b:g}" for b in BOUNDS), "+Inf"]),
                ("count", {}),
            ]
        ]
        return ours + (idle if j % 2 == 0 else [])

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (0, 1950))


def test_our_idle_histogram_gives_zero_not_missing(rules_file: Path) -> None:
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        return [
            series(f"{OURS}_{kind}", namespace, pod, "3x40", model="tensorrt_llm", version="1", **extra)
            for kind, extra in [
                *(("bucket", {"le": le}) for le in [*(f"{b:g}" for b in OUR_BOUNDS), "+Inf"]),
                ("count", {}),
            ]
        ]

    expect(rules_file, everywhere(make), "triton:first_response_ms:p95", (0, 0))


def test_batch_fullness_is_active_over_max_per_pod(rules_file: Path) -> None:
    # As the backend reports them: waiting is part of active, scheduled = active - waiting (model_instance_state.cc:1441).
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        active, maximum = (6, 8) if j % 2 == 0 else (8, 8)
        return [
            series(
                "nv_trt_llm_request_metrics",
                namespace,
                pod,
                f"{v}x40",
                model="tensorrt_llm",
                version="1",
                request_type=t,
            )
            for t, v in (("active", active), ("max", maximum), ("waiting", 1), ("scheduled", active - 1))
        ]

    expect(rules_file, everywhere(make), "trtllm:batch:fullness", (0.75, 1))


def test_the_executors_queue_is_our_families_sum_per_pod(rules_file: Path) -> None:
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        return [
            series(
                "llmprep_executor_queued_requests", namespace, pod, f"{3 + 4 * j}x40", model="tensorrt_llm", version="1"
            )
        ]

    expect(rules_file, everywhere(make), "trtllm:requests_queued", (3, 7))


def test_requests_in_flight_add_up_over_the_models_that_count_entry_and_exit(rules_file: Path) -> None:
    # Entered in preprocessing (+), left in postprocessing with the final response (-): 9 - 2 and 12 - 0.
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        entered, left = (9, -2) if j % 2 == 0 else (12, 0)
        return [
            series("llmprep_requests_in_flight", namespace, pod, f"{entered}x40", model="preprocessing", version="1"),
            series("llmprep_requests_in_flight", namespace, pod, f"{left}x40", model="postprocessing", version="1"),
        ]

    expect(rules_file, everywhere(make), "llmprep:requests_in_flight", (7, 12))


def test_a_wrong_expectation_fails_under_promtool(rules_file: Path) -> None:
    def make(namespace: str, pod: str, j: int) -> list[dict[str, str]]:
        return [series("llmprep_executor_queued_requests", namespace, pod, "3x40", model="tensorrt_llm", version="1")]

    with pytest.raises(PrometheusError, match="fail"):
        expect(rules_file, everywhere(make), "trtllm:requests_queued", (3, 4))

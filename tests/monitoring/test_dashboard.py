from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep import chart
from tests.conftest import ROOT
from tests.monitoring.conftest import NAMESPACE, PODS, SIGNALS, Release, chart_rules

DASHBOARD_PATH = ROOT / "chart" / "dashboards" / "llmprep-triton.json"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
TARGETS = [(p["title"], t["refId"], t["expr"]) for p in PANELS for t in p["targets"]]
VARIABLES = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]

# What Grafana puts in for the variables: the "All" value, or one chosen pod.
SELECTIONS = {
    "all pods": {"namespace": NAMESPACE, "pod": ".*", "hpa": ".*"},
    "one pod": {"namespace": NAMESPACE, "pod": PODS[1], "hpa": ".*"},
}


def interpolate(expr: str, values: dict[str, str]) -> str:
    """Grafana's substitution of $__rate_interval and the dashboard's variables."""
    expr = expr.replace("$__rate_interval", "1m")
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], expr)


def label_values_query(query: str) -> str:
    """Grafana's label_values(selector, label) as the PromQL that finds the same values."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    assert match, query
    return f"group by ({match.group(2)}) ({match.group(1)})"


def test_every_panel_has_a_unique_id_and_uses_the_datasource_variable() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["datasource"]["uid"] == "${datasource}" for p in PANELS for t in p["targets"])


def test_panels_do_not_overlap_on_the_grid() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, panel["title"]
        cells |= mine


def test_every_recorded_signal_has_a_panel() -> None:
    exprs = " ".join(expr for _, _, expr in TARGETS)
    assert [s for s in SIGNALS if s not in exprs] == []


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("title", "ref", "expr"), TARGETS, ids=[f"{t}/{r}" for t, r, _ in TARGETS])
def test_every_panel_query_parses_and_returns_series(
    release: Release, title: str, ref: str, expr: str, selection: str
) -> None:
    query = interpolate(expr, SELECTIONS[selection])
    samples = release.prometheus.wait_for(query, timeout=30)
    assert samples, f"{title} {ref}: {query}"


@pytest.mark.parametrize("variable", VARIABLES, ids=[v["name"] for v in VARIABLES])
def test_every_variable_query_finds_values(release: Release, variable: dict[str, Any]) -> None:
    query = interpolate(label_values_query(variable["query"]["query"]), SELECTIONS["all pods"])
    assert release.prometheus.query(query)


def test_the_pod_variable_lists_the_release_pods(release: Release) -> None:
    pod_var = next(v for v in VARIABLES if v["name"] == "pod")
    query = interpolate(label_values_query(pod_var["query"]["query"]), SELECTIONS["all pods"])
    assert sorted(s.labels["pod"] for s in release.prometheus.query(query)) == sorted(PODS)


def test_the_chart_renders_the_dashboard_into_a_configmap_grafanas_sidecar_imports() -> None:
    values = chart.merge_values([], ["triton.image.name=registry.example/llmprep-triton:26.07"])
    (configmap,) = chart.find(chart.render(values, release="gpt2", namespace="llm"), "ConfigMap", "gpt2-dashboards")
    sidecar = yaml.safe_load((ROOT / "monitoring" / "kube-prometheus-stack.values.yaml").read_text())["grafana"][
        "sidecar"
    ]
    label = sidecar["dashboards"]["label"]
    assert configmap["metadata"]["labels"][label] == sidecar["dashboards"]["labelValue"]
    assert json.loads(configmap["data"]["llmprep-triton.json"]) == DASHBOARD


def test_every_signal_panel_reads_only_rules_the_chart_records(tmp_path: Path) -> None:
    groups = yaml.safe_load(chart_rules(tmp_path).read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    rows = sorted((p for p in DASHBOARD["panels"] if p["type"] == "row"), key=lambda p: p["gridPos"]["y"])
    first, second = rows[0]["gridPos"]["y"], rows[1]["gridPos"]["y"]
    signal_panels = [p for p in PANELS if first < p["gridPos"]["y"] < second]
    names = {re.match(r"[\w:]+", t["expr"]).group(0) for p in signal_panels for t in p["targets"]}  # type: ignore[union-attr]
    assert "triton:first_response_ms:p95" in names
    assert names <= recorded, names - recorded

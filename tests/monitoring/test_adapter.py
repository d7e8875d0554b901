from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from llmprep.lab.adapter import (
    ADAPTER_VALUES,
    AdapterError,
    AdapterRule,
    discover,
    go_quote,
    load_rules,
    pod_metric_values,
    pods_query,
    render_template,
    served_value,
)
from tests.monitoring.conftest import SIGNALS, Release

ARGS: dict[str, Any] = {
    "Series": "s",
    "LabelMatchers": 'namespace="ns",pod=~"a|b"',
    "LabelValuesByName": {"namespace": "ns", "pod": "a|b"},
    "GroupBy": "pod",
    "GroupBySlice": ["pod"],
}
POD_RULE = AdapterRule(
    series_query='{__name__="s"}',
    metrics_query="sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    overrides={"namespace": "namespace", "kubernetes_pod": "pods"},
)


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", 'sum(s{namespace="ns",pod=~"a|b"}) by (pod)'),
        ("<< .Series >>", "s"),
        ("a  <<- .Series ->>  b", "asb"),
        ("<<.LabelValuesByName.pod>>", "a|b"),
        ("<<.GroupBySlice>>", "[pod]"),
        ("<<.LabelValuesByName>>", "map[namespace:ns pod:a|b]"),
        ("no actions", "no actions"),
    ],
)
def test_metrics_query_templates_render_as_go_text_template_does(template: str, rendered: str) -> None:
    assert render_template(template, ARGS) == rendered


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("<<if .Series>>x<<end>>", "not supported"),
        ("<<.Nope>>", "no field 'Nope'"),
        ('<<index .LabelValuesByName "pod">>', "not supported"),
    ],
)
def test_template_actions_the_adapter_would_run_differently_are_refused(template: str, message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        render_template(template, ARGS)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("gpt2-abc", '"gpt2-abc"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'), ("a\nb", '"a\\nb"'), ("é", '"é"')],
)
def test_label_values_are_quoted_like_go_percent_q(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


@pytest.mark.parametrize(
    ("pods", "selector", "query"),
    [
        (["a"], None, 'sum(s{namespace="ns",kubernetes_pod="a"}) by (kubernetes_pod)'),
        (["a", "b"], None, 'sum(s{namespace="ns",kubernetes_pod=~"a|b"}) by (kubernetes_pod)'),
        (
            ["a"],
            {"model": "m", "app": "x"},
            'sum(s{app="x",model="m",namespace="ns",kubernetes_pod="a"}) by (kubernetes_pod)',
        ),
    ],
)
def test_label_matchers_put_the_selector_then_namespace_then_pods(
    pods: list[str], selector: dict[str, str] | None, query: str
) -> None:
    assert pods_query(POD_RULE, "s", "ns", pods, selector) == query


@pytest.mark.parametrize(
    ("matches", "as_", "filters", "series", "name"),
    [
        (".*", "", (), "triton:queue_compute:ratio", "triton:queue_compute:ratio"),
        ("^(.*)_total$", "", (), "http_requests_total", "http_requests"),
        ("^(.*)_total$", "${1}_per_second", (), "http_requests_total", "http_requests_per_second"),
        ("^(?P<base>.*)_us$", "$base", (), "latency_us", "latency"),
        ("^(.*)_total$", "", (), "http_requests", None),
        (".*", "", (("isNot", "^http_"),), "http_requests_total", None),
        (".*", "", (("is", "^http_"),), "http_requests_total", "http_requests_total"),
    ],
)
def test_series_names_map_to_api_names_as_the_adapter_names_them(
    matches: str, as_: str, filters: tuple[tuple[str, str], ...], series: str, name: str | None
) -> None:
    rule = AdapterRule(
        series_query="{}", metrics_query="<<.Series>>", name_matches=matches, name_as=as_, filters=filters
    )
    assert rule.api_name(series) == name


@pytest.mark.parametrize(
    ("value", "served"), [(1.23456, 1.234), (-0.0015, -0.001), (2.0, 2.0), (math.nan, 0.0), (0.0009, 0.0)]
)
def test_values_are_served_as_truncated_milli_quantities(value: float, served: float) -> None:
    assert served_value(value) == served


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: {custom: []}", "has no adapter rules"),
        ("rules: {custom: [{seriesQuery: '{}'}]}", r"rules.custom\[0\].metricsQuery is missing"),
        ("rules: {custom: [{seriesQuery: '{}', metricsQuery: '<<.Bad>>'}]}", "no field 'Bad'"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_a_broken_rules_file_is_one_line_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    with pytest.raises(AdapterError, match=message) as info:
        load_rules(path)
    assert "\n" not in str(info.value).strip() or "YAML" in str(info.value)


def test_the_adapter_config_format_with_a_rules_list_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("rules:\n  - seriesQuery: '{}'\n    metricsQuery: '<<.Series>>'\n")
    assert [r.metrics_query for r in load_rules(path)] == ["<<.Series>>"]


def test_the_values_file_exposes_every_recorded_signal_under_its_own_name() -> None:
    rules = load_rules(ADAPTER_VALUES)
    assert sorted(rule.api_name(signal) or "" for rule, signal in zip(rules, SIGNALS, strict=True)) == sorted(SIGNALS)


@pytest.mark.parametrize("signal", SIGNALS)
def test_each_rule_query_returns_exactly_one_series_per_pod_in_a_real_prometheus(release: Release, signal: str) -> None:
    resolved = discover(load_rules(ADAPTER_VALUES), release.prometheus)[signal]
    query = pods_query(resolved.rule, resolved.series, release.namespace, release.pods)
    samples = release.prometheus.query(query)
    assert sorted(s.labels["pod"] for s in samples) == sorted(release.pods)


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_lab_is_served_the_recorded_value_of_each_pod(release: Release, signal: str) -> None:
    values = pod_metric_values(load_rules(), release.prometheus, signal, release.namespace, release.pods)
    recorded = {
        s.labels["pod"]: s.value for s in release.prometheus.query(f'{signal}{{namespace="{release.namespace}"}}')
    }
    assert values.keys() == recorded.keys()
    # equal up to the adapter's milli truncation (and a rule evaluation in between the two queries)
    assert all(abs(values[pod] - recorded[pod]) <= 0.0011 for pod in values)


def test_a_metric_no_rule_exposes_is_one_line_naming_it(release: Release) -> None:
    with pytest.raises(AdapterError, match="no adapter rule exposes a pod metric named 'nope'"):
        pod_metric_values(load_rules(), release.prometheus, "nope", release.namespace, release.pods)


def test_pods_without_series_are_reported_as_no_metrics_returned(release: Release) -> None:
    with pytest.raises(AdapterError, match="no metrics returned"):
        pod_metric_values(load_rules(), release.prometheus, SIGNALS[0], release.namespace, ["gone-pod"])

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llmprep.lab.prometheus import (
    PrometheusError,
    PrometheusServer,
    ScrapeTarget,
    check_rules,
    create_blocks,
    duration,
    locate_prometheus,
    render_config,
    test_rules,
)
from tests.monitoring.exporter import Exporter, exposition

GOOD_RULES = """\
groups:
  - name: demo
    rules:
      - record: demo:up:sum
        expr: sum(up)
"""

BAD_RULES = """\
groups:
  - name: demo
    rules:
      - record: demo:broken
        expr: sum(rate(up[1m])
"""

RULE_TESTS = """\
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="a"}'
        values: '1 1 1'
      - series: 'up{job="b"}'
        values: '1 1 1'
    promql_expr_test:
      - expr: demo:up:sum
        eval_time: 2m
        exp_samples:
          - labels: 'demo:up:sum'
            value: EXPECTED
"""


def gauge(value: float) -> str:
    return exposition([("demo_value", "gauge", [({}, value)])])


@pytest.mark.parametrize(("seconds", "text"), [(1.0, "1s"), (0.5, "500ms"), (15, "15s"), (90, "90s"), (2.25, "2250ms")])
def test_durations_are_written_in_prometheus_units(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_a_duration_that_is_not_positive_is_refused(seconds: float) -> None:
    with pytest.raises(PrometheusError, match="positive"):
        duration(seconds)


def test_the_config_has_one_job_per_name_with_target_labels_and_intervals(tmp_path: Path) -> None:
    config = yaml.safe_load(
        render_config(
            [
                ScrapeTarget("127.0.0.1:1", labels={"namespace": "ns", "pod": "a"}),
                ScrapeTarget("127.0.0.1:2", labels={"namespace": "ns", "pod": "b"}),
                ScrapeTarget("127.0.0.1:3", job="dcgm", interval_s=5),
            ],
            [tmp_path / "rules.yaml"],
            scrape_interval_s=1,
            evaluation_interval_s=2,
        )
    )
    assert config["global"]["evaluation_interval"] == "2s"
    assert config["rule_files"] == [str(tmp_path / "rules.yaml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [c["labels"]["pod"] for c in jobs["triton"]["static_configs"]] == ["a", "b"]
    assert jobs["dcgm"]["scrape_interval"] == "5s"


def test_missing_binaries_name_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(PrometheusError) as info:
        locate_prometheus(search_path=str(tmp_path))
    assert str(info.value) == "prometheus not found on PATH; install it with: apt-get install -y prometheus"


@pytest.fixture(scope="module")
def scraping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus scraping one exporter (labels as a PodMonitor sets them) with one rule file."""
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    rules.write_text(GOOD_RULES)
    with (
        Exporter(lambda: gauge(42)) as exporter,
        PrometheusServer(
            targets=[ScrapeTarget(exporter.address, labels={"namespace": "ns", "pod": "pod-a"})], rule_files=[rules]
        ) as prom,
    ):
        prom.wait_for("demo_value")
        yield prom


def test_a_real_prometheus_scrapes_a_target_with_the_target_labels(scraping: PrometheusServer) -> None:
    sample = scraping.query("demo_value")[0]
    assert (sample.labels["pod"], sample.labels["namespace"], sample.value) == ("pod-a", "ns", 42)


def test_a_range_query_returns_the_points_of_each_series(scraping: PrometheusServer) -> None:
    now = time.time()
    series = scraping.wait_for("count_over_time(demo_value[1m]) >= 2")
    assert series
    points = scraping.query_range("demo_value", now - 30, now, 1)[0].points
    assert points and {v for _, v in points} == {42}


def test_rule_files_are_loaded_and_recorded_series_appear(scraping: PrometheusServer) -> None:
    assert scraping.wait_for("demo:up:sum", lambda r: bool(r) and r[0].value == 1)
    assert [g["name"] for g in scraping.rule_groups()] == ["demo"]


@pytest.mark.slow
def test_targets_are_added_and_removed_while_prometheus_runs() -> None:
    with (
        Exporter(lambda: gauge(1)) as a,
        Exporter(lambda: gauge(2)) as b,
        PrometheusServer(targets=[ScrapeTarget(a.address, labels={"pod": "a"})]) as prom,
    ):
        prom.wait_for("demo_value")
        prom.add_target(ScrapeTarget(b.address, labels={"pod": "b"}))
        both = prom.wait_for("demo_value", lambda r: len(r) == 2)
        assert {s.labels["pod"]: s.value for s in both} == {"a": 1, "b": 2}
        prom.remove_target(a.address)
        assert [t["labels"]["pod"] for t in prom.active_targets()] == ["b"]


def test_a_reload_with_a_broken_rule_file_is_refused_and_the_old_config_keeps_running(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_RULES)
    with PrometheusServer() as prom:
        with pytest.raises(PrometheusError, match="refused the new config"):
            prom.set_rule_files([bad])
        assert prom.ready()


def test_a_query_that_does_not_parse_is_an_error_naming_the_parse_problem() -> None:
    with PrometheusServer() as prom, pytest.raises(PrometheusError, match="bad_data"):
        prom.query("sum(rate(up[1m])")


def test_stop_ends_the_process_and_removes_its_work_folder() -> None:
    prom = PrometheusServer().start()
    workdir = prom.workdir
    assert prom.stop() == 0
    assert prom.proc is not None and prom.proc.poll() is not None
    assert not workdir.exists()


def test_promtool_check_rules_accepts_good_rules_and_names_the_broken_ones(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD_RULES)
    bad.write_text(BAD_RULES)
    assert any("SUCCESS" in line for line in check_rules(good))
    with pytest.raises(PrometheusError, match="bad.yaml"):
        check_rules(bad)


@pytest.mark.parametrize(("expected", "passes"), [(2, True), (3, False)])
def test_promtool_test_rules_passes_or_fails_on_the_expected_value(tmp_path: Path, expected: int, passes: bool) -> None:
    (tmp_path / "rules.yaml").write_text(GOOD_RULES)
    cases = tmp_path / "tests.yaml"
    cases.write_text(RULE_TESTS.replace("EXPECTED", str(expected)))
    if passes:
        test_rules(cases)
    else:
        with pytest.raises(PrometheusError, match="fail"):
            test_rules(cases)


def test_backfilled_openmetrics_samples_are_queryable_after_start(tmp_path: Path) -> None:
    start = int(time.time()) - 3600
    lines = ["# TYPE demo_backfill gauge"]
    lines += [f'demo_backfill{{pod="old"}} {i} {start + 60 * i}' for i in range(10)]
    source = tmp_path / "samples.om"
    source.write_text("\n".join(lines) + "\n# EOF\n")
    storage = tmp_path / "tsdb"
    create_blocks(source, storage)
    with PrometheusServer(storage_path=storage) as prom:
        samples = prom.query("demo_backfill", at=start + 60 * 5)
        assert [(s.labels["pod"], s.value) for s in samples] == [("old", 5)]

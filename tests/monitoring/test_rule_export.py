from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from llmprep.lab.adapter import load_rules
from llmprep.lab.prometheus import check_rules
from tests.conftest import ROOT
from tests.monitoring.conftest import chart_rules

SCRIPT = ROOT / "scripts" / "export_rules.py"
STANDALONE = ROOT / "monitoring" / "prometheus-rule.yaml"


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_standalone_prometheus_rule_is_what_the_chart_renders() -> None:
    result = export("--check")
    assert result.returncode == 0, result.stderr


def test_a_stale_standalone_copy_is_caught_in_one_line(tmp_path: Path) -> None:
    stale = tmp_path / "rule.yaml"
    stale.write_text(STANDALONE.read_text().replace("interval: 6s", "interval: 7s"))
    result = export("--check", "--output", str(stale))
    assert result.returncode == 1
    assert result.stderr == f"error: {stale} is not what the chart renders; run python scripts/export_rules.py\n"


def test_a_copy_for_another_release_selects_that_releases_pods(tmp_path: Path) -> None:
    out = tmp_path / "rule.yaml"
    assert export("--release", "llama", "--namespace", "prod", "--output", str(out)).returncode == 0
    assert 'namespace="prod",pod=~"llama-[a-z0-9]+-[a-z0-9]+"' in out.read_text()


def test_the_standalone_rules_pass_promtool(tmp_path: Path) -> None:
    groups = yaml.safe_load(STANDALONE.read_text())["spec"]["groups"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    check_rules(rules)


def test_the_adapter_exposes_exactly_the_signals_the_chart_records(tmp_path: Path) -> None:
    groups = yaml.safe_load(chart_rules(tmp_path).read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    rules = load_rules()
    assert len(rules) == len(recorded)
    assert all([rule.api_name(signal) for rule in rules].count(signal) == 1 for signal in recorded)

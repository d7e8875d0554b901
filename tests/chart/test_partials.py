"""The chart's helpers live beside what uses them, list-taking helpers check their arity, and the
values schema names its repeated patterns once (`$defs`) in a form Helm's validator reads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import CHART, values_of
from tests.chart.schema_refs import inline_refs

TEMPLATES = CHART / "templates"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFINE = re.compile(r'\{\{-?\s*define\s+"([^"]+)"')


def defines(path: Path) -> list[str]:
    return DEFINE.findall(path.read_text())


def test_helpers_tpl_keeps_only_names_labels_and_the_image() -> None:
    assert sorted(defines(TEMPLATES / "_helpers.tpl")) == sorted(
        [
            "llmprep.name",
            "llmprep.fullname",
            "llmprep.chart",
            "llmprep.selectorLabels",
            "llmprep.extraLabels",
            "llmprep.labels",
            "llmprep.image",
        ]
    )


@pytest.mark.parametrize(
    ("partial", "helper"),
    [
        ("_pod.tpl", "llmprep.podTemplate"),
        ("_pod.tpl", "llmprep.probes"),
        ("_multinode.tpl", "llmprep.groupSize"),
        ("_autoscaling.tpl", "llmprep.podMatcher"),
        ("_autoscaling.tpl", "llmprep.alertLabels"),
        ("_validate.tpl", "llmprep.validateMultinode"),
    ],
)
def test_each_helper_lives_in_the_partial_of_what_uses_it(partial: str, helper: str) -> None:
    assert helper in defines(TEMPLATES / partial)


def test_every_helper_is_defined_once_across_the_partials() -> None:
    names = [name for path in sorted(TEMPLATES.glob("_*.tpl")) for name in defines(path)]
    assert sorted(names) == sorted(set(names))


def test_the_probes_are_written_once_for_serving_pods_and_workers() -> None:
    text = (TEMPLATES / "_pod.tpl").read_text()
    assert text.count("startupProbe") == 1 and text.count('include "llmprep.probes"') == 2


@pytest.mark.parametrize(
    ("helper", "argument"),
    [
        ("llmprep.probes", "(list .)"),
        ("llmprep.probes", '(list . "leader")'),
        ("llmprep.volumeMounts", "."),
        ("llmprep.monitoringOn", '(list . "podMonitor" "extra")'),
        ("llmprep.alertLabels", '(list . "targetDown")'),
        ("llmprep.podTemplate", '(dict "root" . "role" "master")'),
    ],
)
def test_a_helper_called_against_its_convention_fails_naming_how_to_call_it(
    tmp_path: Path, helper: str, argument: str
) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    (copy / "templates" / "zz-misuse.yaml").write_text(f'{{{{ include "{helper}" {argument} }}}}\n')
    with pytest.raises(SpecError) as caught:
        chart.render(values_of(), chart_dir=copy)
    assert f"{helper}:" in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- schema $defs


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_the_schema_is_draft_2020_12_so_keywords_beside_a_ref_apply() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_ref_names_a_def_and_every_def_is_used() -> None:
    used = {r.removeprefix("#/$defs/") for r in refs(SCHEMA)}
    assert used == set(SCHEMA["$defs"])


@pytest.mark.parametrize("name", ["quantity", "duration", "dnsName"])
def test_the_named_patterns_are_written_once(name: str) -> None:
    pattern = SCHEMA["$defs"][name]["pattern"]
    assert json.dumps(SCHEMA).count(json.dumps(pattern)) == 1


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("triton.shmSize=4x", "triton.shmSize"),
        ("monitoring.alerts.targetDown.for=soon", "monitoring.alerts.targetDown.for"),
        ("kubernetes.priorityClassName=Not_A_Name", "kubernetes.priorityClassName"),
        ("multinode.maxSurge=lots", "multinode.maxSurge"),
        ("monitoring.alerts.atMaximum.bogus=1", "monitoring.alerts.atMaximum"),
    ],
)
def test_helm_refuses_a_bad_value_under_a_ref_naming_the_key(setting: str, key: str) -> None:
    with pytest.raises(SpecError) as caught:
        chart.render(values_of(sets=[setting]))
    assert str(caught.value).startswith(f"{key}:")


def scalar_leaves(node: dict[str, Any], path: str = "") -> set[str]:
    out = set()
    for name, child in node.get("properties", {}).items():
        if "properties" in child:
            out |= scalar_leaves(child, f"{path}{name}.")
        elif "type" in child or "anyOf" in child or "enum" in child:
            out.add(f"{path}{name}")
    return out


def test_inlining_the_refs_gives_every_key_that_used_one_its_type_back() -> None:
    inlined = inline_refs(SCHEMA)
    assert "$ref" not in json.dumps(inlined)
    assert scalar_leaves(inlined) > scalar_leaves(SCHEMA)
    assert inlined["properties"]["triton"]["properties"]["shmSize"]["anyOf"][0]["type"] == "string"

"""`llmprep.chart.merge_values` composes values as `helm install -f … --set …` does.

The expectations come from Helm's documentation (helm install --help, "Values Files" and
"The Format and Limitations of --set") and, for every expression, from Helm's own parser
(`helm_python.parse_set_string`): applying `--set A --set B` onto nothing must equal Helm
parsing `A,B`, which is how Helm applies each flag onto the values before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmprep.chart import apply_set, merge_values
from llmprep.errors import UsageError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("first", "second", "merged"),
    [
        # the right-most file wins
        ("a: 1\n", "a: 2\n", {"a": 2}),
        # maps merge key by key, at any depth
        ("m: {x: 1, p: {z: 1}}\n", "m: {p: {w: 2}}\n", {"m": {"x": 1, "p": {"z": 1, "w": 2}}}),
        # lists replace whole
        ("gpu: [A, B]\n", "gpu: [C]\n", {"gpu": ["C"]}),
        # a scalar replaces a map and a map replaces a scalar
        ("a: {b: 1}\n", "a: 3\n", {"a": 3}),
        ("a: 3\n", "a: {b: 1}\n", {"a": {"b": 1}}),
        # null stays (Helm deletes the key when it coalesces with the chart's defaults)
        ("a: {b: 1}\n", "a: null\n", {"a": None}),
        # an empty file changes nothing
        ("a: 1\n", "", {"a": 1}),
    ],
)
def test_values_files_merge_in_order_as_helm_merges_them(
    tmp_path: Path, first: str, second: str, merged: dict[str, Any]
) -> None:
    files = [write(tmp_path, "1.yaml", first), write(tmp_path, "2.yaml", second)]
    assert merge_values(files, []) == merged


@pytest.mark.parametrize(
    ("files", "sets", "merged"),
    [
        # --set wins over every file
        (["a: 1\n"], ["a=2"], {"a": 2}),
        # the right-most --set wins
        ([], ["a=1", "a=2"], {"a": 2}),
        # a list index replaces only that element of a list a file set (SEED-VALUES.md)
        (["gpu: [A, B]\n"], ["gpu[0]=X"], {"gpu": ["X", "B"]}),
        # an index past the end grows the list with nulls
        (["gpu: [A]\n"], ["gpu[2]=X"], {"gpu": ["A", None, "X"]}),
        # a key inside a list element merges into that element
        (["s: [{port: 80, host: a}]\n"], ["s[0].port=81"], {"s": [{"port": 81, "host": "a"}]}),
        # {a,b} replaces the whole list
        (["gpu: [A, B, C]\n"], ["gpu={X,Y}"], {"gpu": ["X", "Y"]}),
        # dotted keys merge into maps a file set
        (["m: {x: 1}\n"], ["m.y=2"], {"m": {"x": 1, "y": 2}}),
        # values are typed: integers, booleans, null; a leading zero keeps a string
        ([], ["i=10,b=true,n=null,z=007"], {"i": 10, "b": True, "n": None, "z": "007"}),
        # escapes: a dot inside a key, a comma inside a value
        ([], [r"sel.kubernetes\.io/role=gpu", r"v=a\,b"], {"sel": {"kubernetes.io/role": "gpu"}, "v": "a,b"}),
        # Helm's quirk, kept: an empty value at the very end of a flag drops a new list element
        ([], ["s[0].port="], {"s": []}),
        # the tutorials' list form of kubernetes.labels when no file set labels
        ([], ["kubernetes.labels[0].model=llama-3-8b"], {"kubernetes": {"labels": [{"model": "llama-3-8b"}]}}),
    ],
)
def test_set_flags_apply_onto_the_merged_files_as_helm_applies_them(
    tmp_path: Path, files: list[str], sets: list[str], merged: dict[str, Any]
) -> None:
    paths = [write(tmp_path, f"{i}.yaml", text) for i, text in enumerate(files)]
    assert merge_values(paths, sets) == merged


@pytest.mark.parametrize(
    ("values", "expression", "named"),
    [
        ({"kubernetes": {"labels": {}}}, "kubernetes.labels[0].model=x", r"kubernetes\.labels is a map"),
        ({"kubernetes": {"labels": [{"a": "b"}]}}, "kubernetes.labels.model=x", r"kubernetes\.labels is a list"),
        ({"gpu": ["A"]}, "gpu.first=X", "gpu is a list"),
        ({"a": None}, "a.b=1", "a is null"),
        ({"s": [{"p": [1]}]}, "s[0].p.q=1", r"s\[0\]\.p is a list"),
    ],
)
def test_set_that_helm_refuses_onto_the_files_values_fails_naming_the_key(
    values: dict[str, Any], expression: str, named: str
) -> None:
    with pytest.raises(UsageError, match=named):
        apply_set(values, expression)


@pytest.mark.parametrize("expression", ["a", "a[x]=1", "a={1,2", "a[-1]=2"])
def test_malformed_set_fails_with_helms_own_message(expression: str) -> None:
    with pytest.raises(UsageError, match="--set"):
        merge_values([], [expression])


def test_merge_leaves_the_given_values_untouched() -> None:
    values = {"gpu": ["A", "B"]}
    apply_set(values, "gpu[0]=X")
    assert values == {"gpu": ["A", "B"]}


def test_missing_values_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        merge_values([tmp_path / "absent.yaml"], [])


_key = st.sampled_from(["a", "b", "gpu", "model"])
_SCALARS = ["1", "0", "true", "False", "null", "x", "012", "-3", "1500m", "a b", "+4", "1.5"]
_list_value = st.lists(st.sampled_from(["1", "x", "true"]), min_size=1, max_size=3).map(
    lambda v: "{" + ",".join(v) + "}"
)


@st.composite
def _assignment(draw: st.DrawFn, empty: bool = False) -> str:
    path = draw(_key)
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            path += f"[{draw(st.integers(0, 2))}]"
        path += "." + draw(_key)
    if draw(st.booleans()):
        path += f"[{draw(st.integers(0, 2))}]"
    scalars = st.sampled_from(_SCALARS + ([""] if empty else []))
    return f"{path}={draw(st.one_of(scalars, _list_value))}"


def _helm_parse(expression: str) -> dict[str, Any] | None:
    try:
        return helm_python.parse_set_string(expression)
    except helm_python.HelmError:
        return None


def _check(expected: dict[str, Any] | None, sets: list[str]) -> None:
    if expected is None:  # Helm refuses: so must we
        with pytest.raises(UsageError):
            merge_values([], sets)
    else:
        assert merge_values([], sets) == expected


@settings(max_examples=400, deadline=None)
@given(st.lists(_assignment(empty=True), min_size=1, max_size=4).map(",".join))
def test_one_set_expression_gives_what_helms_parser_gives(expression: str) -> None:
    _check(_helm_parse(expression), [expression])


@settings(max_examples=400, deadline=None)
@given(st.lists(_assignment(), min_size=1, max_size=4))
def test_set_flags_one_after_another_equal_helms_parse_of_them_joined(assignments: list[str]) -> None:
    # Helm applies each --set onto the values before it; parsing `A,B` applies B onto A the same way.
    # (Not for a flag ending in an empty value: Helm drops `a[0].b=` at the end of a flag, not mid-string.)
    _check(_helm_parse(",".join(assignments)), assignments)

"""Property-based tests over the chart's values, rendered through Helm (llmprep.chart.render).

The oracle is independent of Helm: the `jsonschema` package judges each drawn value against the
key's own piece of chart/values.schema.json. Then: a value it finds invalid must be refused by
the chart with a message naming the key; a value it finds valid must render (or, for the few keys
whose meaning depends on another key, be refused naming one of them). Every scalar key the schema
types is drawn, so a key added to the chart is covered without editing this file.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import IMAGE

RAW_SCHEMA = json.loads((chart.CHART_DIR / "values.schema.json").read_text())


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with each local `$ref` ("#/$defs/NAME") replaced by its definition (beside the
    node's other keywords), so a key's own piece of the schema stands alone for the oracle."""
    if isinstance(node, dict):
        out = {k: inline_refs(v, defs) for k, v in node.items() if k not in ("$ref", "$defs")}
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith("#/$defs/"), f"only local $defs references are followed: {ref}"
            return {**inline_refs(defs[ref.removeprefix("#/$defs/")], defs), **out}
        return out
    if isinstance(node, list):
        return [inline_refs(v, defs) for v in node]
    return node


SCHEMA = inline_refs(RAW_SCHEMA, RAW_SCHEMA.get("$defs", {}))
SCALARS = {"string", "integer", "number", "boolean"}
BASE: dict[str, Any] = {"triton": {"image": {"name": IMAGE}}}
SKIP_TOP = {"global"}  # Helm's own


def _types(node: dict[str, Any]) -> set[str] | None:
    """The JSON types a schema node admits, when it admits scalars only (None otherwise)."""
    if "enum" in node:
        return {type(v).__name__ for v in node["enum"]}
    if "anyOf" in node:
        found: set[str] = set()
        for branch in node["anyOf"]:
            inner = _types(branch)
            if inner is None:
                return None
            found |= inner
        return found
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    return kinds if kinds and kinds <= SCALARS | {"null"} else None


def leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every scalar key reachable through `properties`, with its schema."""
    for name, child in node.get("properties", {}).items():
        if not path and name in SKIP_TOP:
            continue
        if _types(child) is not None:
            yield (*path, name), child
        elif "properties" in child:
            yield from leaves(child, (*path, name))


LEAVES = sorted(leaves(SCHEMA))
DOTTED = [".".join(p) for p, _ in LEAVES]


def _string_from(node: dict[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = node.get("minLength", 0), node.get("maxLength", 40)
    if "pattern" in node:
        base: st.SearchStrategy[str] = st.from_regex(node["pattern"], alphabet=string.printable.strip() + " ")
    else:
        base = st.text(alphabet=string.printable, max_size=hi)
    return base.filter(lambda s: lo <= len(s) <= hi)


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values meant to be valid for a scalar schema node (the oracle still has the last word)."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:
        return st.one_of([from_schema(b) for b in node["anyOf"]])
    kind = node.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = node.get("minimum", -(10**6))
        return st.integers(low, node.get("maximum", low + 10**6))
    if kind == "number":
        low = node.get("minimum", -(10**6))
        return st.floats(low, node.get("maximum", low + 10**6), allow_nan=False, allow_infinity=False)
    if kind == "string":
        return _string_from(node)
    return st.nothing()


# Anything a values file or --set could carry (no null: Helm deletes a key set to null).
ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(-(10**7), 10**7),
    st.floats(-1e7, 1e7, allow_nan=False),
    st.text(alphabet=string.printable, max_size=24),
    st.sampled_from(["", "0", "-1", "1e999", "yes", "null", "{}", "a b", "x" * 300, "ünïcode", "a\nb: c"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "name"]), st.integers(0, 3), max_size=1),
)


def go_patterns(node: Any) -> Any:
    """The schema with each pattern's final `$` as Go's RE2 reads it: the very end (Python's `$` also
    matches before a final newline, which Helm's validator refuses)."""
    if isinstance(node, dict):
        return {
            k: (v[:-1] + r"\Z" if k == "pattern" and v.endswith("$") and not v.endswith("\\$") else go_patterns(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [go_patterns(v) for v in node]
    return node


def valid(node: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(go_patterns(node)).is_valid(value)


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    values = copy.deepcopy(BASE)
    target: dict[str, Any] = values
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return values


# Keys whose schema-valid values may still be refused because they must agree with another key's
# value (a documented rule each); the refusal must name the key or its partner.
CROSS_FIELD: dict[str, tuple[str, ...]] = {
    "autoscaling.metric.name": ("autoscaling.metric.name",),  # empty while autoscaling has no other metric
    "autoscaling.replicas.minimum": ("autoscaling.replicas.maximum",),  # minimum <= maximum
    "autoscaling.replicas.maximum": ("autoscaling.replicas.maximum",),
    "model.tensorrtLlm.maxInputLen": ("model.tensorrtLlm.maxInputLen",),  # maxInputLen < maxSeqLen
    "model.tensorrtLlm.maxSeqLen": ("model.tensorrtLlm.maxInputLen",),
    "triton.image.name": ("triton.image.name",),  # required, so not empty
    # tensor × pipeline and gpusPerNode must divide one another; a group needs a shared cache.
    "model.tensorrtLlm.parallelism.tensor": (
        "multinode.gpusPerNode",
        "model.tensorrtLlm.parallelism",
        "model.persistentVolumeClaim",
    ),
    "model.tensorrtLlm.parallelism.pipeline": (
        "multinode.gpusPerNode",
        "model.tensorrtLlm.parallelism",
        "model.persistentVolumeClaim",
    ),
    "multinode.gpusPerNode": ("multinode.gpusPerNode",),
    "multinode.enabled": ("multinode", "model.persistentVolumeClaim", "cache.persistentVolumeClaim"),
}

# Strings the schema admits (no pattern) that these templates write into YAML unquoted, so the render
# breaks (found by this file, 2026-11-23; reported for the chart). Each is an xfail(strict=True) below:
# when the chart quotes the value or the schema narrows it to a Kubernetes name, the xfail turns into
# a failure and the key comes off this list.
# 2026-12-03 (tests-22, once every case compared strings): `"` breaks storageClassName and schedulerName,
# "/a: b" breaks hostRootPath and cache.mountPath (unquoted in the templates); DNS names such as "0.50"
# come back as the float 0.5 in object names, claimName, secretName, priorityClassName and
# serviceAccountName; quantities "0.50" as 0.5 in the cache claim's size and both sizeLimits.
# 2026-12-04 (chart2): all thirteen fixed in the templates (quoted; the cache path passed to the
# cache-owner script as an argument), so the list is empty.
UNQUOTED: set[str] = set()
DRAWN = [i for i, dotted in enumerate(DOTTED) if dotted not in UNQUOTED]


def render_refusal(values: dict[str, Any]) -> str | None:
    try:
        chart.render(values)
    except SpecError as exc:
        return str(exc)
    return None


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.sampled_from(DRAWN), st.data())
def test_no_valid_value_of_any_key_is_refused(index: int, data: st.DataObject) -> None:
    path, node = LEAVES[index]
    value = data.draw(st.one_of(from_schema(node), ANY_VALUE).filter(lambda v: valid(node, v)), label=".".join(path))
    refusal = render_refusal(with_value(path, value))
    dotted = ".".join(path)
    if refusal is not None and dotted in CROSS_FIELD:
        assert refusal.startswith((dotted, *CROSS_FIELD[dotted])), refusal
        return
    assert refusal is None, f"{dotted}={value!r} is valid by the schema but was refused: {refusal}"


# Characters that mean something to YAML or to Go templates, inside values the schema may admit.
AWKWARD = ['"', "'", "a: b", "#x", "{x}", "x\ny", "-", "*", "&a", "%", "@", "`", "{{ .Release.Name }}", " lead", "1e3"]
# Strings YAML would read as numbers (or octal) if written unquoted, in the shapes narrow patterns admit.
YAML_TYPED = ["0.50", "010", "yes", "off"]
# For keys whose pattern admits none of the above: the shapes narrow patterns admit.
NARROW = [".5", "010%", "50%", "010s", "1h0m30s", "TRUE", "Null"]
# Keys with a prefix-pattern (absolute paths, URLs) get the awkward characters after the prefix.
PREFIXES = ["/", "http://h:9/"]
CANDIDATES = [*AWKWARD, *YAML_TYPED]
FALLBACK = [*NARROW, *(prefix + text for prefix in PREFIXES for text in AWKWARD)]
# A plain value per shape, for the render each awkward one is compared with.
PLAIN = ["zqxplain", "/zqxplain", "http://zqxplain", "17s", "17Mi", "0.77", "17%", "17"]
# Keys the chart also writes transformed where a string cannot stand (a quantity as a number in PromQL).
TRANSFORMED: dict[str, str] = {"autoscaling.metric.value": ".expr"}
STRING_KEYS = [
    dotted for (path, node), dotted in zip(LEAVES, DOTTED, strict=True) if "string" in (_types(node) or set())
]

# What must be set beside a key for the chart to render it at all (found with a plain value: with
# the defaults these keys reach no object).
MULTINODE = {
    "multinode": {"enabled": True, "gpusPerNode": 8, "ssh": {"existingSecret": "llm-ssh"}},
    "model": {"persistentVolumeClaim": "llm-cache", "tensorrtLlm": {"parallelism": {"tensor": 8, "pipeline": 2}}},
}
RENDERED_WITH: dict[str, dict[str, Any]] = {
    "autoscaling.keda.serverAddress": {"autoscaling": {"engine": "keda"}},
    "cache.persistentVolumeClaim.size": {"cache": {"persistentVolumeClaim": {"create": True}}},
    "cache.persistentVolumeClaim.storageClass": {"cache": {"persistentVolumeClaim": {"create": True}}},
    "multinode.gang.queue": {**MULTINODE, "multinode": {**MULTINODE["multinode"], "gang": {"provider": "kueue"}}},
    "multinode.maxSurge": MULTINODE,
    "multinode.maxUnavailable": MULTINODE,
    "multinode.schedulerName": MULTINODE,
    "multinode.ssh.existingSecret": MULTINODE,
    "multinode.topologyKey": MULTINODE,
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def rendered_leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of the rendered objects by path; a string holding a YAML/JSON document
    (a ConfigMap's model.yaml, config.pbtxt-free JSON) is opened and its scalars follow."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from rendered_leaves(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from rendered_leaves(value, f"{path}[{i}]")
    else:
        yield path, node
        if isinstance(node, str) and "\n" in node:
            try:
                inner = yaml.safe_load(node)
            except yaml.YAMLError:
                return
            if isinstance(inner, (dict, list)):
                yield from rendered_leaves(inner, f"{path}|")


def leaves_of(values: dict[str, Any]) -> dict[str, Any]:
    return dict(rendered_leaves(chart.render(values)))


def _slot_diff(
    text: str, plain: str, with_text: dict[str, Any], with_plain: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Paths whose value changed between the two renders: those the change of the key explains
    (the text where the plain value was, inside the same string), and those it does not."""
    explained, unexplained = [], []
    for path in sorted(set(with_text) | set(with_plain)):
        a, b = with_text.get(path), with_plain.get(path)
        if a == b or "checksum/" in path:
            continue
        escaped = json.dumps(text)[1:-1]  # as a shell or JSON string inside a larger one writes it
        if (
            isinstance(a, str)
            and isinstance(b, str)
            and ((a == text and b == plain) or a.replace(text, plain) == b or a.replace(escaped, plain) == b)
        ):
            explained.append(path)
        elif path.endswith("|") or (isinstance(a, str) and "\n" in a):
            continue  # the document itself; its scalars are compared one by one
        else:
            unexplained.append(f"{path}: {a!r} (with {plain!r}: {b!r})")
    return explained, unexplained


@pytest.mark.parametrize(
    "dotted",
    [
        pytest.param(d, marks=pytest.mark.xfail(strict=True, reason="written into YAML unquoted"))
        if d in UNQUOTED
        else d
        for d in STRING_KEYS
    ],
)
def test_awkward_strings_the_schema_admits_render_as_the_same_string(dotted: str) -> None:
    path = tuple(dotted.split("."))
    node = dict(LEAVES)[path]
    texts = [t for t in CANDIDATES if valid(node, t)] or [t for t in FALLBACK if valid(node, t)]
    plain = next((p for p in PLAIN if valid(node, p)), None)
    assert texts and plain is not None, f"{dotted}: no awkward or plain string the schema admits (add its shape)"
    context = merged(BASE, RENDERED_WITH.get(dotted, {}))

    def values(value: str) -> dict[str, Any]:
        return merged(context, with_value(path, value))

    baseline = leaves_of(values(plain))
    for text in texts:
        try:
            refusal = render_refusal(values(text))
        except Exception as exc:  # the rendered YAML no longer parses
            raise AssertionError(f"{dotted}={text!r} breaks the rendered YAML: {type(exc).__name__}") from None
        if refusal is not None:
            assert dotted in CROSS_FIELD, f"{dotted}={text!r}: {refusal}"
            continue
        explained, unexplained = _slot_diff(text, plain, leaves_of(values(text)), baseline)
        assert explained, f"{dotted}={text!r} is not rendered as that string anywhere (with {plain!r} it is)"
        unexplained = [u for u in unexplained if not (dotted in TRANSFORMED and TRANSFORMED[dotted] in u.split(":")[0])]
        assert not unexplained, f"{dotted}={text!r} changed what it does not write: {unexplained[:3]}"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.sampled_from(range(len(LEAVES))), st.data())
def test_every_invalid_value_is_refused_naming_its_key(index: int, data: st.DataObject) -> None:
    path, node = LEAVES[index]
    value = data.draw(ANY_VALUE.filter(lambda v: not valid(node, v)), label=".".join(path))
    refusal = render_refusal(with_value(path, value))
    dotted = ".".join(path)
    assert refusal is not None, f"{dotted}={value!r} is invalid by the schema but rendered"
    assert re.search(rf"(^|; ){re.escape(dotted)}\b", refusal), f"{dotted}={value!r}: {refusal}"


def closed_objects(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every object the schema closes with `additionalProperties: false`."""
    if node.get("additionalProperties") is False:
        yield path
    for name, child in node.get("properties", {}).items():
        if not (not path and name in SKIP_TOP):
            yield from closed_objects(child, (*path, name))


CLOSED = sorted(closed_objects(SCHEMA))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CLOSED), st.text(alphabet=string.ascii_letters, min_size=1, max_size=12))
def test_an_unknown_key_is_refused_naming_it(parent: tuple[str, ...], key: str) -> None:
    node: dict[str, Any] = SCHEMA
    for part in parent:
        node = node["properties"][part]
    assume(key not in node.get("properties", {}) and not (not parent and key in SKIP_TOP))
    values = copy.deepcopy(BASE)
    target: dict[str, Any] = values
    for part in parent:
        target = target.setdefault(part, {})
    target[key] = 1
    refusal = render_refusal(values)
    assert refusal is not None and f"'{key}'" in refusal, refusal


def test_every_scalar_key_of_the_schema_is_drawn() -> None:
    # A guard on the generator itself: the schema's typed scalar keys are all reachable.
    assert {"autoscaling.replicas.minimum", "model.tensorrtLlm.dataType", "triton.image.name"} <= set(DOTTED)
    assert len(LEAVES) >= 40


@pytest.mark.parametrize(
    ("dotted", "value"),
    [("autoscaling.replicas.minimum", 0), ("model.tensorrtLlm.dataType", "fp8x"), ("autoscaling.metric.value", "lots")],
)
def test_a_known_bad_value_is_refused_in_one_line_naming_the_key(dotted: str, value: Any) -> None:
    refusal = render_refusal(with_value(tuple(dotted.split(".")), value))
    assert refusal is not None and refusal.startswith(dotted) and "\n" not in refusal

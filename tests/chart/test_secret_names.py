"""Fields that name a Secret (`model.pullSecret`, `triton.image.pullSecrets[].name`,
`multinode.ssh.existingSecret`): a token pasted there is refused, in one line naming the field and
the fix, and never printed, through `chart template`, `chart lint` and `lab` (which renders the chart
before it starts anything), from a values file and from `--set`. Issue 22, item 2."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep import chart, cli, files
from llmprep.errors import SpecError
from tests.chart.conftest import IMAGE, values_of

# Token shapes `files.looks_like_token` knows: prefixed ones (some would pass as DNS names: `sk-…`,
# `glpat-…`, `xoxb-…`) and the bare 32-character kind.
TOKENS = [
    "hf_abcdefGHIJKLmnopQRSTuvwx0123456789",
    "ghp_0123456789abcdefABCDEF0123456789abcd",
    "github_pat_11ABCDEFG0123456789_abcdefghijkl",
    "sk-proj0123456789abcdef",
    "glpat-abcdef0123456789",
    "xoxb-1234567890-abcdef",
    "api_0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123",
]
# The tokens the command-line table runs (one the DNS pattern refuses, one it admits).
CLI_TOKENS = [TOKENS[0], TOKENS[3]]

# (dotted key, the values file that sets it to VALUE, the --set expression that does)
FIELDS = [
    ("model.pullSecret", "model:\n  name: gpt2\n  pullSecret: {value}\n", "model.pullSecret={value}"),
    (
        "triton.image.pullSecrets[0].name",
        "model:\n  name: gpt2\ntriton:\n  image:\n    pullSecrets:\n      - name: {value}\n",
        "triton.image.pullSecrets[0].name={value}",
    ),
    (
        "multinode.ssh.existingSecret",
        "model:\n  name: gpt2\nmultinode:\n  ssh:\n    existingSecret: {value}\n",
        "multinode.ssh.existingSecret={value}",
    ),
]
COMMANDS = ["chart template", "chart lint", "lab"]
EXIT = {"chart template": 2, "chart lint": 1, "lab": 2}


class _PastTheRender:
    @staticmethod
    def of(*_args: object) -> None:
        raise AssertionError("the lab went on past the chart's render: it accepted the values")


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`llmprep ARGV` in this process, as a user runs it: its exit code and stdout + stderr.

    `lab` goes as far as its render only (no Prometheus needed, no replica started): what follows
    the render fails the test at once.
    """
    import llmprep.lab.prometheus
    import llmprep.lab.run

    monkeypatch.setattr(llmprep.lab.prometheus, "locate_prometheus", lambda: None)
    monkeypatch.setattr(llmprep.lab.run, "Timing", _PastTheRender)
    monkeypatch.setattr(sys, "argv", ["llmprep", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out + err


def argv_of(command: str, source: str, field: tuple[str, str, str], value: str, tmp: Path) -> list[str]:
    _key, text, expression = field
    if source == "file":
        path = tmp / "values.yaml"
        path.write_text(text.format(value=value))
        given = ["-f", str(path)]
    else:
        given = ["--set", "model.name=gpt2", "--set", expression.format(value=value)]
    given += ["--set", f"triton.image.name={IMAGE}"]
    if command == "lab":
        return ["lab", *given, "--out", str(tmp / "lab-out")]
    return [*command.split(), *given]


def assert_never_shown(text: str, value: str) -> None:
    assert value not in text
    for start in range(0, len(value) - 8, 4):  # nor a recognisable piece of it
        assert value[start : start + 9] not in text, text


@pytest.mark.parametrize("value", CLI_TOKENS, ids=["hf_", "sk-"])
@pytest.mark.parametrize("source", ["file", "--set"])
@pytest.mark.parametrize("field", FIELDS, ids=[f[0] for f in FIELDS])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_token_in_a_secret_name_is_refused_in_one_line_naming_the_field_and_the_fix_never_shown(
    command: str,
    field: tuple[str, str, str],
    source: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = call(argv_of(command, source, field, value, tmp_path), monkeypatch, capsys)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == EXIT[command], output
    assert len(lines) == 1 and "Traceback" not in output, output
    assert f"{field[0]}: this looks like a token, not a Secret's name (value not shown)" in lines[0]
    assert "create a Secret" in lines[0] and "give the Secret's name" in lines[0]
    assert_never_shown(output, value)
    assert not (tmp_path / "lab-out").exists()


@pytest.mark.parametrize("value", TOKENS)
@pytest.mark.parametrize("field", FIELDS, ids=[f[0] for f in FIELDS])
def test_every_token_shape_is_refused_in_every_secret_field(field: tuple[str, str, str], value: str) -> None:
    with pytest.raises(SpecError) as caught:
        chart.render(values_of(sets=["model.name=gpt2", field[2].format(value=value)]))
    message = str(caught.value)
    assert message.startswith(f"{field[0]}: this looks like a token"), message
    assert_never_shown(message, value)


# Names that are no Secret's name (no token either): refused naming the field, the value not shown.
NOT_NAMES = ["MySecret", "a..b", "-lead", "trail-", "with space", "x." * 127, "é-secret"]


@pytest.mark.parametrize("value", NOT_NAMES, ids=["upper", "dots", "lead", "trail", "space", "254", "accent"])
@pytest.mark.parametrize("field", FIELDS, ids=[f[0] for f in FIELDS])
def test_a_value_that_is_no_secret_name_is_refused_without_being_shown(field: tuple[str, str, str], value: str) -> None:
    # Set directly (not through --set), so the value reaches the schema exactly as written.
    values = values_of(sets=["model.name=gpt2"])
    key = field[0]
    if key == "model.pullSecret":
        values["model"]["pullSecret"] = value
    elif key.startswith("triton"):
        values["triton"]["image"]["pullSecrets"] = [{"name": value}]
    else:
        values["multinode"] = {"ssh": {"existingSecret": value}}
    with pytest.raises(SpecError) as caught:
        chart.render(values)
    message = str(caught.value)
    assert message.startswith(f"{key}: must be a Secret's name"), message
    assert "value not shown" in message and repr(value) not in message and value[:6] not in message.split(":", 1)[1]


SECRET_NAMES = [
    "hf-model-pull",
    "regcred",
    "llm-ssh",
    "my.secret-1",
    "a" * 31,
    "nvcr.io-pull-secret-for-the-triton-image",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_a_secret_name_renders_where_the_pod_uses_it(name: str) -> None:
    objects = chart.render(
        values_of(sets=["model.name=gpt2", f"model.pullSecret={name}", f"triton.image.pullSecrets[0].name={name}"])
    )
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": name}]
    assert {"name": "hf-token", "secret": {"secretName": name, "defaultMode": 0o400}} in pod["volumes"]


def test_a_wrong_type_in_a_secret_field_says_so_without_calling_it_a_token() -> None:
    values = values_of(sets=["model.name=gpt2"])
    values["model"]["pullSecret"] = 12345
    with pytest.raises(SpecError, match=r"^model\.pullSecret: string \(got number\)$"):
        chart.render(values)


# --------------------------------------------------------------------------- the schema and the code agree

SCHEMA = json.loads((chart.CHART_DIR / "values.schema.json").read_text())


def properties(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every key the schema names through `properties` (list items as index 0), with its schema."""
    if not isinstance(node, dict):
        return
    for name, child in node.get("properties", {}).items():
        yield (*path, name), child
        yield from properties(child, (*path, name))
    if isinstance(node.get("items"), dict):
        yield from properties(node["items"], (*path, "0"))
    for branch in node.get("anyOf", []):
        yield from properties(branch, path)


KEYS = list(properties(SCHEMA))
SECRET_KEYS = {path for path, node in KEYS if node.get("$ref") == "#/$defs/secretName"}


def test_the_schema_types_each_secret_name_field_as_secretName() -> None:
    assert {".".join(p) for p in SECRET_KEYS} == {
        "model.pullSecret",
        "triton.image.pullSecrets.0.name",
        "multinode.ssh.existingSecret",
    }


def test_the_errors_hide_the_value_of_exactly_the_fields_the_schema_types_as_secret_names() -> None:
    hidden = {path for path, _node in KEYS if chart._secret_field(path)}
    # …and the list that holds image pull Secrets' names (a wrong type there shows no value anyway).
    assert hidden == SECRET_KEYS | {("triton", "image", "pullSecrets")}


LONG_HYPHENATED_NAME = "registry-credentials-production-eu-west-1"  # 41 characters, a real-looking name


def test_a_long_hyphenated_secret_name_is_accepted() -> None:
    assert not files.token_not_a_name(LONG_HYPHENATED_NAME)
    assert not re.match(SCHEMA["$defs"]["secretName"]["not"]["pattern"], LONG_HYPHENATED_NAME)


def test_the_schema_judges_a_token_as_files_py_does() -> None:
    # One rule for "looks like a token" (llmprep/files.py): the schema holds a copy of its pattern.
    pattern = SCHEMA["$defs"]["secretName"]["not"]["pattern"]
    assert pattern == files._SECRET_NAME_TOKEN.pattern
    for value in [*TOKENS, *SECRET_NAMES, LONG_HYPHENATED_NAME]:
        assert bool(re.match(pattern, value)) == files.token_not_a_name(value), value


def test_the_rendered_spec_never_holds_a_token_because_the_chart_renders_nothing() -> None:
    with pytest.raises(SpecError):
        chart.render(values_of(sets=["model.name=gpt2", f"model.pullSecret={TOKENS[3]}"]))
    # …while a name goes into the model spec the pod reads, where the spec's own reader accepts it.
    objects = chart.render(values_of(sets=["model.name=gpt2", "model.pullSecret=hf-model-pull"]))
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-model"))
    assert yaml.safe_load(config["data"]["model.yaml"])["model"]["pullSecret"] == "hf-model-pull"

"""Bad input files, values and `--set` expressions: through every command that reads them, each ends in
one line on stderr with exit code 2, no traceback, and nothing written to the cache."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llmprep import cli, files
from llmprep.errors import SpecError
from llmprep.spec import load_spec

TOKEN = "hf_abcdefGHIJKLmnopQRSTuvwx0123456789"
BIG = "x" * 10_000_000


def _write(text: str | bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "values.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return make


def _fifo(tmp: Path) -> Path:
    path = tmp / "values.fifo"
    os.mkfifo(path)
    return path


def _directory(tmp: Path) -> Path:
    (tmp / "values.d").mkdir()
    return tmp / "values.d"


def _nested(depth: int) -> str:
    return "model:\n  name: gpt2\n  options: " + "[" * depth + "]" * depth + "\n"


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    return "\n".join(lines) + "\nmodel: {name: gpt2, options: {bomb: *a8}}\n"


# (id, file maker, a word the one-line error must contain)
BAD_FILES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("binary junk", _write(bytes(range(256)) * 4), "UTF-8"),
    ("utf-16 with BOM", _write("model:\n  name: gpt2\n".encode("utf-16")), "UTF-16"),
    ("utf-16-be without BOM", _write("model:\n  name: gpt2\n".encode("utf-16-be")), "NUL"),
    ("latin-1 accent", _write("model:\n  name: caf\xe9\n".encode("latin-1")), "UTF-8"),
    ("nested 5000 levels of lists", _write(_nested(5000)), "nested"),
    ("nested 200 levels of maps", _write("model:\n  options: " + "{a: " * 200 + "1" + "}" * 200 + "\n"), "nested"),
    ("alias bomb", _write(_alias_bomb()), "alias"),
    ("a FIFO", _fifo, "regular file"),
    ("a directory", _directory, "regular file"),
    ("no such file", lambda tmp: tmp / "missing.yaml", "no such file"),
    ("unclosed flow", _write("model: {name: gpt2\n"), "YAML"),
    ("tab indentation", _write("model:\n\tname: gpt2\n"), "YAML"),
    ("a NaN threshold", _write("model:\n  name: gpt2\n  standin:\n    decodeMsPerStep: .nan\n"), "finite"),
    ("an infinite limit", _write("model:\n  name: gpt2\n  tensorrtLlm:\n    maxNumTokens: .inf\n"), "finite"),
    (
        "a negative infinity",
        _write("model:\n  name: gpt2\n  repository:\n    kvCacheFreeGpuMemFraction: -.inf\n"),
        "finite",
    ),
]

# Only the model spec insists on string keys (Helm's values turn `1:` into "1").
SPEC_ONLY_FILES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("mixed key types", _write("model:\n  name: gpt2\n  1: a\n"), "not a string"),
    ("a boolean key", _write("model:\n  name: gpt2\n  true: a\n"), "not a string"),
    ("a null key", _write("model:\n  name: gpt2\n  ~: a\n"), "not a string"),
    ("a list as a key", _write("model:\n  ? [a, b]\n  : c\n"), "key"),
    (
        "huge tensor",
        _write("model:\n  name: gpt2\n  tensorrtLlm:\n    parallelism:\n      tensor: 1000000000\n"),
        "tensor",
    ),
    ("a token as pullSecret", _write(f"model:\n  name: gpt2\n  pullSecret: {TOKEN}\n"), "pullSecret"),
    ("an upper-case pullSecret", _write("model:\n  name: gpt2\n  pullSecret: MySecret\n"), "pullSecret"),
    ("a 10 MB data type", _write(f"model:\n  name: gpt2\n  tensorrtLlm:\n    dataType: {BIG}\n"), "dataType"),
    ("a 10 MB unknown key", _write(f"model:\n  name: gpt2\n  {BIG}: 1\n"), "YAML"),  # PyYAML: keys ≤ 1024
    ("a 900-character unknown key", _write(f"model:\n  name: gpt2\n  {'k' * 900}: 1\n"), "unknown key"),
    # Free text that ends up in a path, a command line or a label: capped, naming the field, not echoed.
    ("a 10 MB revision", _write(f"model:\n  name: gpt2\n  revision: {BIG}\n"), "model.revision"),
    ("a 201-character revision", _write(f"model:\n  name: gpt2\n  revision: {'r' * 201}\n"), "model.revision"),
    ("a 10 MB name", _write(f"model:\n  name: {BIG}\n  hfRepo: acme/x\n"), "model.name"),
    ("a 201-character name with a /", _write(f"model:\n  name: acme/{'n' * 196}\n"), "model.name"),
    ("a 10 MB hfRepo", _write(f"model:\n  name: gpt2\n  hfRepo: acme/{BIG}\n"), "model.hfRepo"),
    ("a 10 MB tokenizer", _write(f"model:\n  name: gpt2\n  tokenizer: {BIG}\n"), "model.tokenizer"),
    (
        "a 254-character persistentVolumeClaim",
        _write(f"model:\n  name: gpt2\n  persistentVolumeClaim: {'p' * 254}\n"),
        "model.persistentVolumeClaim",
    ),
    ("a 64-character gpu label", _write(f"gpu: {'G' * 64}\nmodel:\n  name: gpt2\n"), "gpu"),
    ("a 10 MB gpu in a list", _write(f"gpu: [NVIDIA-H100-80GB-HBM3, {BIG}]\nmodel:\n  name: gpt2\n"), "gpu[1]"),
    (
        "a 10 MB server option",
        _write(f"triton:\n  serverOptions: [--log-file={BIG}]\nmodel:\n  name: gpt2\n"),
        "triton.serverOptions[0]",
    ),
    (
        "a 10 MB build option",
        _write(f"model:\n  name: gpt2\n  tensorrtLlm:\n    options:\n      gemm_plugin: {BIG}\n"),
        "model.tensorrtLlm.options.gemm_plugin",
    ),
    (
        "a 10 MB converter option in a list",
        _write(f"model:\n  name: gpt2\n  tensorrtLlm:\n    options:\n      convert:\n        x: [a, {BIG}]\n"),
        "model.tensorrtLlm.options.convert.x[1]",
    ),
    (
        "a 10 MB conversion memory",
        _write(f"model:\n  name: gpt2\n  tensorrtLlm:\n    conversion:\n      memory: {BIG}\n"),
        "model.tensorrtLlm.conversion.memory",
    ),
]


def _commands(path: Path, tmp: Path) -> dict[str, list[str]]:
    cache = str(tmp / "cache")
    return {
        "spec show": ["spec", "show", "--spec", str(path)],
        "prepare": ["prepare", "--spec", str(path), "--cache", cache, "--offline"],
        "download": ["download", "--spec", str(path), "--cache", cache, "--offline"],
        "chart template": ["chart", "template", "--values", str(path)],
    }


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the console script in-process as a user would (sys.argv, main(), its exit code)."""
    monkeypatch.setattr(sys, "argv", ["llmprep", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def assert_one_line_error(code: int, err: str, word: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[:2000]
    assert len(lines) == 1, err[:2000]
    assert "Traceback" not in err
    assert len(lines[0]) < 2100
    assert word.lower() in lines[0].lower(), lines[0]
    assert TOKEN not in err


@pytest.mark.parametrize("command", ["spec show", "prepare", "download", "chart template"])
@pytest.mark.parametrize(("case", "make", "word"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_values_file_is_one_line_exit_2_and_writes_nothing(
    command: str,
    case: str,
    make: Callable[[Path], Path],
    word: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path)
    if command == "chart template" and case.startswith("a NaN") or command == "chart template" and "infinit" in case:
        word = "finite"
    code, _out, err = call(_commands(path, tmp_path)[command], monkeypatch, capsys)
    assert_one_line_error(code, err, word)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("command", ["spec show", "prepare", "download"])
@pytest.mark.parametrize(("case", "make", "word"), SPEC_ONLY_FILES, ids=[c[0] for c in SPEC_ONLY_FILES])
def test_a_bad_model_spec_is_one_line_exit_2_and_writes_nothing(
    command: str,
    case: str,
    make: Callable[[Path], Path],
    word: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = call(_commands(make(tmp_path), tmp_path)[command], monkeypatch, capsys)
    assert_one_line_error(code, err, word)
    assert TOKEN not in out
    assert not (tmp_path / "cache").exists()


# `--set` expressions Helm's strvals parser refuses: the spec commands refuse them too.
# (`=x` and `a]=1` are accepted by Helm: an empty key is a no-op, `a]` a key like any other.)
BAD_SETS = ["model..name=x", "model.name", "a[=1", "a[x]=1", "a[0=1", "a[99999999]=1", "model.name[0]]=x", "a.b..c=1"]


@pytest.mark.parametrize("command", ["spec show", "prepare", "chart template"])
@pytest.mark.parametrize("expression", BAD_SETS)
def test_a_set_expression_helm_refuses_is_refused_by_every_command(
    command: str, expression: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = {
        "spec show": ["spec", "show", "--set", "model.name=gpt2", "--set", expression],
        "prepare": ["prepare", "--set", "model.name=gpt2", "--set", expression, "--cache", str(tmp_path / "cache")],
        "chart template": ["chart", "template", "--set", expression],
    }[command]
    code, _out, err = call(argv, monkeypatch, capsys)
    assert_one_line_error(code, err, "--set")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("expression", "field", "want"),
    [
        ("model.tensorrtLlm.parallelism.tensor=2", "tensor", 2),
        ("model.repository.kvCacheFreeGpuMemFraction=0.5", "kv", 0.5),
        ("model.revision=abc", "revision", "abc"),
    ],
)
def test_a_set_expression_helm_accepts_reaches_the_spec(expression: str, field: str, want: object) -> None:
    spec = load_spec([], sets=["model.name=gpt2", "model.hfRepo=acme/x", expression])
    got = {"tensor": spec.parallelism.tensor, "revision": spec.revision}.get(field)
    if field == "kv":
        got = spec.repository.kv_cache_free_gpu_mem_fraction
    assert got == want


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", ".Inf"])
def test_nan_and_infinities_are_refused_by_the_yaml_reader_naming_the_field(value: str) -> None:
    with pytest.raises(SpecError, match=r"model\.tensorrtLlm\.maxNumTokens.*finite"):
        files.load_yaml(f"model:\n  tensorrtLlm:\n    maxNumTokens: {value}\n", "f", SpecError)


@pytest.mark.parametrize("value", [TOKEN, "ghp_0123456789abcdefABCDEF", "sk-abcdefghijklmnop1234", "a" * 40, BIG])
def test_quote_never_shows_a_token_nor_a_long_value(value: str) -> None:
    shown = files.quote(value)
    assert len(shown) < 200
    assert value not in shown


# The same caps through `--set` (Helm's parser): a long value on the command line is refused alike.
@pytest.mark.parametrize(
    ("expression", "field"),
    [
        (f"model.revision={'r' * 201}", "model.revision"),
        (f"model.name={'n' * 201}", "model.name"),
        (f"model.hfRepo=acme/{'x' * 200}", "model.hfRepo"),
        (f"model.tensorrtLlm.options.gemm_plugin={'o' * 5000}", "model.tensorrtLlm.options.gemm_plugin"),
    ],
)
@pytest.mark.parametrize("command", ["spec show", "prepare", "download"])
def test_a_long_set_value_is_refused_naming_the_field_and_writes_nothing(
    command: str,
    expression: str,
    field: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = ["--cache", str(tmp_path / "cache"), "--offline"]
    argv = {
        "spec show": ["spec", "show"],
        "prepare": ["prepare", *cache],
        "download": ["download", *cache],
    }[command] + ["--set", "model.name=gpt2", "--set", expression]
    code, out, err = call(argv, monkeypatch, capsys)
    assert_one_line_error(code, err, field)
    assert "characters" in err and len(out) < 200
    assert not (tmp_path / "cache").exists()


def test_lab_says_a_fifo_given_as_values_is_not_a_regular_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = _fifo(tmp_path)
    code, _out, err = call(["lab", "-f", str(fifo), "--out", str(tmp_path / "lab")], monkeypatch, capsys)
    assert_one_line_error(code, err, "not a regular file")
    assert "no such file" not in err
    code, _out, err = call(
        ["lab", "-f", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "lab")], monkeypatch, capsys
    )
    assert_one_line_error(code, err, "no such file")
    assert not (tmp_path / "lab").exists()

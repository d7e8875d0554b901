"""Bad values on the chart path and long values on the download path (issue 22, items 2 and 3).

Huge strings are refused by the chart's schema in one line naming the key (no 10 MB ConfigMap);
what an error quotes of a value is cut; a huge tensor or pipeline is refused naming that key; and a
revision or repo id no folder can hold is refused before any progress line or folder, the progress
lines quoting what they are given cut."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from llmprep import chart, cli
from llmprep.artifacts import hub
from llmprep.artifacts.prepare import Options, prepare
from llmprep.errors import HubError, SpecError, UsageError
from llmprep.spec import parse_spec
from tests.chart.conftest import IMAGE, values_of

BIG = "x" * 10_000_000
MB = "y" * 1_000_000  # for the keys past the first three: a megabyte says as much, faster
LONG = "Not A Name " * 100  # 1100 characters no pattern admits, and no token


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["llmprep", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text[:3000]
    assert len(lines[0]) < 600, lines[0][:3000]
    return lines[0]


# (key, a values file setting it to {v}): every free-text string the chart writes out, and a few
# with patterns. Each is bounded in chart/values.schema.json (the spec's limits where it reads the key).
BIG_FIELDS = [
    ("model.name", "model:\n  name: {v}\n"),
    ("model.hfRepo", "model:\n  name: gpt2\n  hfRepo: {v}\n"),
    ("model.revision", "model:\n  name: gpt2\n  revision: {v}\n"),
    ("model.tokenizer", "model:\n  name: gpt2\n  tokenizer: {v}\n"),
    ("model.tensorrtLlm.options.x", "model:\n  name: gpt2\n  tensorrtLlm:\n    options:\n      x: {v}\n"),
    ("triton.image.name", "model:\n  name: gpt2\ntriton:\n  image:\n    name: {v}\n"),
    ("triton.serverOptions[0]", "model:\n  name: gpt2\ntriton:\n  serverOptions: ['--x={v}']\n"),
    ("gpu", "gpu: {v}\nmodel:\n  name: gpt2\n"),
    ("kubernetes.podAnnotations.x", "model:\n  name: gpt2\nkubernetes:\n  podAnnotations:\n    x: {v}\n"),
    ("kubernetes.nodeSelector.x", "model:\n  name: gpt2\nkubernetes:\n  nodeSelector:\n    x: {v}\n"),
    ("multinode.schedulerName", "model:\n  name: gpt2\nmultinode:\n  schedulerName: {v}\n"),
    (
        "cache.persistentVolumeClaim.storageClass",
        "model:\n  name: gpt2\ncache:\n  persistentVolumeClaim:\n    storageClass: {v}\n",
    ),
    ("cache.mountPath", "model:\n  name: gpt2\ncache:\n  mountPath: /{v}\n"),
    ("monitoring.podMonitor.labels.x", "model:\n  name: gpt2\nmonitoring:\n  podMonitor:\n    labels:\n      x: {v}\n"),
    ("triton.shmSize", "model:\n  name: gpt2\ntriton:\n  shmSize: '1{d}'\n"),
]


@pytest.mark.parametrize("command", ["chart template", "chart lint"])
@pytest.mark.parametrize(("key", "text"), BIG_FIELDS, ids=[f[0] for f in BIG_FIELDS])
def test_a_10_mb_string_is_refused_by_the_chart_in_one_line_naming_the_key(
    command: str,
    key: str,
    text: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "big.yaml"
    big = key in ("model.name", "model.hfRepo", "model.revision")
    path.write_text(text.format(v=BIG if big else MB, d="0" * len(MB)))
    sets = [] if key == "triton.image.name" else ["--set", f"triton.image.name={IMAGE}"]
    code, out, err = call([*command.split(), "-f", str(path), *sets], monkeypatch, capsys)
    line = one_line(out + err)
    assert code == (2 if command == "chart template" else 1)
    assert key in line and "at most" in line, line


def test_a_10_mb_model_name_by_set_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = call(
        ["chart", "template", "--set", f"triton.image.name={IMAGE}", "--set", f"model.name={BIG}"], monkeypatch, capsys
    )
    assert code == 2 and not out
    assert one_line(err).startswith("error: model.name: at most 200 characters (got 10,000,000)")


# Keys with patterns: the value no pattern admits comes back cut, not whole.
QUOTED_KEYS = ["kubernetes.priorityClassName", "monitoring.alerts.targetDown.for", "triton.shmSize"]


@pytest.mark.parametrize("key", QUOTED_KEYS)
def test_what_a_schema_error_quotes_of_a_value_is_cut(key: str) -> None:
    values = values_of()
    target = values
    *parents, last = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = LONG
    with pytest.raises(SpecError) as caught:
        chart.render(values)
    message = str(caught.value)
    assert message.startswith(f"{key}:") and "\n" not in message
    assert LONG[:120] not in message and len(message) < 600, message


def test_an_unknown_key_megabytes_long_is_refused_in_a_short_line() -> None:
    values = values_of()
    values["model"] = {"name": "gpt2", "key with spaces " * 10_000: 1}
    with pytest.raises(SpecError) as caught:
        chart.render(values)
    message = str(caught.value)
    assert message.startswith("model: additional properties 'key with spaces") and len(message) < 600, message[:3000]


@pytest.mark.parametrize("key", ["tensor", "pipeline"])
@pytest.mark.parametrize("command", ["chart template", "chart lint"])
def test_a_huge_tensor_or_pipeline_is_refused_naming_that_key(
    command: str, key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The spec allows at most MAX_PARALLEL (1024) GPUs in a group; the chart says so for the key,
    # not for the shared cache or the ssh Secret that a 1e9-GPU group would also lack.
    argv = [*command.split(), "--set", f"triton.image.name={IMAGE}"]
    argv += ["--set", f"model.tensorrtLlm.parallelism.{key}=1000000000"]
    code, out, err = call(argv, monkeypatch, capsys)
    line = one_line(out + err)
    assert code == (2 if command == "chart template" else 1)
    assert f"model.tensorrtLlm.parallelism.{key}: at most 1,024" in line, line
    assert "persistentVolumeClaim" not in line and "existingSecret" not in line


def test_the_chart_and_the_spec_allow_the_same_parallelism() -> None:
    from llmprep.spec import MAX_PARALLEL

    chart.render(values_of(sets=["model.tensorrtLlm.parallelism.tensor=2"]))
    parse_spec({"model": {"name": "gpt2", "tensorrtLlm": {"parallelism": {"tensor": MAX_PARALLEL}}}})
    for value in (MAX_PARALLEL + 1, 10**9):
        with pytest.raises(SpecError, match="parallelism.tensor"):
            parse_spec({"model": {"name": "gpt2", "tensorrtLlm": {"parallelism": {"tensor": value}}}})
        with pytest.raises(SpecError, match=r"^model\.tensorrtLlm\.parallelism\.tensor: at most 1,024"):
            chart.render(values_of(sets=[f"model.tensorrtLlm.parallelism.tensor={value}"]))


# --------------------------------------------------------------------------- the download path

REPO = "acme/tiny-llama"


@pytest.mark.parametrize(
    ("repo", "revision", "field"),
    [
        (REPO, BIG, "model.revision"),
        (REPO, "r" * 201, "model.revision"),
        (REPO, "a/" * 100 + "b", "model.revision"),  # '/' is written '--' in the folder name
        (REPO, "bad\nrevision", "model.revision"),
        (REPO, "nul\x00byte", "model.revision"),
        (f"acme/{'m' * 201}", "main", "model.hfRepo"),
        ("m" * 10_000_000, "main", "model.hfRepo"),
    ],
    ids=["10MB revision", "201", "slashes", "newline", "NUL", "long repo", "10MB repo"],
)
def test_a_repo_or_revision_no_folder_can_hold_is_refused_before_any_line_or_folder(
    repo: str, revision: str, field: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    lines: list[str] = []
    spec = dataclasses.replace(parse_spec({"model": {"name": "gpt2"}}), hf_repo=repo, revision=revision)
    for attempt in (
        lambda: hub.download(repo, revision, cache, offline=True, progress=lines.append),
        lambda: prepare(spec, cache, progress=lines.append, opts=Options(offline=True)),
    ):
        with pytest.raises(UsageError) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith(f"{field}:") and len(message) < 300, message[:500]
    assert lines == []
    assert not cache.exists()


def test_a_long_revision_is_cut_in_the_progress_lines(tmp_path: Path) -> None:
    revision = "release/v1.0-" + "r" * 150  # a folder can hold it: the download goes on (and fails offline)
    lines: list[str] = []
    spec = dataclasses.replace(parse_spec({"model": {"name": REPO}}), revision=revision)
    with pytest.raises(HubError) as caught:
        prepare(spec, tmp_path / "cache", progress=lines.append, opts=Options(offline=True))
    assert lines and lines[0].startswith(f"downloading {REPO}@'release/v1.0-rrr"), lines
    for text in [*lines, str(caught.value)]:
        assert revision not in text and len(text) < 400, text


def test_a_revision_is_shown_as_it_is_when_short(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"  # also the shape of a token: a commit stays
    for revision in ("main", "v1.0", commit):
        lines: list[str] = []
        spec = dataclasses.replace(parse_spec({"model": {"name": REPO}}), revision=revision)
        with pytest.raises(HubError):
            prepare(spec, tmp_path / "cache", progress=lines.append, opts=Options(offline=True))
        assert lines[0] == f"downloading {REPO}@{revision}"


@pytest.mark.parametrize("command", ["prepare", "download"])
def test_a_10_mb_revision_on_the_command_line_is_one_short_line_and_writes_nothing(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bigrev.yaml"
    path.write_text(f"model:\n  name: gpt2\n  revision: {BIG}\n")
    cache = tmp_path / "c"
    code, out, err = call([command, "-f", str(path), "--cache", str(cache), "--offline"], monkeypatch, capsys)
    assert code == 2 and not out
    assert "model.revision" in one_line(err)
    assert not cache.exists()


def test_a_progress_line_prints_brackets_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["prepare", "--set", f"model.name={REPO}", "--set", "model.revision=a[red]b", "--offline"]
    code, _out, err = call([*argv, "--cache", str(tmp_path / "c")], monkeypatch, capsys)
    assert code != 0
    assert f"• downloading {REPO}@a[red]b" in err, err

"""Every command line `llmprep build` composes is one upstream's argparse accepts.

The tables in tests/data (converter_flags.csv, trtllm_build_flags.csv) transcribe the flags of
TensorRT-LLM's convert_checkpoint.py per family and of trtllm-build (file, line, commit per row);
the test doubles parse against the same tables, so what upstream rejects, they reject.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from llmprep.artifacts import build, converters
from llmprep.errors import SpecError
from llmprep.spec import ModelSpec, parse_spec
from tests.conftest import run_cli
from tests.doubles import install_release

DATA = Path(__file__).parent / "data"
DOUBLES = Path(__file__).parent / "doubles" / "engine_release"
CONVERTER_ROWS = list(csv.DictReader((DATA / "converter_flags.csv").open(newline="")))
BUILD_ROWS = list(csv.DictReader((DATA / "trtllm_build_flags.csv").open(newline="")))
LIMIT_ROWS = list(csv.DictReader((DATA / "converter_flags_limits.csv").open(newline="")))
TABLED_FAMILIES = sorted({r["family"] for r in CONVERTER_ROWS})
SCRIPTS = {"llama": "core/llama", "gpt": "core/gpt", "gemma": "core/gemma", "phi": "core/phi", "opt": "contrib/opt"}


def _double() -> ModuleType:
    path = DOUBLES / "site" / "tensorrt_llm" / "_double.py"
    spec = importlib.util.spec_from_file_location("llmprep_test_double", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOUBLE = _double()


def spec_of(repo: str, **trt: object) -> ModelSpec:
    return parse_spec({"model": {"name": repo, "tensorrtLlm": dict(trt)}})


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error: make the failing argv visible
        raise AssertionError(f"upstream's argparse would reject {argv}") from exc


# --------------------------------------------------------------------------- the tables


@pytest.mark.parametrize("row", CONVERTER_ROWS + BUILD_ROWS, ids=lambda r: f"{r.get('family', 'build')}-{r['flag']}")
def test_every_table_row_names_its_upstream_file_and_an_argparse_action(row: dict[str, str]) -> None:
    assert row["file"] and row["action"] in {"store", "store_true", "store_optional", "store_list"}
    # The line the flag is defined on (plugin flags: their PluginConfig field) at a 40-digit commit.
    assert row["line"].isdigit() and int(row["line"]) > 0, row
    assert len(row["commit"]) == 40 and int(row["commit"], 16) >= 0, row


def test_the_trtllm_build_switches_we_know_are_exactly_the_tables_store_true_flags() -> None:
    assert converters.BUILD_SWITCHES == {r["flag"] for r in BUILD_ROWS if r["action"] == "store_true"}


@pytest.mark.parametrize(
    "row", [r for r in CONVERTER_ROWS if r["action"] == "store_true"], ids=lambda r: f"{r['family']}-{r['flag']}"
)
def test_every_converter_switch_in_the_table_is_known_as_a_switch(row: dict[str, str]) -> None:
    assert row["flag"] in converters.CONVERT_SWITCHES


@pytest.mark.parametrize("family", TABLED_FAMILIES)
def test_the_capability_table_agrees_with_the_recorded_limits(family: str) -> None:
    no_pipeline = {r["family"] for r in LIMIT_ROWS if r["limit"] == "pipeline_must_be_1"} | {"gemma"}
    assert converters.FAMILIES[family].pipeline is (family not in no_pipeline)


# --------------------------------------------------------------------------- every command we compose

PARALLEL = [(1, 1), (2, 1), (1, 2), (2, 2)]
CONVERT_OPTIONS: list[dict[str, Any]] = [
    {},
    {"workers": 2},
    {"use_weight_only": True, "weight_only_precision": "int8"},
    {"use_weight_only": False},
]
DATA_TYPES = ["float16", "bfloat16", "float32"]


def _convert_cases() -> list[tuple[str, str, int, int, int]]:
    cases = []
    for family, dtype, (tp, pp), opt in itertools.product(
        TABLED_FAMILIES, DATA_TYPES, PARALLEL, range(len(CONVERT_OPTIONS))
    ):
        if pp > 1 and not converters.FAMILIES[family].pipeline:
            continue
        cases.append((family, dtype, tp, pp, opt))
    return cases


def _families_options(family: str, index: int) -> dict[str, Any]:
    names = {r["flag"] for r in CONVERTER_ROWS if r["family"] == family}
    return {k: v for k, v in CONVERT_OPTIONS[index].items() if k in names}


@pytest.mark.parametrize(("family", "dtype", "tensor", "pipeline", "opt"), _convert_cases())
def test_every_conversion_command_parses_under_its_familys_upstream_flags(
    tmp_path: Path, family: str, dtype: str, tensor: int, pipeline: int, opt: int
) -> None:
    options = _families_options(family, opt)
    spec = spec_of(
        "acme/tiny",
        runtime="engine",
        dataType=dtype,
        parallelism={"tensor": tensor, "pipeline": pipeline},
        options={"convert": options},
    )
    script = tmp_path / family / "convert_checkpoint.py"
    argv = build.conversion_command("python", script, spec, tmp_path / "ck", tmp_path / "out")
    args = parse(DOUBLE.convert_parser(family), argv[2:])
    world = args.world_size if family == "gemma" else args.tp_size * args.pp_size
    assert (args.dtype, world) == (dtype, tensor * pipeline)


@pytest.mark.parametrize("family", TABLED_FAMILIES)
def test_a_true_converter_option_becomes_a_bare_switch(tmp_path: Path, family: str) -> None:
    spec = spec_of("acme/tiny", runtime="engine", options={"convert": {"use_weight_only": True}})
    argv = build.conversion_command(
        "python", tmp_path / family / "convert_checkpoint.py", spec, tmp_path, tmp_path / "o"
    )
    assert argv[-1] == "--use_weight_only" and "enable" not in argv


def test_gemma_is_converted_from_hugging_face_with_its_world_size(tmp_path: Path) -> None:
    spec = spec_of("acme/tiny", runtime="engine", parallelism={"tensor": 2})
    argv = build.conversion_command(
        "python", tmp_path / "gemma" / "convert_checkpoint.py", spec, tmp_path, tmp_path / "o"
    )
    args = parse(DOUBLE.convert_parser("gemma"), argv[2:])
    assert (str(args.ckpt_type), args.world_size, "--tp_size" in argv) == ("hf", 2, False)


BUILD_OPTIONS: list[dict[str, Any]] = [
    {},
    {"gather_context_logits": True, "gather_generation_logits": True},
    {"gather_all_token_logits": True, "strip_plan": False},
    {"use_paged_context_fmha": True, "context_fmha": False, "gemm_plugin": "auto"},
    {"remove_input_padding": True, "kv_cache_type": "paged", "max_beam_width": 2},
    {"workers": 2, "fast_build": True, "weight_streaming": True, "multiple_profiles": True},
]


@pytest.mark.parametrize(
    ("index", "tensor", "pipeline"), [(i, tp, pp) for i in range(len(BUILD_OPTIONS)) for tp, pp in PARALLEL]
)
def test_every_trtllm_build_command_parses_under_upstreams_flags(
    tmp_path: Path, index: int, tensor: int, pipeline: int
) -> None:
    options = BUILD_OPTIONS[index]
    spec = spec_of("acme/tiny", runtime="engine", parallelism={"tensor": tensor, "pipeline": pipeline}, options=options)
    argv = build.build_command(["trtllm-build"], spec, tmp_path / "ck", tmp_path / "engine")
    args = parse(DOUBLE.build_parser(), argv[1:])
    for key, value in options.items():
        if key in converters.BUILD_SWITCHES:
            assert getattr(args, key) is value
        elif isinstance(value, bool):
            assert getattr(args, key) == ("enable" if value else "disable")
        else:
            assert str(getattr(args, key)) == str(value)


# --------------------------------------------------------------------------- the doubles reject what upstream rejects

SWITCH_ROWS = [r for r in CONVERTER_ROWS + BUILD_ROWS if r["action"] == "store_true"]


@pytest.mark.parametrize("row", SWITCH_ROWS, ids=lambda r: f"{r.get('family', 'build')}-{r['flag']}")
def test_a_switch_given_enable_is_rejected_by_the_double(row: dict[str, str]) -> None:
    if "family" in row:
        parser, base = DOUBLE.convert_parser(row["family"]), ["--model_dir", "m"]
        if row["family"] == "gemma":
            base += ["--output_dir", "o"]
    else:
        parser, base = DOUBLE.build_parser(), ["--checkpoint_dir", "c"]
    parse(parser, [*base, f"--{row['flag']}"])  # the bare switch is fine
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*base, f"--{row['flag']}", "enable"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("family", "argv"),
    [
        ("gemma", ["--tp_size", "2"]),
        ("gemma", ["--pp_size", "1"]),
        ("gemma", ["--ckpt-type", "safetensors"]),
        ("llama", ["--world-size", "2"]),
        ("opt", ["--dtype", "auto"]),
        ("phi", ["--use_parallel_embedding"]),
        ("llama", ["--dtype", "fp16"]),
    ],
)
def test_a_flag_or_value_the_converter_lacks_is_rejected(family: str, argv: list[str]) -> None:
    base = ["--model_dir", "m", "--output_dir", "o"]
    with pytest.raises(SystemExit) as exc:
        DOUBLE.convert_parser(family).parse_args([*base, *argv])
    assert exc.value.code == 2


def test_the_installed_double_exits_2_with_a_usage_error_on_a_switch_given_a_value(tmp_path: Path) -> None:
    rel = install_release(tmp_path, "engine")
    cmd = [
        sys.executable,
        "-m",
        "tensorrt_llm.commands.build",
        "--checkpoint_dir",
        "c",
        "--gather_context_logits",
        "enable",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=rel.env, timeout=60)
    assert result.returncode == 2
    assert "unrecognized arguments: enable" in result.stderr and result.stderr.startswith("usage: trtllm-build")


@pytest.mark.parametrize(("family", "script"), sorted(SCRIPTS.items()))
def test_the_release_double_ships_a_converter_per_tabled_family(family: str, script: str) -> None:
    assert (DOUBLES / "examples" / "models" / script / "convert_checkpoint.py").is_file()
    assert build.find_convert_script(family if family != "gpt" else "gpt2", DOUBLES / "examples").parent.name == family


# --------------------------------------------------------------------------- what a family cannot do


@pytest.mark.parametrize(
    ("repo", "family"), [("facebook/opt-125m", "opt"), ("microsoft/phi-2", "phi"), ("google/gemma-2b", "gemma")]
)
def test_pipeline_2_on_a_family_without_pipeline_is_a_spec_error(repo: str, family: str) -> None:
    with pytest.raises(SpecError, match=r"^model\.tensorrtLlm\.parallelism\.pipeline: .*set pipeline to 1"):
        spec_of(repo, runtime="engine", parallelism={"pipeline": 2})


def test_pipeline_2_on_llama_is_fine_and_on_the_pytorch_runtime_too() -> None:
    assert spec_of("meta-llama/Llama-2-7b-hf", runtime="engine", parallelism={"pipeline": 2}).parallelism.pipeline == 2
    assert spec_of("facebook/opt-125m", runtime="pytorch", parallelism={"pipeline": 2}).parallelism.pipeline == 2


@pytest.mark.parametrize("family", ["opt", "phi", "gemma"])
def test_a_family_found_only_after_download_still_refuses_pipeline_before_converting(
    tmp_path: Path, family: str
) -> None:
    spec = spec_of("acme/tiny", runtime="engine", parallelism={"pipeline": 2})
    with pytest.raises(SpecError, match="parallelism.pipeline"):
        build.conversion_command("python", tmp_path / family / "convert_checkpoint.py", spec, tmp_path, tmp_path / "o")


@pytest.mark.parametrize("command", ["download", "build", "prepare"])
@pytest.mark.parametrize("repo", ["facebook/opt-125m", "microsoft/phi-2", "google/gemma-2b"])
def test_the_cli_refuses_pipeline_2_on_such_a_family_in_one_line_before_any_work(
    tmp_path: Path, command: str, repo: str
) -> None:
    rel = install_release(tmp_path, "engine")
    cache = tmp_path / "cache"
    sets = [f"model.name={repo}", "model.tensorrtLlm.runtime=engine", "model.tensorrtLlm.parallelism.pipeline=2"]
    result = run_cli(command, *[a for s in sets for a in ("--set", s)], "--cache", str(cache), env=rel.env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.tensorrtLlm.parallelism.pipeline" in lines[0]
    assert not cache.exists() or not any(cache.rglob("*"))
    assert rel.calls() == []

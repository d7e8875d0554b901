"""The `tensorrt_llm` config.pbtxt carries what the real tensorrtllm backend needs to create an instance.

tests/data/backend_parameters.csv lists every parameter the backend reads (read from its source:
inflight_batcher_llm/src/model_instance_state.cc and model_state.cc, file + line + commit per row).
A parameter read outside a try/catch has no fallback: missing, it fails the load with "Cannot find
parameter with name". A parameter read inside one falls back to its default when missing *or* when
its value does not parse, so a value we write that does not parse is silently ignored; both are
checked here for every repository `llmprep repo` writes for the engine runtime.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from llmprep.repo import write_repository
from llmprep.spec import ModelSpec, parse_spec
from llmprep.tinytok import write_tiny_tokenizer

TABLE = Path(__file__).parent / "data" / "backend_parameters.csv"
ROWS: list[dict[str, str]] = list(csv.DictReader(TABLE.open(newline="")))
REQUIRED = [row for row in ROWS if row["fallback"] == "no"]
BY_NAME = {row["name"]: row for row in ROWS}

# Values the backend's GetParameter<bool> accepts (model_state.cc, v0.19.0 line 313 and 317);
# anything else throws "Cannot convert ... to a boolean".
BOOL_TRUE = {"True", "true", "TRUE", "1"}
BOOL_FALSE = {"False", "false", "FALSE", "0"}
# gpt_model_type has no fallback and must be one of these, else the load fails
# (model_instance_state.cc, v0.19.0 lines 64-78).
GPT_MODEL_TYPES = {"V1", "v1", "inflight_batching", "inflight_fused_batching"}

# Spec options that change the engine model's config; each combination is rendered for both engine kinds.
OPTIONS: list[dict[str, Any]] = [
    {},
    {"decoupled": False},
    {"decoupled": True, "excludeInputInOutput": False},
    {"enableKvCacheReuse": True, "maxBeamWidth": 2},
    {"batchingStrategy": "v1", "kvCacheFreeGpuMemFraction": 0.5},
]
REPOSITORIES = [(engine, options) for engine in ("real", "standin") for options in OPTIONS]


def _id(value: object) -> str:
    return ",".join(f"{k}={v}" for k, v in value.items()) or "defaults" if isinstance(value, dict) else str(value)


def spec_of(repository: dict[str, Any]) -> ModelSpec:
    return parse_spec({"model": {"name": "gpt2", "repository": repository}}).with_runtime("engine")


def engine_parameters(root: Path) -> dict[str, str]:
    text = (root / "tensorrt_llm" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    return {k: v.string_value for k, v in config.parameters.items()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, str]]:
    base = tmp_path_factory.mktemp("backend-params")
    tokenizer = write_tiny_tokenizer(base / "tokenizer")
    (base / "engine").mkdir()
    out: dict[tuple[str, str], dict[str, str]] = {}
    for n, (engine, options) in enumerate(REPOSITORIES):
        root = write_repository(
            spec_of(options),
            out_dir=base / f"repo-{n}",
            engine=engine,
            tokenizer_dir=tokenizer,
            artifact_dir=base / "engine",
        )
        out[(engine, _id(options))] = engine_parameters(root)
    return out


def is_unset_placeholder(name: str, value: str) -> bool:
    return value == "${" + name + "}"


def parses_as(kind: str, value: str) -> bool:
    """Whether the backend's GetParameter<kind> would return a value rather than throw."""
    try:
        if kind == "bool":
            return value in BOOL_TRUE | BOOL_FALSE
        if kind in ("int", "int32", "uint32", "size_t"):
            return int(value) >= 0 or kind in ("int", "int32")
        if kind == "float":
            float(value)
            return True
    except ValueError:
        return False
    return True  # strings and the list types: any text is read


def test_every_row_of_the_table_names_its_source_line() -> None:
    assert REQUIRED, "the table lists no parameter without a fallback"
    for row in ROWS:
        assert row["source_file"].endswith(".cc") and int(row["line"]) > 0, row
        assert len(row["commit"]) == 40 and int(row["commit"], 16) >= 0, row
        assert row["fallback"] in ("yes", "no"), row


@pytest.mark.parametrize(("engine", "options"), REPOSITORIES, ids=_id)
@pytest.mark.parametrize("row", REQUIRED, ids=lambda r: r["name"])
def test_every_parameter_without_a_fallback_is_present_with_a_value_the_backend_accepts(
    rendered: dict[tuple[str, str], dict[str, str]], engine: str, options: dict[str, Any], row: dict[str, str]
) -> None:
    params = rendered[(engine, _id(options))]
    name = row["name"]
    assert name in params, f"{name} missing: the backend fails the load ({row['source_file']}:{row['line']})"
    value = params[name]
    assert parses_as(row["type"], value) or is_unset_placeholder(name, value), (name, value)
    if name == "gpt_model_type":
        assert value in GPT_MODEL_TYPES


@pytest.mark.parametrize(("engine", "options"), REPOSITORIES, ids=_id)
def test_every_backend_parameter_we_write_parses_as_the_backend_reads_it(
    rendered: dict[tuple[str, str], dict[str, str]], engine: str, options: dict[str, Any]
) -> None:
    # A value that does not parse would be dropped silently for the default (its read is in a try/catch).
    known = {k: v for k, v in rendered[(engine, _id(options))].items() if k in BY_NAME}
    assert known
    for name, value in known.items():
        assert parses_as(BY_NAME[name]["type"], value), (name, value)


def test_guided_decoding_is_written_off_as_an_empty_value(rendered: dict[tuple[str, str], dict[str, str]]) -> None:
    # The backend returns no guided-decoding config when either value is empty (model_instance_state.cc:424).
    for params in rendered.values():
        assert params["guided_decoding_backend"] == "" and params["xgrammar_tokenizer_info_path"] == ""


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [("bool", "true", True), ("bool", "yes", False), ("int32", "3", True), ("int32", "x", False), ("float", "0.5", True)],
)
def test_the_type_check_rejects_what_the_backend_rejects(kind: str, value: str, ok: bool) -> None:
    assert parses_as(kind, value) is ok

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
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from llmprep.repo import write_repository
from llmprep.spec import ModelSpec, parse_spec
from llmprep.tinytok import write_tiny_tokenizer

TABLE = Path(__file__).parent / "data" / "backend_parameters.csv"
SCHEMA = Path(__file__).parents[1] / "chart" / "values.schema.json"
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
    {"enableChunkedContext": True},
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


# Switches whose default we write differently from the backend's own, each with where it is said.
DEFAULT_DIFFERENCES = {
    # The tutorials' fill leaves it unset (false: the prompt comes back); ours returns the
    # completion only. chart/README.md "Coming from the tutorials" states it.
    "exclude_input_in_output": "true",
    # The backend reuses blocks when unset; the tutorials' fill sets enable_kv_cache_reuse:False, as we do.
    "enable_kv_cache_reuse": "false",
}
README = Path(__file__).resolve().parent.parent / "chart" / "README.md"


@pytest.mark.parametrize("engine", ["real", "standin"])
def test_every_switch_we_write_by_default_has_the_backends_default_or_a_stated_reason(
    rendered: dict[tuple[str, str], dict[str, str]], engine: str
) -> None:
    params = rendered[(engine, _id({}))]
    switches = {k: v for k, v in params.items() if BY_NAME.get(k, {}).get("type") == "bool"}
    assert "enable_chunked_context" in switches
    for name, value in switches.items():
        expected = DEFAULT_DIFFERENCES.get(name, BY_NAME[name]["default"])
        assert value == expected, f"{name}={value}: the backend's default is {BY_NAME[name]['default']}"


def test_each_default_we_change_is_stated_in_the_chart_readme() -> None:
    section = README.read_text().split("## Coming from the tutorials", 1)[1].split("\n## ", 1)[0]
    for name in DEFAULT_DIFFERENCES:
        assert f"`{name}`" in section, name
        assert f"{BY_NAME[name]['source_file'].rsplit('/', 1)[1]}:{BY_NAME[name]['line']}" in section, name


def test_guided_decoding_is_written_off_as_an_empty_value(rendered: dict[tuple[str, str], dict[str, str]]) -> None:
    # The backend returns no guided-decoding config when either value is empty (model_instance_state.cc:424).
    for params in rendered.values():
        assert params["guided_decoding_backend"] == "" and params["xgrammar_tokenizer_info_path"] == ""


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("bool", "true", True),
        ("bool", "yes", False),
        ("int32", "3", True),
        ("int32", "x", False),
        ("float", "0.5", True),
    ],
)
def test_the_type_check_rejects_what_the_backend_rejects(kind: str, value: str, ok: bool) -> None:
    assert parses_as(kind, value) is ok


@pytest.mark.parametrize("strategy", sorted(GPT_MODEL_TYPES - {"V1"}))
def test_every_batching_type_the_backend_takes_is_a_batching_strategy_we_write_unchanged(
    tmp_path: Path, strategy: str
) -> None:
    # The tutorials' fill wrote inflight_batching; the backend maps it and ours to one batching type.
    schema = json.loads(SCHEMA.read_text())
    enum = schema["properties"]["model"]["properties"]["repository"]["properties"]["batchingStrategy"]["enum"]
    assert strategy in enum
    (tmp_path / "engine").mkdir()
    root = write_repository(
        spec_of({"batchingStrategy": strategy}),
        out_dir=tmp_path / "repo",
        engine="real",
        tokenizer_dir=write_tiny_tokenizer(tmp_path / "tokenizer"),
        artifact_dir=tmp_path / "engine",
    )
    assert engine_parameters(root)["gpt_model_type"] == strategy

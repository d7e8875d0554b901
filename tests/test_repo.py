"""`llmprep repo`: the contract with upstream's layouts, the spec-driven parameters, the
atomic write, the stand-in engine's scheduler and the nv_trt_llm_* export (with a test
double of the LLM API's statistics)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from llmprep import repo as repo_mod
from llmprep.errors import RepoError, SpecError, UsageError
from llmprep.repo import TEMPLATES, render, write_repository
from llmprep.spec import ModelSpec, parse_spec
from llmprep.tinytok import write_tiny_tokenizer
from tests.conftest import run_cli
from tests.data.upstream_io import MODELS, SEMANTICS
from tests.data.upstream_layouts import COMPAT, UPSTREAM

DTYPES = model_config_pb2.DataType


def spec_of(**model: Any) -> ModelSpec:
    return parse_spec({"model": {"name": "gpt2", **model}})


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def tensors(entries: Any, *, inputs: bool) -> dict[str, tuple[str, str, tuple[int, ...], bool]]:
    return {
        e.name: (e.name, DTYPES.Name(e.data_type), tuple(e.dims), bool(e.optional) if inputs else False)
        for e in entries
    }


def params(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, tokenizer: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inputs")
    for name in ("engine", "checkpoint"):
        (base / name).mkdir()
    return {"tokenizer": tokenizer, "engine": base / "engine", "checkpoint": base / "checkpoint"}


def write(tmp_path: Path, folders: dict[str, Path], runtime: str, engine: str, spec: ModelSpec | None = None) -> Path:
    return write_repository(
        (spec or spec_of()).with_runtime(runtime),
        out_dir=tmp_path / f"{runtime}-{engine}",
        engine=engine,
        tokenizer_dir=folders["tokenizer"],
        artifact_dir=folders["engine"] if runtime == "engine" else None,
        checkpoint_dir=folders["checkpoint"],
    )


# --------------------------------------------------------------------------- the contract

# Every repository `llmprep repo` can write: each runtime and engine kind, and each spec option
# that changes a config's transaction policy or batching.
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("engine", "real", {}),
    ("engine", "real", {"repository": {"decoupled": False}}),
    ("engine", "standin", {}),
    ("engine", "standin", {"repository": {"decoupled": False}}),
    ("engine", "standin", {"standin": {"queueInTriton": True}}),
    ("pytorch", "real", {}),
    ("pytorch", "real", {"repository": {"llmapiDecoupled": True}}),
    ("pytorch", "standin", {}),
    ("pytorch", "standin", {"repository": {"llmapiDecoupled": True}}),
]
CASES = [(n, model) for n, (runtime, _, _) in enumerate(VARIANTS) for model in UPSTREAM[repo_mod.LAYOUTS[runtime]]]


def _case_id(value: object) -> str:
    return "-".join([*VARIANTS[value][:2], json.dumps(VARIANTS[value][2])]) if isinstance(value, int) else str(value)


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path]) -> dict[int, tuple[Path, ModelSpec]]:
    base = tmp_path_factory.mktemp("variants")
    out = {}
    for n, (runtime, engine, model) in enumerate(VARIANTS):
        spec = spec_of(**model).with_runtime(runtime)
        out[n] = (
            write_repository(
                spec,
                out_dir=base / str(n),
                engine=engine,
                tokenizer_dir=folders["tokenizer"],
                artifact_dir=folders["engine"] if runtime == "engine" else None,
                checkpoint_dir=folders["checkpoint"],
            ),
            spec,
        )
    return out


@pytest.mark.parametrize(("variant", "model"), CASES, ids=_case_id)
def test_every_model_has_upstream_names_inputs_and_outputs(
    variants: dict[int, tuple[Path, ModelSpec]], variant: int, model: str
) -> None:
    (root, _), engine, layout = variants[variant], VARIANTS[variant][1], repo_mod.LAYOUTS[VARIANTS[variant][0]]
    config = read_config(root / model / "config.pbtxt")
    kind, inputs, outputs = UPSTREAM[layout][model]
    extra_in, extra_out = COMPAT.get(model, ({}, {})) if layout == "inflight_batcher_llm" else ({}, {})
    assert config.name == model
    if kind == "ensemble":
        assert config.platform == "ensemble"
    else:
        assert config.backend == ("python" if engine == "standin" and kind == "tensorrtllm" else kind)
    assert tensors(config.input, inputs=True) == {**inputs, **extra_in}
    assert tensors(config.output, inputs=False) == {k: (*v[:3], False) for k, v in {**outputs, **extra_out}.items()}


@pytest.mark.parametrize(("variant", "model"), CASES, ids=_case_id)
def test_every_model_batches_as_upstreams_does(
    variants: dict[int, tuple[Path, ModelSpec]], variant: int, model: str
) -> None:
    (root, spec), layout = variants[variant], repo_mod.LAYOUTS[VARIANTS[variant][0]]
    config = read_config(root / model / "config.pbtxt")
    expected = MODELS[(layout, model)]
    assert (config.max_batch_size > 0) is expected.batched, expected.source
    assert config.HasField("dynamic_batching") is expected.dynamic_batching, expected.source
    if expected.decoupled_from is None:
        assert not config.HasField("model_transaction_policy"), expected.source
    else:
        wanted = spec.repository.llmapi_decoupled if layout == "llmapi" else spec.repository.decoupled
        assert config.model_transaction_policy.decoupled is wanted
    if expected.decoupled_from == "model.yaml":
        triton = yaml.safe_load((root / model / "1" / "model.yaml").read_text())["triton_config"]
        assert triton == {"max_batch_size": config.max_batch_size, "decoupled": wanted}


@pytest.mark.parametrize(("variant", "model"), CASES, ids=_case_id)
def test_every_input_is_reshaped_and_ragged_exactly_where_upstreams_is(
    variants: dict[int, tuple[Path, ModelSpec]], variant: int, model: str
) -> None:
    (root, _), layout = variants[variant], repo_mod.LAYOUTS[VARIANTS[variant][0]]
    config = read_config(root / model / "config.pbtxt")
    names = {entry.name for entry in config.input}
    listed = {name for (lay, mod, name) in SEMANTICS if (lay, mod) == (layout, model)}
    assert listed <= names, f"the table names inputs {model} does not have: {sorted(listed - names)}"
    for entry in config.input:
        row = SEMANTICS.get((layout, model, entry.name))
        reshaped = entry.HasField("reshape")
        assert reshaped is bool(row and row.reshape), (entry.name, row)
        assert not reshaped or list(entry.reshape.shape) == []
        assert entry.allow_ragged_batch is bool(row and row.ragged), (entry.name, row)
    assert not any(entry.HasField("reshape") for entry in config.output)


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_a_repository_holds_exactly_the_upstream_models(tmp_path: Path, folders: dict[str, Path], runtime: str) -> None:
    root = write(tmp_path, folders, runtime, "standin")
    layout = repo_mod.LAYOUTS[runtime]
    assert repo_mod.model_names(root) == sorted(UPSTREAM[layout])


@pytest.mark.parametrize(("runtime", "engine"), [(r, e) for r in ("engine", "pytorch") for e in ("real", "standin")])
def test_every_python_model_has_beside_it_exactly_the_common_files_it_imports(
    tmp_path: Path, folders: dict[str, Path], runtime: str, engine: str
) -> None:
    root = write(tmp_path, folders, runtime, engine)
    common = {p.name for p in (TEMPLATES / "common").glob("llmprep_*.py")}
    for model_py in root.glob("*/1/model.py"):
        beside = {p.name for p in model_py.parent.glob("llmprep_*.py")}
        imported: set[str] = set()
        for path in [model_py, *(model_py.parent / name for name in beside)]:
            text = path.read_text()
            imported |= {name for name in common if f"from {name[:-3]} import" in text}
        assert beside == imported, model_py.relative_to(root)
        assert "llmprep_models.py" in beside


def test_ensemble_steps_only_read_tensors_an_earlier_step_or_the_client_provides(
    tmp_path: Path, folders: dict[str, Path]
) -> None:
    root = write(tmp_path, folders, "engine", "real")
    config = read_config(root / "ensemble" / "config.pbtxt")
    available = {i.name for i in config.input}
    for step in config.ensemble_scheduling.step:
        step_config = read_config(root / step.model_name / "config.pbtxt")
        assert set(step.input_map) <= {i.name for i in step_config.input}
        assert set(step.output_map) <= {o.name for o in step_config.output}
        assert set(step.input_map.values()) <= available
        available |= set(step.output_map.values())
    assert {o.name for o in config.output} <= available


def test_llmapi_config_carries_decoupled_and_max_batch_size_for_disable_auto_complete(
    tmp_path: Path, folders: dict[str, Path]
) -> None:
    root = write(tmp_path, folders, "pytorch", "real", spec_of(repository={"llmapiDecoupled": True}))
    config = read_config(root / "tensorrt_llm" / "config.pbtxt")
    model_yaml = yaml.safe_load((root / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert config.model_transaction_policy.decoupled is True
    assert config.HasField("model_transaction_policy") and config.max_batch_size == 0
    assert model_yaml["triton_config"] == {"max_batch_size": 0, "decoupled": True}


def test_llmapi_repository_is_unary_by_default_as_upstreams_model_yaml(
    tmp_path: Path, folders: dict[str, Path]
) -> None:
    # Upstream v0.19.0 all_models/llmapi/tensorrt_llm/1/model.yaml:21 ships decoupled False.
    root = write(tmp_path, folders, "pytorch", "real", spec_of())
    model_yaml = yaml.safe_load((root / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert read_config(root / "tensorrt_llm" / "config.pbtxt").model_transaction_policy.decoupled is False
    assert model_yaml["triton_config"]["decoupled"] is False


def test_llmapi_model_yaml_holds_the_llm_api_arguments_from_the_spec(tmp_path: Path, folders: dict[str, Path]) -> None:
    spec = parse_spec(
        {
            "model": {
                "name": "gpt2",
                "tensorrtLlm": {
                    "parallelism": {"tensor": 2, "pipeline": 2},
                    "dataType": "bfloat16",
                    "maxBatchSize": 32,
                    "options": {"enable_chunked_prefill": True},
                },
                "repository": {"kvCacheFreeGpuMemFraction": 0.5, "enableKvCacheReuse": True},
            }
        }
    )
    root = write(tmp_path, folders, "pytorch", "real", spec)
    args = yaml.safe_load((root / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert args["model"] == str(folders["checkpoint"])
    assert (args["backend"], args["tensor_parallel_size"], args["pipeline_parallel_size"]) == ("pytorch", 2, 2)
    assert (args["dtype"], args["max_batch_size"], args["enable_chunked_prefill"]) == ("bfloat16", 32, True)
    assert args["kv_cache_config"] == {"free_gpu_memory_fraction": 0.5, "enable_block_reuse": True}
    assert args["enable_iter_perf_stats"] is True


@pytest.mark.parametrize(("key", "expected"), [(None, None), (True, True), (False, None)])
def test_chunked_context_reaches_the_llm_api_as_enable_chunked_prefill(
    tmp_path: Path, folders: dict[str, Path], key: bool | None, expected: bool | None
) -> None:
    repository = {} if key is None else {"enableChunkedContext": key}
    root = write(tmp_path, folders, "pytorch", "real", spec_of(repository=repository))
    args = yaml.safe_load((root / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert args.get("enable_chunked_prefill") == expected


def test_an_explicit_enable_chunked_prefill_option_wins_over_the_repository_key(
    tmp_path: Path, folders: dict[str, Path]
) -> None:
    spec = spec_of(
        repository={"enableChunkedContext": True}, tensorrtLlm={"options": {"enable_chunked_prefill": False}}
    )
    root = write(tmp_path, folders, "pytorch", "real", spec)
    assert yaml.safe_load((root / "tensorrt_llm" / "1" / "model.yaml").read_text())["enable_chunked_prefill"] is False


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
@pytest.mark.parametrize("chunked", [False, True])
def test_the_stand_in_is_told_whether_to_chunk_contexts(
    tmp_path: Path, folders: dict[str, Path], runtime: str, chunked: bool
) -> None:
    root = write(tmp_path, folders, runtime, "standin", spec_of(repository={"enableChunkedContext": chunked}))
    assert params(read_config(root / "tensorrt_llm" / "config.pbtxt"))["enable_chunked_context"] == str(chunked).lower()


def test_chunked_context_is_off_by_default_as_the_backend_leaves_it(tmp_path: Path, folders: dict[str, Path]) -> None:
    # model_instance_state.cc v0.19.0 lines 518-533: missing or unparseable means false.
    root = write(tmp_path, folders, "engine", "real")
    assert params(read_config(root / "tensorrt_llm" / "config.pbtxt"))["enable_chunked_context"] == "false"
    assert spec_of().to_values()["model"]["repository"]["enableChunkedContext"] is False


# --------------------------------------------------------------------------- fill_template parameters


@pytest.mark.parametrize(
    ("repository", "model", "check"),
    [
        ({"maxBeamWidth": 2}, "tensorrt_llm", lambda c: params(c)["max_beam_width"] == "2"),
        (
            {"kvCacheFreeGpuMemFraction": 0.5},
            "tensorrt_llm",
            lambda c: params(c)["kv_cache_free_gpu_mem_fraction"] == "0.5",
        ),
        ({"enableKvCacheReuse": True}, "tensorrt_llm", lambda c: params(c)["enable_kv_cache_reuse"] == "true"),
        ({"batchingStrategy": "v1"}, "tensorrt_llm", lambda c: params(c)["gpt_model_type"] == "v1"),
        ({"excludeInputInOutput": False}, "tensorrt_llm", lambda c: params(c)["exclude_input_in_output"] == "false"),
        ({"enableChunkedContext": True}, "tensorrt_llm", lambda c: params(c)["enable_chunked_context"] == "true"),
        (
            {"maxQueueDelayMicroseconds": 250},
            "tensorrt_llm",
            lambda c: c.dynamic_batching.max_queue_delay_microseconds == 250,
        ),
        (
            {"maxQueueDelayMicroseconds": 250},
            "preprocessing",
            lambda c: c.dynamic_batching.max_queue_delay_microseconds == 250,
        ),
        ({"decoupled": False}, "tensorrt_llm", lambda c: c.model_transaction_policy.decoupled is False),
        ({"decoupled": False}, "tensorrt_llm_bls", lambda c: c.model_transaction_policy.decoupled is False),
        ({"instances": {"preprocessing": 3}}, "preprocessing", lambda c: c.instance_group[0].count == 3),
        ({"instances": {"postprocessing": 2}}, "postprocessing", lambda c: c.instance_group[0].count == 2),
        ({"instances": {"bls": 4}}, "tensorrt_llm_bls", lambda c: c.instance_group[0].count == 4),
        ({"logitsDatatype": "TYPE_FP16"}, "ensemble", lambda c: DTYPES.Name(c.output[3].data_type) == "TYPE_FP16"),
        ({"logitsDatatype": "TYPE_BF16"}, "tensorrt_llm", lambda c: DTYPES.Name(c.output[4].data_type) == "TYPE_BF16"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v) if isinstance(v, str) else "",
)
def test_repository_options_of_the_spec_reach_the_config(
    tmp_path: Path, folders: dict[str, Path], repository: dict[str, Any], model: str, check: Any
) -> None:
    root = write(tmp_path, folders, "engine", "real", spec_of(repository=repository))
    assert check(read_config(root / model / "config.pbtxt"))


@pytest.mark.parametrize("model", ["ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls"])
def test_max_batch_size_of_the_spec_is_every_models_triton_max_batch_size(
    tmp_path: Path, folders: dict[str, Path], model: str
) -> None:
    root = write(tmp_path, folders, "engine", "real", spec_of(tensorrtLlm={"maxBatchSize": 8}))
    assert read_config(root / model / "config.pbtxt").max_batch_size == 8


def test_engine_and_tokenizer_folders_are_written_as_absolute_paths(tmp_path: Path, folders: dict[str, Path]) -> None:
    root = write(tmp_path, folders, "engine", "real")
    engine = params(read_config(root / "tensorrt_llm" / "config.pbtxt"))
    assert engine["gpt_model_path"] == str(folders["engine"])
    for model in ("preprocessing", "postprocessing"):
        assert params(read_config(root / model / "config.pbtxt"))["tokenizer_dir"] == str(folders["tokenizer"])


def test_tokenizer_type_of_the_tutorials_is_accepted_and_changes_nothing(
    tmp_path: Path, folders: dict[str, Path]
) -> None:
    with_type = spec_of(repository={"tokenizerType": "llama"})
    plain = write(tmp_path / "a", folders, "engine", "real")
    typed = write(tmp_path / "b", folders, "engine", "real", with_type)
    assert any("tokenizerType is ignored" in w for w in with_type.warnings)
    for model in ("preprocessing", "postprocessing"):
        assert (plain / model / "config.pbtxt").read_text() == (typed / model / "config.pbtxt").read_text()


def test_stand_in_config_is_labelled_and_carries_the_cost_model(tmp_path: Path, folders: dict[str, Path]) -> None:
    spec = spec_of(standin={"decodeMsPerStep": 7, "maxInFlight": 3, "queueInTriton": True, "tokensPerBlock": 16})
    root = write(tmp_path, folders, "engine", "standin", spec)
    text = (root / "tensorrt_llm" / "config.pbtxt").read_text()
    got = params(read_config(root / "tensorrt_llm" / "config.pbtxt"))
    assert "STAND-IN" in text and got["llmprep_standin"] == "true"
    assert (got["standin_decode_ms_per_step"], got["standin_max_in_flight"], got["standin_queue_in_triton"]) == (
        "7",
        "3",
        "true",
    )
    assert got["standin_kv_cache_blocks"] == str(3 * 4096 // 16)


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_the_stand_ins_token_budget_is_the_specs_max_num_tokens(
    tmp_path: Path, folders: dict[str, Path], runtime: str
) -> None:
    root = write(tmp_path, folders, runtime, "standin", spec_of(tensorrtLlm={"maxNumTokens": 1234}))
    assert params(read_config(root / "tensorrt_llm" / "config.pbtxt"))["standin_max_num_tokens"] == "1234"
    engine = load_common().standin_engine(
        {
            "parameters": {
                k: {"string_value": v} for k, v in params(read_config(root / "tensorrt_llm" / "config.pbtxt")).items()
            }
        },
        lambda: 100,
    )
    engine.stop()
    assert engine.cost.max_num_tokens == 1234


@pytest.mark.parametrize(("runtime", "model"), [("engine", "tensorrt_llm"), ("pytorch", "tensorrt_llm")])
def test_torch_stand_in_carries_its_model_size(
    tmp_path: Path, folders: dict[str, Path], runtime: str, model: str
) -> None:
    spec = spec_of(standin={"compute": "torch", "torchWidth": 512, "torchLayers": 2})
    root = write(tmp_path, folders, runtime, "standin", spec)
    got = params(read_config(root / model / "config.pbtxt"))
    assert (got["standin_compute"], got["standin_torch_width"], got["standin_torch_layers"]) == ("torch", "512", "2")
    timing = params(read_config(write(tmp_path / "t", folders, runtime, "standin") / model / "config.pbtxt"))
    assert "standin_torch_width" not in timing  # only the torch stand-in builds a model


@pytest.mark.parametrize(("key", "value"), [("torchWidth", 4), ("torchLayers", 0), ("torchWidth", "wide")])
def test_torch_stand_in_size_out_of_range_names_the_field(key: str, value: object) -> None:
    with pytest.raises(SpecError, match=f"model.standin.{key}"):
        spec_of(standin={key: value})


# --------------------------------------------------------------------------- templates and writing


@pytest.mark.parametrize("name", list(repo_mod.all_templates()))
def test_a_template_with_an_unfilled_placeholder_is_an_error(name: str) -> None:
    with pytest.raises(RepoError, match="unfilled"):
        render(name, {})


def test_no_template_keeps_an_upstream_style_placeholder() -> None:
    for path in TEMPLATES.rglob("*.j2"):
        assert "${" not in path.read_text(), path


def test_a_failed_write_leaves_the_previous_repository_and_no_partial_folder(
    tmp_path: Path, folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path, folders, "engine", "standin")
    before = (root / "ensemble" / "config.pbtxt").read_text()

    def broken(staging: Path, values: Any, engine: str) -> None:
        (staging / "half-written").mkdir()
        raise RepoError("disk full")

    monkeypatch.setattr(repo_mod, "_write_inflight", broken)
    with pytest.raises(RepoError, match="disk full"):
        write(tmp_path, folders, "engine", "standin")
    assert (root / "ensemble" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine-standin"]


def test_rewriting_a_repository_replaces_it_whole(tmp_path: Path, folders: dict[str, Path]) -> None:
    root = write(tmp_path, folders, "engine", "standin")
    (root / "stale").mkdir()
    write(tmp_path, folders, "engine", "standin")
    assert not (root / "stale").exists()


def test_a_folder_with_other_content_is_never_replaced(tmp_path: Path, folders: dict[str, Path]) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not written by llmprep repo"):
        write_repository(spec_of().with_runtime("engine"), out_dir=target, engine="standin")
    assert (target / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("runtime", "engine", "kwargs", "error", "message"),
    [
        ("engine", "real", {}, UsageError, "--artifact: required"),
        ("engine", "real", {"tokenizer_dir": None}, UsageError, "--tokenizer: required"),
        ("pytorch", "real", {}, UsageError, "--checkpoint: required"),
        ("auto", "real", {}, SpecError, "model.tensorrtLlm.runtime: 'auto' must be resolved"),
        ("engine", "fake", {}, UsageError, "--engine: 'fake' is not one of real, standin"),
        ("engine", "standin", {"layout": "llmapi"}, UsageError, "--layout: llmapi does not serve runtime 'engine'"),
        (
            "engine",
            "standin",
            {"tokenizer_dir": Path("/nonexistent/tok")},
            UsageError,
            "--tokenizer /nonexistent/tok: no such folder",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_flag(
    tmp_path: Path,
    folders: dict[str, Path],
    runtime: str,
    engine: str,
    kwargs: dict[str, Any],
    error: type,
    message: str,
) -> None:
    args: dict[str, Any] = {"tokenizer_dir": folders["tokenizer"], **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(")):
        write_repository(spec_of().with_runtime(runtime), out_dir=tmp_path / "r", engine=engine, **args)


def test_an_unknown_stand_in_compute_is_refused_naming_the_key() -> None:
    with pytest.raises(SpecError, match="model.standin.compute: 'cuda' is not one of timing, torch"):
        spec_of(standin={"compute": "cuda"})


def test_auto_runtime_with_the_stand_in_picks_the_engine_layout(tmp_path: Path) -> None:
    root = write_repository(spec_of(), out_dir=tmp_path / "r", engine="standin")
    assert repo_mod.describe(root)["layout"] == "inflight_batcher_llm"


def test_cli_writes_a_stand_in_repository_with_its_own_tiny_tokenizer(tmp_path: Path) -> None:
    spec = tmp_path / "model.yaml"
    spec.write_text("model:\n  name: gpt2\n")
    done = run_cli(
        "repo",
        "--spec",
        str(spec),
        "--out",
        str(tmp_path / "r"),
        "--engine",
        "standin",
        "--runtime",
        "pytorch",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["layout"], info["models"], info["standin"]) == ("llmapi", ["tensorrt_llm"], True)
    assert (Path(info["tokenizer"]) / "tokenizer.json").exists()


def test_cli_reports_a_missing_engine_folder_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    spec = tmp_path / "model.yaml"
    spec.write_text("model:\n  name: gpt2\n")
    done = run_cli(
        "repo", "--spec", str(spec), "--out", str(tmp_path / "r"), "--runtime", "engine", "--tokenizer", str(tmp_path)
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--artifact: required" in done.stderr


# --------------------------------------------------------------------------- Python model helpers


COMMON_FILES = ("llmprep_models", "llmprep_stats", "llmprep_standin")  # in import order


def load_common() -> types.ModuleType:
    """The common/ files, each importable by its own name (as beside a model), their names in one module."""
    combined = types.ModuleType("llmprep_common")
    for name in COMMON_FILES:
        spec = importlib.util.spec_from_file_location(name, TEMPLATES / "common" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        combined.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return combined


def test_tiny_tokenizer_loads_offline_and_round_trips_text(tokenizer: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    text = "The queue grows when replicas are few."
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize(
    "text", ["Hello world! What is machine learning?", "héllo wörld ✓ — naïve café", "日本語のテキスト"]
)
def test_streaming_detokenizer_never_splits_a_character_and_rebuilds_the_text(tokenizer: Path, text: str) -> None:
    common = load_common()
    tok = common.load_tokenizer(str(tokenizer))
    detok = common.StreamingDetokenizer(tok)
    chunks = [detok.add([t]) for t in tok.encode(text)] + [detok.flush()]
    assert "".join(chunks) == text
    assert not any("\ufffd" in c for c in chunks)


def test_stand_in_engine_holds_requests_beyond_max_in_flight_waiting_inside() -> None:
    common = load_common()
    release = threading.Event()
    seen: list[dict[str, Any]] = []

    def step(batch: list[Any], new: list[Any]) -> list[int]:
        release.wait(10)  # the test decides when an iteration ends
        return [job.next_token() for job in batch]

    engine = common.StandinEngine(common.CostModel(max_in_flight=2, kv_cache_blocks=100, tokens_per_block=4), step)
    emitted: dict[int, list[tuple[list[int], bool]]] = {}
    jobs = [
        engine.submit(
            common.Job(
                input_ids=[i, i + 1, i + 2],
                max_tokens=3,
                end_id=None,
                emit=lambda job, new, final, i=i: emitted.setdefault(i, []).append((new, final)),
            )
        )
        for i in range(5)
    ]
    try:
        deadline = threading.Event()
        while not deadline.wait(0.01):
            stats = engine.stats()
            if stats["numActiveRequests"] == 2:
                seen.append(stats)
                break
        release.set()
        for job in jobs:
            assert job.done.wait(10)
    finally:
        release.set()
        engine.stop()
    assert seen[0]["numQueuedRequests"] == 3 and seen[0]["maxNumActiveRequests"] == 2
    assert seen[0]["kvCacheStats"]["usedNumBlocks"] >= 2
    # One token per response, three responses, the last one final; text is the prompt cycled.
    assert emitted[1] == [([1], False), ([2], False), ([3], True)]
    assert engine.stats()["numActiveRequests"] == 0 and engine.stats()["numCompletedRequests"] == 5


def test_stand_in_engine_admits_only_what_the_kv_cache_can_hold() -> None:
    common = load_common()
    hold = threading.Event()
    engine = common.StandinEngine(
        common.CostModel(max_in_flight=8, kv_cache_blocks=4, tokens_per_block=4),
        lambda batch, new: (hold.wait(10), [0] * len(batch))[1],
    )
    jobs = [
        engine.submit(common.Job(input_ids=[1, 2, 3, 4], max_tokens=4, end_id=None, emit=lambda *a: None))
        for _ in range(3)
    ]
    try:
        while engine.stats()["numActiveRequests"] == 0:
            threading.Event().wait(0.01)
        stats = engine.stats()
    finally:
        hold.set()
        for job in jobs:
            job.done.wait(10)
        engine.stop()
    # Each needs 2 blocks for prompt + max tokens: all three are admitted (8 may be active),
    # two fit in 4 blocks and run, the third is active but unscheduled (upstream's "waiting").
    scheduled = stats["inflightBatchingStats"]["numScheduledRequests"]
    assert (stats["numActiveRequests"], scheduled, stats["numQueuedRequests"]) == (3, 2, 0)


def test_torch_compute_without_pytorch_fails_with_a_message_that_says_what_to_do() -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here: the torch path itself runs (checked on a GPU machine)")
    with pytest.raises(RuntimeError, match="needs PyTorch in the server's Python"):
        load_common().torch_step(400)


# --------------------------------------------------------------------------- metrics export (test doubles)


class FakeMetric:
    def __init__(self, labels: dict[str, str], store: dict[tuple[str, ...], float], family: str) -> None:
        self.key = (family, *sorted(labels.items()))
        self.store = store

    def set(self, value: float) -> None:
        self.store[self.key] = value

    def increment(self, by: float) -> None:
        self.store[self.key] = self.store.get(self.key, 0.0) + by

    def observe(self, value: float) -> None:
        # A histogram's count is enough here: how many requests were timed.
        self.store[self.key] = self.store.get(self.key, 0.0) + 1


class FakeFamily:
    GAUGE, HISTOGRAM = "gauge", "histogram"
    store: dict[tuple[str, ...], float] = {}
    created: list[str] = []

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name = name
        FakeFamily.created.append(name)

    def Metric(self, labels: dict[str, str], buckets: list[float] | None = None) -> FakeMetric:  # noqa: N802 (pb_utils' spelling)
        return FakeMetric(labels, FakeFamily.store, self.name)


# One IterationStats record as TensorRT-LLM 1.2.1's LLM.get_stats() returns it (keys of the
# executor's JSON serialisation; values made up).
LLM_API_STATS = {
    "iter": 41,
    "timestamp": 1_700_000_000_000_000,
    "numActiveRequests": 6,
    "numQueuedRequests": 9,
    "maxNumActiveRequests": 64,
    "kvCacheStats": {"maxNumBlocks": 200, "freeNumBlocks": 90, "usedNumBlocks": 110, "tokensPerBlock": 32},
    "inflightBatchingStats": {
        "numScheduledRequests": 4,
        "numContextRequests": 2,
        "numGenRequests": 2,
        "numPausedRequests": 1,
        "numCtxTokens": 300,
        "microBatchId": 0,
    },
}


def gauge(family: str, label: str, value: str, model: str = "tensorrt_llm") -> float:
    return FakeFamily.store[(family, *sorted({label: value, "model": model, "version": "1"}.items()))]


@pytest.fixture
def fake_pb_utils() -> Iterator[types.ModuleType]:
    FakeFamily.store, FakeFamily.created = {}, []
    module = types.ModuleType("triton_python_backend_utils")
    module.MetricFamily = FakeFamily  # type: ignore[attr-defined]
    yield module


@pytest.mark.parametrize("as_json", [False, True], ids=["dicts", "json-strings"])
def test_llm_api_iteration_stats_become_the_engine_backends_gauges(
    fake_pb_utils: types.ModuleType, as_json: bool
) -> None:
    common = load_common()
    exporter = common.MetricsExporter(fake_pb_utils, "tensorrt_llm", "1")
    older = {**LLM_API_STATS, "iter": 40, "numQueuedRequests": 0}
    entries = [older, LLM_API_STATS]
    poller = common.StatsPoller(lambda: [json.dumps(e) for e in entries] if as_json else entries, exporter.publish, 1.0)
    assert poller.poll_once()
    # waiting is active − scheduled (upstream's meaning); the queue has a name of our own.
    assert gauge("nv_trt_llm_request_metrics", "request_type", "waiting") == 2
    assert gauge("llmprep_executor_queued_requests", "request_type", "queued") == 9
    assert gauge("nv_trt_llm_request_metrics", "request_type", "active") == 6
    assert gauge("nv_trt_llm_request_metrics", "request_type", "max") == 64
    assert gauge("nv_trt_llm_request_metrics", "request_type", "scheduled") == 4
    assert gauge("nv_trt_llm_request_metrics", "request_type", "context") == 2
    assert gauge("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "fraction") == pytest.approx(0.55)
    assert gauge("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "used") == 110
    assert gauge("nv_trt_llm_inflight_batcher_metrics", "inflight_batcher_specific_metric", "paused_requests") == 1
    assert gauge("nv_trt_llm_general_metrics", "general_type", "iteration_counter") == 41


def test_no_stats_yet_leaves_the_gauges_untouched(fake_pb_utils: types.ModuleType) -> None:
    common = load_common()
    exporter = common.MetricsExporter(fake_pb_utils, "tensorrt_llm", "1")
    assert not common.StatsPoller(lambda: [], exporter.publish, 1.0).poll_once()
    assert FakeFamily.store == {}


class FakeLLM:
    """Test double of tensorrt_llm.LLM: records its arguments, serves stats, streams two chunks."""

    instances: list[FakeLLM] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.stats_calls: list[float] = []
        FakeLLM.instances.append(self)

    def get_stats(self, timeout: float) -> list[dict[str, Any]]:
        self.stats_calls.append(timeout)
        return [LLM_API_STATS]

    async def generate_async(self, prompt: str, sampling: Any, streaming: bool) -> Any:
        self.asked = (prompt, sampling, streaming)
        for text in ("Hel", "lo"):
            yield types.SimpleNamespace(
                outputs=[
                    types.SimpleNamespace(
                        text_diff=text, text="Hello", finish_reason="length", stop_reason=None, cumulative_logprob=None
                    )
                ],
                abort=lambda: None,
            )

    def shutdown(self) -> None:
        pass


def test_our_llmapi_model_builds_the_llm_from_model_yaml_and_exports_its_stats(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path, folders, "pytorch", "real", spec_of(tensorrtLlm={"parallelism": {"tensor": 2}}))
    FakeLLM.instances = []
    fake_trtllm = types.ModuleType("tensorrt_llm")
    fake_trtllm.LLM = FakeLLM  # type: ignore[attr-defined]
    fake_trtllm.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    fake_pb_utils.using_decoupled_model_transaction_policy = (  # type: ignore[attr-defined]
        lambda config: config["model_transaction_policy"]["decoupled"]
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils)
    monkeypatch.setitem(sys.modules, "tensorrt_llm", fake_trtllm)
    load_common()
    spec = importlib.util.spec_from_file_location("llmapi_model", root / "tensorrt_llm" / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    model_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_module)
    config = {"parameters": {}, "model_transaction_policy": {"decoupled": True}}
    model = model_module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(root / "tensorrt_llm"),
            "model_version": "1",
            "model_name": "tensorrt_llm",
        }
    )
    try:
        (llm,) = FakeLLM.instances
        assert llm.kwargs["model"] == str(folders["checkpoint"]) and llm.kwargs["tensor_parallel_size"] == 2
        assert "triton_config" not in llm.kwargs and llm.kwargs["enable_iter_perf_stats"] is True
        assert model.poller.poll_once()
        assert gauge("nv_trt_llm_request_metrics", "request_type", "waiting") == 2
        assert gauge("llmprep_executor_queued_requests", "request_type", "queued") == 9
        assert gauge("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "fraction") == pytest.approx(0.55)
    finally:
        model.poller.stop()
        model.loop.call_soon_threadsafe(model.loop.stop)
    assert asyncio.iscoroutinefunction(model._generate)


class FakeTensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name, self.array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> Any:
        return self.array


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, int]] = []
        self.finished = threading.Event()

    def send(self, response: Any = None, flags: int = 0) -> None:
        self.sent.append((response, flags))
        if flags:
            self.finished.set()

    def is_cancelled(self) -> bool:
        return False


class FakeRequest:
    def __init__(self, **inputs: Any) -> None:
        import numpy as np

        self.inputs = {k: FakeTensor(k, np.array(v)) for k, v in inputs.items()}
        self.sender = FakeSender()

    def get_response_sender(self) -> FakeSender:
        return self.sender


def test_our_llmapi_model_hands_requests_to_generate_async_and_streams_text_diffs(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path, folders, "pytorch", "real")
    FakeLLM.instances = []
    fake_trtllm = types.ModuleType("tensorrt_llm")
    fake_trtllm.LLM = FakeLLM  # type: ignore[attr-defined]
    fake_trtllm.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    pb: Any = fake_pb_utils
    pb.using_decoupled_model_transaction_policy = lambda config: True
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    pb.Tensor = FakeTensor
    pb.InferenceResponse = lambda tensors=None, error=None: types.SimpleNamespace(tensors=tensors, error=error)
    pb.TritonError = str
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils)
    monkeypatch.setitem(sys.modules, "tensorrt_llm", fake_trtllm)
    load_common()
    spec = importlib.util.spec_from_file_location("llmapi_model_exec", root / "tensorrt_llm" / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps({"parameters": {}}),
            "model_repository": str(root / "tensorrt_llm"),
            "model_version": "1",
            "model_name": "tensorrt_llm",
        }
    )
    request = FakeRequest(
        text_input=[b"Hi"],
        streaming=[True],
        sampling_param_max_tokens=[2],
        sampling_param_temperature=[0.5],
        return_finish_reason=[True],
    )
    try:
        assert model.execute([request]) is None  # handed off, as upstream's model does
        assert request.sender.finished.wait(10)
    finally:
        model.poller.stop()
        model.loop.call_soon_threadsafe(model.loop.stop)
    (llm,) = FakeLLM.instances
    prompt, sampling, streaming = llm.asked
    assert (prompt, streaming) == ("Hi", True)
    assert sampling["max_tokens"] == 2 and sampling["temperature"] == pytest.approx(0.5)
    texts = [r.tensors[0].array.reshape(-1)[0].decode() for r, flags in request.sender.sent if r is not None]
    assert texts == ["Hel", "lo"] and request.sender.sent[-1] == (None, 1)
    reasons = [r.tensors[1].array.reshape(-1)[0].decode() for r, _ in request.sender.sent if r is not None]
    assert reasons == ["length", "length"]
    # Our own counts: in flight until the final response (the coroutine's finally, just after it), the
    # first of the two chunks timed once.
    key = ("llmprep_requests_in_flight", ("model", "tensorrt_llm"), ("version", "1"))
    deadline = time.monotonic() + 5
    while FakeFamily.store.get(key) != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert FakeFamily.store[key] == 0
    assert FakeFamily.store[("llmprep_first_response_histogram_ms", ("model", "tensorrt_llm"), ("version", "1"))] == 1


def test_our_llmapi_model_returns_upstreams_perf_metrics_from_the_llm_apis_request_metrics(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    root = write(tmp_path, folders, "pytorch", "real")
    pb: Any = fake_pb_utils
    pb.Tensor = FakeTensor
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils)
    load_common()
    spec = importlib.util.spec_from_file_location("llmapi_model_perf", root / "tensorrt_llm" / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = types.SimpleNamespace(
        kv_cache_metrics=types.SimpleNamespace(
            num_reused_blocks=1,
            kv_cache_hit_rate=0.25,
            num_new_allocated_blocks=3,
            num_total_allocated_blocks=4,
            num_missed_blocks=3,
        ),
        timing_metrics=types.SimpleNamespace(
            arrival_time=datetime.timedelta(seconds=76735, microseconds=247746),
            first_scheduled_time=datetime.timedelta(seconds=76735, microseconds=248284),
            first_token_time=datetime.timedelta(seconds=76735, microseconds=374300),
            last_token_time=datetime.timedelta(seconds=76736, microseconds=545324),
        ),
        speculative_decoding=types.SimpleNamespace(
            acceptance_rate=0.5, total_accepted_draft_tokens=2, total_draft_tokens=4
        ),
    )
    got = {t.name(): t.as_numpy() for t in module.perf_tensors(metrics)}
    assert module.perf_tensors(None) == []
    # Every perf output upstream's model returns, as our config declares it (name and type).
    config = read_config(root / "tensorrt_llm" / "config.pbtxt")
    declared = {o.name: DTYPES.Name(o.data_type) for o in config.output}
    numpy_type = {"TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_FP32": "float32"}
    assert {name: numpy_type[declared[name]] for name in got} == {name: str(a.dtype) for name, a in got.items()}
    assert int(got["arrival_time_ns"][0]) == 76735247746000 and int(got["last_token_time_ns"][0]) == 76736545324000
    assert (int(got["kv_cache_reused_block"][0]), int(got["kv_cache_alloc_total_blocks"][0])) == (1, 4)
    assert float(got["acceptance_rate"][0]) == 0.5 and int(got["total_draft_tokens"][0]) == 4
    assert len(got) == 12


# --------------------------------------------------------------------------- the stand-in engine model, in process


def stand_in_engine_model(
    tmp_path: Path, folders: dict[str, Path], pb: Any, monkeypatch: pytest.MonkeyPatch, *, decoupled: bool
) -> tuple[Any, model_config_pb2.ModelConfig]:
    """The engine layout's stand-in `tensorrt_llm` model, initialized on test doubles of pb_utils."""
    from google.protobuf import json_format

    spec = spec_of(
        standin={"decodeMsPerStep": 1, "prefillMsPerToken": 0, "tokensPerBlock": 4},
        repository={"decoupled": decoupled},
    )
    root = write(tmp_path, folders, "engine", "standin", spec)
    config = read_config(root / "tensorrt_llm" / "config.pbtxt")
    pb.using_decoupled_model_transaction_policy = lambda c: bool(c.get("model_transaction_policy", {}).get("decoupled"))
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    pb.Tensor = FakeTensor
    pb.InferenceResponse = lambda tensors=None, error=None: types.SimpleNamespace(tensors=tensors, error=error)
    pb.TritonError = str
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    load_common()
    module_spec = importlib.util.spec_from_file_location(
        "standin_engine_model", root / "tensorrt_llm" / "1" / "model.py"
    )
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    model.initialize({"model_config": json.dumps(as_json), "model_name": "tensorrt_llm", "model_version": "1"})
    return model, config


def served(model: Any, **inputs: Any) -> list[tuple[Any, int]]:
    """Every (response, flags) the model sends for one request."""
    request = FakeRequest(**inputs)
    try:
        assert model.execute([request]) is None
        assert request.sender.finished.wait(10)
    finally:
        model.finalize()
    return request.sender.sent


def outputs_of(response: Any) -> dict[str, Any]:
    return {t.name(): t.as_numpy() for t in response.tensors}


@pytest.mark.parametrize(
    ("ids", "lengths", "streaming", "error"),
    [
        ([[5, 6, 7]], [3], True, "streaming is only possible when the model is deployed in decoupled mode"),
        ([[5, 6, 7], [8, 9, 0]], [3, 2], False, r"more than one input_ids row \(batch size > 1\) needs the model"),
    ],
    ids=["streaming", "batch-of-2"],
)
def test_stand_in_engine_refuses_what_the_backend_refuses_when_not_decoupled(
    tmp_path: Path,
    folders: dict[str, Path],
    fake_pb_utils: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    ids: list[list[int]],
    lengths: list[int],
    streaming: bool,
    error: str,
) -> None:
    # tensorrtllm_backend v0.19.0 inflight_batcher_llm/src/utils.cc:900-903 and 905-908.
    model, _ = stand_in_engine_model(tmp_path, folders, fake_pb_utils, monkeypatch, decoupled=False)
    sent = served(model, input_ids=ids, input_lengths=lengths, request_output_len=[2] * len(ids), streaming=[streaming])
    ((response, flags),) = sent
    assert flags == 1 and response.tensors is None
    assert re.search(error, response.error) and "decoupled" in response.error


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streaming"])
def test_stand_in_engine_serves_each_batch_row_as_its_own_request_with_batch_index(
    tmp_path: Path,
    folders: dict[str, Path],
    fake_pb_utils: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    streaming: bool,
) -> None:
    # The backend splits [B, T] input_ids into B requests cut to input_lengths (utils.cc:158-217),
    # tags each response with batch_index [1, 1] (model_instance_state.cc:1211-1219) and marks only
    # the last row's last response final (:1369-1371).
    model, _ = stand_in_engine_model(tmp_path, folders, fake_pb_utils, monkeypatch, decoupled=True)
    sent = served(
        model,
        input_ids=[[5, 6, 7, 0], [8, 9, 0, 0]],
        input_lengths=[3, 2],
        request_output_len=[2, 2],
        exclude_input_in_output=[False, False],
        streaming=[streaming],
    )
    tokens: dict[int, list[int]] = {0: [], 1: []}
    for response, _ in (s for s in sent if s[0] is not None):
        got = outputs_of(response)
        assert got["output_ids"].shape[:2] == (1, 1) and got["batch_index"].shape == (1, 1)
        tokens[int(got["batch_index"][0][0])] += got["output_ids"][0][0].tolist()
    # The timing model writes each row's own prompt back, cycled: never a token of the other row.
    assert tokens == ({0: [5, 6], 1: [8, 9]} if streaming else {0: [5, 6, 7, 5, 6], 1: [8, 9, 8, 9]})
    assert [flags for _, flags in sent].count(1) == 1 and sent[-1][1] == 1


def test_stand_in_engine_sends_no_batch_index_for_a_single_row(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = stand_in_engine_model(tmp_path, folders, fake_pb_utils, monkeypatch, decoupled=False)
    ((response, flags),) = served(
        model, input_ids=[[5, 6, 7]], input_lengths=[3], request_output_len=[2], exclude_input_in_output=[False]
    )
    got = outputs_of(response)
    assert flags == 1 and "batch_index" not in got and got["output_ids"].tolist() == [[[5, 6, 7, 5, 6]]]


def test_stand_in_engine_returns_the_backends_perf_metrics_when_asked(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # model_instance_state.cc:1255-1305 (v0.19.0): ten outputs, each [1, 1], int32 / int64 / fp32.
    model, config = stand_in_engine_model(tmp_path, folders, fake_pb_utils, monkeypatch, decoupled=False)
    prompt = list(range(1, 10))  # 9 tokens: 3 blocks of 4
    ((response, _),) = served(
        model, input_ids=[prompt], input_lengths=[9], request_output_len=[3], return_perf_metrics=[True]
    )
    got = outputs_of(response)
    declared = {o.name: DTYPES.Name(o.data_type) for o in config.output}
    numpy_type = {"TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_FP32": "float32"}
    perf = {name: a for name, a in got.items() if name not in ("output_ids", "sequence_length")}
    assert len(perf) == 10 and all(a.shape == (1, 1) for a in perf.values())
    assert {n: numpy_type[declared[n]] for n in perf} == {n: str(a.dtype) for n, a in perf.items()}
    value = {name: a[0][0].item() for name, a in perf.items()}
    assert (
        value["kv_cache_alloc_new_blocks"],
        value["kv_cache_alloc_total_blocks"],
        value["kv_cache_reused_blocks"],
    ) == (
        3,
        3,
        0,
    )
    times = [value[f"{t}_time_ns"] for t in ("arrival", "first_scheduled", "first_token", "last_token")]
    assert times == sorted(times) and times[0] > 0
    assert (value["acceptance_rate"], value["total_draft_tokens"], value["total_accepted_draft_tokens"]) == (0, 0, 0)


# --------------------------------------------------------------------------- preprocessing, in process


def preprocessing_model(
    tmp_path: Path, folders: dict[str, Path], pb: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, model_config_pb2.ModelConfig]:
    """Our `preprocessing` model, initialized on test doubles of pb_utils."""
    from google.protobuf import json_format

    root = write(tmp_path, folders, "engine", "standin")
    config = read_config(root / "preprocessing" / "config.pbtxt")
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    pb.Tensor = FakeTensor
    pb.InferenceResponse = lambda tensors=None, error=None: types.SimpleNamespace(tensors=tensors, error=error)
    pb.TritonError = str
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    load_common()
    module_spec = importlib.util.spec_from_file_location(
        "preprocessing_model", root / "preprocessing" / "1" / "model.py"
    )
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))})
    return model, config


def preprocessed(model: Any, **inputs: Any) -> dict[str, Any]:
    """The outputs of one request, by name (its error raised)."""
    (response,) = model.execute([FakeRequest(**inputs)])
    assert response.error is None, response.error
    return outputs_of(response)


def encode(tokenizer: Path, text: str, special: bool = True) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True).encode(text, add_special_tokens=special)


TWO_ROWS = [[b"The queue grows"], [b"Hi"]]


def test_preprocessing_answers_every_row_of_a_request_as_upstreams_does(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tensorrtllm_backend v0.19.0 preprocessing/1/model.py: ids per row padded on the right with the
    # tokenizer's pad id (:628-638), end/pad ids per row (:253-267), the decoder input the row's pad id
    # (:339-342), empty word lists [B, 2, 0] (:651-653) and an empty bias [B, 0] (:691-693).
    model, config = preprocessing_model(tmp_path, folders, fake_pb_utils, monkeypatch)
    got = preprocessed(model, QUERY=TWO_ROWS, REQUEST_OUTPUT_LEN=[[3], [5]], END_ID=[[7], [9]])
    rows = [encode(folders["tokenizer"], t[0].decode()) for t in TWO_ROWS]
    pad = model.pad_id
    assert len(rows[0]) > len(rows[1]) and pad != model.end_id
    width = len(rows[0])
    assert got["INPUT_ID"].tolist() == [rows[0], rows[1] + [pad] * (width - len(rows[1]))]
    assert got["REQUEST_INPUT_LEN"].tolist() == [[len(rows[0])], [len(rows[1])]]
    assert got["REQUEST_OUTPUT_LEN"].tolist() == [[3], [5]]
    assert got["OUT_END_ID"].tolist() == [[7], [9]] and got["OUT_PAD_ID"].tolist() == [[pad], [pad]]
    assert got["DECODER_INPUT_ID"].tolist() == [[pad], [pad]]
    assert got["REQUEST_DECODER_INPUT_LEN"].tolist() == [[1], [1]]
    assert got["BAD_WORDS_IDS"].shape == got["STOP_WORDS_IDS"].shape == (2, 2, 0)
    assert got["EMBEDDING_BIAS"].shape == (2, 0)
    # Every output has the type its config.pbtxt declares.
    declared = {o.name: DTYPES.Name(o.data_type) for o in config.output}
    numpy_type = {"TYPE_INT32": "int32", "TYPE_FP32": "float32", "TYPE_UINT64": "uint64"}
    assert {n: numpy_type[declared[n]] for n in got} == {n: str(a.dtype) for n, a in got.items()}


def test_preprocessing_turns_each_rows_words_into_its_own_word_list(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # [B, 2, N]: per row the ids of its words end to end, then cumulative end offsets; ids padded with 0,
    # offsets with -1, to the longest row (upstream preprocessing/1/model.py:642-684).
    model, _ = preprocessing_model(tmp_path, folders, fake_pb_utils, monkeypatch)
    stop = [[b"grows", b"few"], [b"Hi", b""]]
    got = preprocessed(model, QUERY=TWO_ROWS, REQUEST_OUTPUT_LEN=[[3], [3]], STOP_WORDS_DICT=stop)
    grows, few, hi = (encode(folders["tokenizer"], w, special=False) for w in ("grows", "few", "Hi"))
    width = len(grows) + len(few)
    assert got["STOP_WORDS_IDS"].tolist() == [
        [grows + few, [len(grows), width] + [-1] * (width - 2)],
        [hi + [0] * (width - len(hi)), [len(hi)] + [-1] * (width - 1)],
    ]
    # A list of words that all encode to nothing is one padding column: id 0, offset -1.
    blank = preprocessed(model, QUERY=TWO_ROWS, REQUEST_OUTPUT_LEN=[[3], [3]], BAD_WORDS_DICT=[[b""], [b""]])
    assert blank["BAD_WORDS_IDS"].tolist() == [[[0], [-1]], [[0], [-1]]]


def test_preprocessing_biases_each_row_by_its_own_words(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    model, _ = preprocessing_model(tmp_path, folders, fake_pb_utils, monkeypatch)
    got = preprocessed(
        model,
        QUERY=TWO_ROWS,
        REQUEST_OUTPUT_LEN=[[3], [3]],
        EMBEDDING_BIAS_WORDS=[[b"queue"], [b"few"]],
        EMBEDDING_BIAS_WEIGHTS=np.array([[1.5], [-2.0]], dtype=np.float32),
    )
    bias = got["EMBEDDING_BIAS"]
    assert bias.shape == (2, len(model.tokenizer))
    for row, (word, weight) in enumerate((("queue", 1.5), ("few", -2.0))):
        ids = set(encode(folders["tokenizer"], word, special=False))
        assert {int(i) for i in np.flatnonzero(bias[row])} == ids and set(bias[row][list(ids)]) == {weight}


def test_preprocessing_passes_each_rows_sampling_inputs_and_extra_ids_on(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    model, _ = preprocessing_model(tmp_path, folders, fake_pb_utils, monkeypatch)
    got = preprocessed(
        model,
        QUERY=TWO_ROWS,
        REQUEST_OUTPUT_LEN=[[3], [3]],
        DECODER_QUERY=[[b"Hi"], [b"The queue grows"]],
        MIN_LENGTH=[[2], [4]],
        RANDOM_SEED=np.array([[11], [12]], dtype=np.uint64),
        PROMPT_TABLE_EXTRA_ID=np.array([[3], [4]], dtype=np.uint64),
    )
    assert got["OUT_MIN_TOKENS"].tolist() == [[2], [4]] and got["OUT_SEED"].tolist() == [[11], [12]]
    hi, long = (encode(folders["tokenizer"], t) for t in ("Hi", "The queue grows"))
    assert got["DECODER_INPUT_ID"].tolist() == [hi + [model.pad_id] * (len(long) - len(hi)), long]
    assert got["REQUEST_DECODER_INPUT_LEN"].tolist() == [[len(hi)], [len(long)]]
    # The row's extra id marks only prompt-table ids (>= vocab size), none in text (upstream :351-356).
    extra = got["OUT_PROMPT_TABLE_EXTRA_IDS"]
    assert extra.shape == got["INPUT_ID"].shape and extra.dtype == np.uint64 and not extra.any()


def test_preprocessing_refuses_an_input_with_fewer_rows_than_the_query(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = preprocessing_model(tmp_path, folders, fake_pb_utils, monkeypatch)
    (response,) = model.execute([FakeRequest(QUERY=TWO_ROWS, REQUEST_OUTPUT_LEN=[[3], [3]], END_ID=[[7]])])
    assert response.tensors is None and "END_ID has 1 rows where QUERY has 2" in response.error


# --------------------------------------------------------------------------- the BLS model, in process


class FakeResponse:
    """pb_utils.InferenceResponse as a BLS caller reads it (has_error, error().message(), output_tensors)."""

    def __init__(self, tensors: list[Any] | None = None, error: str | None = None) -> None:
        self.tensors, self.failure = tensors, error

    def has_error(self) -> bool:
        return self.failure is not None

    def error(self) -> Any:
        return types.SimpleNamespace(message=lambda: self.failure)

    def output_tensors(self) -> list[Any]:
        return self.tensors or []


def python_model(root: Path, name: str, parameters: dict[str, str] | None = None) -> Any:
    """`root/name/1/model.py`, initialized with its config.pbtxt (`parameters` set over it)."""
    from google.protobuf import json_format

    config = json_format.MessageToDict(read_config(root / name / "config.pbtxt"), preserving_proto_field_name=True)
    for key, value in (parameters or {}).items():
        config.setdefault("parameters", {})[key] = {"string_value": value}
    module_spec = importlib.util.spec_from_file_location(f"{name}_in_process", root / name / "1" / "model.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_name": name, "model_version": "1"})
    return model


def scripted_engine(inputs: dict[str, Any], decoupled: bool, beams: int) -> list[FakeResponse]:
    """The engine as the backend answers: B > 1 refused unless decoupled (utils.cc:900-903), else a response
    per row (per step when streaming, the rows interleaved), each tagged with batch_index [1, 1] when the
    request has several rows (model_instance_state.cc:1211-1219). Each row writes back its own prompt, cycled."""
    import numpy as np

    ids, lengths = inputs["input_ids"].as_numpy(), inputs["input_lengths"].as_numpy().reshape(-1)
    wanted = inputs["request_output_len"].as_numpy().reshape(-1)
    streaming = "streaming" in inputs and bool(inputs["streaming"].as_numpy().reshape(-1)[0])
    batch = ids.shape[0]
    if batch > 1 and not decoupled:
        return [FakeResponse(error="a request with more than one input_ids row (batch size > 1) needs decoupled")]
    made = [[int(ids[r][i % lengths[r]]) for i in range(wanted[r])] for r in range(batch)]

    def response(row: int, tokens: list[int]) -> FakeResponse:
        out = [
            FakeTensor("output_ids", np.array([[tokens] * beams], dtype=np.int32)),
            FakeTensor("sequence_length", np.array([[len(tokens)] * beams], dtype=np.int32)),
        ]
        if batch > 1:
            out.append(FakeTensor("batch_index", np.array([[row]], dtype=np.int32)))
        return FakeResponse(out)

    if streaming:  # odd steps answer the last row first: keying by arrival order would mix them
        steps = range(int(wanted.max()))
        order = [(s, r) for s in steps for r in (range(batch) if s % 2 == 0 else reversed(range(batch)))]
        sent = [response(r, [made[r][s]]) for s, r in order if s < wanted[r]]
    else:
        sent = [response(r, made[r]) for r in range(batch)]
    return [*sent, FakeResponse([])] if decoupled else sent


def bls_pipeline(
    tmp_path: Path,
    folders: dict[str, Path],
    pb: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    decoupled: bool = True,
    accumulate: bool = False,
    beams: int = 1,
) -> tuple[Any, list[dict[str, Any]]]:
    """Our BLS model in process: its preprocessing and postprocessing our models, its engine `scripted_engine`.
    Returns the model and the inputs of every engine request it makes."""
    root = write(tmp_path, folders, "engine", "standin", spec_of(repository={"decoupled": decoupled}))
    engine_calls: list[dict[str, Any]] = []
    pb.using_decoupled_model_transaction_policy = lambda c: bool(c.get("model_transaction_policy", {}).get("decoupled"))
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    pb.get_output_tensor_by_name = lambda response, name: next(
        (t for t in response.output_tensors() if t.name() == name), None
    )
    pb.Tensor = FakeTensor
    pb.InferenceResponse = FakeResponse
    pb.TritonError = str
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    load_common()
    models = {name: python_model(root, name) for name in ("preprocessing", "postprocessing")}

    class InferenceRequest:
        def __init__(self, model_name: str, inputs: list[Any], requested_output_names: list[str]) -> None:
            self.model_name, self.inputs = model_name, {t.name(): t for t in inputs}

        def exec(self, decoupled: bool = False) -> Any:
            if self.model_name in models:
                (response,) = models[self.model_name].execute([self])
                return response
            engine_calls.append({name: t.as_numpy() for name, t in self.inputs.items()})
            answers = scripted_engine(self.inputs, decoupled, beams)
            return iter(answers) if decoupled else answers[0]

    pb.InferenceRequest = InferenceRequest
    bls = python_model(root, "tensorrt_llm_bls", {"accumulate_tokens": "true" if accumulate else "false"})
    return bls, engine_calls


def bls_served(model: Any, prompts: list[str], stream: bool, **extra: Any) -> list[tuple[Any, int]]:
    """Every (response, flags) a decoupled BLS model sends for one request of a row per prompt."""
    request = FakeRequest(
        text_input=[[p.encode()] for p in prompts],
        max_tokens=[[3]] * len(prompts),
        stream=[[stream]] * len(prompts),
        **extra,
    )
    assert model.execute([request]) is None and request.sender.finished.is_set()
    return request.sender.sent


def bls_metric(family: str) -> float:
    return FakeFamily.store[(family, ("model", "tensorrt_llm_bls"), ("version", "1"))]


# The second row's first three tokens are one character's bytes (the tiny tokenizer is byte-level): mixed
# with the other row's tokens, its text would break.
BLS_PROMPTS = ["The queue grows", "日本語"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
def test_bls_answers_each_row_of_a_two_row_request_as_it_answers_that_row_alone(
    tmp_path: Path,
    folders: dict[str, Path],
    fake_pb_utils: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    # Upstream's BLS sends B rows to the engine in one request and answers each engine response, keeping
    # streamed tokens per batch_index (tensorrtllm_backend v0.19.0 tensorrt_llm_bls/1/lib/decode.py:260-288,
    # 427-448); only the end of every row is final (model.py:203-225).
    model, _ = bls_pipeline(tmp_path, folders, fake_pb_utils, monkeypatch)
    sent = bls_served(model, BLS_PROMPTS, stream)
    assert [flags for _, flags in sent] == [0] * (len(sent) - 1) + [1] and sent[-1][0] is None
    rows: dict[int, str] = {}
    for response, _ in sent[:-1]:
        got = outputs_of(response)
        assert got["text_output"].shape == (1,) and got["batch_index"].shape == (1, 1)
        row = int(got["batch_index"][0][0])
        rows[row] = rows.get(row, "") + got["text_output"][0].decode()
    # One request, one passage: timed at its first response, out of flight after its last.
    assert bls_metric("llmprep_first_response_histogram_ms") == 1
    assert bls_metric("llmprep_requests_in_flight") == 0
    alone = []
    for prompt in BLS_PROMPTS:
        answers = bls_served(model, [prompt], stream)
        assert all("batch_index" not in outputs_of(r) for r, _ in answers if r is not None)
        alone.append("".join(outputs_of(r)["text_output"][0].decode() for r, _ in answers if r is not None))
    assert rows == {0: alone[0], 1: alone[1]} and alone[0] != alone[1] and all(alone)


def test_bls_accumulating_tokens_streams_each_row_its_whole_text_so_far(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # accumulate_tokens: each chunk is the row's decoded tokens so far (decode.py:439-448).
    model, _ = bls_pipeline(tmp_path, folders, fake_pb_utils, monkeypatch, accumulate=True)
    texts: dict[int, list[str]] = {0: [], 1: []}
    for response, _ in bls_served(model, BLS_PROMPTS, stream=True)[:-1]:
        got = outputs_of(response)
        texts[int(got["batch_index"][0][0])].append(got["text_output"][0].decode())
    whole = [outputs_of(bls_served(model, [p], stream=False)[0][0])["text_output"][0].decode() for p in BLS_PROMPTS]
    for row, chunks in texts.items():
        assert all(later.startswith(earlier) for earlier, later in zip(chunks, chunks[1:], strict=False))
        assert chunks[-1] == whole[row]


def test_bls_answers_a_text_per_beam_flat_and_refuses_to_accumulate_beams_as_upstream(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # text_output [batch * beams] (triton_decoder.py:98, 574-598); accumulation only for beam width 1
    # (decode.py:422-425), refused with the final flag on the error.
    model, _ = bls_pipeline(tmp_path, folders, fake_pb_utils, monkeypatch, beams=2)
    (response, _), _final = bls_served(model, ["Hi"], stream=False)
    got = outputs_of(response)["text_output"]
    assert got.shape == (2,) and got[0] == got[1] and got[0].decode()
    model, _ = bls_pipeline(tmp_path / "accumulate", folders, fake_pb_utils, monkeypatch, accumulate=True, beams=2)
    ((error, flags),) = bls_served(model, ["Hi"], stream=True)
    assert flags == 1 and error.tensors is None and "beam width 1" in error.failure


def test_bls_not_decoupled_answers_one_row_and_passes_the_engines_refusal_of_two(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Upstream's BLS sends B > 1 to the engine whatever the policy (decode.py:277-288); an engine that
    # is not decoupled refuses it (utils.cc:900-903) and the refusal is the request's answer.
    model, _ = bls_pipeline(tmp_path, folders, fake_pb_utils, monkeypatch, decoupled=False)
    one, two = (
        FakeRequest(text_input=[[p.encode()] for p in prompts], max_tokens=[[3]] * len(prompts))
        for prompts in (BLS_PROMPTS[:1], BLS_PROMPTS)
    )
    answered, refused = model.execute([one, two])
    assert outputs_of(answered)["text_output"].shape == (1,) and answered.failure is None
    assert refused.tensors is None and "batch size > 1" in refused.failure
    assert bls_metric("llmprep_requests_in_flight") == 0


def test_bls_gives_the_engine_a_row_per_request_row_and_refuses_what_upstream_refuses(
    tmp_path: Path, folders: dict[str, Path], fake_pb_utils: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    model, calls = bls_pipeline(tmp_path, folders, fake_pb_utils, monkeypatch)
    # return_log_probs is reshaped to a scalar per request: [B] here, [B, 1] to the engine.
    bls_served(model, BLS_PROMPTS, stream=False, return_log_probs=[True, False])
    (engine,) = calls
    assert engine["return_log_probs"].tolist() == [[True], [False]]
    assert engine["input_ids"].shape[0] == engine["request_output_len"].shape[0] == 2
    # max_tokens must be > 0 (decode.py:107-110): refused before any other model is asked.
    request = FakeRequest(text_input=[[b"Hi"]], max_tokens=[[0]], stream=[[False]])
    model.execute([request])
    ((error, flags),) = request.sender.sent
    assert flags == 1 and "max_tokens" in error.failure and len(calls) == 1
    assert np.isclose(bls_metric("llmprep_requests_in_flight"), 0)

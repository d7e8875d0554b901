from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmprep.artifacts import build, trtllm
from llmprep.errors import BuildError, SpecError
from llmprep.spec import ModelSpec, parse_spec
from tests.conftest import run_cli
from tests.doubles import H100, TINY_LLAMA_CONFIG, Release, install_release, make_hub_cache, tiny_checkpoint_files

REPO = "acme/tiny-llama"


def spec_of(**trt: object) -> ModelSpec:
    return parse_spec({"model": {"name": REPO, "tensorrtLlm": dict(trt)}})


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint"
    path.mkdir()
    for rel, data in tiny_checkpoint_files().items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


def release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, gpus: int = 1
) -> tuple[Release, trtllm.TrtllmInfo]:
    rel = install_release(tmp_path, kind, gpus=[H100] * gpus)
    rel.apply(monkeypatch)
    info = trtllm.detect()
    assert info is not None
    return rel, info


@pytest.mark.parametrize(
    ("kind", "version", "runtimes"), [("engine", "1.2.1", ("engine", "pytorch")), ("pytorch", "1.3.0", ("pytorch",))]
)
def test_detection_reports_the_installed_release_and_its_runtimes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, version: str, runtimes: tuple[str, ...]
) -> None:
    _rel, info = release(tmp_path, monkeypatch, kind)
    assert (info.version, info.runtimes) == (version, runtimes)


def test_detection_without_tensorrt_llm_is_none() -> None:
    assert trtllm.detect() is None


@pytest.mark.parametrize(
    ("kind", "requested", "resolved"),
    [
        ("engine", "auto", "engine"),
        ("engine", "engine", "engine"),
        ("engine", "pytorch", "pytorch"),
        ("pytorch", "auto", "pytorch"),
        ("pytorch", "pytorch", "pytorch"),
    ],
)
def test_runtime_selection_follows_the_installed_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, requested: str, resolved: str
) -> None:
    _rel, info = release(tmp_path, monkeypatch, kind)
    assert trtllm.resolve_runtime(requested, info) == resolved


def test_engine_on_a_pytorch_only_release_names_both_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _rel, info = release(tmp_path, monkeypatch, "pytorch")
    with pytest.raises(SpecError) as err:
        trtllm.resolve_runtime("engine", info)
    message = str(err.value)
    assert message.startswith("model.tensorrtLlm.runtime: engine needs TensorRT-LLM 1.2.1 or earlier")
    assert "the installed TensorRT-LLM is 1.3.0" in message


def test_no_tensorrt_llm_at_all_is_a_build_error_naming_the_image() -> None:
    with pytest.raises(BuildError, match="26.07-trtllm-python-py3"):
        trtllm.resolve_runtime("auto", None)


@pytest.mark.parametrize("data_type", ["bfloat16", "float16", "float32"])
def test_engine_build_runs_the_documented_conversion_and_trtllm_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Path, data_type: str
) -> None:
    rel, info = release(tmp_path, monkeypatch, "engine", gpus=4)
    spec = spec_of(
        runtime="engine",
        dataType=data_type,
        parallelism={"tensor": 2, "pipeline": 2},
        maxBatchSize=8,
        maxInputLen=1024,
        maxSeqLen=2048,
        maxNumTokens=4096,
        options={"use_paged_context_fmha": True, "gemm_plugin": "auto", "strip_plan": True, "convert": {"workers": 2}},
    ).with_runtime("engine")
    out = tmp_path / "engine"
    out.mkdir()
    build.build_artifact(spec, checkpoint, out, info, examples_dir=rel.examples)
    (convert,) = rel.calls("convert")
    converted = str(out / ".converted")
    assert convert["argv"][1:] == [
        "--model_dir",
        str(checkpoint),
        "--output_dir",
        converted,
        "--dtype",
        data_type,
        "--tp_size",
        "2",
        "--pp_size",
        "2",
        "--workers",
        "2",
    ]
    assert convert["argv"][0].endswith("models/core/llama/convert_checkpoint.py")
    (trt_build,) = rel.calls("trtllm-build")
    assert trt_build["argv"][1:] == [
        "--checkpoint_dir",
        converted,
        "--output_dir",
        str(out),
        "--max_batch_size",
        "8",
        "--max_input_len",
        "1024",
        "--max_seq_len",
        "2048",
        "--max_num_tokens",
        "4096",
        "--use_paged_context_fmha",
        "enable",
        "--gemm_plugin",
        "auto",
        "--strip_plan",
    ]
    engine_config = json.loads((out / "config.json").read_text())
    assert engine_config["pretrained_config"]["dtype"] == data_type
    assert sorted(p.name for p in out.iterdir()) == ["config.json", *[f"rank{i}.engine" for i in range(4)]]


def test_a_failing_build_reports_the_tools_last_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Path
) -> None:
    rel, info = release(tmp_path, monkeypatch, "engine")
    monkeypatch.setenv("LLMPREP_DOUBLE_FAIL", "build")
    out = tmp_path / "engine"
    out.mkdir()
    with pytest.raises(BuildError) as err:
        build.build_artifact(spec_of().with_runtime("engine"), checkpoint, out, info, examples_dir=rel.examples)
    assert "engine build failed: trtllm-build failed with exit code 3" in str(err.value)
    assert "CUDA out of memory (double asked to fail)" in str(err.value)
    assert not (out / ".converted").exists()


def test_an_engine_of_the_wrong_data_type_is_rejected(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"pretrained_config": {"dtype": "float16"}}))
    (tmp_path / "rank0.engine").write_bytes(b"x")
    with pytest.raises(BuildError, match="built as float16, not the requested model.tensorrtLlm.dataType bfloat16"):
        build.verify_engine_dir(tmp_path, spec_of(dataType="bfloat16"))


def test_options_cannot_override_the_specs_own_limits() -> None:
    with pytest.raises(BuildError, match="model.tensorrtLlm.options.max_batch_size: set by llmprep itself"):
        build.build_command(["trtllm-build"], spec_of(options={"max_batch_size": 4}), Path("c"), Path("o"))


def test_an_unknown_architecture_has_no_converter(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no TensorRT-LLM checkpoint converter known for model_type 'mamba'"):
        build.find_convert_script("mamba", tmp_path)


def test_pytorch_artifact_holds_llm_api_options_and_cache_locations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Path
) -> None:
    rel, info = release(tmp_path, monkeypatch, "pytorch")
    spec = spec_of(dataType="bfloat16", parallelism={"tensor": 1}, options={"enable_chunked_prefill": True})
    out = tmp_path / "artifact"
    out.mkdir()
    build.build_artifact(spec.with_runtime("pytorch"), checkpoint, out, info)
    options = yaml.safe_load((out / build.LLM_API_OPTIONS).read_text())
    assert options["dtype"] == "bfloat16"
    assert options["enable_chunked_prefill"] is True
    assert options["max_seq_len"] == spec.limits.max_seq_len
    env = build.runtime_env(out)
    assert env["TLLM_AUTOTUNER_CACHE_PATH"] == str(out / "caches/autotuner/autotuner_cache.json")
    assert Path(env["TORCHINDUCTOR_CACHE_DIR"]).is_dir()
    assert rel.calls() == []


def test_pytorch_artifact_refuses_a_checkpoint_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _rel, info = release(tmp_path, monkeypatch, "pytorch")
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps(TINY_LLAMA_CONFIG))
    with pytest.raises(BuildError, match="no weights"):
        build.build_artifact(spec_of().with_runtime("pytorch"), ck, tmp_path, info)


def test_build_command_exits_nonzero_with_the_tools_output(tmp_path: Path) -> None:
    rel = install_release(tmp_path, "engine")
    hub_root = tmp_path / "hub"
    make_hub_cache(hub_root, REPO, tiny_checkpoint_files())
    env = {**rel.env, "LLMPREP_DOUBLE_FAIL": "convert"}
    common = ["--set", f"model.name={REPO}", "--cache", str(tmp_path / "cache")]
    assert run_cli("download", *common, "--hub-cache", str(hub_root), env=env).returncode == 0
    result = run_cli("build", *common, env=env)
    assert result.returncode == 1
    assert "checkpoint conversion failed" in result.stderr
    assert "double asked to fail" in result.stderr
    assert "Traceback" not in result.stderr

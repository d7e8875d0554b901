from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmprep.errors import SpecError
from llmprep.spec import KNOWN_MODELS, load_spec, parse_spec
from tests.conftest import TUTORIAL_VALUES, run_cli


def model(**tensorrt_llm: object) -> dict[str, object]:
    return {"model": {"name": "gpt2", "tensorrtLlm": dict(tensorrt_llm)}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (model(parallelism={"tensor": 0}), "model.tensorrtLlm.parallelism.tensor: must be an integer ≥ 1, got 0"),
        (model(parallelism={"tensor": "two"}), "model.tensorrtLlm.parallelism.tensor: must be an integer"),
        (model(parallelism={"pipeline": 1.5}), "model.tensorrtLlm.parallelism.pipeline: must be an integer"),
        (model(dataType="int4"), "model.tensorrtLlm.dataType: 'int4' is not one of float16, bfloat16, float32"),
        (model(runtime="onnx"), "model.tensorrtLlm.runtime: 'onnx' is not one of auto, engine, pytorch"),
        (model(maxBatchSize=-1), "model.tensorrtLlm.maxBatchSize: must be an integer ≥ 1, got -1"),
        (model(maxInputLen=4096, maxSeqLen=4096), "model.tensorrtLlm.maxInputLen: must be less than maxSeqLen"),
        (model(bogus=1), "model.tensorrtLlm.bogus: unknown key"),
        ({"model": {"name": "gpt2", "colour": "red"}}, "model.colour: unknown key"),
        ({"modle": {"name": "gpt2"}}, "modle: unknown key"),
        ({"model": {}}, "model.name: required"),
        ({"model": {"name": "my-own-model"}}, "model.hfRepo: required for model.name 'my-own-model'"),
        ({"gpu": [], "model": {"name": "gpt2"}}, "gpu: must be a GPU product name or a non-empty list"),
        ({"gpu": ["A10G", 3], "model": {"name": "gpt2"}}, "gpu[1]: must be a GPU product name"),
        ({"model": "gpt2"}, "model: must be a mapping of keys"),
        (
            {"model": {"name": "gpt2", "repository": {"kvCacheFreeGpuMemFraction": 1.5}}},
            "model.repository.kvCacheFreeGpuMemFraction: must be between 0.01 and 1",
        ),
        ({"model": {"name": "gpt2", "skipConversion": "yes"}}, "model.skipConversion: must be true or false"),
    ],
)
def test_invalid_spec_is_rejected_naming_the_field(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "path", sorted(TUTORIAL_VALUES.glob("*/*_values.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_tutorial_values_file_reads_as_a_spec(path: Path) -> None:
    spec = load_spec([path.parent / "values.yaml", path])
    values = yaml.safe_load(path.read_text())
    assert spec.name == values["model"]["name"]
    assert spec.hf_repo == KNOWN_MODELS[spec.name]
    tensor = values["model"].get("tensorrtLlm", {}).get("parallelism", {}).get("tensor", 1)
    assert spec.parallelism.gpus == tensor
    assert spec.data_type == "float16"
    assert spec.gpu


def test_single_gpu_string_of_the_multinode_tutorial_is_accepted() -> None:
    spec = parse_spec({"gpu": "NVIDIA-A10G", "model": {"name": "llama-2-70b"}})
    assert spec.gpu == ("NVIDIA-A10G",)


def test_multinode_tutorial_enable_flag_warns_that_it_does_nothing() -> None:
    spec = load_spec([TUTORIAL_VALUES / "multinode" / "values.yaml"])
    assert any("tensorrtLlm.enable does nothing" in w for w in spec.warnings)
    assert spec.persistent_volume_claim == "nfs-claim-autoscaling"
    assert spec.conversion.memory == "32Gi"


def test_bfloat16_is_kept_as_given() -> None:
    assert parse_spec(model(dataType="bfloat16")).data_type == "bfloat16"


def test_later_files_and_overrides_win(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text("model: {name: gpt2, tensorrtLlm: {dataType: float32, parallelism: {tensor: 2}}}")
    second.write_text("model: {tensorrtLlm: {parallelism: {pipeline: 2}}}")
    spec = load_spec([first, second], overrides={"model.tensorrtLlm.dataType": "bfloat16"})
    assert (spec.parallelism.tensor, spec.parallelism.pipeline, spec.data_type) == (2, 2, "bfloat16")


def test_spec_round_trips_through_its_values_form() -> None:
    spec = parse_spec({"gpu": ["NVIDIA-H100-80GB-HBM3"], "model": {"name": "llama-3-8b", "pullSecret": "hf"}})
    assert parse_spec(spec.to_values()) == spec


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["spec", "show", "--set", "model.name=gpt2"], 0, "hfRepo: openai-community/gpt2"),
        (
            ["spec", "show", "--set", "model.name=gpt2", "--set", "model.tensorrtLlm.parallelism.tensor=0"],
            2,
            "model.tensorrtLlm.parallelism.tensor",
        ),
        (["spec", "show", "--spec", "/nonexistent.yaml"], 2, "no such file"),
    ],
)
def test_cli_reports_spec_errors_in_one_line_without_traceback(args: list[str], code: int, needle: str) -> None:
    result = run_cli(*args)
    assert result.returncode == code
    assert needle in (result.stdout + result.stderr)
    assert "Traceback" not in result.stderr

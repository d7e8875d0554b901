from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from llmprep.errors import LoadError, UsageError
from llmprep.load.clients import ModelSchema, build_plan
from llmprep.load.prompts import Prompt
from llmprep.load.runner import normalize_target

# Input lists as the pinned upstream layouts declare them (names, types, dims).
ENSEMBLE = {
    "max_batch_size": 64,
    "model_transaction_policy": {"decoupled": True},
    "input": [
        {"name": "text_input", "data_type": "TYPE_STRING", "dims": [-1]},
        {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": [-1]},
        {"name": "end_id", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
        {"name": "min_length", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
        {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
    ],
}
LLMAPI = {
    "max_batch_size": 0,
    "input": [
        {"name": "text_input", "data_type": "TYPE_STRING", "dims": ["1"]},
        {"name": "streaming", "data_type": "TYPE_BOOL", "dims": ["1"], "optional": True},
        {"name": "sampling_param_max_tokens", "data_type": "TYPE_INT32", "dims": ["1"], "optional": True},
        {"name": "sampling_param_exclude_input_from_output", "data_type": "TYPE_BOOL", "dims": ["1"]},
    ],
}
PROMPT = Prompt("a b c", 3, 12)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ENSEMBLE, {"text_input": "a b c", "max_tokens": 12, "min_length": 12, "stream": True}),
        (
            LLMAPI,
            {
                "text_input": "a b c",
                "sampling_param_max_tokens": 12,
                "streaming": True,
                "sampling_param_exclude_input_from_output": True,
            },
        ),
    ],
)
def test_each_model_layout_gets_its_own_input_names(config: dict[str, Any], expected: dict[str, Any]) -> None:
    plan = build_plan(ModelSchema.from_config("m", config))
    assert plan.values(PROMPT) == expected


def test_a_model_without_a_minimum_length_input_says_outputs_may_end_early() -> None:
    plan = build_plan(ModelSchema.from_config("tensorrt_llm", LLMAPI))
    assert any("may end early" in note for note in plan.notes)


def test_fixed_output_off_sends_no_minimum_length() -> None:
    assert "min_length" not in build_plan(ModelSchema.from_config("m", ENSEMBLE), fixed_output=False).values(PROMPT)


def test_tensor_shapes_follow_batching_and_types_follow_the_config() -> None:
    batched, unbatched = ModelSchema.from_config("m", ENSEMBLE), ModelSchema.from_config("m", LLMAPI)
    assert batched.inputs["text_input"].shape == (1, 1) and unbatched.inputs["text_input"].shape == (1,)
    array = batched.inputs["max_tokens"].array(12)
    assert array.dtype == np.int32 and array.tolist() == [[12]]
    assert batched.inputs["text_input"].array("hi").tolist() == [[b"hi"]]


def test_an_extra_input_is_typed_by_the_model_config() -> None:
    plan = build_plan(ModelSchema.from_config("m", ENSEMBLE), extra_inputs={"end_id": "-1"})
    assert plan.values(PROMPT)["end_id"] == -1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bogus": "1"}, "--extra-input bogus: model 'm' has no input"),
        ({"end_id": "x"}, "--extra-input end_id: 'x' is not"),
    ],
)
def test_a_bad_extra_input_names_itself(extra: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_plan(ModelSchema.from_config("m", ENSEMBLE), extra_inputs=extra)


def test_a_model_without_text_input_is_refused_with_its_inputs_listed() -> None:
    config = {"input": [{"name": "input_ids", "data_type": "TYPE_INT32", "dims": [-1]}]}
    with pytest.raises(LoadError, match="no text_input input .its inputs: input_ids"):
        build_plan(ModelSchema.from_config("preprocessing", config))


@pytest.mark.parametrize(
    ("target", "protocol", "expected"),
    [
        ("gpt2", "grpc", "gpt2:8001"),
        ("gpt2", "http", "gpt2:8000"),
        ("gpt2.default.svc:9001", "grpc", "gpt2.default.svc:9001"),
        ("grpc://10.0.0.5:8001", "grpc", "10.0.0.5:8001"),
        ("http://127.0.0.1:8000/", "http", "127.0.0.1:8000"),
        ("dns:///gpt2-headless:8001", "grpc", "dns:///gpt2-headless:8001"),
    ],
)
def test_targets_get_the_protocols_default_port(target: str, protocol: str, expected: str) -> None:
    assert normalize_target(target, protocol) == expected


@pytest.mark.parametrize("target", ["", "host:port", "https://secure:443"])
def test_an_unusable_target_is_refused(target: str) -> None:
    with pytest.raises(UsageError, match="--url"):
        normalize_target(target, "grpc")

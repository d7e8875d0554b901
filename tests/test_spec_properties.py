"""Property-based tests: no valid spec is rejected, every invalid one names its field."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmprep.artifacts import converters
from llmprep.errors import SpecError
from llmprep.spec import DATA_TYPES, KNOWN_MODELS, RUNTIMES, parse_spec, set_path

names = st.sampled_from(sorted(KNOWN_MODELS))
positive = st.integers(min_value=1, max_value=64)
gpu_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=30)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    max_seq = draw(st.integers(min_value=2, max_value=1 << 17))
    trt: dict[str, Any] = {
        "dataType": draw(st.sampled_from(DATA_TYPES)),
        "runtime": draw(st.sampled_from(RUNTIMES)),
        "parallelism": {"tensor": draw(positive), "pipeline": draw(positive)},
        "maxSeqLen": max_seq,
        "maxInputLen": draw(st.integers(min_value=1, max_value=max_seq - 1)),
        "maxBatchSize": draw(st.integers(min_value=1, max_value=4096)),
        "maxNumTokens": draw(st.integers(min_value=1, max_value=1 << 20)),
    }
    name = draw(names)
    family = converters.FAMILIES.get(converters.guess_family(KNOWN_MODELS[name]) or "")
    if trt["runtime"] == "engine" and family is not None and not family.pipeline:
        trt["parallelism"]["pipeline"] = 1  # its converter cannot split into stages (test_build_flags.py)
    doc: dict[str, Any] = {"model": {"name": name, "tensorrtLlm": trt}}
    if draw(st.booleans()):
        doc["gpu"] = draw(st.one_of(gpu_names, st.lists(gpu_names, min_size=1, max_size=4)))
    if draw(st.booleans()):
        doc["model"]["repository"] = {
            "maxQueueDelayMicroseconds": draw(st.integers(min_value=0, max_value=10**6)),
            "kvCacheFreeGpuMemFraction": draw(st.floats(min_value=0.01, max_value=1.0)),
        }
    return doc


# (field path, a strategy of values that are never valid there)
INVALID: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("model.tensorrtLlm.parallelism.tensor", st.one_of(st.integers(max_value=0), st.text(), st.floats())),
    ("model.tensorrtLlm.parallelism.pipeline", st.one_of(st.integers(max_value=0), st.booleans())),
    ("model.tensorrtLlm.dataType", st.text().filter(lambda s: s not in DATA_TYPES)),
    ("model.tensorrtLlm.runtime", st.one_of(st.integers(), st.text().filter(lambda s: s not in RUNTIMES))),
    ("model.tensorrtLlm.maxBatchSize", st.one_of(st.integers(max_value=0), st.text(min_size=1))),
    ("model.skipConversion", st.one_of(st.integers(), st.text(min_size=1))),
    ("model.repository.kvCacheFreeGpuMemFraction", st.floats(min_value=1.0001, allow_infinity=False)),
    ("model.standin.maxInFlight", st.integers(max_value=0)),
]


@settings(max_examples=200, deadline=None)
@given(valid_documents())
def test_no_valid_spec_is_rejected(doc: dict[str, Any]) -> None:
    spec = parse_spec(doc)
    assert parse_spec(spec.to_values()) == spec


@settings(max_examples=300, deadline=None)
@given(valid_documents(), st.sampled_from(range(len(INVALID))), st.data())
def test_every_invalid_value_is_rejected_naming_its_field(doc: dict[str, Any], index: int, data: st.DataObject) -> None:
    path, bad_values = INVALID[index]
    broken = set_path(doc, path, data.draw(bad_values))
    try:
        parse_spec(broken)
    except SpecError as exc:
        assert str(exc).startswith(path + ":"), str(exc)
    else:
        raise AssertionError(f"{path} accepted an invalid value")


@settings(max_examples=100, deadline=None)
@given(valid_documents(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12))
def test_an_unknown_key_under_model_is_rejected_naming_it(doc: dict[str, Any], key: str) -> None:
    known = {
        "name",
        "hfRepo",
        "revision",
        "tokenizer",
        "pullSecret",
        "skipConversion",
        "persistentVolumeClaim",
        "tensorrtLlm",
        "repository",
        "standin",
    }
    if key in known:
        return
    try:
        parse_spec(set_path(doc, f"model.{key}", 1))
    except SpecError as exc:
        assert str(exc).startswith(f"model.{key}: unknown key")
    else:
        raise AssertionError(f"model.{key} was accepted")

"""The stand-in's two optional paths, in-process: `compute: torch` (a real small transformer per
token) and numpy 2's output tensors (through PyTorch's DLPack export, llmprep_models.make_tensor).

Both need PyTorch, an optional test dependency (the CPU wheel is ~554 MB, too big for CI): they
skip where it does not import. Self-contained (numpy, torch, pytest; the model helpers loaded by
path, as `llmprep repo` copies them beside a model) so they run on a machine with PyTorch and
nothing else installed:

    python3 -m pytest -q -p no:cacheprovider --noconftest tests/e2e/test_standin_torch_unit.py
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

COMMON = Path(__file__).resolve().parents[2] / "llmprep" / "templates" / "common"
NO_TORCH = "PyTorch does not import in this Python (an optional test dependency; the GPU machine has it)"


def torch_or_skip() -> Any:
    try:
        import torch
    except ImportError:
        pytest.skip(NO_TORCH)
    return torch


def load(name: str) -> types.ModuleType:
    """One of the model helpers, importable by its own name as beside a model.py."""
    for sibling in ("llmprep_models", "llmprep_standin"):  # llmprep_standin imports llmprep_models
        if sibling not in sys.modules:
            spec = importlib.util.spec_from_file_location(sibling, COMMON / f"{sibling}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[sibling] = module
            spec.loader.exec_module(module)
    return sys.modules[name]


def job(ids: list[int]) -> Any:
    return load("llmprep_standin").Job(input_ids=list(ids), max_tokens=8, end_id=None, emit=lambda *_a: None)


PROMPTS = [[5, 6, 7], [11, 12, 13, 14, 15], [399, 1], [42] * 20, [7, 6, 5]]


def test_the_torch_step_gives_one_token_in_the_vocabulary_per_request() -> None:
    torch_or_skip()
    step = load("llmprep_standin").torch_step(400, width=32, layers=1)
    batch = [job(p) for p in PROMPTS]
    tokens = step(batch, batch)
    assert len(tokens) == len(PROMPTS)
    assert all(isinstance(t, int) and 0 <= t < 400 for t in tokens)


def test_the_torch_step_is_the_same_model_each_time_it_is_built() -> None:
    # Seeded weights: every replica (and this test) builds the same transformer.
    torch_or_skip()
    standin = load("llmprep_standin")
    batch = [job(p) for p in PROMPTS]
    first = standin.torch_step(400, width=32, layers=1)(batch, batch)
    again = standin.torch_step(400, width=32, layers=1)(batch, batch)
    assert first == again


def test_each_requests_token_depends_on_its_own_tokens_only() -> None:
    torch_or_skip()
    step = load("llmprep_standin").torch_step(400, width=32, layers=1)
    batch = [job(p) for p in PROMPTS]
    together = step(batch, batch)
    alone = [step([j], [j])[0] for j in batch]
    assert together == alone
    assert len(set(together)) > 1  # a step that ignored its input would give one token for all


def test_a_generated_token_feeds_the_next_step() -> None:
    torch_or_skip()
    step = load("llmprep_standin").torch_step(400, width=32, layers=1)
    running = job([5, 6, 7])
    seen = []
    for _ in range(6):
        token = step([running], [])[0]
        running.generated.append(token)
        seen.append(token)
    # Generation reads the prompt plus what it generated: the sequence is the greedy one over that history.
    replay = job([5, 6, 7])
    for token in seen:
        assert step([replay], [])[0] == token
        replay.generated.append(token)


# --------------------------------------------------------------------------- numpy 2 output tensors


class RecordingTensors:
    """Triton's pb_utils.Tensor as far as make_tensor uses it: which constructor built each output."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.built: list[tuple[str, str, np.ndarray]] = []
        outer = self

        class Tensor:
            def __init__(self, name: str, array: np.ndarray) -> None:
                outer.built.append(("ndarray", name, np.array(array)))

            @staticmethod
            def from_dlpack(name: str, capsule: Any) -> None:
                # What the stub does with it: read the DLPack tensor's memory (here back through torch).
                outer.built.append(("dlpack", name, outer.torch.utils.dlpack.from_dlpack(capsule).numpy().copy()))

        self.Tensor = Tensor


CASES = [
    ("int32 ids", np.array([[[5, 6, 7]]], dtype=np.int32), "dlpack"),
    ("float32 log probs", np.linspace(-3, 0, 12, dtype=np.float32).reshape(1, 3, 4), "dlpack"),
    ("a non-contiguous slice", np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2], "dlpack"),
    ("bytes (TYPE_STRING)", np.array([b"hello", b"world"], dtype=np.object_), "ndarray"),
    ("bool", np.array([[True, False]]), "ndarray"),
    ("empty", np.zeros((1, 0), dtype=np.int32), "ndarray"),
]


@pytest.mark.parametrize(("case", "array", "path"), CASES, ids=[c[0] for c in CASES])
def test_under_numpy_2_numeric_outputs_go_through_dlpack_and_read_back_intact(
    case: str, array: np.ndarray, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = torch_or_skip()
    models = load("llmprep_models")
    monkeypatch.setattr(models, "_NUMPY_2", True)  # what the module sets itself where numpy 2 is the one loaded
    pb_utils = RecordingTensors(torch)
    models.make_tensor(pb_utils, "OUT", array)
    [(kind, name, data)] = pb_utils.built
    assert (kind, name) == (path, "OUT")
    assert data.dtype == array.dtype and data.shape == array.shape
    assert np.array_equal(data, array)


def test_under_numpy_1_every_output_is_an_ndarray(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = torch_or_skip()
    models = load("llmprep_models")
    monkeypatch.setattr(models, "_NUMPY_2", False)
    pb_utils = RecordingTensors(torch)
    models.make_tensor(pb_utils, "OUT", np.array([[1, 2]], dtype=np.int32))
    assert [kind for kind, _, _ in pb_utils.built] == ["ndarray"]


def test_the_module_knows_which_numpy_it_runs_with() -> None:
    assert load("llmprep_models")._NUMPY_2 == (int(np.__version__.split(".")[0]) >= 2)

"""The stand-in's two optional paths, in-process: `compute: torch` (a real small transformer per
token) and numpy 2's output tensors (through PyTorch's DLPack export, llmprep_models.make_tensor).

The `compute: torch` tests need PyTorch, an optional dependency that `make setup` installs (its CPU
build, torch==2.13.0: the Makefile says how); where it does not import they skip, and under CI=true
(tests/conftest.py) that skip fails the run like any missing required tool. The numpy 2 path runs
twice: with PyTorch where it imports, and always with a stand-in for PyTorch's DLPack export built
on numpy's own (`NumpyTorch`). Self-contained (numpy, torch, pytest; the model helpers loaded by
path, as `llmprep repo` copies them beside a model) so they run on a machine with PyTorch and
nothing else installed:

    python3 -m pytest -q -p no:cacheprovider --noconftest tests/e2e/test_standin_torch_unit.py
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "llmprep" / "templates" / "common"
# "not installed" is the marker tests/conftest.py turns into a failure under CI=true.
NO_TORCH = "PyTorch is not installed in this Python (make setup installs its CPU build, torch==2.13.0)"


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
    """Triton's pb_utils.Tensor as far as make_tensor uses it: which constructor built each output.

    `read` is what the stub does with a DLPack capsule: read the tensor's memory back as an array.
    """

    def __init__(self, read: Callable[[Any], np.ndarray]) -> None:
        self.built: list[tuple[str, str, np.ndarray]] = []
        outer = self

        class Tensor:
            def __init__(self, name: str, array: np.ndarray) -> None:
                outer.built.append(("ndarray", name, np.array(array)))

            @staticmethod
            def from_dlpack(name: str, capsule: Any) -> None:
                outer.built.append(("dlpack", name, read(capsule)))

        self.Tensor = Tensor


def read_with_torch(torch: Any) -> Callable[[Any], np.ndarray]:
    return lambda capsule: torch.utils.dlpack.from_dlpack(capsule).numpy().copy()


class NumpyTorch:
    """PyTorch as far as make_tensor uses it (`from_numpy`, `utils.dlpack.to_dlpack`), over numpy's own
    DLPack export: the capsule is a real one (`ndarray.__dlpack__`), read back by `np.from_dlpack`.
    It refuses what the real stub crashes on: a numpy array handed to `to_dlpack` instead of a tensor."""

    class Tensor:
        def __init__(self, array: np.ndarray) -> None:
            self.array = array

    class Exported:
        """A DLPack capsule, with the two methods `np.from_dlpack` asks of what it imports."""

        def __init__(self, array: np.ndarray) -> None:
            self.capsule = array.__dlpack__()
            self.device = array.__dlpack_device__()
            self.source = array

        def __dlpack__(self, stream: Any = None) -> Any:
            return self.capsule

        def __dlpack_device__(self) -> tuple[int, int]:
            return self.device

    def __init__(self) -> None:
        self.from_numpy_calls: list[np.ndarray] = []
        self.utils = types.SimpleNamespace(dlpack=types.SimpleNamespace(to_dlpack=self.to_dlpack))

    def from_numpy(self, array: np.ndarray) -> NumpyTorch.Tensor:
        assert isinstance(array, np.ndarray)
        self.from_numpy_calls.append(array)
        return NumpyTorch.Tensor(array)

    def to_dlpack(self, tensor: Any) -> NumpyTorch.Exported:
        assert isinstance(tensor, NumpyTorch.Tensor), f"to_dlpack got {type(tensor).__name__}, not a tensor"
        return NumpyTorch.Exported(tensor.array)


def read_with_numpy(exported: NumpyTorch.Exported) -> np.ndarray:
    assert isinstance(exported, NumpyTorch.Exported), type(exported)
    return np.from_dlpack(exported).copy()


CASES = [
    ("int32 ids", np.array([[[5, 6, 7]]], dtype=np.int32), "dlpack"),
    ("float32 log probs", np.linspace(-3, 0, 12, dtype=np.float32).reshape(1, 3, 4), "dlpack"),
    ("a non-contiguous slice", np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2], "dlpack"),
    ("a transposed float64 matrix", np.arange(6, dtype=np.float64).reshape(2, 3).T, "dlpack"),
    ("int64", np.array([[2**40, -1]], dtype=np.int64), "dlpack"),
    ("float16", np.array([[0.5, -2.0, 65504.0]], dtype=np.float16), "dlpack"),
    ("uint8", np.array([[0, 255]], dtype=np.uint8), "dlpack"),
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
    pb_utils = RecordingTensors(read_with_torch(torch))
    models.make_tensor(pb_utils, "OUT", array)
    [(kind, name, data)] = pb_utils.built
    assert (kind, name) == (path, "OUT")
    assert data.dtype == array.dtype and data.shape == array.shape
    assert np.array_equal(data, array)


def test_under_numpy_1_every_output_is_an_ndarray(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = torch_or_skip()
    models = load("llmprep_models")
    monkeypatch.setattr(models, "_NUMPY_2", False)
    pb_utils = RecordingTensors(read_with_torch(torch))
    models.make_tensor(pb_utils, "OUT", np.array([[1, 2]], dtype=np.int32))
    assert [kind for kind, _, _ in pb_utils.built] == ["ndarray"]


def test_the_module_knows_which_numpy_it_runs_with() -> None:
    assert load("llmprep_models")._NUMPY_2 == (int(np.__version__.split(".")[0]) >= 2)


# --------------------------------------------------------------------------- numpy 2 without PyTorch


@pytest.mark.parametrize(("case", "array", "path"), CASES, ids=[c[0] for c in CASES])
def test_under_numpy_2_the_dlpack_path_reads_back_intact_through_a_numpy_double_of_torch(
    case: str, array: np.ndarray, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = load("llmprep_models")
    fake = NumpyTorch()
    monkeypatch.setattr(models, "_NUMPY_2", True)
    monkeypatch.setattr(models, "_TORCH", [fake])  # what _torch() caches after `import torch`
    pb_utils = RecordingTensors(read_with_numpy)
    models.make_tensor(pb_utils, "OUT", array)
    [(kind, name, data)] = pb_utils.built
    assert (kind, name) == (path, "OUT")
    assert data.dtype == array.dtype and data.shape == array.shape
    assert np.array_equal(data, array)
    if path == "dlpack":  # exported from one C-contiguous array (DLPack without strides), never the input's view
        [exported] = fake.from_numpy_calls
        assert exported.flags["C_CONTIGUOUS"] and np.array_equal(exported, array)
    else:
        assert fake.from_numpy_calls == []


def test_under_numpy_2_without_torch_numeric_outputs_fall_back_to_an_ndarray(monkeypatch: pytest.MonkeyPatch) -> None:
    models = load("llmprep_models")
    monkeypatch.setattr(models, "_NUMPY_2", True)
    monkeypatch.setattr(models, "_TORCH", [None])  # `import torch` failed
    pb_utils = RecordingTensors(read_with_numpy)
    models.make_tensor(pb_utils, "OUT", np.array([[1, 2]], dtype=np.int32))
    assert [(kind, name) for kind, name, _ in pb_utils.built] == [("ndarray", "OUT")]
    assert np.array_equal(pb_utils.built[0][2], [[1, 2]])


def test_under_numpy_1_the_double_is_never_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    models = load("llmprep_models")
    fake = NumpyTorch()
    monkeypatch.setattr(models, "_NUMPY_2", False)
    monkeypatch.setattr(models, "_TORCH", [fake])
    pb_utils = RecordingTensors(read_with_numpy)
    models.make_tensor(pb_utils, "OUT", np.arange(4, dtype=np.float32))
    assert [kind for kind, _, _ in pb_utils.built] == ["ndarray"] and fake.from_numpy_calls == []


# --------------------------------------------------------------------------- CI without PyTorch


def test_in_ci_a_missing_pytorch_fails_the_run_instead_of_skipping(tmp_path: Path) -> None:
    """Run one torch test in a child pytest (the repository's conftest, CI=true) where `import torch` fails."""
    if not (ROOT / "tests" / "conftest.py").is_file() or importlib.util.find_spec("llmprep") is None:
        pytest.skip("needs the checkout's tests/conftest.py and llmprep (runs in the full test environment)")
    hidden = tmp_path / "hide"
    (hidden / "torch").mkdir(parents=True)
    (hidden / "torch" / "__init__.py").write_text("raise ImportError('No module named torch (hidden by a test)')\n")
    env = {**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join([str(hidden), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", __file__, "-k", "gives_one_token"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 failed" in done.stdout and "required tool is missing" in done.stdout, done.stdout[-3000:]
    assert "PyTorch is not installed" in done.stdout

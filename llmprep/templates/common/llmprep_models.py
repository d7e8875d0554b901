"""Helpers shared by llmprep's Triton Python models (copied beside each model.py by `llmprep repo`).

Holds: config.pbtxt parameters, request inputs, output tensors that work with numpy 1.x and
2.x, the tokenizer and streaming detokenisation. Its siblings: llmprep_stats.py (TensorRT-LLM
iteration statistics as the engine backend's metric families) and llmprep_standin.py (the
stand-in engine). `llmprep repo` copies beside a model every one of them its model.py imports.

Imports nothing from llmprep: a model repository runs on its own inside tritonserver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- tensors


def param(model_config: Mapping[str, Any], key: str, default: str = "") -> str:
    """A string parameter of config.pbtxt; unfilled `${...}` values count as unset (upstream habit)."""
    value = model_config.get("parameters", {}).get(key, {}).get("string_value", default)
    if value is None or value.startswith("${"):
        return default
    return str(value)


def flag(value: str, default: bool = False) -> bool:
    if value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def input_array(pb_utils: Any, request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def scalar(pb_utils: Any, request: Any, name: str, default: Any = None) -> Any:
    array = input_array(pb_utils, request, name)
    if array is None or array.size == 0:
        return default
    value = array.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value.item() if hasattr(value, "item") else value


def strings(pb_utils: Any, request: Any, name: str) -> list[str]:
    array = input_array(pb_utils, request, name)
    if array is None:
        return []
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def make_tensor(pb_utils: Any, name: str, array: np.ndarray) -> Any:
    """An output tensor that reads back intact under numpy 1.x and 2.x.

    `pb_utils.Tensor(name, ndarray)` works when the stub loads the numpy it was built
    against (llmprep.serve.triton puts the virtual environment first for that). With numpy 2.x
    on the GPU image it fails with "output tensor shape does not match size of output"
    (shared TOOLS.md); there, numeric arrays go through PyTorch's DLPack export, which
    works. Passing a numpy array to from_dlpack directly crashes the stub ("PyCapsule_
    GetPointer called with incorrect name", seen with Triton 2.51), so never do that.
    """
    array = np.ascontiguousarray(array)
    if _NUMPY_2 and array.dtype not in (np.object_, np.bool_) and array.size > 0:
        torch = _torch()
        if torch is not None:
            return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(torch.from_numpy(array)))
    return pb_utils.Tensor(name, array)


_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
_TORCH: list[Any] = []


def _torch() -> Any:
    if not _TORCH:
        try:
            import torch
        except ImportError:
            torch = None
        _TORCH.append(torch)
    return _TORCH[0]


def text_array(texts: Iterable[str], shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    return array.reshape(shape) if shape is not None else array


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(path: str) -> Any:
    """transformers.AutoTokenizer from a local folder (never the network)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class StreamingDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a character.

    Decoding one token at a time breaks multi-byte characters and loses the spaces some
    tokenizers add between tokens; so decode a short window of recent tokens and emit
    only what the new tokens added, holding back while the text ends in an incomplete
    UTF-8 sequence (U+FFFD). The same idea as the incremental detokenisers of Hugging
    Face text-generation-inference and vLLM.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.tokens: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=self.skip))

    def add(self, new_tokens: Iterable[int]) -> str:
        self.tokens.extend(int(t) for t in new_tokens)
        prefix = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        full = self._decode(self.tokens[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            delta = full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.tokens)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held back, at the end of the sequence."""
        prefix = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        full = self._decode(self.tokens[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.tokens)
        return full[len(prefix) :] if len(full) > len(prefix) else ""

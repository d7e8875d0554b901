"""Test doubles for what cannot run here, replaced at the process boundary.

- TensorRT-LLM: `engine_release/` (1.2.1: trtllm-build, convert_checkpoint.py, PyTorch backend)
  and `pytorch_release/` (a later PyTorch-only release), put on PYTHONPATH and PATH.
- GPUs: a generated `nvidia-smi` that lists $LLMPREP_DOUBLE_GPUS (names separated by `;`).
- The Hugging Face Hub: a pre-populated Hub cache in the Hub's own layout, read offline.
Everything else (llmprep, huggingface_hub, subprocesses, locks) is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
H100 = "NVIDIA H100 80GB HBM3"

TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 256,
    "torch_dtype": "bfloat16",
}

_NVIDIA_SMI = """#!{python}
import os
names = [n for n in os.environ.get("LLMPREP_DOUBLE_GPUS", "").split(";") if n]
if not names:
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    raise SystemExit(9)
for name in names:
    print(name)
"""

_TRTLLM_BUILD = """#!{python}
from tensorrt_llm.commands.build import main
main()
"""


@dataclass
class Release:
    """One installed TensorRT-LLM double and the environment that makes it visible."""

    kind: str
    version: str
    env: dict[str, str]
    log: Path
    examples: Path | None
    extra: dict[str, Any] = field(default_factory=dict)

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in records if tool is None or r["tool"] == tool]

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)


def _executable(path: Path, text: str) -> None:
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o755)


def install_release(tmp: Path, kind: str, *, gpus: list[str] | None = None) -> Release:
    """Make the `engine` (1.2.1) or `pytorch` (1.3.0) double the one this Python finds."""
    bin_dir = tmp / f"{kind}-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    _executable(bin_dir / "nvidia-smi", _NVIDIA_SMI)
    release = HERE / f"{kind}_release"
    examples: Path | None = None
    if kind == "engine":
        _executable(bin_dir / "trtllm-build", _TRTLLM_BUILD)
        examples = release / "examples"
    log = tmp / f"{kind}-calls.jsonl"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(release / "site"), str(ROOT)]),
        "LLMPREP_DOUBLE_LOG": str(log),
        "LLMPREP_DOUBLE_GPUS": ";".join(gpus if gpus is not None else [H100]),
        "HF_HUB_OFFLINE": "1",
    }
    if examples:
        env["LLMPREP_TRTLLM_EXAMPLES"] = str(examples)
    version = "1.2.1" if kind == "engine" else "1.3.0"
    return Release(kind, version, env, log, examples)


# --------------------------------------------------------------------------- Hub cache


def tiny_checkpoint_files(config: dict[str, Any] | None = None) -> dict[str, bytes]:
    """A repository listing with what a runtime needs and what it does not."""
    return {
        "config.json": json.dumps(config or TINY_LLAMA_CONFIG).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "tokenizer.json": b'{"version": "1.0"}',
        "tokenizer_config.json": b'{"tokenizer_class": "PreTrainedTokenizerFast"}',
        "model.safetensors": b"\0" * 4096,
        "pytorch_model.bin": b"\1" * 4096,
        "original/consolidated.00.pth": b"\2" * 1024,
        "README.md": b"# tiny",
    }


def make_hub_cache(hub: Path, repo: str, files: dict[str, bytes], *, revision: str = "main", seed: str = "") -> str:
    """Write `files` into a Hugging Face Hub cache (blobs, snapshots, refs) and return the commit."""
    commit = hashlib.sha1((repo + revision + seed + "".join(sorted(files))).encode()).hexdigest()
    storage = hub / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    snapshot = storage / "snapshots" / commit
    for rel, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return commit

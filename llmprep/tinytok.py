"""A tiny tokenizer trained offline, for the stand-in engine, the lab and tests.

`AutoTokenizer.from_pretrained(dir)` loads it with no network: a byte-level BPE trained
with the `tokenizers` library on the text below, saved as `tokenizer.json` with a
`tokenizer_config.json` naming `PreTrainedTokenizerFast` (shared TOOLS.md). Byte-level
means any input text encodes, and decoding token by token rebuilds it exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# The training text: our own sentences about the things this project serves.
CORPUS = """\
The autoscaler reads one signal and adds a replica when the signal stays above its target.
A request waits in the queue, then the batcher schedules it, then the model decodes tokens one by one.
Triton serves the model over HTTP and gRPC and exports metrics for Prometheus to scrape.
The engine is built once per GPU product and shared by every pod through the cache.
Streaming responses carry one token at a time, so the client sees text as soon as it exists.
When the queue grows, latency grows; when replicas grow, the queue drains again.
Hello world! What is machine learning? Machine learning finds patterns in data.
The quick brown fox jumps over the lazy dog. 0123456789 + - * / = ( ) [ ] { } , . ; : ' "
"""

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")
VOCAB_SIZE = 400


def write_tiny_tokenizer(out_dir: Path) -> Path:
    """Train the tiny tokenizer and save it (atomically) as a Hugging Face tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out_dir = Path(out_dir)
    if (out_dir / "tokenizer.json").exists() and (out_dir / "tokenizer_config.json").exists():
        return out_dir
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": SPECIAL_TOKENS[0],
        "bos_token": SPECIAL_TOKENS[0],
        "unk_token": SPECIAL_TOKENS[0],
        "pad_token": SPECIAL_TOKENS[1],
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        tokenizer.save(str(staging / "tokenizer.json"))
        (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (staging / "special_tokens_map.json").write_text(
            json.dumps({k: v for k, v in config.items() if k.endswith("_token")}, indent=2) + "\n"
        )
        os.chmod(staging, 0o755)
        if out_dir.exists():
            # An empty or partial folder from someone else: fill it file by file.
            for item in staging.iterdir():
                os.replace(item, out_dir / item.name)
        else:
            staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir

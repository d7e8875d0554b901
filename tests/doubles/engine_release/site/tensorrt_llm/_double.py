"""What the double's convert_checkpoint.py and trtllm-build do.

Each appends its exact command line to $LLMPREP_DOUBLE_LOG (one JSON object a line) and writes
files shaped like the real tools' output: a TensorRT-LLM checkpoint (config.json +
rank<N>.safetensors) and an engine directory (config.json + rank<N>.engine). Knobs for tests:
$LLMPREP_DOUBLE_SLEEP (seconds the build takes, spent while writing the engines) and
$LLMPREP_DOUBLE_FAIL=convert|build (fail that tool with some log lines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

VERSION = "1.2.1"


def _record(tool: str, argv: list[str]) -> None:
    log = os.environ.get("LLMPREP_DOUBLE_LOG")
    if not log:
        return
    line = json.dumps({"tool": tool, "argv": argv, "pid": os.getpid()}) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _maybe_fail(tool: str) -> None:
    if os.environ.get("LLMPREP_DOUBLE_FAIL") == tool:
        print(f"[TRT-LLM] [I] {tool}: starting", flush=True)
        print(f"[TRT-LLM] [E] {tool}: CUDA out of memory (double asked to fail)", flush=True)
        sys.exit(3)


def convert_main(argv: list[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    _record("convert", [sys.argv[0], *args_list])
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--output_dir", default="tllm_checkpoint")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    parser.add_argument("--tp_size", type=int, default=1)
    parser.add_argument("--pp_size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--load_by_shard", action="store_true")
    args = parser.parse_args(args_list)
    _maybe_fail("convert")
    hf = json.loads((Path(args.model_dir) / "config.json").read_text())
    dtype = args.dtype if args.dtype != "auto" else hf.get("torch_dtype", "float16")
    world = args.tp_size * args.pp_size
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": (hf.get("architectures") or ["LlamaForCausalLM"])[0],
        "dtype": dtype,
        "num_hidden_layers": hf.get("num_hidden_layers"),
        "mapping": {"world_size": world, "tp_size": args.tp_size, "pp_size": args.pp_size},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for rank in range(world):
        (out / f"rank{rank}.safetensors").write_bytes(b"converted weights of rank %d" % rank)
    print(f"[TRT-LLM] [I] converted {args.model_dir} to {world} ranks as {dtype}", flush=True)


def build_main(argv: list[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    _record("trtllm-build", [sys.argv[0], *args_list])
    parser = argparse.ArgumentParser(prog="trtllm-build")
    parser.add_argument("--checkpoint_dir", required=True)
    parser.add_argument("--output_dir", default="engine_outputs")
    parser.add_argument("--max_batch_size", type=int, default=2048)
    parser.add_argument("--max_input_len", type=int, default=1024)
    parser.add_argument("--max_seq_len", type=int)
    parser.add_argument("--max_num_tokens", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=1)
    args, extra = parser.parse_known_args(args_list)
    print(f"[TensorRT-LLM] TensorRT-LLM version: {VERSION}", flush=True)
    _maybe_fail("build")
    ckpt = Path(args.checkpoint_dir)
    config = json.loads((ckpt / "config.json").read_text())
    world = config["mapping"]["world_size"]
    for rank in range(world):
        if not (ckpt / f"rank{rank}.safetensors").is_file():
            print(f"[TRT-LLM] [E] missing rank{rank}.safetensors in {ckpt}", flush=True)
            sys.exit(2)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds = float(os.environ.get("LLMPREP_DOUBLE_SLEEP", "0"))
    for rank in range(world):
        with (out / f"rank{rank}.engine").open("wb") as fh:
            for step in range(10):
                fh.write(b"engine rank %d part %d\n" % (rank, step))
                fh.flush()
                time.sleep(seconds / (10 * world))
        print(f"[TRT-LLM] [I] engine rank{rank} built", flush=True)
    build_config = {
        "max_batch_size": args.max_batch_size,
        "max_input_len": args.max_input_len,
        "max_seq_len": args.max_seq_len,
        "max_num_tokens": args.max_num_tokens,
        "extra_flags": extra,
    }
    engine_config = {"version": VERSION, "pretrained_config": config, "build_config": build_config}
    (out / "config.json").write_text(json.dumps(engine_config, indent=2))
    print(f"[TRT-LLM] [I] Total time of building all engines: {seconds:.2f} s", flush=True)

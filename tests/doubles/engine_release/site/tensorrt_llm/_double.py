"""What the double's convert_checkpoint.py and trtllm-build do.

Each appends its exact command line to $LLMPREP_DOUBLE_LOG (one JSON object a line) and writes
files shaped like the real tools' output. Both parse their argv with an argparse built from
tests/data/converter_flags.csv and tests/data/trtllm_build_flags.csv (upstream's flags, actions and
choices), so a flag upstream lacks, or a value given to a switch, exits 2 with argparse's usage error;
the converter's family is the folder its script sits in. Outputs: a TensorRT-LLM checkpoint (config.json +
rank<N>.safetensors) and an engine directory (config.json + rank<N>.engine). Knobs for tests:
$LLMPREP_DOUBLE_SLEEP (seconds the build takes, spent while writing the engines) and
$LLMPREP_DOUBLE_FAIL=convert|build (fail that tool with some log lines).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

VERSION = "1.2.1"
# The tables read from upstream's argparse (tests/data); the doubles parse against them.
DATA = Path(__file__).resolve().parents[4] / "data"
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "path": Path}
_BUILD_CORE = {"checkpoint_dir", "output_dir", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens"}


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


def _table(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def parser_from_table(rows: list[dict[str, str]], prog: str) -> argparse.ArgumentParser:
    """An argparse parser with the flags, actions, types and choices upstream's has (tests/data tables)."""
    parser = argparse.ArgumentParser(prog=prog)
    for row in rows:
        names = [f"--{row['flag']}", *[a for a in row["aliases"].split("|") if a]]
        kind = _TYPES.get(row["type"], str)
        kwargs: dict[str, Any] = {}
        if row["action"] == "store_true":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = kind
            if row["choices"]:
                kwargs["choices"] = [kind(c) for c in row["choices"].split("|")]
            if row["action"] == "store_optional":
                kwargs["nargs"] = "?"
                kwargs["const"] = row["default"]
            elif row["action"] == "store_list":
                kwargs["nargs"] = "+"
            if row["default"] and not row["default"].startswith("BuildConfig."):
                kwargs["default"] = kind(row["default"])
        if row.get("required") == "yes":
            kwargs["required"] = True
        parser.add_argument(*names, **kwargs)
    return parser


def convert_parser(family: str) -> argparse.ArgumentParser:
    rows = [r for r in _table("converter_flags.csv") if r["family"] == family]
    if not rows:
        raise SystemExit(f"double: no converter table for family {family!r}")
    return parser_from_table(rows, "convert_checkpoint.py")


def build_parser() -> argparse.ArgumentParser:
    return parser_from_table(_table("trtllm_build_flags.csv"), "trtllm-build")


def convert_main(argv: list[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    _record("convert", [sys.argv[0], *args_list])
    family = Path(sys.argv[0]).resolve().parent.name
    args = convert_parser(family).parse_args(args_list)
    if family == "gemma":
        if args.ckpt_type is None:  # upstream indexes its parser table by it: KeyError
            print("KeyError: None (gemma's converter needs --ckpt-type)", file=sys.stderr)
            sys.exit(1)
        tp, pp, out_arg = args.world_size, 1, args.output_model_dir
    else:
        tp, pp, out_arg = args.tp_size, args.pp_size, args.output_dir
        if family in ("opt", "phi") and pp != 1:
            print("AssertionError: Pipeline parallelism is not supported.", file=sys.stderr)
            sys.exit(1)
    _maybe_fail("convert")
    hf = json.loads((Path(args.model_dir) / "config.json").read_text())
    dtype = args.dtype if args.dtype != "auto" else hf.get("torch_dtype", "float16")
    world = tp * pp
    out = Path(out_arg)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": (hf.get("architectures") or ["LlamaForCausalLM"])[0],
        "dtype": dtype,
        "num_hidden_layers": hf.get("num_hidden_layers"),
        "mapping": {"world_size": world, "tp_size": tp, "pp_size": pp},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for rank in range(world):
        (out / f"rank{rank}.safetensors").write_bytes(b"converted weights of rank %d" % rank)
    print(f"[TRT-LLM] [I] converted {args.model_dir} to {world} ranks as {dtype}", flush=True)


def build_main(argv: list[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    _record("trtllm-build", [sys.argv[0], *args_list])
    args = build_parser().parse_args(args_list)
    extra = [a for a in args_list if a.startswith("--") and a.lstrip("-") not in _BUILD_CORE]
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

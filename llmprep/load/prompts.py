"""Prompts for the load generator: synthetic (token counts with mean and stddev) or a JSONL file.

Synthetic prompts follow genai-perf's synthetic inputs: each request draws its input length
and its requested output length from normal distributions (rounded, at least 1). Without a
tokenizer we build the text from common English words that GPT-2, Llama and Mistral
tokenizers each encode as one token when preceded by a space, so a prompt of N words is
close to N tokens; the count we report is the word count. The words are drawn at random per
prompt so that prefix caches do not turn the test into a cache benchmark.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from llmprep import files
from llmprep.errors import UsageError

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        """the of and to in is that for it as was with be by on not he this are or his from at which but
    have an they you were her she there one all we their has been would more when if will can out
    about so said what up its into than them only other some time new could these two may first
    then any like now over such our man me even most made after also did many before must through
    back years where much your way well down should because each just those people how too little
    state good very make world still own see men work long get here between both life being under
    never day same another know while last might us great old year off come since against go came
    right used take three small large water world place house number part city world help home
    plan model data light story music river market table window garden paper letter power table
    school family friend summer winter morning evening open close begin start finish answer""".split()
    )
)


@dataclass(frozen=True)
class Prompt:
    """One request's text, its input length in tokens (estimated) and the output length to ask for."""

    text: str
    input_tokens: int
    output_tokens: int


def _draw(rng: random.Random, mean: float, stddev: float) -> int:
    if stddev <= 0:
        return max(1, round(mean))
    return max(1, round(rng.gauss(mean, stddev)))


def synthetic_prompts(
    count: int,
    *,
    input_tokens: float = 128,
    input_stddev: float = 0,
    output_tokens: float = 64,
    output_stddev: float = 0,
    seed: int = 0,
) -> list[Prompt]:
    """`count` prompts with normally distributed input and output lengths (reproducible by seed)."""
    for name, value in (("--input-tokens", input_tokens), ("--output-tokens", output_tokens)):
        if value < 1:
            raise UsageError(f"{name}: must be at least 1, got {value:g}")
    for name, value in (("--input-stddev", input_stddev), ("--output-stddev", output_stddev)):
        if value < 0:
            raise UsageError(f"{name}: cannot be negative, got {value:g}")
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        n_in = _draw(rng, input_tokens, input_stddev)
        prompts.append(Prompt(" ".join(rng.choices(WORDS, k=n_in)), n_in, _draw(rng, output_tokens, output_stddev)))
    return prompts


def load_prompts(path: Path, *, output_tokens: float = 64, output_stddev: float = 0, seed: int = 0) -> list[Prompt]:
    """Prompts from a JSONL file: one object a line with `text` (or `text_input`, `prompt`).

    Optional per line: `output_tokens` (or `max_tokens`) and `input_tokens`; missing output
    lengths are drawn like synthetic ones, missing input lengths are the word count.
    """
    lines = read_prompts_text(path).splitlines()
    rng = random.Random(seed)
    prompts: list[Prompt] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"--prompts {path.name} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not JSON ({exc.msg}); give one JSON object a line") from None
        except RecursionError:  # json's decoder recurses once per [ or {
            raise UsageError(f"{where}: nested too deeply to read; give one flat JSON object a line") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise UsageError(
                f"{where}: not JSON we can read ({files.quote(str(exc))}); give one JSON object a line"
            ) from None
        if not isinstance(item, dict):
            raise UsageError(f'{where}: expected an object like {{"text": "..."}}')
        text = next((item[k] for k in ("text", "text_input", "prompt") if k in item), None)
        if not isinstance(text, str) or not text:
            raise UsageError(f"{where}.text: required, a non-empty string")
        out = item.get("output_tokens", item.get("max_tokens"))
        if out is None:
            out = _draw(rng, output_tokens, output_stddev)
        elif isinstance(out, bool) or not isinstance(out, int) or out < 1:
            raise UsageError(f"{where}.output_tokens: expected a whole number of at least 1, got {files.quote(out)}")
        n_in = item.get("input_tokens", len(text.split()))
        if isinstance(n_in, bool) or not isinstance(n_in, int) or n_in < 0:
            raise UsageError(f"{where}.input_tokens: expected a whole number, got {files.quote(n_in)}")
        prompts.append(Prompt(text, n_in, out))
    if not prompts:
        raise UsageError(f"--prompts {path}: no prompts in the file (one JSON object a line)")
    return prompts


def read_prompts_text(path: Path) -> str:
    """The text of a prompts file through the bounded reader (`files.read_text`: a regular file only,
    UTF-8, under its size cap), its one-line errors telling the fix for a JSONL file.

    `files.read_text` words its fixes for the YAML files it mostly reads ("give a UTF-8 YAML file");
    a prompts file is JSON Lines, so the fix is reworded here rather than in files.py.
    """
    try:
        return files.read_text(path, "--prompts", UsageError)
    except UsageError as exc:
        message = str(exc).replace("YAML", "JSONL").replace("a values file", "a prompts file")
        raise UsageError(message) from None

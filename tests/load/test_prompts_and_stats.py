from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from llmprep.errors import UsageError
from llmprep.load.prompts import load_prompts, synthetic_prompts
from llmprep.load.stats import Sample, Window, distribution, error_rate, percentile, summarize


@pytest.mark.parametrize(("mean", "stddev"), [(128, 0), (128, 16), (512, 64), (20, 5)])
def test_synthetic_input_lengths_have_the_requested_mean_and_stddev(mean: int, stddev: int) -> None:
    prompts = synthetic_prompts(4000, input_tokens=mean, input_stddev=stddev, seed=7)
    lengths = [p.input_tokens for p in prompts]
    assert abs(statistics.fmean(lengths) - mean) < max(0.5, 0.05 * stddev)
    assert abs(statistics.pstdev(lengths) - stddev) < max(0.5, 0.05 * stddev)


@pytest.mark.parametrize(("mean", "stddev"), [(64, 0), (64, 8), (200, 10)])
def test_synthetic_output_lengths_have_the_requested_mean_and_stddev(mean: int, stddev: int) -> None:
    lengths = [p.output_tokens for p in synthetic_prompts(4000, output_tokens=mean, output_stddev=stddev, seed=3)]
    assert abs(statistics.fmean(lengths) - mean) < max(0.5, 0.05 * stddev)
    assert abs(statistics.pstdev(lengths) - stddev) < max(0.5, 0.05 * stddev)


def test_a_synthetic_prompt_has_as_many_words_as_its_input_tokens() -> None:
    assert all(len(p.text.split()) == p.input_tokens for p in synthetic_prompts(200, input_tokens=50, input_stddev=20))


def test_synthetic_prompts_are_reproducible_by_seed_and_differ_between_requests() -> None:
    first, again = synthetic_prompts(50, seed=1), synthetic_prompts(50, seed=1)
    assert first == again
    assert len({p.text for p in first}) == 50


def test_lengths_never_drop_below_one_token() -> None:
    assert min(p.input_tokens for p in synthetic_prompts(2000, input_tokens=2, input_stddev=10)) >= 1


def test_a_jsonl_file_gives_prompts_with_their_own_output_lengths(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "one two three", "output_tokens": 9}\n\n{"text_input": "four five"}\n')
    prompts = load_prompts(path, output_tokens=16)
    assert [(p.text, p.input_tokens, p.output_tokens) for p in prompts] == [
        ("one two three", 3, 9),
        ("four five", 2, 16),
    ]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("not json", "line 1"),
        ('{"txt": "x"}', "line 1.text"),
        ('{"text": "x", "output_tokens": 0}', "line 1.output_tokens"),
        ("[1, 2]", "line 1"),
    ],
)
def test_a_bad_jsonl_line_is_named(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(UsageError, match=field):
        load_prompts(path)


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
@pytest.mark.parametrize(
    "values", [[5.0], [1.0, 2.0], [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], list(np.linspace(0, 1, 101))]
)
def test_percentiles_match_numpys_linear_method(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentiles_of_nothing_are_none() -> None:
    assert percentile([], 50) is None and distribution([])["p95"] is None


def _sample(error: str | None = None, e2e: float = 1.0, tokens_out: int = 4) -> Sample:
    return Sample(start=0.0, target="t", e2e=e2e, ttft=0.1, itl=0.05, tokens_in=8, tokens_out=tokens_out, error=error)


def test_the_error_rate_counts_failures_but_not_requests_cancelled_at_the_end() -> None:
    samples = [_sample(), _sample(), _sample("server"), _sample("cancelled")]
    assert error_rate(samples) == pytest.approx(1 / 3)


def test_the_summary_counts_classes_and_measures_only_successful_requests() -> None:
    samples = [_sample(e2e=1.0), _sample(e2e=3.0), _sample("timeout", e2e=60.0), _sample("cancelled")]
    summary = summarize(samples, duration=2.0)
    assert (summary["requests"], summary["ok"], summary["errors"], summary["cancelled"]) == (3, 2, 1, 1)
    assert summary["errors_by_class"] == {"timeout": 1}
    assert summary["e2e_s"]["p50"] == 2.0 and summary["requests_per_s"] == 1.0
    assert summary["output_tokens_per_s"] == 4.0


def test_a_window_reports_one_second_and_starts_afresh() -> None:
    window = Window()
    window.started = 3
    for sample in (_sample(e2e=0.5), _sample(e2e=1.5), _sample("server")):
        window.add(sample)
    snap = window.close(t=1.0, span=1.0, level=3, in_flight=1)
    assert (snap.completed, snap.errors, snap.requests_per_s, snap.e2e_p50, snap.started) == (3, 1, 2.0, 1.0, 3)
    again = window.close(t=2.0, span=1.0, level=3, in_flight=0)
    assert (again.completed, again.total_completed, again.total_errors) == (0, 3, 1)


@pytest.mark.parametrize(
    ("first", "last", "n", "itl"),
    [
        (1.0, 1.4, 5, 0.1),  # five responses: four gaps between the first and the last
        (2.0, 2.3, 2, 0.3),  # two responses: one gap
        (1.0, 1.0, 1, None),  # one response: no gap to measure
    ],
)
def test_inter_token_latency_is_the_mean_gap_between_responses(
    first: float, last: float, n: int, itl: float | None
) -> None:
    from llmprep.load.clients import _sample as make_sample
    from llmprep.load.prompts import Prompt

    sample = make_sample(Prompt("hi", 1, n), "t", t0=0.0, start=0.5, first=first, last=last, n=n)
    assert sample.itl == (pytest.approx(itl) if itl is not None else None)
    assert sample.ttft == pytest.approx(first - 0.5)

"""The rule check: every recorded signal equals the chart's rule applied to the scraped counters.

At the end of a run the lab re-evaluates each recording rule's expression (the chart's PromQL)
at the timestamps of stored recorded samples and compares per pod (docs/lab.md, "The rule check").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def verify_recording_rules(
    prometheus: Any,
    groups: Sequence[Mapping[str, Any]],
    namespace: str,
    start: float,
    end: float,
    *,
    points: int = 8,
    margin_s: float = 0.1,
) -> dict[str, Any]:
    """Re-evaluate each recording rule's expression at stored sample times and compare.

    A recorded sample is the rule applied to the raw counters Prometheus held at its
    evaluation time; evaluating the chart's expression at that same timestamp over the same
    raw samples gives the same value per pod (up to float rounding). One race is excluded: a
    scrape's samples carry the time it began but are stored when it ends, so an evaluation
    that ran while a scrape of that pod was in flight (from its start to its end, read from
    `scrape_duration_seconds`, plus `margin_s`) saw less than a later re-evaluation does.
    Those evaluation times are skipped and counted.
    """
    span = max(1, int(math.ceil(end - start)))
    scrapes: dict[str, list[tuple[float, float]]] = {}
    durations = prometheus.api(
        "query", {"query": f'scrape_duration_seconds{{namespace="{namespace}"}}[{span}s]', "time": end}
    )["result"]
    for series in durations:
        scrapes.setdefault(series["metric"].get("pod", ""), []).extend(
            (float(ts), float(d)) for ts, d in series["values"]
        )

    def clear_of_scrapes(pod: str, ts: float) -> bool:
        return not any(begin - 0.001 <= ts <= begin + took + margin_s for begin, took in scrapes.get(pod, ()))

    checked = matched = skipped = 0
    worst = 0.0
    mismatches: list[dict[str, Any]] = []
    per_rule: dict[str, dict[str, int]] = {}
    for group in groups:
        for rule in group.get("rules", []):
            name, expr = rule.get("record"), rule.get("expr")
            if not name or not expr:
                continue
            stats = per_rule.setdefault(name, {"checked": 0, "matched": 0})
            stored = prometheus.api("query", {"query": f'{name}{{namespace="{namespace}"}}[{span}s]', "time": end})
            samples: list[tuple[float, str, float]] = []
            for series in stored.get("result", []):
                pod = series["metric"].get("pod", "")
                samples += [(float(ts), pod, float(v)) for ts, v in series.get("values", [])]
            clear = sorted(x for x in samples if clear_of_scrapes(x[1], x[0]))
            skipped += len(samples) - len(clear)
            if not clear:
                continue
            step = max(1, len(clear) // points)
            for ts, pod, value in clear[::step][:points]:
                again = {s.labels.get("pod", ""): s.value for s in prometheus.query(str(expr), at=ts)}
                if pod not in again:
                    continue
                checked += 1
                stats["checked"] += 1
                diff = abs(again[pod] - value)
                scale = max(abs(value), abs(again[pod]), 1e-12)
                worst = max(worst, diff / scale if diff else 0.0)
                if diff <= 1e-9 * scale or diff < 1e-12:
                    matched += 1
                    stats["matched"] += 1
                elif len(mismatches) < 10:
                    mismatches.append(
                        {"rule": name, "pod": pod, "time": ts, "recorded": value, "recomputed": again[pod]}
                    )
    return {
        "recording_rules_checked": checked,
        "recording_rules_matched": matched,
        "skipped_near_a_scrape": skipped,
        "worst_relative_difference": worst,
        "per_rule": per_rule,
        "mismatches": mismatches,
    }

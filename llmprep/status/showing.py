"""Showing a `ReleaseStatus` for people: rich tables, refreshed live (`llmprep status --watch`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmprep.status.collecting import ReleaseStatus


def _age(timestamp: str, now: datetime) -> str:
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render(status: ReleaseStatus, now: datetime | None = None) -> RenderableType:
    """The status as rich tables: per HPA its metrics and events, then pods, then problems."""
    now = now or datetime.now(timezone.utc)
    parts: list[RenderableType] = [
        Text.assemble(
            ("release ", "dim"),
            (status.release, "bold"),
            ("  namespace ", "dim"),
            status.namespace,
            ("  at ", "dim"),
            status.collected_at or "-",
        )
    ]
    for scaler in status.autoscalers:
        scaling = (
            f"{scaler.current_replicas} → {scaler.desired_replicas}"
            if scaler.desired_replicas != scaler.current_replicas
            else str(scaler.current_replicas)
        )
        parts.append(
            Text.assemble(
                ("HPA ", "dim"),
                (scaler.name, "bold cyan"),
                ("  scales ", "dim"),
                scaler.target,
                ("  replicas ", "dim"),
                (scaling, "bold"),
                (f"  (min {scaler.min_replicas}, max {scaler.max_replicas})", "dim"),
                ("  last scaled ", "dim"),
                _age(scaler.last_scale_time, now) + (" ago" if scaler.last_scale_time else ""),
            )
        )
        metrics = Table("metric", "type", "current", "target", box=None, pad_edge=False)
        for m in scaler.metrics:
            metrics.add_row(m.name, m.type, Text(m.current, style="red" if m.current == "<unknown>" else ""), m.target)
        parts.append(metrics)
        if scaler.events:
            table = Table("age", "reason", "message", box=None, pad_edge=False)
            for e in reversed(scaler.events):
                table.add_row(
                    _age(e.time, now),
                    Text(e.reason, style="yellow" if e.type == "Warning" else ""),
                    e.message + (f" (x{e.count})" if e.count > 1 else ""),
                )
            parts.append(table)
    if status.pods:
        ready = sum(p.ready for p in status.pods)
        pods = Table(
            "pod",
            "ready",
            "phase",
            "restarts",
            "node",
            "age",
            box=None,
            pad_edge=False,
            title=f"pods: {ready}/{len(status.pods)} ready",
            title_justify="left",
        )
        for p in status.pods:
            pods.add_row(
                p.name,
                Text("yes" if p.ready else "no", style="green" if p.ready else "red"),
                p.phase,
                str(p.restarts),
                p.node or "-",
                _age(p.started, now),
            )
        parts.append(pods)
    parts.extend(Text(f"! {line}", style="yellow") for line in status.problems)
    return Group(*parts)


def watch(
    read: Callable[[], ReleaseStatus],
    console: Console,
    interval: float = 5.0,
    iterations: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReleaseStatus:
    """Show `read()` and refresh it every `interval` seconds (until Ctrl-C, or `iterations` reads)."""
    status = read()
    count = 1
    with Live(render(status), console=console, refresh_per_second=4, transient=False) as live:
        try:
            while iterations is None or count < iterations:
                sleep(interval)
                status = read()
                count += 1
                live.update(render(status))
        except KeyboardInterrupt:
            pass
    return status

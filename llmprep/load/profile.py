"""Load profiles: a list of stages that set the number of clients (or the request rate) over time.

A profile file (YAML) reads like the experiment it describes:

    unit: clients            # or `rate` (requests per second, open loop)
    stages:
      - ramp: {from: 1, to: 8, over: 60s}
      - hold: 120s
      - step: {to: 2, for: 60s}

Each stage also has a one-line form: `ramp 1 -> 8 over 60s`, `ramp to 8 over 60s`,
`hold 120s`, `step to 2`, `step to 2 for 60s`. The last stage may last `forever`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmprep import files
from llmprep.errors import UsageError
from llmprep.units import FOREVER, parse_duration

Unit = Literal["clients", "rate"]
UNITS: tuple[Unit, ...] = ("clients", "rate")
_ARROW = r"(?:->|→|to)"
_LINE_RAMP = re.compile(
    rf"^ramp\s+(?:(?P<start>\S+)\s*{_ARROW}\s*|to\s+)(?P<end>\S+)\s+(?:clients\s+|req/s\s+)?over\s+(?P<over>.+)$"
)
_LINE_HOLD = re.compile(r"^hold\s+(?:for\s+)?(?P<for>.+)$")
_LINE_STEP = re.compile(r"^step\s+(?:to\s+)?(?P<to>\S+)(?:\s+(?:clients|req/s))?(?:\s+for\s+(?P<for>.+))?$")


@dataclass(frozen=True)
class Stage:
    """One stage: the level goes linearly from `start` to `end` over `duration` seconds."""

    kind: Literal["ramp", "hold", "step"]
    start: float
    end: float
    duration: float

    def level_at(self, elapsed: float) -> float:
        if self.kind != "ramp" or self.duration <= 0:
            return self.end
        return self.start + (self.end - self.start) * min(1.0, elapsed / self.duration)


@dataclass(frozen=True)
class Profile:
    """A load shape: `unit` is `clients` (closed loop) or `rate` (Poisson arrivals, req/s)."""

    unit: Unit
    stages: tuple[Stage, ...]

    @property
    def duration(self) -> float:
        return sum(stage.duration for stage in self.stages)

    def level_at(self, t: float) -> float | None:
        """The level at `t` seconds after the start; None once the profile is over."""
        for stage in self.stages:
            if t < stage.duration:
                return stage.level_at(t)
            t -= stage.duration
        return None

    def stage_index(self, t: float) -> int:
        for index, stage in enumerate(self.stages):
            if t < stage.duration:
                return index
            t -= stage.duration
        return len(self.stages) - 1

    def peak(self) -> float:
        return max(max(stage.start, stage.end) for stage in self.stages)


def constant(unit: Unit, level: float, duration: float) -> Profile:
    """One stage at a fixed level (`--concurrency N` or `--rate R` with `--duration`)."""
    return Profile(unit=unit, stages=(Stage("step", level, level, duration if duration > 0 else FOREVER),))


def _level(value: Any, unit: Unit, field: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise UsageError(f"{field}: expected a number of {unit} (0 or more), got {value!r}")
    if unit == "clients" and float(value) != int(value):
        raise UsageError(f"{field}: the number of clients is a whole number, got {value!r}")
    return float(value)


def _line_to_mapping(text: str, field: str) -> dict[str, Any]:
    line = " ".join(text.strip().lower().split())
    if match := _LINE_RAMP.match(line):
        ramp: dict[str, Any] = {"to": match["end"], "over": match["over"]}
        if match["start"] is not None:
            ramp["from"] = match["start"]
        return {"ramp": ramp}
    if match := _LINE_HOLD.match(line):
        return {"hold": match["for"]}
    if match := _LINE_STEP.match(line):
        step: dict[str, Any] = {"to": match["to"]}
        if match["for"] is not None:
            step["for"] = match["for"]
        return {"step": step}
    raise UsageError(
        f"{field}: cannot read stage {text!r}; write e.g. 'ramp 1 -> 8 over 60s', 'hold 120s' or 'step to 2 for 60s'"
    )


def _check_keys(data: dict[str, Any], allowed: set[str], field: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UsageError(f"{field}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _stage(raw: Any, unit: Unit, previous: float | None, field: str) -> Stage:
    if isinstance(raw, str):
        raw = _line_to_mapping(raw, field)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise UsageError(f"{field}: a stage is one of ramp, hold or step, e.g. {{hold: 60s}}")
    kind, body = next(iter(raw.items()))
    if kind == "hold":
        if isinstance(body, dict):
            _check_keys(body, {"for"}, f"{field}.hold")
            body = body.get("for")
        if previous is None:
            raise UsageError(f"{field}.hold: the first stage needs a level; start with a step or a ramp")
        return Stage("hold", previous, previous, parse_duration(body, f"{field}.hold"))
    if kind == "step":
        if not isinstance(body, dict):
            body = {"to": body}
        _check_keys(body, {"to", "for"}, f"{field}.step")
        if "to" not in body:
            raise UsageError(f"{field}.step.to: required (the new level)")
        level = _level(body["to"], unit, f"{field}.step.to")
        return Stage("step", level, level, parse_duration(body.get("for", 0), f"{field}.step.for"))
    if kind == "ramp":
        if not isinstance(body, dict):
            raise UsageError(f"{field}.ramp: expected {{from: 1, to: 8, over: 60s}}")
        _check_keys(body, {"from", "to", "over"}, f"{field}.ramp")
        for key in ("to", "over"):
            if key not in body:
                raise UsageError(f"{field}.ramp.{key}: required")
        if "from" in body:
            start = _level(body["from"], unit, f"{field}.ramp.from")
        elif previous is not None:
            start = previous
        else:
            raise UsageError(f"{field}.ramp.from: required in the first stage")
        over = parse_duration(body["over"], f"{field}.ramp.over")
        if math.isinf(over):
            raise UsageError(f"{field}.ramp.over: a ramp must end; give a finite duration")
        return Stage("ramp", start, _level(body["to"], unit, f"{field}.ramp.to"), over)
    raise UsageError(f"{field}.{kind}: unknown stage kind; use ramp, hold or step")


def parse_profile(data: Any, source: str = "profile") -> Profile:
    """A validated Profile from parsed YAML; errors name the field (`stages[1].ramp.over`)."""
    if isinstance(data, list):
        data = {"stages": data}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping with `stages:` (a list of ramp/hold/step)")
    _check_keys(data, {"unit", "stages"}, source)
    unit = data.get("unit", "clients")
    if unit not in UNITS:
        raise UsageError(f"{source}.unit: expected clients or rate, got {unit!r}")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise UsageError(f"{source}.stages: required, a non-empty list of stages")
    stages: list[Stage] = []
    previous: float | None = None
    for index, raw in enumerate(raw_stages):
        field = f"{source}.stages[{index}]"
        if stages and math.isinf(stages[-1].duration):
            raise UsageError(f"{field}: comes after a stage that lasts forever; only the last stage may")
        stage = _stage(raw, unit, previous, field)
        stages.append(stage)
        previous = stage.end
    profile = Profile(unit=unit, stages=tuple(stages))
    if profile.duration <= 0:
        raise UsageError(f"{source}.stages: the stages add up to 0 s; give a stage a duration")
    return profile


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file."""
    # finite=False: a YAML .inf duration has always meant "forever" here.
    data = files.read_yaml(path, "--profile", UsageError, finite=False)
    return parse_profile(data, source=path.name)

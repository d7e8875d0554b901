"""Lab scenarios: what to run (values, load profile, stand-in cost model, speed, SLO).

A scenario is a YAML file (the default one ships in llmprep/data/lab/):

    name: surge
    values: [cpu-standin.values.yaml]   # relative to the scenario file
    set: []                             # Helm --set expressions, after the values files
    speed: 5                            # time compression of the control loop
    syncPeriod: 15s                     # HPA sync period (cluster time)
    load: {protocol: grpc, unit: clients, stages: [...], inputTokens: 32, connections: 8,
           reconnectEvery: 2s, timeout: 60s}
    standin: {decodeMsPerStep: 25}      # model.standin overrides
    slo: {p95LatencyMs: 3000}
    settle: 120s                        # after the load: wait for the minimum, at most this long

Every error names the field and the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from llmprep.errors import UsageError

DEFAULT_SCENARIO = "default.scenario.yaml"
PROTOCOLS = ("grpc", "http")
_TOP_KEYS = {"name", "description", "values", "set", "speed", "syncPeriod", "load", "standin", "slo", "settle"}
_LOAD_KEYS = {
    "protocol",
    "unit",
    "stages",
    "inputTokens",
    "outputTokens",
    "connections",
    "reconnectEvery",
    "timeout",
    "model",
}
_STANDIN_KEYS = {
    "prefillMsPerToken",
    "decodeMsPerStep",
    "maxInFlight",
    "queueInTriton",
    "outputTokens",
    "compute",
    "tokensPerBlock",
    "kvCacheBlocks",
}


def data_dir() -> Path:
    """The folder of the lab's embedded scenario and values files."""
    return Path(str(resources.files("llmprep") / "data" / "lab"))


@dataclass(frozen=True)
class LoadPlan:
    """The load part of a scenario (fed to llmprep.load)."""

    profile: Any  # llmprep.load.Profile
    protocol: str = "grpc"
    input_tokens: int = 32
    output_tokens: int | None = None  # None: the stand-in's outputTokens
    connections: int = 8
    reconnect_every_s: float = 2.0
    timeout_s: float = 60.0
    model: str | None = None  # None: the layout's entry model (ensemble / tensorrt_llm)

    def generator(self, address: str, model: str, default_output_tokens: int) -> Any:
        """The llmprep.load generator for this plan, aimed at `address` (the lab's front)."""
        from llmprep.load import LoadConfig, LoadGenerator

        return LoadGenerator(
            LoadConfig(
                targets=[address],
                profile=self.profile,
                protocol=self.protocol,
                model=model,
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens or default_output_tokens,
                timeout=self.timeout_s,
                connections=self.connections,
                reconnect_every=self.reconnect_every_s,
                wait_ready=30.0,
                max_error_rate=1.0,  # the lab reports errors; it does not fail the run on them
            )
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    source: Path | None
    values_files: tuple[Path, ...]
    sets: tuple[str, ...]
    speed: float
    sync_period_s: float
    load: LoadPlan
    standin: Mapping[str, Any] = field(default_factory=dict)
    slo_p95_ms: float | None = None
    settle_s: float = 120.0
    description: str = ""

    def with_overrides(
        self,
        *,
        values_files: tuple[Path, ...] = (),
        sets: tuple[str, ...] = (),
        speed: float | None = None,
        sync_period_s: float | None = None,
    ) -> Scenario:
        """Command-line additions: values files and --set after the scenario's; speed and sync replace."""
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise UsageError(f"--speed: must be a positive number, got {speed}")
        if sync_period_s is not None and not (math.isfinite(sync_period_s) and sync_period_s > 0):
            raise UsageError(f"--sync-period: must be a positive number of seconds, got {sync_period_s}")
        return replace(
            self,
            values_files=self.values_files + tuple(Path(p) for p in values_files),
            sets=self.sets + tuple(sets),
            speed=speed if speed is not None else self.speed,
            sync_period_s=sync_period_s if sync_period_s is not None else self.sync_period_s,
        )


def _duration(value: Any, where: str) -> float:
    from llmprep.units import parse_duration

    seconds = parse_duration(value, where)
    if not math.isfinite(seconds):
        raise UsageError(f"{where}: must be a finite duration such as 30s")
    return seconds


def _number(value: Any, where: str, *, minimum: float = 0.0, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise UsageError(f"{where}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise UsageError(f"{where}: expected a whole number, got {value!r}")
    if integer and value < minimum:
        raise UsageError(f"{where}: must be at least {minimum:g}, got {value!r}")
    if not integer and value <= minimum:
        raise UsageError(f"{where}: must be above {minimum:g}, got {value!r}")
    return float(value)


def _keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UsageError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _load_plan(raw: Any, where: str) -> LoadPlan:
    from llmprep.load.profile import parse_profile

    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: expected a mapping with stages (ramp/hold/step)")
    _keys(raw, _LOAD_KEYS, where)
    profile = parse_profile({k: raw[k] for k in ("unit", "stages") if k in raw}, source=where)
    if math.isinf(profile.duration):
        raise UsageError(f"{where}.stages: the lab needs a load that ends; give the last stage a duration")
    protocol = raw.get("protocol", "grpc")
    if protocol not in PROTOCOLS:
        raise UsageError(f"{where}.protocol: expected grpc or http, got {protocol!r}")
    output = raw.get("outputTokens")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise UsageError(f"{where}.model: expected a model name such as ensemble")
    return LoadPlan(
        profile=profile,
        protocol=protocol,
        input_tokens=int(_number(raw.get("inputTokens", 32), f"{where}.inputTokens", minimum=1, integer=True)),
        output_tokens=int(_number(output, f"{where}.outputTokens", minimum=1, integer=True))
        if output is not None
        else None,
        connections=int(_number(raw.get("connections", 8), f"{where}.connections", minimum=1, integer=True)),
        reconnect_every_s=_duration(raw.get("reconnectEvery", "2s"), f"{where}.reconnectEvery"),
        timeout_s=_duration(raw.get("timeout", "60s"), f"{where}.timeout"),
        model=model,
    )


def parse_scenario(doc: Any, *, source: Path | None = None, base_dir: Path | None = None) -> Scenario:
    """A validated Scenario from parsed YAML; relative values files resolve against `base_dir`."""
    where = source.name if source is not None else "scenario"
    if not isinstance(doc, Mapping):
        raise UsageError(f"{where}: expected a mapping (name, values, load, speed, ...)")
    _keys(doc, _TOP_KEYS, where)
    base = base_dir or (source.parent if source is not None else Path.cwd())
    values = doc.get("values") or []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise UsageError(f"{where}.values: expected a list of values file paths")
    files = []
    for item in values:
        path = Path(item).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise UsageError(f"{where}.values: {item} not found (looked at {path})")
        files.append(path)
    sets = doc.get("set") or []
    if isinstance(sets, str):
        sets = [sets]
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise UsageError(f"{where}.set: expected a list of key=value expressions (Helm --set)")
    if "load" not in doc:
        raise UsageError(f"{where}.load: required (protocol, unit and stages of the load)")
    standin = doc.get("standin") or {}
    if not isinstance(standin, Mapping):
        raise UsageError(f"{where}.standin: expected a mapping of model.standin keys")
    _keys(standin, _STANDIN_KEYS, f"{where}.standin")
    slo = doc.get("slo") or {}
    if not isinstance(slo, Mapping):
        raise UsageError(f"{where}.slo: expected a mapping such as {{p95LatencyMs: 3000}}")
    _keys(slo, {"p95LatencyMs"}, f"{where}.slo")
    p95 = slo.get("p95LatencyMs")
    return Scenario(
        name=str(doc.get("name") or (source.stem if source else "scenario")),
        source=source,
        values_files=tuple(files),
        sets=tuple(sets),
        speed=_number(doc.get("speed", 1), f"{where}.speed"),
        sync_period_s=_duration(doc.get("syncPeriod", "15s"), f"{where}.syncPeriod") or _bad_sync(where),
        load=_load_plan(doc["load"], f"{where}.load"),
        standin=dict(standin),
        slo_p95_ms=_number(p95, f"{where}.slo.p95LatencyMs") if p95 is not None else None,
        settle_s=_duration(doc.get("settle", "120s"), f"{where}.settle"),
        description=str(doc.get("description") or ""),
    )


def _bad_sync(where: str) -> float:
    raise UsageError(f"{where}.syncPeriod: must be above 0 s")


def load_scenario(path: Path | None = None) -> Scenario:
    """Read a scenario file; None: the embedded default."""
    path = Path(path) if path is not None else data_dir() / DEFAULT_SCENARIO
    from llmprep import files

    doc = files.read_yaml(path, "--scenario", UsageError)
    return parse_scenario(doc, source=path)

"""A real Prometheus server on loopback, and the promtool checks, for the lab and the tests.

`PrometheusServer` writes a config (scrape targets, rule files, intervals), starts
`prometheus` on 127.0.0.1 with a TSDB of its own, waits for `/-/ready`, reloads its config
while it runs (`--web.enable-lifecycle`), answers instant and range queries, and stops with
SIGTERM (SIGKILL if it hangs). `check_rules` and `test_rules` run `promtool`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from llmprep import proc
from llmprep.errors import LlmprepError, ProcessError
from llmprep.files import write_text_atomic
from llmprep.proc import ManagedProcess, free_port, port_is_free
from llmprep.units import format_duration

INSTALL_HINT = "apt-get install -y prometheus"


class PrometheusError(LlmprepError):
    """Prometheus or promtool is missing, failed to start, or refused a config, rule or query."""


@dataclass(frozen=True)
class PrometheusInstall:
    """Where the `prometheus` and `promtool` binaries are."""

    prometheus: Path
    promtool: Path


def locate_prometheus(search_path: str | None = None) -> PrometheusInstall:
    """Find `prometheus` and `promtool` on PATH (or `search_path`); one-line error if missing."""
    found: dict[str, Path] = {}
    for name in ("prometheus", "promtool"):
        where = shutil.which(name, path=search_path)
        if where is None:
            raise PrometheusError(f"{name} not found on PATH; install it with: {INSTALL_HINT}")
        found[name] = Path(where)
    return PrometheusInstall(prometheus=found["prometheus"], promtool=found["promtool"])


def duration(seconds: float) -> str:
    """A Prometheus duration string: 1.0 -> '1s', 0.5 -> '500ms', 90 -> '90s'."""
    try:
        return format_duration(seconds)
    except ValueError as exc:
        raise PrometheusError(str(exc)) from None


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint to scrape; `labels` become target labels (as a PodMonitor sets namespace and pod)."""

    address: str
    job: str = "triton"
    labels: Mapping[str, str] = field(default_factory=dict)
    interval_s: float | None = None
    metrics_path: str = "/metrics"


@dataclass(frozen=True)
class Sample:
    """One series of an instant query result."""

    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query result: (unix time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


def render_config(
    targets: Iterable[ScrapeTarget],
    rule_files: Iterable[Path],
    *,
    scrape_interval_s: float,
    evaluation_interval_s: float,
) -> str:
    """The prometheus.yml text for these targets and rule files (one scrape job per job name)."""
    jobs: dict[str, dict[str, Any]] = {}
    for target in targets:
        interval = target.interval_s or scrape_interval_s
        key = target.job
        job = jobs.get(key)
        if job is None:
            job = {
                "job_name": target.job,
                "scrape_interval": duration(interval),
                "scrape_timeout": duration(interval),
                "metrics_path": target.metrics_path,
                "static_configs": [],
            }
            jobs[key] = job
        elif job["scrape_interval"] != duration(interval) or job["metrics_path"] != target.metrics_path:
            raise PrometheusError(
                f"scrape job {target.job!r}: every target of one job needs the same interval and metrics path"
            )
        entry: dict[str, Any] = {"targets": [target.address]}
        if target.labels:
            entry["labels"] = dict(target.labels)
        job["static_configs"].append(entry)
    config = {
        "global": {
            "scrape_interval": duration(scrape_interval_s),
            "scrape_timeout": duration(scrape_interval_s),
            "evaluation_interval": duration(evaluation_interval_s),
        },
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": list(jobs.values()),
    }
    return yaml.safe_dump(config, sort_keys=False)


class PrometheusServer(ManagedProcess):
    """A `prometheus` process on 127.0.0.1 with a generated config and its own TSDB.

    Use as a context manager: `with PrometheusServer(targets=[...], rule_files=[...]) as prom:`
    starts it and waits for `/-/ready`; leaving the block stops it and removes what it created.
    """

    name = "prometheus"
    error = PrometheusError
    poll_s = 0.05
    tail_lines = 6

    def __init__(
        self,
        *,
        targets: Iterable[ScrapeTarget] = (),
        rule_files: Iterable[Path] = (),
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        port: int | None = None,
        workdir: Path | None = None,
        storage_path: Path | None = None,
        install: PrometheusInstall | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.install = install or locate_prometheus()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="llmprep-prometheus-"))
        super().__init__(self.workdir / "prometheus.log")
        self.targets: list[ScrapeTarget] = list(targets)
        self.rule_files: list[Path] = [Path(p) for p in rule_files]
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self._fixed_port = port
        self.port = port or 0
        self.storage_path = Path(storage_path) if storage_path is not None else self.workdir / "data"
        self.config_path = self.workdir / "prometheus.yml"
        self.extra_args = list(extra_args)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """Write prometheus.yml for the current targets and rule files (atomically)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            self.config_path,
            render_config(
                self.targets,
                self.rule_files,
                scrape_interval_s=self.scrape_interval_s,
                evaluation_interval_s=self.evaluation_interval_s,
            ),
        )
        return self.config_path

    def command(self) -> list[str]:
        return [
            str(self.install.prometheus),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_path}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start the server and wait until `/-/ready` answers; retry on a port taken meanwhile."""
        self.write_config()
        self.storage_path.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            elif not port_is_free(self.port):
                raise PrometheusError(f"port {self.port} on 127.0.0.1 is taken; choose another port")
            self.spawn(self.command())
            try:
                self.wait_ready(timeout)
                return self
            except PrometheusError:
                if attempt + 1 < attempts and "address already in use" in self.log_tail(20):
                    self.stop(remove=False)
                    continue
                self.stop(remove=False)
                raise
        raise AssertionError("unreachable")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll `/-/ready`; fail with the log's tail if the process exits or never gets ready."""
        super().wait_ready(timeout)

    def stop(self, grace: float = 10.0, *, remove: bool = True) -> int | None:
        """SIGTERM, SIGKILL after `grace` seconds; then remove the work folder if we made it."""
        code = self.terminate(grace)
        if remove and self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- configuration while running ------------------------------------------------------------
    def reload(self) -> None:
        """Rewrite the config and ask the running server to load it (POST /-/reload)."""
        self.write_config()
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise PrometheusError(f"prometheus refused the new config: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"cannot reach prometheus at {self.url} to reload: {exc}") from None

    def set_targets(self, targets: Iterable[ScrapeTarget], *, wait_s: float = 20.0) -> None:
        """Replace the scrape targets, reload, and wait until Prometheus's active targets match.

        Target discovery applies a new config asynchronously (batched every few seconds), so
        without the wait a caller could still see, and get samples from, a removed target.
        """
        self.targets = list(targets)
        self.reload()
        if wait_s > 0:
            self.wait_targets(wait_s)

    def wait_targets(self, timeout: float = 20.0) -> None:
        """Poll /api/v1/targets until its active targets are exactly the configured ones."""
        wanted = sorted(t.address for t in self.targets)
        deadline = time.monotonic() + timeout
        while True:
            active = sorted(str(t["discoveredLabels"].get("__address__", "")) for t in self.active_targets())
            if active == wanted:
                return
            if time.monotonic() >= deadline:
                raise PrometheusError(f"after {timeout:g} s prometheus scrapes {active}, not {wanted}")
            time.sleep(0.1)

    def add_target(self, target: ScrapeTarget) -> None:
        self.set_targets([*self.targets, target])

    def remove_target(self, address: str) -> None:
        """Stop scraping every target at `address` (its series go stale, as a deleted pod's do)."""
        self.set_targets([t for t in self.targets if t.address != address])

    def set_rule_files(self, rule_files: Iterable[Path]) -> None:
        self.rule_files = [Path(p) for p in rule_files]
        self.reload()

    # -- HTTP API --------------------------------------------------------------------------------
    def api(self, path: str, params: Mapping[str, str | float | Sequence[str]] | None = None) -> Any:
        """GET /api/v1/<path>; return `data`, or raise PrometheusError with the server's error."""
        query = urllib.parse.urlencode(
            [(k, str(x)) for k, v in (params or {}).items() for x in (v if isinstance(v, list | tuple) else [v])]
        )
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise PrometheusError(f"prometheus answered HTTP {exc.code} to {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"cannot reach prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query; a scalar result comes back as one sample without labels."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", params)
        kind, result = data["resultType"], data["result"]
        if kind == "vector":
            return [Sample(dict(r["metric"]), float(r["value"][1]), float(r["value"][0])) for r in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]), float(result[0]))]
        raise PrometheusError(f"query {expr!r} returned a {kind}, not an instant vector")

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
        """Range query over [start, end] (unix seconds) every `step_s` seconds."""
        data = self.api("query_range", {"query": expr, "start": start, "end": end, "step": step_s})
        return [RangeSeries(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def series(self, match: str, start: float | None = None, end: float | None = None) -> list[dict[str, str]]:
        """The label sets of series matching a selector (/api/v1/series), as the adapter discovers them."""
        params: dict[str, str | float] = {"match[]": match}
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        return [dict(s) for s in self.api("series", params)]

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", {"state": "active"})["activeTargets"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def wait_for(
        self, expr: str, accept: Callable[[list[Sample]], bool] = bool, timeout: float = 30.0, interval: float = 0.2
    ) -> list[Sample]:
        """Poll an instant query until `accept(result)` holds; never sleep a fixed time."""
        deadline = time.monotonic() + timeout
        result: list[Sample] = []
        while True:
            result = self.query(expr)
            if accept(result):
                return result
            if time.monotonic() >= deadline:
                raise PrometheusError(f"after {timeout:g} s the query {expr!r} still returned {len(result)} series")
            time.sleep(interval)


# -- promtool ---------------------------------------------------------------------------------------
def _promtool(args: Sequence[str | Path], what: str, install: PrometheusInstall | None) -> list[str]:
    tool = (install or locate_prometheus()).promtool
    try:
        return proc.run([tool, *args], timeout=120)
    except ProcessError as exc:
        raise PrometheusError(f"{what}: {exc}") from None


def check_rules(path: Path, install: PrometheusInstall | None = None) -> list[str]:
    """`promtool check rules PATH`: raise PrometheusError with its findings if the file is invalid."""
    return _promtool(["check", "rules", path], f"rules in {path} do not check", install)


def test_rules(path: Path, install: PrometheusInstall | None = None) -> list[str]:
    """`promtool test rules PATH`: raise PrometheusError with the mismatch if a case fails."""
    return _promtool(["test", "rules", path], f"rule tests in {path} fail", install)


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def create_blocks(openmetrics: Path, storage_path: Path, install: PrometheusInstall | None = None) -> list[str]:
    """Backfill TSDB blocks from an OpenMetrics file (`promtool tsdb create-blocks-from openmetrics`)."""
    storage_path.mkdir(parents=True, exist_ok=True)
    return _promtool(
        ["tsdb", "create-blocks-from", "openmetrics", openmetrics, storage_path],
        f"cannot import {openmetrics} into {storage_path}",
        install,
    )

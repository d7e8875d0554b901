"""The Hugging Face token goes to the Hub and nowhere else: a canary token is looked for in logs, process
arguments (as `ps` shows them to every user), child environments, files written, rendered manifests and
reports. The Hub is a fake on 127.0.0.1 that records the Authorization header it receives, so each test
also proves the token was really used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import IMAGE, MODEL_FILES, ids
from tests.conftest import ROOT, free_port, run_cli
from tests.reliability.conftest import CANARY, MARKER, REPO, Bench, FakeHub, pids_with_marker

SOURCES = ["--token-file", "HF_TOKEN"]


def token_file(tmp: Path, mode: int = 0o600) -> Path:
    path = tmp / "secret" / "password"
    path.parent.mkdir(exist_ok=True)
    path.write_text(CANARY + "\n")
    path.chmod(mode)
    return path


def online_env(bench: Bench, hub: FakeHub, **extra: str) -> dict[str, str]:
    return {
        **bench.release.env,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": "",
        **extra,
    }


def files_containing(root: Path, needle: str, skip: Path | None = None) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path != skip:
            try:
                if needle.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def prepare_online(bench: Bench, hub: FakeHub, source: str, tmp: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    args = ["prepare", "--set", f"model.name={REPO}", "--cache", str(bench.cache_dir), "--json"]
    env = online_env(bench, hub, LLMPREP_DOUBLE_SLEEP="2")
    if source == "--token-file":
        args += ["--token-file", str(token_file(tmp))]
    else:
        env["HF_TOKEN"] = CANARY
    run_id = f"secrets-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmprep.cli", *args],
        cwd=ROOT,
        text=True,
        env={**os.environ, **env, MARKER: run_id},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    return proc, run_id, args


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_prepare_sends_the_token_to_the_hub_only_never_to_logs_arguments_or_files(
    bench: Bench, fake_hub: FakeHub, tmp_path: Path, source: str, no_stray_processes: list[str]
) -> None:
    fake_hub.mode["delay"] = 0.2  # the download takes a moment, so `ps` sees it too
    proc, run_id, _args = prepare_online(bench, fake_hub, source, tmp_path)
    no_stray_processes.append(run_id)
    ps_lines: list[str] = []
    child_envs: list[bytes] = []
    samples = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        ps_lines += subprocess.run(
            ["ps", "-eww", "-o", "args="], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()
        for pid in pids_with_marker(run_id):
            if pid != proc.pid:
                try:
                    child_envs.append(Path(f"/proc/{pid}/environ").read_bytes())
                except OSError:
                    pass
        samples += 1
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    seen_children = [line for line in ps_lines if "trtllm-build" in line or "convert_checkpoint" in line]
    print(
        f"\n{source}: {samples} ps samples, {len(seen_children)} child command lines seen, "
        f"{len(fake_hub.requests)} Hub requests"
    )

    authorised = [r for r in fake_hub.requests if r[2] == f"Bearer {CANARY}"]
    assert authorised and all(CANARY not in path for _method, path, _auth in fake_hub.requests)
    assert seen_children  # ps did see the build running
    assert CANARY not in out + err
    assert [line for line in ps_lines if CANARY in line] == []
    assert files_containing(bench.root, CANARY, skip=tmp_path / "secret" / "password") == []
    if source == "--token-file":  # the token lives in llmprep's memory only: the build tools never get it
        assert child_envs and not any(CANARY.encode() in env for env in child_envs)


HUB_FAILURES = [
    (401, "", "the Hub rejected the token (HTTP 401)"),
    (403, "GatedRepo", "gated repository; the token has no access"),
    (404, "RepoNotFound", "no such repository on the Hugging Face Hub"),
    (500, "", "the Hub answered HTTP 500"),
]


@pytest.mark.parametrize(("status", "code", "message"), HUB_FAILURES, ids=[str(f[0]) for f in HUB_FAILURES])
def test_a_hub_that_echoes_the_token_in_its_error_never_gets_it_printed(
    bench: Bench, fake_hub: FakeHub, tmp_path: Path, status: int, code: str, message: str
) -> None:
    fake_hub.mode["fail"] = (status, code, json.dumps({"error": f"bad credentials: {CANARY}"}))
    done = run_cli(
        "prepare",
        "--set",
        f"model.name={REPO}",
        "--cache",
        str(bench.cache_dir),
        "--token-file",
        str(token_file(tmp_path)),
        env=online_env(bench, fake_hub),
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert CANARY not in done.stdout + done.stderr
    assert any(auth == f"Bearer {CANARY}" for _m, _p, auth in fake_hub.requests)


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o600, False), (0o400, False), (0o640, False), (0o644, True), (0o604, True)]
)
def test_a_token_file_every_user_can_read_is_warned_about(
    bench: Bench, tmp_path: Path, mode: int, warned: bool
) -> None:
    secret = token_file(tmp_path, mode)
    done = run_cli(
        "download",
        "--set",
        f"model.name={REPO}",
        "--cache",
        str(bench.cache_dir),
        "--hub-cache",
        str(bench.hub_root),
        "--token-file",
        str(secret),
        env=bench.release.env,
    )
    assert done.returncode == 0, done.stderr
    assert ("readable by every user" in done.stderr) is warned
    assert CANARY not in done.stdout + done.stderr


def test_a_token_file_that_cannot_be_read_is_a_one_line_usage_error(bench: Bench, tmp_path: Path) -> None:
    done = run_cli(
        "download",
        "--set",
        f"model.name={REPO}",
        "--cache",
        str(bench.cache_dir),
        "--token-file",
        str(tmp_path / "no-such-secret"),
        env=bench.release.env,
    )
    assert done.returncode == 2 and "--token-file" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- manifests, serve plans, reports

CHART_CASES = [[], *([chart.CHART_DIR / "values.yaml", f] for f in MODEL_FILES)]


@pytest.mark.parametrize("files", CHART_CASES, ids=["defaults", *ids(MODEL_FILES)])
def test_rendered_manifests_carry_the_secret_name_never_the_token(
    files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", CANARY)  # a render must not pick anything up from the environment
    values = chart.merge_values(files, [f"triton.image.name={IMAGE}", "model.pullSecret=hf-model-pull"])
    objects = chart.render(values)
    text = json.dumps(objects) + chart.notes(values)
    assert CANARY not in text
    pod = next(o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet"))["spec"]
    pod = pod.get("template", pod.get("leaderWorkerTemplate", {}).get("workerTemplate", {}))["spec"]
    volumes = [v for v in pod["volumes"] if "secret" in v and v["secret"]["secretName"] == "hf-model-pull"]
    assert len(volumes) == 1 and volumes[0]["secret"]["defaultMode"] & 0o077 == 0  # owner-only, as resolve_token wants
    for container in pod["containers"] + pod.get("initContainers", []):
        assert all("HF_TOKEN" != e["name"] for e in container.get("env", [])), container["name"]


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("model.hfToken", "'hfToken'"),
        ("model.token", "'token'"),
        ("huggingface.token", "'huggingface'"),
        ("hfToken", "'hfToken'"),
    ],
)
def test_a_token_given_as_a_chart_value_is_rejected_without_echoing_it(key: str, named: str) -> None:
    with pytest.raises(SpecError) as info:
        chart.render(chart.merge_values([], [f"triton.image.name={IMAGE}", f"{key}={CANARY}"]))
    assert named in str(info.value) and CANARY not in str(info.value)


def test_serve_forwards_the_token_variable_by_name_only(tmp_path: Path) -> None:
    spec = tmp_path / "model.yaml"
    spec.write_text("model:\n  name: gpt2\n  tensorrtLlm:\n    runtime: engine\n    parallelism: {tensor: 2}\n")
    done = run_cli(
        "serve",
        "--spec",
        str(spec),
        "--repository",
        str(ROOT / "tests" / "data" / "gate_repo"),
        "--dry-run",
        "--json",
        env={"HF_TOKEN": CANARY},
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert Path(plan["argv"][0]).name == "mpirun"
    assert CANARY not in done.stdout + done.stderr


def test_load_reports_never_carry_the_token(tmp_path: Path) -> None:
    report, table = tmp_path / "run.json", tmp_path / "run.csv"
    done = run_cli(
        "load",
        "--url",
        f"127.0.0.1:{free_port()}",
        "--duration",
        "1s",
        "--timeout",
        "2",
        "--report",
        str(report),
        "--csv",
        str(table),
        env={"HF_TOKEN": CANARY},
        timeout=60,
    )
    assert done.returncode == 1
    assert CANARY not in done.stdout + done.stderr
    assert files_containing(tmp_path, CANARY) == []


GARBLED_INFO = [
    ("<html>maintenance</html>", "not JSON"),
    ('{"id": "acme/tiny-llama", "sha": "abc", "siblings": [{"name": "config.json"}]}', "a sibling without rfilename"),
    ('{"id": "acme/tiny-llama", "sha": "abc", "siblings": "config.json"}', "siblings not a list"),
    ('["acme/tiny-llama"]', "a list"),
]


@pytest.mark.parametrize(("body", "what"), GARBLED_INFO, ids=[g[1] for g in GARBLED_INFO])
def test_a_garbled_answer_from_the_hub_is_one_line_without_a_traceback(
    bench: Bench, fake_hub: FakeHub, tmp_path: Path, body: str, what: str
) -> None:
    fake_hub.mode["info"] = body
    done = run_cli(
        "download",
        "--set",
        f"model.name={REPO}",
        "--cache",
        str(bench.cache_dir),
        "--token-file",
        str(token_file(tmp_path)),
        env=online_env(bench, fake_hub),
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "could not be read" in errors[0] or "did not say which commit" in errors[0]
    assert CANARY not in done.stdout + done.stderr
    assert not any(bench.cache_dir.glob("hf/**/config.json"))  # nothing that looks like a checkpoint

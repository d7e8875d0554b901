from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmprep.artifacts import cache, inventory, prepare
from llmprep.errors import BuildError, CacheError
from llmprep.spec import ModelSpec, parse_spec
from tests.conftest import ROOT, run_cli
from tests.doubles import H100, Release, install_release, make_hub_cache, tiny_checkpoint_files

REPO = "acme/tiny-llama"


def spec_of(**model: object) -> ModelSpec:
    return parse_spec({"gpu": ["NVIDIA-H100-80GB-HBM3"], "model": {"name": REPO, **model}})


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    make_hub_cache(root, REPO, tiny_checkpoint_files())
    return root


def opts_for(rel: Release, hub_root: Path) -> prepare.Options:
    return prepare.Options(offline=True, hub_cache=hub_root, examples_dir=rel.examples)


@pytest.mark.parametrize(("kind", "runtime"), [("engine", "engine"), ("pytorch", "pytorch")])
def test_prepare_downloads_builds_and_writes_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path, kind: str, runtime: str
) -> None:
    rel = install_release(tmp_path, kind)
    rel.apply(monkeypatch)
    result = prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    assert result.spec.runtime == runtime
    assert result.built
    assert result.artifact_dir == tmp_path / "cache" / "engines" / result.key
    assert result.manifest["inputs"]["trtllmVersion"] == rel.version
    assert result.manifest["inputs"]["gpuProduct"] == "NVIDIA-H100-80GB-HBM3"
    assert cache.verify_entry(result.artifact_dir, deep=True)
    assert result.repository_dir is not None and result.repository_dir.parent == tmp_path / "cache" / "repos"
    assert (result.repository_dir / cache.REPO_MANIFEST).is_file()


def test_warm_prepare_does_no_download_and_no_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path
) -> None:
    rel = install_release(tmp_path, "engine")
    rel.apply(monkeypatch)
    cold = prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    # No Hub cache at all now: a warm run must not need one.
    warm_opts = prepare.Options(offline=True, hub_cache=tmp_path / "no-hub", examples_dir=rel.examples)
    started = time.perf_counter()
    warm = prepare.prepare(spec_of(), tmp_path / "cache", opts=warm_opts)
    took = time.perf_counter() - started
    print(f"\nwarm prepare took {took * 1000:.0f} ms (cold build included {len(rel.calls())} tool runs)")
    assert (warm.key, warm.built, warm.repository_dir) == (cold.key, False, cold.repository_dir)
    assert len(rel.calls("trtllm-build")) == 1


def test_a_changed_limit_builds_a_new_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path) -> None:
    rel = install_release(tmp_path, "engine")
    rel.apply(monkeypatch)
    first = prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    second = prepare.prepare(spec_of(tensorrtLlm={"maxBatchSize": 4}), tmp_path / "cache", opts=opts_for(rel, hub_root))
    assert first.key != second.key
    assert len(rel.calls("trtllm-build")) == 2


def test_a_repository_option_changes_only_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path
) -> None:
    rel = install_release(tmp_path, "engine")
    rel.apply(monkeypatch)
    first = prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    second = prepare.prepare(spec_of(repository={"decoupled": False}), tmp_path / "cache", opts=opts_for(rel, hub_root))
    assert first.key == second.key
    assert first.repository_dir != second.repository_dir


def test_skip_conversion_reuses_an_existing_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path
) -> None:
    rel = install_release(tmp_path, "engine")
    rel.apply(monkeypatch)
    made = prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    again = prepare.prepare(spec_of(skipConversion=True), tmp_path / "cache", opts=opts_for(rel, hub_root))
    assert again.artifact_dir == made.artifact_dir
    assert len(rel.calls("trtllm-build")) == 1


def test_skip_conversion_without_an_artifact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no checkpoint in .*; run `llmprep prepare`"):
        prepare.prepare(spec_of(skipConversion=True), tmp_path / "cache")


def test_find_prepared_works_on_a_machine_without_gpus_or_tensorrt_llm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path
) -> None:
    with monkeypatch.context() as patched:
        rel = install_release(tmp_path, "engine")
        rel.apply(patched)
        made = prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    found = prepare.find_prepared(spec_of(), tmp_path / "cache")
    assert (found.key, found.spec.runtime, found.repository_dir) == (made.key, "engine", made.repository_dir)


def test_find_prepared_does_not_confuse_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path) -> None:
    rel = install_release(tmp_path, "engine")
    rel.apply(monkeypatch)
    prepare.prepare(spec_of(), tmp_path / "cache", opts=opts_for(rel, hub_root))
    with pytest.raises(CacheError, match="no prepared artifact .* matches this spec"):
        prepare.find_prepared(spec_of(tensorrtLlm={"dataType": "bfloat16"}), tmp_path / "cache")


def test_too_few_gpus_are_refused_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_root: Path
) -> None:
    rel = install_release(tmp_path, "engine", gpus=[H100])
    rel.apply(monkeypatch)
    with pytest.raises(BuildError, match="tensor 2 × pipeline 1 needs 2 GPUs, this machine has 1 visible"):
        prepare.prepare(
            spec_of(tensorrtLlm={"parallelism": {"tensor": 2}}), tmp_path / "cache", opts=opts_for(rel, hub_root)
        )
    assert rel.calls() == []


def test_prepare_command_refuses_engine_on_a_pytorch_only_release(tmp_path: Path, hub_root: Path) -> None:
    rel = install_release(tmp_path, "pytorch")
    result = run_cli(
        "prepare",
        "--set",
        f"model.name={REPO}",
        "--set",
        "model.tensorrtLlm.runtime=engine",
        "--cache",
        str(tmp_path / "cache"),
        "--hub-cache",
        str(hub_root),
        env=rel.env,
    )
    assert result.returncode == 2
    assert "engine needs TensorRT-LLM 1.2.1 or earlier" in result.stderr
    assert "installed TensorRT-LLM is 1.3.0" in result.stderr


def _prepare_process(tmp_path: Path, rel: Release, hub_root: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmprep.cli",
            "prepare",
            "--set",
            f"model.name={REPO}",
            "--cache",
            str(tmp_path / "cache"),
            "--hub-cache",
            str(hub_root),
            "--json",
        ],
        cwd=ROOT,
        env={**os.environ, **rel.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_four_concurrent_prepares_build_once_and_all_succeed(tmp_path: Path, hub_root: Path) -> None:
    rel = install_release(tmp_path, "engine")
    procs = [_prepare_process(tmp_path, rel, hub_root, LLMPREP_DOUBLE_SLEEP="3") for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _out, err in outputs]
    results = [json.loads(out) for out, _err in outputs]
    assert len({r["key"] for r in results}) == 1
    assert sorted(r["built"] for r in results) == [False, False, False, True]
    assert len(rel.calls("convert")) == 1
    assert len(rel.calls("trtllm-build")) == 1


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_a_build_killed_midway_is_never_served_and_the_next_run_rebuilds(tmp_path: Path, hub_root: Path) -> None:
    rel = install_release(tmp_path, "engine")
    victim = _prepare_process(tmp_path, rel, hub_root, LLMPREP_DOUBLE_SLEEP="30")
    engines = tmp_path / "cache" / "engines"
    _wait_for(lambda: any(engines.glob("*.partial-*/rank0.engine")))
    # The pod dies: llmprep and the build tool it started, with no chance to clean up.
    os.killpg(victim.pid, signal.SIGKILL)
    for call in rel.calls("trtllm-build"):
        try:
            os.kill(call["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    partial_states = {e.state for e in inventory.list_entries(tmp_path / "cache") if e.kind == "engine"}
    assert partial_states == {"partial"}
    with pytest.raises(CacheError):
        prepare.find_prepared(spec_of(), tmp_path / "cache")

    again = _prepare_process(tmp_path, rel, hub_root)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    result = json.loads(out)
    assert result["built"] is True
    assert len(rel.calls("trtllm-build")) == 2
    assert [p.name for p in engines.iterdir() if p.is_dir()] == [result["key"]]
    assert cache.verify_entry(engines / result["key"], deep=True)

"""The artifact cache under the failures a shared volume sees: many pods at once, pods killed mid-build,
bytes that rot, a volume that fills up. Real `llmprep prepare` processes, real locks and renames;
only TensorRT-LLM is the double (tests/doubles)."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from llmprep.artifacts import cache, hub, prepare
from llmprep.errors import CacheError
from llmprep.spec import parse_spec
from tests.reliability.conftest import REPO, Bench, broken_looking_valid, entry_dirs, kill_tree, leftovers

SPEC = parse_spec({"model": {"name": REPO}})  # what `prepare --set model.name=REPO` reads: the same keys


def recover(bench: Bench) -> prepare.Prepared:
    """The next pod's init container: the same prepare, in this process (the double runs as child processes)."""
    opts = prepare.Options(offline=True, hub_cache=bench.hub_root, examples_dir=bench.release.examples)
    return prepare.prepare(SPEC, bench.cache_dir, opts=opts)


def assert_served_entry_is_whole(result: prepare.Prepared) -> None:
    assert cache.verify_entry(result.artifact_dir, deep=True)
    assert result.repository_dir is not None
    assert cache.verify_entry(result.repository_dir, deep=True, manifest_name=cache.REPO_MANIFEST)


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_eight_concurrent_prepares_on_one_cache_build_exactly_once(bench: Bench, no_stray_processes: list[str]) -> None:
    started = [bench.start(env={"LLMPREP_DOUBLE_SLEEP": "2"}) for _ in range(8)]
    no_stray_processes += [run_id for _proc, run_id in started]
    outputs = [proc.communicate(timeout=180) for proc, _run_id in started]
    assert [proc.returncode for proc, _ in started] == [0] * 8, [err[-500:] for _out, err in outputs]
    results = [json.loads(out) for out, _err in outputs]
    print(
        f"\n8 concurrent prepares: built={Counter(r['built'] for r in results)}, "
        f"convert runs={len(bench.release.calls('convert'))}, trtllm-build runs={bench.builds()}"
    )
    assert len({(r["key"], r["artifactDir"], r["repositoryDir"]) for r in results}) == 1
    assert sorted(r["built"] for r in results) == [False] * 7 + [True]
    assert (len(bench.release.calls("convert")), bench.builds()) == (1, 1)
    assert broken_looking_valid(bench.cache_dir) == [] and leftovers(bench.cache_dir) == []


# --------------------------------------------------------------------------- kill -9


def stage_after_kill(cache_dir: Path) -> str:
    """How far the killed run got, read from what it left on the volume."""
    engines = [p for p, manifest in entry_dirs(cache_dir) if manifest == cache.MANIFEST]
    repos = [p for p, manifest in entry_dirs(cache_dir) if manifest == cache.REPO_MANIFEST]
    if repos:
        return "finished"
    if engines and any((cache_dir / cache.REPOS).glob("*.partial-*")):
        return "engine done, repository mid-write"
    if engines:
        return "engine done, repository not started"
    if any((cache_dir / cache.ENGINES).glob("*.partial-*")):
        return "mid-build"
    return "before the build"


TRIALS = 20
# Kill points: a random delay after one of three moments, so every step is hit whatever the machine's speed.
ANCHORS = ("start", "a partial build directory appears", "the engine entry appears", "the repository's staging appears")


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_at_random_points_never_serves_a_partial_entry_and_the_next_run_recovers(
    bench: Bench, no_stray_processes: list[str]
) -> None:
    # A cold run takes ~2-3 s here (start-up, download, convert, a 1 s sleep-based build, repository).
    rng = random.Random(9)
    engines, repos = bench.cache_dir / cache.ENGINES, bench.cache_dir / cache.REPOS
    moments: dict[str, Callable[[], bool]] = {
        ANCHORS[0]: lambda: True,
        ANCHORS[1]: lambda: any(engines.glob("*.partial-*")),
        ANCHORS[2]: lambda: any(p.is_dir() and "." not in p.name for p in engines.glob("*")),
        ANCHORS[3]: lambda: any(repos.glob(".*.partial-*")),
    }
    stages: Counter[str] = Counter()
    rebuilt = 0
    for trial in range(TRIALS):
        for path in (bench.cache_dir, bench.release.log):
            if path.exists():
                path.rename(path.with_name(f"{path.name}.trial{trial}"))
        anchor = ANCHORS[trial % len(ANCHORS)]
        proc, run_id = bench.start(env={"LLMPREP_DOUBLE_SLEEP": "1"})
        no_stray_processes.append(run_id)
        wait_for(moments[anchor], proc)
        time.sleep(rng.uniform(0, {ANCHORS[0]: 2.5, ANCHORS[3]: 0.05}.get(anchor, 0.8)))
        kill_tree(run_id)
        proc.communicate(timeout=30)
        stages[stage_after_kill(bench.cache_dir)] += 1

        # Nothing that looks finished may be partial, and the server side never picks up a partial entry.
        assert broken_looking_valid(bench.cache_dir) == [], f"trial {trial}"
        try:
            found = prepare.find_prepared(SPEC, bench.cache_dir)
        except CacheError:
            pass
        else:
            assert cache.verify_entry(found.artifact_dir, deep=True), f"trial {trial}"

        result = recover(bench)
        rebuilt += result.built
        assert_served_entry_is_whole(result)
        assert leftovers(bench.cache_dir) == [], f"trial {trial}"
    print(
        f"\nkill -9 trials: {TRIALS}; what the killed run had finished: {dict(stages)}; recoveries that rebuilt "
        f"the engine: {rebuilt}; recoveries that failed or served a partial entry: 0"
    )
    # The name promises kills mid-build: the anchor on the partial directory (5 trials, a 1 s build,
    # at most 0.8 s later) lands there; a run where none did tested nothing of the kind.
    assert stages["mid-build"] >= 1, dict(stages)
    assert sum(stages.values()) == TRIALS


# --------------------------------------------------------------------------- rot


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def delete(path: Path) -> None:
    path.unlink()


def garble_manifest(path: Path) -> None:
    (path.parent / cache.MANIFEST).write_text('{"key": ')


CORRUPTIONS: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("flipped bytes, same size", flip_bytes, ["--verify"]),
    ("truncated engine", truncate, []),
    ("deleted engine", delete, []),
    ("garbled manifest", garble_manifest, []),
]


@pytest.mark.parametrize(("what", "corrupt", "flags"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupted_engine_is_detected_and_rebuilt_never_served(
    bench: Bench, what: str, corrupt: Callable[[Path], None], flags: list[str]
) -> None:
    first = bench.run()
    assert first.returncode == 0, first.stderr
    artifact = Path(json.loads(first.stdout)["artifactDir"])
    corrupt(artifact / "rank0.engine")
    assert not cache.verify_entry(artifact, deep=True)

    again = bench.run(*flags)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert (result["built"], result["artifactDir"], bench.builds()) == (True, str(artifact), 2)
    assert cache.verify_entry(artifact, deep=True)


def test_the_warm_check_reads_sizes_only_so_flipped_bytes_need_verify(bench: Bench) -> None:
    # Why --verify exists: hashing tens of GB on every pod start would cost minutes (DESIGN: a warm hit is < 1 s).
    first = bench.run()
    artifact = Path(json.loads(first.stdout)["artifactDir"])
    flip_bytes(artifact / "rank0.engine")
    assert cache.verify_entry(artifact) and not cache.verify_entry(artifact, deep=True)
    warm = bench.run()
    assert json.loads(warm.stdout)["built"] is False and bench.builds() == 1


# --------------------------------------------------------------------------- a full volume


def file_size_limit(max_bytes: int) -> Callable[[], None]:
    """Make every write past `max_bytes` in one file fail (EFBIG) in the child and all it starts.

    Stands in for a full volume (ENOSPC) without root or a loop mount: both reach the writer as
    an OSError from write(), after part of the data may be on disk. Python ignores SIGXFSZ, so
    Python writers see the error instead of being killed.
    """

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


# Which step the limit breaks, from the sizes the double writes (tests/doubles/engine_release):
# converted config.json ~200 B, rank0.engine 210 B, engine config.json ~380 B, manifest.json ~770 B,
# repository files up to ~22 KB.
FULL_AT = [
    (100, "convert_checkpoint.py", "checkpoint conversion failed"),
    (300, "trtllm-build", "engine build failed"),
    (600, "the manifest", "engines/"),
    (8192, "the model repository", "repos/"),
]


def own_traceback(stderr: str) -> bool:
    """A traceback through llmprep's code (the build tool's own traceback is part of its quoted output)."""
    return any(line.strip().startswith('File "') and "/llmprep/" in line for line in stderr.splitlines())


@pytest.mark.parametrize(("limit", "step", "message"), FULL_AT, ids=[f[1] for f in FULL_AT])
def test_a_volume_that_fills_during_the_build_leaves_no_valid_looking_entry(
    bench: Bench, limit: int, step: str, message: str
) -> None:
    downloaded = bench.run("--set", "model.skipConversion=false", env={"LLMPREP_DOUBLE_FAIL": "convert"})
    assert downloaded.returncode == 1  # the checkpoint is in place; the limit then hits the build only
    env = {"LLMPREP_DOUBLE_LOG": ""}  # the double's call log would hit the limit first
    full = bench.run(env=env, preexec_fn=file_size_limit(limit))
    assert full.returncode == 1, full.stderr
    error_lines = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and not own_traceback(full.stderr), full.stderr[-3000:]
    print(f"\nfile-size limit {limit} B ({step}): {error_lines[0][:200]}")
    assert message in error_lines[0]
    assert broken_looking_valid(bench.cache_dir) == [] and leftovers(bench.cache_dir) == []
    try:
        served: prepare.Prepared | None = prepare.find_prepared(SPEC, bench.cache_dir)
    except CacheError:
        served = None
    if served is not None:  # only a finished engine may be found, and no repository beside it
        assert step == "the model repository" and served.repository_dir is None
        assert cache.verify_entry(served.artifact_dir, deep=True)

    after = bench.run(env=env)
    assert after.returncode == 0, after.stderr
    assert_served_entry_is_whole(recover(bench))


def test_a_volume_that_fills_while_the_checkpoint_is_assembled_is_one_line_and_leaves_nothing(bench: Bench) -> None:
    # Files are hard-linked from the Hub cache (no data written); the record of their sizes is the write that fails.
    full = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmprep.cli",
            "download",
            "--set",
            f"model.name={REPO}",
            "--cache",
            str(bench.cache_dir),
            "--hub-cache",
            str(bench.hub_root),
            "--offline",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **bench.release.env},
        timeout=120,
        preexec_fn=file_size_limit(100),
    )
    assert full.returncode == 1, full.stderr
    error_lines = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and not own_traceback(full.stderr), full.stderr[-3000:]
    assert "the volume is full: free space or enlarge it" in error_lines[0]
    assert broken_looking_valid(bench.cache_dir) == [] and leftovers(bench.cache_dir) == []
    assert hub.find_checkpoint(bench.cache_dir, REPO, "main") is None

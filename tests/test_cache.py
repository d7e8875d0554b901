from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmprep.artifacts import build, cache, inventory
from llmprep.errors import CacheError, UsageError
from llmprep.spec import parse_spec
from tests.conftest import run_cli

BASE = build.artifact_inputs(
    parse_spec({"model": {"name": "llama-3-8b"}}).with_runtime("engine"),
    commit="a" * 40,
    gpu_product="NVIDIA-H100-80GB-HBM3",
    trtllm_version="1.2.1",
)


def changed(path: str, value: Any) -> dict[str, Any]:
    inputs = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    target = inputs
    for key in parents:
        target = target[key]
    target[last] = value
    return inputs


def test_the_key_is_short_and_stable_across_runs_and_key_order() -> None:
    reordered = json.loads(json.dumps(BASE, sort_keys=False))
    reordered = dict(reversed(list(reordered.items())))
    assert cache.cache_key(BASE) == cache.cache_key(reordered)
    assert len(cache.cache_key(BASE)) == cache.KEY_LENGTH
    # Pinned: a changed hash would orphan every existing cache entry on users' volumes.
    assert cache.cache_key({"runtime": "engine", "tensor": 1}) == "9d12e738ca334906"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("runtime", "pytorch"),
        ("hfRepo", "meta-llama/Meta-Llama-3-8B-Instruct"),
        ("revision", "b" * 40),
        ("tensor", 2),
        ("pipeline", 2),
        ("dataType", "bfloat16"),
        ("limits.maxBatchSize", 8),
        ("limits.maxInputLen", 1024),
        ("limits.maxSeqLen", 8192),
        ("limits.maxNumTokens", 4096),
        ("options", {"use_paged_context_fmha": True}),
        ("gpuProduct", "NVIDIA-A100-SXM4-40GB"),
        ("trtllmVersion", "1.2.0"),
    ],
)
def test_every_build_input_changes_the_key(field: str, value: Any) -> None:
    assert cache.cache_key(changed(field, value)) != cache.cache_key(BASE)


def test_the_manifest_records_inputs_sizes_and_checksums(tmp_path: Path) -> None:
    def fill(out: Path) -> None:
        (out / "rank0.engine").write_bytes(b"engine")
        (out / "sub").mkdir()
        (out / "sub" / "a.txt").write_text("a")

    entry = cache.ensure_entry(tmp_path / "k1", key="k1", inputs=BASE, build=fill)
    manifest = cache.read_manifest(entry.path)
    assert manifest["inputs"] == BASE
    assert manifest["files"]["rank0.engine"] == {"size": 6, "sha256": hashlib.sha256(b"engine").hexdigest()}
    assert set(manifest["files"]) == {"rank0.engine", "sub/a.txt"}
    assert manifest["created"]


def test_a_second_ensure_reuses_the_entry_without_building(tmp_path: Path) -> None:
    builds: list[Path] = []

    def fill(out: Path) -> None:
        builds.append(out)
        (out / "f").write_text("x")

    first = cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=fill)
    second = cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=fill)
    assert (first.built, second.built, len(builds)) == (True, False, 1)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "f").write_text("longer than before"),
        lambda p: (p / "f").unlink(),
        lambda p: (p / cache.MANIFEST).write_text("{not json"),
        lambda p: (p / cache.MANIFEST).unlink(),
    ],
    ids=["resized file", "missing file", "corrupt manifest", "missing manifest"],
)
def test_a_damaged_entry_is_rebuilt_never_served(tmp_path: Path, damage: Any) -> None:
    def fill(out: Path) -> None:
        (out / "f").write_text("x")

    entry = cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=fill)
    damage(entry.path)
    assert not cache.verify_entry(entry.path)
    again = cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=fill)
    assert again.built and cache.verify_entry(again.path)


def test_deep_verification_catches_same_size_corruption(tmp_path: Path) -> None:
    entry = cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=lambda out: (out / "f").write_text("x"))
    (entry.path / "f").write_text("y")
    assert cache.verify_entry(entry.path)
    assert not cache.verify_entry(entry.path, deep=True)


def test_runtime_caches_are_outside_the_checksums(tmp_path: Path) -> None:
    entry = cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=lambda out: (out / "f").write_text("x"))
    (entry.path / cache.MUTABLE_DIR).mkdir()
    (entry.path / cache.MUTABLE_DIR / "autotuner.json").write_text("{}")
    assert cache.verify_entry(entry.path, deep=True)


def test_a_failed_build_leaves_no_entry_and_no_partial(tmp_path: Path) -> None:
    def fail(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("tool crashed")

    with pytest.raises(RuntimeError):
        cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.lock"]


def test_a_held_lock_times_out_with_a_clear_message(tmp_path: Path) -> None:
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with cache.locked(tmp_path / "k.lock"):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    waits: list[str] = []
    try:
        with pytest.raises(CacheError) as err:
            with cache.locked(tmp_path / "k.lock", timeout=0.3, what="engines/k", on_wait=waits.append):
                pass
    finally:
        release.set()
        holder.join()
    assert "engines/k: another process has held" in str(err.value)
    assert "--lock-timeout" in str(err.value)
    assert waits and "waiting for another process" in waits[0]


def test_a_waiter_reuses_what_the_lock_holder_built(tmp_path: Path) -> None:
    builds: list[int] = []

    def slow(out: Path) -> None:
        builds.append(1)
        time.sleep(0.5)
        (out / "f").write_text("x")

    results: list[cache.Entry] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cache.ensure_entry(tmp_path / "k", key="k", inputs={}, build=slow))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert sorted(r.built for r in results) == [False, False, True]


def _populate(cache_dir: Path) -> None:
    engines = cache_dir / cache.ENGINES
    cache.ensure_entry(
        engines / "aaaa1111",
        key="aaaa1111",
        inputs={"runtime": "engine", "hfRepo": "x/y"},
        build=lambda out: (out / "rank0.engine").write_text("e"),
    )
    cache.ensure_entry(
        engines / "bbbb2222",
        key="bbbb2222",
        inputs={"runtime": "pytorch", "hfRepo": "x/y"},
        build=lambda out: (out / "runtime.json").write_text("{}"),
    )
    cache.ensure_entry(
        cache_dir / cache.REPOS / "cccc3333",
        key="cccc3333",
        inputs={"artifactKey": "aaaa1111"},
        build=lambda out: (out / "config.pbtxt").write_text(""),
        manifest_name=cache.REPO_MANIFEST,
    )
    (engines / "dddd4444.partial-x1y2").mkdir()


def test_ls_marks_partial_and_corrupt_entries(tmp_path: Path) -> None:
    _populate(tmp_path)
    (tmp_path / cache.ENGINES / "bbbb2222" / "runtime.json").unlink()
    states = {(e.kind, e.key): e.state for e in inventory.list_entries(tmp_path)}
    assert states == {
        ("engine", "aaaa1111"): "ok",
        ("engine", "bbbb2222"): "corrupt",
        ("engine", "dddd4444"): "partial",
        ("repo", "cccc3333"): "ok",
    }


def test_rm_of_an_engine_takes_its_repositories_along(tmp_path: Path) -> None:
    _populate(tmp_path)
    removed = inventory.remove_entries(tmp_path, ["aaaa"])
    assert sorted(p.name for p in removed) == ["aaaa1111", "cccc3333"]
    assert {e.key for e in inventory.list_entries(tmp_path)} == {"bbbb2222", "dddd4444"}


def test_rm_broken_removes_only_partial_and_corrupt_entries(tmp_path: Path) -> None:
    _populate(tmp_path)
    (tmp_path / cache.ENGINES / "bbbb2222" / "runtime.json").unlink()
    inventory.remove_entries(tmp_path, [], broken=True)
    assert {e.key for e in inventory.list_entries(tmp_path)} == {"aaaa1111", "cccc3333"}


def test_rm_of_an_unknown_key_is_a_usage_error(tmp_path: Path) -> None:
    _populate(tmp_path)
    with pytest.raises(UsageError, match="cache rm zzz: no entry with that key"):
        inventory.remove_entries(tmp_path, ["zzz"])


def test_cache_ls_and_rm_commands(tmp_path: Path) -> None:
    _populate(tmp_path)
    listed = run_cli("cache", "ls", "--cache", str(tmp_path), "--json")
    assert listed.returncode == 0, listed.stderr
    assert {e["key"] for e in json.loads(listed.stdout)} == {"aaaa1111", "bbbb2222", "cccc3333", "dddd4444"}
    assert run_cli("cache", "rm", "--cache", str(tmp_path), "--all").returncode == 0
    assert json.loads(run_cli("cache", "ls", "--cache", str(tmp_path), "--json").stdout) == []
    empty = run_cli("cache", "rm", "--cache", str(tmp_path))
    assert empty.returncode == 2 and "give --broken or --all" in empty.stderr

"""Prepare a model for serving: download → build → model repository, each step cached.

A warm run finds every step's entry verified and does no network, no build and no write.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.artifacts import build, cache, hub, trtllm
from llmprep.artifacts import gpu as gpu_mod
from llmprep.errors import CacheError
from llmprep.spec import ModelSpec

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class Prepared:
    spec: ModelSpec  # runtime resolved
    key: str  # the artifact's cache key
    checkpoint_dir: Path
    artifact_dir: Path
    manifest: dict[str, Any]
    repository_dir: Path | None  # None: no verified repository in the cache (find_prepared only)
    built: bool = False  # this call built the artifact
    note: str | None = None  # what was not done, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "runtime": self.spec.runtime,
            "checkpointDir": str(self.checkpoint_dir),
            "artifactDir": str(self.artifact_dir),
            "repositoryDir": str(self.repository_dir) if self.repository_dir else None,
            "built": self.built,
            "note": self.note,
            "inputs": self.manifest.get("inputs", {}),
        }


@dataclass(frozen=True)
class Options:
    """How to reach the outside world; the CLI fills these from flags and environment."""

    token: str | None = None
    offline: bool = False
    hub_cache: Path | None = None
    python: str = sys.executable
    examples_dir: Path | None = None
    lock_timeout: float = cache.DEFAULT_LOCK_TIMEOUT
    build_timeout: float | None = None
    on_line: Callable[[str], None] | None = None
    verify: bool = False  # check cached files' SHA-256 checksums before reuse, not only their sizes


def engines_dir(cache_dir: Path) -> Path:
    return cache_dir / cache.ENGINES


def repos_dir(cache_dir: Path) -> Path:
    return cache_dir / cache.REPOS


def repository_key(spec: ModelSpec, artifact_key: str) -> str:
    """Repositories depend on the artifact and on the whole spec (repository options, tokenizer…)."""
    return cache.cache_key({"artifactKey": artifact_key, "spec": spec.to_values()})


def _checkpoint(spec: ModelSpec, cache_dir: Path, opts: Options, progress: Progress) -> hub.Checkpoint:
    found = hub.find_checkpoint(cache_dir, spec.hf_repo, spec.revision, deep=opts.verify)
    if found is not None:
        return found
    progress(f"downloading {hub.shown(spec.hf_repo)}@{hub.shown(spec.revision)}")
    return hub.download(
        spec.hf_repo,
        spec.revision,
        cache_dir,
        token=opts.token,
        offline=opts.offline,
        hub_cache=opts.hub_cache,
        lock_timeout=opts.lock_timeout,
        progress=progress,
        verify=opts.verify,
    )


def _resolve(spec: ModelSpec, env: build.Environment) -> tuple[ModelSpec, str, trtllm.TrtllmInfo]:
    runtime = trtllm.resolve_runtime(spec.runtime, env.trtllm)
    assert env.trtllm is not None
    product = gpu_mod.require_gpus(
        env.gpus, spec.parallelism.gpus, tensor=spec.parallelism.tensor, pipeline=spec.parallelism.pipeline
    )
    return spec.with_runtime(runtime), product, env.trtllm


def build_artifact(
    spec: ModelSpec,
    cache_dir: Path,
    checkpoint: hub.Checkpoint,
    *,
    opts: Options,
    progress: Progress = _quiet,
    env: build.Environment | None = None,
) -> tuple[ModelSpec, cache.Entry]:
    """The verified artifact of `spec` for this machine, built once per key."""
    env = env or build.detect_environment(opts.python)
    resolved, product, info = _resolve(spec, env)
    inputs = build.artifact_inputs(resolved, commit=checkpoint.commit, gpu_product=product, trtllm_version=info.version)
    key = cache.cache_key(inputs)

    def run_build(out_dir: Path) -> None:
        progress(f"building the {resolved.runtime} artifact {key} (TensorRT-LLM {info.version}, {product})")
        build.build_artifact(
            resolved,
            checkpoint.path,
            out_dir,
            info,
            examples_dir=opts.examples_dir,
            on_line=opts.on_line,
            log=opts.on_line,
            timeout=opts.build_timeout,
        )

    entry = cache.ensure_entry(
        engines_dir(cache_dir) / key,
        key=key,
        inputs=inputs,
        build=run_build,
        lock_timeout=opts.lock_timeout,
        on_wait=progress,
        deep=opts.verify,
    )
    return resolved, entry


def _repository(
    spec: ModelSpec, cache_dir: Path, checkpoint_dir: Path, artifact: cache.Entry, *, opts: Options, progress: Progress
) -> Path:
    # Imported here, not at the top: find_prepared (the pod's start, serve/plan.py) needs no templates, and
    # llmprep.repo brings Jinja2 (about 30 ms of imports).
    from llmprep.repo import write_repository

    key = repository_key(spec, artifact.path.name)

    def write(out_dir: Path) -> None:
        progress(f"writing the {spec.runtime} model repository {key}")
        out_dir.rmdir()  # the writer creates it
        write_repository(
            spec, checkpoint_dir=checkpoint_dir, artifact_dir=artifact.path, out_dir=out_dir, engine="real"
        )
        out_dir.mkdir(exist_ok=True)

    entry = cache.ensure_entry(
        repos_dir(cache_dir) / key,
        key=key,
        inputs={"artifactKey": artifact.path.name, "runtime": spec.runtime, "hfRepo": spec.hf_repo},
        build=write,
        lock_timeout=opts.lock_timeout,
        on_wait=progress,
        manifest_name=cache.REPO_MANIFEST,
        deep=opts.verify,
    )
    return entry.path


def prepare(
    spec: ModelSpec,
    cache_dir: Path,
    *,
    token: str | None = None,
    progress: Progress = _quiet,
    opts: Options | None = None,
    env: build.Environment | None = None,
) -> Prepared:
    """Download → build → repository; every step reuses a verified cache entry when there is one."""
    opts = dataclasses.replace(opts or Options(), token=token if token is not None else (opts.token if opts else None))
    # A repo id or revision no folder can hold is refused here, before any progress line or folder.
    hub.checkpoint_dir(cache_dir, spec.hf_repo, spec.revision)
    if spec.skip_conversion:
        found = find_prepared(spec, cache_dir, python=opts.python, env=env)
        if found.repository_dir is not None:
            return found
        artifact = cache.Entry(found.artifact_dir, found.manifest, built=False)
        repo_dir = _repository(found.spec, cache_dir, found.checkpoint_dir, artifact, opts=opts, progress=progress)
        return dataclasses.replace(found, repository_dir=repo_dir)
    checkpoint = _checkpoint(spec, cache_dir, opts, progress)
    resolved, artifact = build_artifact(spec, cache_dir, checkpoint, opts=opts, progress=progress, env=env)
    repo_dir = _repository(resolved, cache_dir, checkpoint.path, artifact, opts=opts, progress=progress)
    return Prepared(
        spec=resolved,
        key=artifact.path.name,
        checkpoint_dir=checkpoint.path,
        artifact_dir=artifact.path,
        manifest=artifact.manifest,
        repository_dir=repo_dir,
        built=artifact.built,
    )


def _matches(inputs: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(inputs.get(k) == v for k, v in want.items() if v is not None)


def find_prepared(
    spec: ModelSpec, cache_dir: Path, *, python: str = sys.executable, env: build.Environment | None = None
) -> Prepared:
    """What `prepare` made for `spec`, without downloading or building; a clear error if absent.

    Matches the manifests' inputs; the GPU product and TensorRT-LLM version count only where
    this machine has them, so a machine without GPUs (the lab, tests) still finds the entry.
    """
    checkpoint = hub.find_checkpoint(cache_dir, spec.hf_repo, spec.revision)
    if checkpoint is None:
        raise CacheError(
            f"{hub.shown(spec.hf_repo)}@{hub.shown(spec.revision)}: no checkpoint in {cache_dir}; run `llmprep prepare` "
            "(model.skipConversion needs an earlier prepare on this cache)"
        )
    if env is None:
        try:
            env = build.detect_environment(python)
        except Exception:  # detection is a nicety here, never a reason to fail
            env = build.unobserved_environment()
    info = env.trtllm
    runtime = spec.runtime
    if runtime == "auto" and info is not None:
        runtime = trtllm.resolve_runtime("auto", info)
    want = build.artifact_inputs(
        spec.with_runtime(runtime),
        commit=checkpoint.commit,
        gpu_product=env.gpus.product,
        trtllm_version=info.version if info else None,
    )
    if runtime == "auto":
        want["runtime"] = None
    candidates: list[tuple[str, Path, dict[str, Any]]] = []
    root = engines_dir(cache_dir)
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir() or "." in path.name:
            continue
        try:
            manifest = cache.read_manifest(path)
        except CacheError:
            continue
        if _matches(manifest.get("inputs", {}), want) and cache.verify_entry(path):
            candidates.append((str(manifest.get("created", "")), path, manifest))
    if not candidates:
        described = json.dumps({k: v for k, v in want.items() if v is not None}, sort_keys=True)
        raise CacheError(f"no prepared artifact in {root} matches this spec ({described}); run `llmprep prepare` first")
    _created, path, manifest = max(candidates, key=lambda c: c[0])
    resolved = spec.with_runtime(manifest["inputs"]["runtime"])
    repo = repos_dir(cache_dir) / repository_key(resolved, path.name)
    repo_dir = repo if cache.verify_entry(repo, manifest_name=cache.REPO_MANIFEST) else None
    return Prepared(
        spec=resolved,
        key=path.name,
        checkpoint_dir=checkpoint.path,
        artifact_dir=path,
        manifest=manifest,
        repository_dir=repo_dir,
    )

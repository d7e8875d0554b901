"""What the cache holds (`llmprep cache ls`) and removing entries from it (`llmprep cache rm`).

Lists engines, model repositories and checkpoints, with partial and corrupt ones marked, and
removes entries under their keys' locks. It reads `cache` (entries and their manifests) and
`hub` (checkpoints), which import neither this module nor each other in a circle.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.artifacts import cache, hub
from llmprep.errors import CacheError, UsageError


@dataclass(frozen=True)
class EntryInfo:
    kind: str  # engine | repo | checkpoint
    key: str
    path: Path
    state: str  # ok | corrupt | partial
    size: int
    created: str | None
    inputs: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "path": str(self.path),
            "state": self.state,
            "size": self.size,
            "created": self.created,
            "inputs": self.inputs,
        }


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


def _keyed_entries(root: Path, kind: str, manifest_name: str) -> list[EntryInfo]:
    out: list[EntryInfo] = []
    if not root.is_dir():
        return out
    for path in sorted(root.iterdir()):
        if not path.is_dir():
            continue
        if ".partial-" in path.name or ".trash-" in path.name:
            out.append(EntryInfo(kind, path.name.split(".")[0], path, "partial", _dir_size(path), None, {}))
            continue
        try:
            manifest = cache.read_manifest(path, manifest_name)
        except CacheError:
            manifest = {}
        state = "ok" if cache.verify_entry(path, manifest_name=manifest_name) else "corrupt"
        out.append(
            EntryInfo(
                kind, path.name, path, state, _dir_size(path), manifest.get("created"), manifest.get("inputs", {})
            )
        )
    return out


def list_entries(cache_dir: Path) -> list[EntryInfo]:
    """Every engine, repository and checkpoint entry, with partial and corrupt ones marked."""
    entries = _keyed_entries(cache_dir / cache.ENGINES, "engine", cache.MANIFEST)
    entries += _keyed_entries(cache_dir / cache.REPOS, "repo", cache.REPO_MANIFEST)
    entries += list_checkpoints(cache_dir)
    return entries


def remove_entries(
    cache_dir: Path, keys: list[str], *, broken: bool = False, everything: bool = False, lock_timeout: float = 10.0
) -> list[Path]:
    """Remove entries by key (or unique key prefix), broken leftovers, or everything.

    Removing an engine also removes the repositories built on it. Each removal holds that
    key's lock, so a running build is never pulled from under its builder.
    """
    entries = list_entries(cache_dir)
    chosen: list[EntryInfo] = []
    for key in keys:
        matches = [e for e in entries if e.key == key] or [e for e in entries if e.key.startswith(key)]
        if not matches:
            raise UsageError(f"cache rm {key}: no entry with that key in {cache_dir} (see `llmprep cache ls`)")
        if len({m.key for m in matches}) > 1:
            raise UsageError(f"cache rm {key}: the prefix matches several keys; give more characters")
        chosen += matches
    if broken:
        chosen += [e for e in entries if e.state != "ok"]
    if everything:
        chosen = list(entries)
    engine_keys = {e.key for e in chosen if e.kind == "engine"}
    chosen += [e for e in entries if e.kind == "repo" and e.inputs.get("artifactKey") in engine_keys]
    removed: list[Path] = []
    for entry in {e.path: e for e in chosen}.values():
        if not entry.path.exists():
            continue
        base = entry.path.name.split(".partial-")[0].split(".trash-")[0]
        lock = entry.path.with_name(f"{base}.lock")
        with cache.locked(lock, timeout=lock_timeout, what=f"{entry.kind} {entry.key}"):
            if entry.path.exists():
                cache.discard(entry.path)
                removed.append(entry.path)
    return removed


def list_checkpoints(cache_dir: Path) -> list[EntryInfo]:
    """Checkpoints in the cache (for `cache ls`); the Hub's own cache is not listed."""
    out: list[EntryInfo] = []
    root = cache_dir / cache.HF
    if not root.is_dir():
        return out
    for meta_or_dir in sorted(root.glob("*/*/*")):
        if not meta_or_dir.is_dir() or meta_or_dir.parts[-3] == hub.HUB_DIR:
            continue
        repo = f"{meta_or_dir.parts[-3]}/{meta_or_dir.parts[-2]}"
        name = meta_or_dir.name
        size = sum(p.stat().st_size for p in meta_or_dir.rglob("*") if p.is_file())
        if ".partial-" in name or ".trash-" in name:
            out.append(EntryInfo("checkpoint", f"{repo}@{name}", meta_or_dir, "partial", size, None, {"hfRepo": repo}))
            continue
        found = hub.find_checkpoint(cache_dir, repo, name.replace("--", "/"))
        inputs = {"hfRepo": repo, "revision": name, "commit": found.commit if found else None}
        out.append(
            EntryInfo("checkpoint", f"{repo}@{name}", meta_or_dir, "ok" if found else "corrupt", size, None, inputs)
        )
    return out

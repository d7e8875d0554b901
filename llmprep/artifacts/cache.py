"""The artifact cache on the shared volume: keyed, locked, built aside, renamed when verified.

Layout under the cache directory:
  hf/<repo>/<revision>/     checkpoints (see llmprep.artifacts.hub)
  engines/<key>/            build artifacts with manifest.json
  repos/<key>/              Triton model repositories with .llmprep-manifest.json
Each entry is built in `<key>.partial-<random>/` while `<key>.lock` is held exclusively
(fcntl), then renamed into place. A directory named `<key>` therefore only ever holds a
complete entry; one whose manifest or files do not verify is rebuilt, never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmprep.errors import CacheError
from llmprep.files import FULL_ERRNOS, ensure_dir, publish_dir, read_json, write_json_atomic
from llmprep.files import check_dir as check_dir  # the directory checks are ground's; --cache callers look here

ENGINES = "engines"
REPOS = "repos"
HF = "hf"
MANIFEST = "manifest.json"
REPO_MANIFEST = ".llmprep-manifest.json"
# Runtime caches (autotuner, torch.compile, Triton kernels) fill after the build: not checksummed.
MUTABLE_DIR = "caches"
KEY_LENGTH = 16
DEFAULT_LOCK_TIMEOUT = 3600.0
POLL_SECONDS = 0.2


def write_error(what: str, folder: Path, exc: OSError) -> CacheError:
    """The one-line error for a failed write of a cache entry (a full volume says so)."""
    hint = "the volume is full: free space or enlarge it" if exc.errno in FULL_ERRNOS else "check the volume"
    return CacheError(f"{what}: cannot write the entry in {folder} ({exc.strerror or exc}); {hint}, then run again")


def cache_key(inputs: Mapping[str, Any]) -> str:
    """A short, stable hash of everything that changes a build's output."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def locked(
    lock_path: Path,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    what: str = "cache entry",
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `lock_path`; wait at most `timeout` seconds for it."""
    ensure_dir(lock_path.parent)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(what, lock_path.parent, exc) from None
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait:
                    on_wait(f"waiting for another process building {what} ({lock_path})")
                    told = True
                if time.monotonic() >= deadline:
                    raise CacheError(
                        f"{what}: another process has held {lock_path} for over {timeout:g} s; "
                        "wait for it, or raise --lock-timeout if its build is just slow"
                    ) from None
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# --------------------------------------------------------------------------- manifests


def _manifest_path(path: Path, manifest_name: str) -> Path:
    return path if path.is_file() or path.suffix == ".json" else path / manifest_name


def read_manifest(path: Path, manifest_name: str = MANIFEST) -> dict[str, Any]:
    """The manifest of an entry (`path` is the entry directory or the manifest file)."""
    target = _manifest_path(Path(path), manifest_name)
    data = read_json(
        target, CacheError, missing="no manifest; the entry is incomplete", unreadable="unreadable manifest"
    )
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or not isinstance(data.get("key"), str):
        raise CacheError(f"{target}: not a llmprep manifest (needs key, inputs, files)")
    return data


def list_files(root: Path, manifest_name: str = MANIFEST) -> dict[str, Path]:
    """Files of an entry by relative path, without its manifest and mutable runtime caches."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != MUTABLE_DIR]
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if rel == manifest_name:
                continue
            out[rel] = Path(dirpath) / name
    return dict(sorted(out.items()))


def write_manifest(
    entry: Path, *, key: str, inputs: Mapping[str, Any], manifest_name: str = MANIFEST
) -> dict[str, Any]:
    """Checksum every file of `entry` and record them with the build inputs."""
    files = {
        rel: {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for rel, path in list_files(entry, manifest_name).items()
    }
    manifest = {
        "key": key,
        "inputs": dict(inputs),
        "files": files,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(entry / manifest_name, manifest)
    return manifest


def verify_entry(path: Path, *, deep: bool = False, manifest_name: str = MANIFEST) -> bool:
    """True when the entry's manifest reads and every recorded file is there with its size.

    `deep` also compares SHA-256 checksums (minutes for large engines, so warm starts skip it).
    """
    path = Path(path)
    try:
        manifest = read_manifest(path, manifest_name)
    except CacheError:
        return False
    if manifest["key"] != path.name:
        return False
    for rel, meta in manifest["files"].items():
        file = path / rel
        try:
            if not file.is_file() or file.stat().st_size != meta.get("size"):
                return False
            if deep and sha256_file(file) != meta.get("sha256"):
                return False
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    path: Path
    manifest: dict[str, Any]
    built: bool


def discard(path: Path) -> None:
    """Remove a directory so that no reader ever sees it half-deleted: rename first."""
    if not path.exists():
        return
    trash = path.with_name(f"{path.name}.trash-{os.urandom(4).hex()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_leftovers(final: Path) -> None:
    """Delete dead builders' `<key>.partial-*` and `<key>.trash-*` (call with the lock held).

    Also `.<key>.partial-*`: the staging folders of writers that build their own output atomically
    inside our partial directory's parent (llmprep.repo), left behind when the process was killed.
    """
    for pattern in (f"{final.name}.partial-*", f"{final.name}.trash-*", f".{final.name}.partial-*"):
        for leftover in final.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def ensure_entry(
    final: Path,
    *,
    key: str,
    inputs: Mapping[str, Any],
    build: Callable[[Path], None],
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    on_wait: Callable[[str], None] | None = None,
    manifest_name: str = MANIFEST,
    deep: bool = False,
) -> Entry:
    """Return the verified entry at `final`, building it first if needed (one builder per key).

    `build(out_dir)` fills a fresh, empty `<key>.partial-*` directory; only after it returns and
    the manifest is written does the directory become `final`. `deep` checks an existing entry's
    SHA-256 checksums too (flipped bytes), not only its manifest and file sizes.
    """
    if verify_entry(final, manifest_name=manifest_name, deep=deep):
        return Entry(final, read_manifest(final, manifest_name), built=False)
    ensure_dir(final.parent)
    with locked(
        final.with_name(f"{key}.lock"), timeout=lock_timeout, what=f"{final.parent.name}/{key}", on_wait=on_wait
    ):
        if verify_entry(final, manifest_name=manifest_name, deep=deep):
            return Entry(final, read_manifest(final, manifest_name), built=False)
        _clean_leftovers(final)
        partial = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=final.parent))
        try:
            build(partial)
            if not partial.is_dir():
                raise CacheError(f"{partial}: the build left no output directory")
            manifest = write_manifest(partial, key=key, inputs=inputs, manifest_name=manifest_name)
            publish_dir(partial, final)  # replaces a corrupt entry, never served
        except OSError as exc:
            # A full volume (ENOSPC, EFBIG, EDQUOT) while writing the entry: one line, nothing left behind.
            shutil.rmtree(partial, ignore_errors=True)
            raise write_error(f"{final.parent.name}/{key}", final.parent, exc) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return Entry(final, manifest, built=True)

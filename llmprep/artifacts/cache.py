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
import errno
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
from llmprep.files import write_json_atomic

ENGINES = "engines"
REPOS = "repos"
HF = "hf"
MANIFEST = "manifest.json"
REPO_MANIFEST = ".llmprep-manifest.json"
# Runtime caches (autotuner, torch.compile, Triton kernels) fill after the build: not checksummed.
MUTABLE_DIR = "caches"
KEY_LENGTH = 16
# Write errors that mean the volume (or the process's file-size limit) is full.
_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
DEFAULT_LOCK_TIMEOUT = 3600.0
POLL_SECONDS = 0.2


def write_error(what: str, folder: Path, exc: OSError) -> CacheError:
    """The one-line error for a failed write of a cache entry (a full volume says so)."""
    hint = "the volume is full: free space or enlarge it" if exc.errno in _FULL else "check the volume"
    return CacheError(f"{what}: cannot write the entry in {folder} ({exc.strerror or exc}); {hint}, then run again")


MIN_FREE_BYTES = 1 << 20  # below this a volume counts as full: nothing we write fits


# Kernel file systems: a path there is never storage (writes fail, or land in memory or in the kernel).
KERNEL_FS = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "configfs",
        "bpf",
        "mqueue",
        "pstore",
        "efivarfs",
        "fusectl",
    }
)
_KERNEL_ROOTS = (Path("/proc"), Path("/sys"))


def _failer(path: Path, what: str) -> Callable[[str, str], CacheError]:
    def fail(reason: str, fix: str) -> CacheError:
        return CacheError(f"{what} {path}: {reason} (running as uid {os.getuid()}); {fix}")

    return fail


def _kernel_fs(path: Path) -> str | None:
    """The kernel file system `path` would live on (proc, sysfs…), or None for storage."""
    path = path.resolve()
    if any(path == root or root in path.parents for root in _KERNEL_ROOTS):
        return "proc" if Path("/proc") in (path, *path.parents) else "sysfs"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fstype = Path("/"), ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (point == path or point in path.parents) and len(point.parts) >= len(best.parts):
            best, fstype = point, fields[2]
    return fstype if fstype in KERNEL_FS else None


def check_dir(path: Path, what: str = "the cache", *, must_exist: bool = False, missing_fix: str = "") -> Path:
    """`path` as a place a cache can be: not on a kernel file system, no file in its way, and (with
    `must_exist`) an existing, readable directory; else a one-line CacheError naming path, uid and fix.
    Writes nothing; `ensure_dir` checks that a writer can write."""
    path = Path(path)
    fail = _failer(path, what)
    fstype = _kernel_fs(path)
    if fstype:
        raise fail(f"on {fstype}, a kernel file system, not storage", "give a directory on a volume with --cache")
    here = path
    while not os.path.exists(here) and here != here.parent:
        here = here.parent
    if not here.is_dir():
        where = "the directory" if here == path else f"a directory ({here})"
        raise fail(f"a file stands where {where} should be", "remove it or give another --cache")
    if here != path and must_exist:
        raise fail("does not exist", missing_fix or "give an existing cache directory with --cache")
    if here == path and not os.access(path, os.R_OK | os.X_OK):
        raise fail("not readable", f"make it readable for uid {os.getuid()} or give another --cache")
    return path


def ensure_dir(path: Path, what: str = "the cache") -> Path:
    """`path` as an existing, writable directory with room, or a one-line CacheError naming path, uid and fix."""
    path = Path(path)
    fail = _failer(path, what)
    check_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise fail("a file stands where the directory should be", "remove it or give another --cache") from None
    except OSError as exc:
        raise _dir_error(exc, fail) from None
    if not path.is_dir():
        raise fail("not a directory", "remove it or give another --cache")
    try:
        fd, probe = tempfile.mkstemp(prefix=".llmprep-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _dir_error(exc, fail) from None
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        free = MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise fail(f"the volume is full ({free} bytes free)", "free space or enlarge the volume")
    return path


def _dir_error(exc: OSError, fail: Callable[[str, str], CacheError]) -> CacheError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        return fail("read-only file system", "mount the volume read-write or give another --cache")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return fail(
            f"not writable ({reason})",
            f"make it writable for uid {os.getuid()} (chown/chmod, fsGroup, or chattr -i) or give another --cache",
        )
    if exc.errno == errno.ENOTDIR:
        return fail("a file stands where a directory should be", "remove it or give another --cache")
    if exc.errno in _FULL:
        return fail("the volume is full", "free space or enlarge the volume")
    return fail(f"cannot be created or written ({reason})", "give a writable directory with --cache")


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
    try:
        data = json.loads(target.read_text())
    except FileNotFoundError:
        raise CacheError(f"{target}: no manifest; the entry is incomplete") from None
    except (OSError, ValueError) as exc:
        raise CacheError(f"{target}: unreadable manifest ({exc})") from None
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
            discard(final)  # a corrupt entry, never served
            os.rename(partial, final)
        except OSError as exc:
            # A full volume (ENOSPC, EFBIG, EDQUOT) while writing the entry: one line, nothing left behind.
            shutil.rmtree(partial, ignore_errors=True)
            raise write_error(f"{final.parent.name}/{key}", final.parent, exc) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return Entry(final, manifest, built=True)

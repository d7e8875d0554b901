"""Ground module: reading the user's files (one YAML reader, one JSON reader, one-line errors), writing ours atomically.

Every call site that reads a user's YAML (spec, chart, lab, load profiles, adapter rules) goes
through `read_text` + `load_yaml`, so junk bytes, UTF-16, deep nesting, alias bombs, FIFOs and
devices all end in one line. Every file we write goes through `write_bytes_atomic` (and its text
and JSON forms): a temporary file in the same folder, flushed and fsynced, given the mode an
ordinary write would have (0666 less the umask; mkstemp's 0600 would hide a report from its
group), then renamed over the target; on any failure the temporary file is removed, so a reader
sees the old file or the new one, never half of one. A folder we build is built beside its
target and renamed into place by `publish_dir`, into a directory `ensure_dir` found writable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmprep.errors import CacheError, LlmprepError, UsageError

MAX_BYTES = 64 * 1024 * 1024  # a values file is kilobytes; refuse what would fill memory
MAX_DEPTH = 100  # Helm values nest a dozen levels; thousands mean junk (and Python's recursion limit)
MAX_NODES = 1_000_000  # nodes after alias expansion: an alias bomb expands to billions
QUOTE_CHARS = 80  # what an error quotes of a value

# Values that look like credentials: Hugging Face, GitHub, generic bearer-ish strings.
# A known token prefix and its body (also what chart errors hide word by word: llmprep.chart_errors).
TOKEN_WITH_PREFIX = r"^(hf_|api_|ghp_|gho_|github_pat_|glpat-|sk-|xox[abp]-)[A-Za-z0-9_\-]{6,}$"
_TOKEN = re.compile(TOKEN_WITH_PREFIX + r"|^[A-Za-z0-9_\-]{32,}$")
# Refused where a Secret's NAME belongs: a known token prefix, or a long run without '-' or '.'.
# Narrower than _TOKEN, which only decides what an error never echoes: a long hyphenated name
# (`registry-credentials-production-eu`) is a fine Secret name and must not be refused.
_SECRET_NAME_TOKEN = re.compile(TOKEN_WITH_PREFIX + r"|^[A-Za-z0-9_]{32,}$")


def looks_like_token(value: object) -> bool:
    """True for a string shaped like an access token (never echo or store it)."""
    return isinstance(value, str) and bool(_TOKEN.match(value.strip()))


def token_not_a_name(value: object) -> bool:
    """True for a token given where a Secret's name belongs (refused; a long hyphenated name is not one)."""
    return isinstance(value, str) and bool(_SECRET_NAME_TOKEN.match(value.strip()))


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, tokens hidden: what an error may quote of user input."""
    if looks_like_token(value):
        return "<a value that looks like a token, not shown>"
    text = repr(value)
    if len(text) > limit:
        text = f"{text[: limit - 1]}… ({len(text)} characters)"
    return text


def read_text(path: Path | str, what: str, error: type[LlmprepError] = UsageError) -> str:
    """The UTF-8 text of a regular file, or `error` in one line (missing, FIFO/device, too big, not UTF-8)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise error(f"{what} {path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path}: not a regular file (a FIFO, device or directory); give a YAML file") from None
    if st.st_size > MAX_BYTES:
        raise error(f"{what} {path}: {st.st_size} bytes, over the {MAX_BYTES // 2**20} MiB a values file may have")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after stat, do not block on open.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise error(f"{what} {path}: not a regular file; give a YAML file")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(MAX_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise error(f"{what} {path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        raise error(f"{what} {path}: over the {MAX_BYTES // 2**20} MiB a values file may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = " (it looks like UTF-16: save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise error(f"{what} {path}: not UTF-8 text at byte {exc.start}{hint}; give a UTF-8 YAML file") from None
    if "\x00" in text:
        raise error(f"{what} {path}: contains NUL bytes; give a UTF-8 YAML text file")
    return text.removeprefix("\ufeff")


def _check_shape(text: str, where: str, error: type[LlmprepError]) -> None:
    """Refuse deep nesting before PyYAML's recursive composer sees it (the event parser is iterative)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise error(f"{where}: nested more than {MAX_DEPTH} levels deep at line {line}; flatten it")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML{_at_line(exc)}") from None


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle (not constructible by SafeLoader anyway) counts once
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    size = min(size, MAX_NODES + 1)
    memo[key] = size
    return size


def _at_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}" if mark else ""


def _check_values(value: Any, where: str, path: str, error: type[LlmprepError], string_keys: bool) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if string_keys and not isinstance(key, str):
                at = path or "the top level"
                raise error(f"{where}: key {quote(key)} under {at} is not a string; quote it")
            _check_values(item, where, f"{path}.{key}" if path else str(key), error, string_keys)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, where, f"{path}[{i}]", error, string_keys)
    elif isinstance(value, float) and not math.isfinite(value):
        raise error(f"{where}: {path or 'the document'}: {value} is not a finite number; give a number")


def load_yaml(
    text: str, where: str, error: type[LlmprepError] = UsageError, *, string_keys: bool = True, finite: bool = True
) -> Any:
    """One YAML document from `text`, bounded in depth and alias expansion, as plain data; one-line errors.

    `string_keys`: every mapping key must be a string. `finite`: refuse .nan and .inf anywhere.
    """
    _check_shape(text, where, error)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML{_at_line(exc)}") from None
    if node is None:
        return None
    if _expanded_size(node, {}) > MAX_NODES:
        raise error(f"{where}: aliases expand to more than {MAX_NODES} values (an alias bomb?); write the values out")
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        if "unhashable" in str(exc):
            raise error(f"{where}: a mapping key is a list or mapping{_at_line(exc)}; keys must be strings") from None
        raise error(f"{where}: not valid YAML{_at_line(exc)}") from None
    except TypeError:  # an unhashable key, e.g. `? [a, b]`
        raise error(f"{where}: a mapping key is a list or mapping; keys must be strings") from None
    finally:
        loader.dispose()
    _check_values(data, where, "", error, string_keys)
    return data


def read_yaml(path: Path | str, what: str, error: type[LlmprepError] = UsageError, **options: bool) -> Any:
    """`load_yaml(read_text(path))`, with errors naming `what path`."""
    text = read_text(path, what, error)
    return load_yaml(text, f"{what} {path}".strip(), error, **options)


def read_json(path: Path | str, error: type[LlmprepError], *, missing: str, unreadable: str) -> Any:
    """The JSON document of a file we or a tool wrote; one-line errors `path: missing` and `path: unreadable (why)`."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: {unreadable} ({exc})") from None


# -- directories we write into ---------------------------------------------------------------
# The messages name --cache, where most of our folders go (`llmprep repo --out` shares the checks).
# Write errors that mean the volume (or the process's file-size limit) is full:
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
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
    if exc.errno in FULL_ERRNOS:
        return fail("the volume is full", "free space or enlarge the volume")
    return fail(f"cannot be created or written ({reason})", "give a writable directory with --cache")


def publish_dir(staging: Path, final: Path) -> None:
    """Rename the finished folder `staging` to `final`; an older `final` is replaced whole.

    The older folder is renamed aside first (`<final>.trash-<random>`, the name the cache's leftover
    sweep knows) and removed after, so a reader sees the old folder or the new one, never a mix; if
    the rename fails the older folder is put back and the error raised.
    """
    if not final.exists():
        os.rename(staging, final)
        return
    aside = final.with_name(f"{final.name}.trash-{os.urandom(4).hex()}")
    os.rename(final, aside)
    try:
        os.rename(staging, final)
    except OSError:
        os.rename(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


# -- writing ------------------------------------------------------------------------------------
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # Linux shows the umask in /proc without changing it; elsewhere os.umask can only be read by
    # setting it, and the lock keeps two of our writers from racing on that.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_bytes_atomic(path: Path | str, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` through a fsynced temporary file in the same folder and a rename.

    Creates missing parent folders. `mode` defaults to what `open(path, "w")` would give
    (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path | str, text: str, *, mode: int | None = None) -> None:
    """`write_bytes_atomic` of `text` as UTF-8 (newlines written as given)."""
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_json_atomic(path: Path | str, data: Any, *, mode: int | None = None) -> None:
    """`write_text_atomic` of `data` as JSON, indented 2, keys sorted, ending in a newline."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)

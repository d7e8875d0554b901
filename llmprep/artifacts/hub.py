"""Checkpoints from the Hugging Face Hub into `<cache>/hf/<repo>/<revision>/`.

The Hub's own cache (`<cache>/hf/.hub` unless another is given) does the downloading, the
resuming after an interruption and the offline look-ups; the checkpoint directory is then
assembled from it (hard links where the file system allows, copies otherwise) next to a
`.llmprep-checkpoint.json` that records the resolved commit and every file's size, and is
renamed into place when complete. A complete checkpoint is reused without any network call.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.artifacts import cache
from llmprep.errors import HubError, UsageError
from llmprep.files import QUOTE_CHARS, looks_like_token, publish_dir, quote, write_json_atomic

META = ".llmprep-checkpoint.json"
HUB_DIR = ".hub"
COMMIT = re.compile(r"^[0-9a-f]{40}$")

# What a runtime needs: weights, configuration, tokenizer. Nothing else (no original/ Meta
# checkpoints, no TensorFlow, Flax, ONNX or GGUF copies).
CONFIG_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.tiktoken",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
BIN_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    repo: str
    revision: str  # as asked for
    commit: str  # what it resolved to
    files: dict[str, int]  # relative path → size


def resolve_token(token_file: Path | None, warn: Callable[[str], None] | None = None) -> str | None:
    """The Hugging Face token: the Secret file if given, else HF_TOKEN (the one place that reads it).

    A token file that every user of the machine may read is used, with a warning through `warn`
    (Kubernetes mounts Secrets 0644 unless the volume sets `defaultMode`; the chart sets 0400).
    """
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: cannot read ({exc.strerror})") from None
        if mode & stat.S_IROTH and warn is not None:
            warn(
                f"--token-file {token_file}: readable by every user (mode {stat.S_IMODE(mode):04o}); "
                f"chmod 600 it, or mount the Secret with defaultMode 0400"
            )
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: cannot read ({exc.strerror})") from None
        if not token:
            raise UsageError(f"--token-file {token_file}: the file is empty (expected the Secret's key `password`)")
        return token
    return os.environ.get("HF_TOKEN") or None


REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# Bytes of one folder name made from a repo id's part or a revision: NAME_MAX is 255, and the
# staging (`.partial-XXXXXXXX`), lock (`.lock`) and set-aside (`.trash-XXXXXXXX`) names add to it.
MAX_NAME_BYTES = 200


def shown(text: str) -> str:
    """A repo id or revision as a progress line or an error shows it: as it is when short and
    printable, else cut, and a token-shaped value hidden (`files.quote`); a commit id stays."""
    if len(text) <= QUOTE_CHARS and text.isprintable() and (COMMIT.match(text) or not looks_like_token(text)):
        return text
    return quote(text)


def checkpoint_dir(cache_dir: Path, repo: str, revision: str) -> Path:
    """`<cache>/hf/<repo>/<revision>`, or a one-line UsageError for a repo id or revision that cannot
    name a folder (nothing is created: every download and look-up starts here)."""
    if not REPO_ID.match(repo) or ".." in repo:
        raise UsageError(
            f"model.hfRepo: {shown(repo)} is not a Hugging Face repo id such as meta-llama/Meta-Llama-3-8B"
        )
    if any(len(part.encode()) > MAX_NAME_BYTES for part in repo.split("/")):
        raise UsageError(
            f"model.hfRepo: {len(repo)} characters, more than a Hugging Face repo id has "
            f"(at most {MAX_NAME_BYTES} bytes a part); give a repo id such as meta-llama/Meta-Llama-3-8B"
        )
    if not revision or revision.startswith(".") or ".." in revision or not revision.isprintable():
        raise UsageError(f"model.revision: {shown(revision)} is not a branch, tag or commit")
    name = revision.replace("/", "--")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise UsageError(
            f"model.revision: {len(revision)} characters, more than a branch, tag or commit may have here "
            f"(at most {MAX_NAME_BYTES} bytes); give a branch, tag or 40-character commit id"
        )
    return cache_dir / cache.HF / repo / name


def hub_cache_dir(cache_dir: Path) -> Path:
    return cache_dir / cache.HF / HUB_DIR


def select_files(files: list[str]) -> list[str]:
    """The files a runtime needs out of a repository's listing (safetensors win over .bin)."""
    top = [f for f in files if "/" not in f]
    weights = SAFETENSORS_PATTERNS if any(fnmatch.fnmatch(f, "*.safetensors") for f in top) else BIN_PATTERNS
    patterns = CONFIG_PATTERNS + weights
    return sorted(f for f in top if any(fnmatch.fnmatch(f, p) for p in patterns))


def find_checkpoint(cache_dir: Path, repo: str, revision: str, *, deep: bool = False) -> Checkpoint | None:
    """The complete checkpoint already in the cache, or None; no network.

    Sizes are always checked against those recorded at download; `deep` checks the Hub's own
    digests too (SHA-256 for LFS files, the git blob hash for the others), as engines are verified.
    """
    path = checkpoint_dir(cache_dir, repo, revision)
    try:
        meta = json.loads((path / META).read_text())
        files = {str(k): int(v) for k, v in meta["files"].items()}
        digests = {str(k): str(v) for k, v in (meta.get("digests") or {}).items()}
        commit = str(meta["commit"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for rel, size in files.items():
        try:
            if (path / rel).stat().st_size != size:
                return None
            if deep and rel in digests and file_digest(path / rel, digests[rel]) != digests[rel]:
                return None
        except OSError:
            return None
    return Checkpoint(path, repo, revision, commit, files)


def file_digest(path: Path, like: str) -> str:
    """The Hub's digest of a file, of the kind `like` is: 64 hex = SHA-256 (LFS), 40 hex = git blob SHA-1."""
    import hashlib

    h = hashlib.sha256() if len(like) == 64 else hashlib.sha1()
    if len(like) != 64:
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _blob_digest(source: Path) -> str | None:
    """The digest the Hub cache names a blob by (its file name), if it is one."""
    name = source.name
    return name if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", name) else None


@contextlib.contextmanager
def _hub_errors(repo: str, revision: str, token: str | None) -> Iterator[None]:
    """Turn the Hub's exceptions into one-line HubErrors (the token never appears)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.utils import OfflineModeIsEnabled

    def fail(message: str) -> HubError:
        return HubError(message.replace(token, "***") if token else message)

    named = repr(revision) if shown(revision) == revision else shown(revision)
    repo, revision = shown(repo), shown(revision)

    try:
        yield
    except hf_errors.GatedRepoError:
        hint = (
            "the token has no access: accept the licence on huggingface.co with that account"
            if token
            else ("give a token with --token-file (the Secret in model.pullSecret, key password) or HF_TOKEN")
        )
        raise fail(f"{repo}: gated repository; {hint}") from None
    except hf_errors.RepositoryNotFoundError:
        raise fail(
            f"{repo}: no such repository on the Hugging Face Hub, or a private one this token cannot read; "
            "check model.hfRepo (or model.name)"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise fail(f"{repo}: revision {named} does not exist; check model.revision") from None
    except (hf_errors.LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise fail(
            f"{repo}@{revision}: not in the local Hub cache and the Hub cannot be reached (offline); "
            "download it once with network access, or point --hub-cache at a cache that has it"
        ) from None
    except hf_errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        if status == 401:
            raise fail(f"{repo}: the Hub rejected the token (HTTP 401); check the Secret or HF_TOKEN") from None
        raise fail(f"{repo}: the Hub answered HTTP {status}; try again later") from None
    except Exception as exc:
        if isinstance(exc, OSError) or isinstance(exc, _transport_errors()):
            raise fail(f"{repo}@{revision}: cannot reach the Hugging Face Hub ({type(exc).__name__})") from None
        raise


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's connection errors (huggingface_hub moved from httpx to httpx2)."""
    found: list[type[Exception]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for name in ("TransportError", "ConnectionError", "Timeout"):
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                found.append(cls)
    return tuple(found)


def _offline_listing(hub: Path, repo: str, revision: str) -> tuple[str, list[str]]:
    from huggingface_hub import errors as hf_errors

    storage = hub / f"models--{repo.replace('/', '--')}"
    commit = revision if COMMIT.match(revision) else None
    ref = storage / "refs" / revision
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    snapshot = storage / "snapshots" / (commit or "")
    if commit is None or not snapshot.is_dir():
        raise hf_errors.LocalEntryNotFoundError(f"{repo}@{revision} is not in {hub}")
    files = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    return commit, files


def _online_listing(repo: str, revision: str, token: str | None) -> tuple[str, list[str]]:
    from huggingface_hub import HfApi

    try:
        info = HfApi().repo_info(repo, revision=revision, token=token)
        sha = getattr(info, "sha", None)
        files = [str(s.rfilename) for s in (getattr(info, "siblings", None) or [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not the shape it should be
        raise HubError(
            f"{repo}@{revision}: the Hub's description of the repository could not be read "
            f"({type(exc).__name__}); try again later, or check HF_ENDPOINT"
        ) from None
    if not sha:
        raise HubError(f"{repo}@{revision}: the Hub did not say which commit this is")
    return sha, files


_FICLONE = 0x40049409  # Linux ioctl: share the blocks copy-on-write (btrfs, XFS), a cheap copy


def _place(source: Path, target: Path) -> None:
    """Copy (a reflink where the file system can): never a hard link, whose damage would reach the Hub cache."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def download(
    repo: str,
    revision: str,
    cache_dir: Path,
    *,
    token: str | None = None,
    offline: bool = False,
    hub_cache: Path | None = None,
    lock_timeout: float = cache.DEFAULT_LOCK_TIMEOUT,
    progress: Callable[[str], None] | None = None,
    show_bars: bool = True,
    verify: bool = False,
) -> Checkpoint:
    """The checkpoint of `repo` at `revision` in the cache, downloading what is missing.

    A checkpoint whose sizes (or, with `verify`, digests) do not match what was recorded is fetched again.
    """
    say = progress or (lambda _msg: None)
    done = find_checkpoint(cache_dir, repo, revision, deep=verify)
    if done is not None:
        return done
    final = checkpoint_dir(cache_dir, repo, revision)
    cache.ensure_dir(final.parent, "the checkpoint cache")
    with cache.locked(
        final.with_name(f"{final.name}.lock"),
        timeout=lock_timeout,
        what=f"{shown(repo)}@{shown(revision)}",
        on_wait=say,
    ):
        done = find_checkpoint(cache_dir, repo, revision, deep=verify)
        if done is not None:
            return done
        hub = hub_cache or hub_cache_dir(cache_dir)
        with _hub_errors(repo, revision, token):
            if offline:
                commit, listing = _offline_listing(hub, repo, revision)
            else:
                commit, listing = _online_listing(repo, revision, token)
            wanted = select_files(listing)
            if "config.json" not in wanted:
                raise HubError(
                    f"{repo}@{revision}: no config.json at the top of the repository; is it a model repository?"
                )
            say(f"downloading {len(wanted)} files of {shown(repo)}@{commit[:12]}")
            snapshot = _snapshot(repo, commit, hub, wanted, token=token, offline=offline, show_bars=show_bars)
        # A dead downloader's staging, or the older copy publish_dir had set aside when it was killed.
        for pattern in (f"{final.name}.partial-*", f"{final.name}.trash-*"):
            for leftover in final.parent.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{final.name}.partial-", dir=final.parent))
        try:
            files: dict[str, int] = {}
            digests: dict[str, str] = {}
            for rel in wanted:
                source = (snapshot / rel).resolve()
                if not source.is_file():
                    raise HubError(f"{repo}@{commit[:12]}: {rel} is missing from the Hub cache after the download")
                digest = _blob_digest(source)
                if digest is not None and file_digest(source, digest) != digest:
                    # The Hub cache's copy is damaged (truncated, flipped bytes): drop it, fetch it again.
                    source.unlink()
                    snapshot = _snapshot(repo, commit, hub, wanted, token=token, offline=offline, show_bars=show_bars)
                    source = (snapshot / rel).resolve()
                    if not source.is_file() or file_digest(source, digest) != digest:
                        raise HubError(f"{repo}@{commit[:12]}: {rel} does not match the Hub's digest after a re-fetch")
                _place(source, partial / rel)
                files[rel] = (partial / rel).stat().st_size
                if digest is not None:
                    digests[rel] = digest
            meta = {"repo": repo, "revision": revision, "commit": commit, "files": files, "digests": digests}
            write_json_atomic(partial / META, meta)
            publish_dir(partial, final)  # replaces an incomplete one: its sizes did not verify above
        except OSError as exc:  # a full volume while assembling: one line, nothing partial left
            shutil.rmtree(partial, ignore_errors=True)
            raise cache.write_error(f"checkpoint {repo}@{commit[:12]}", final.parent, exc) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return Checkpoint(final, repo, revision, commit, files)


def _snapshot(
    repo: str, commit: str, hub: Path, wanted: list[str], *, token: str | None, offline: bool, show_bars: bool
) -> Path:
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {}
    if not show_bars:
        from tqdm.auto import tqdm

        class _Quiet(tqdm):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kw: Any) -> None:
                kw["disable"] = True
                super().__init__(*args, **kw)

        kwargs["tqdm_class"] = _Quiet
    path = snapshot_download(
        repo, revision=commit, cache_dir=hub, allow_patterns=wanted, token=token, local_files_only=offline, **kwargs
    )
    return Path(str(path))

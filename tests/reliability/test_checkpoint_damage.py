"""A damaged checkpoint is found and fetched again, and damage never spreads to the Hub cache (issue 22 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmprep.artifacts import hub
from tests.doubles import make_hub_cache, tiny_checkpoint_files

REPO = "acme/tiny-llama"
WEIGHTS = "model.safetensors"


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, Path, hub.Checkpoint]:
    root = tmp_path / "hub"
    make_hub_cache(root, REPO, tiny_checkpoint_files())
    cache_dir = tmp_path / "cache"
    ck = hub.download(REPO, "main", cache_dir, offline=True, hub_cache=root, show_bars=False)
    return root, cache_dir, ck


def _blobs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.rglob("blobs/*")}


def test_the_checkpoint_shares_no_inode_with_the_hub_cache(prepared: tuple[Path, Path, hub.Checkpoint]) -> None:
    root, _, ck = prepared
    hub_inodes = {p.stat().st_ino for p in root.rglob("*") if p.is_file()}
    assert all(p.stat().st_ino not in hub_inodes for p in ck.path.rglob("*") if p.is_file())


def test_truncating_the_checkpoint_leaves_the_hub_cache_whole(prepared: tuple[Path, Path, hub.Checkpoint]) -> None:
    root, _, ck = prepared
    before = _blobs(root)
    (ck.path / WEIGHTS).write_bytes((ck.path / WEIGHTS).read_bytes()[:7])
    assert _blobs(root) == before


@pytest.mark.parametrize("damage", ["truncate", "flip a byte"])
def test_a_damaged_weights_file_is_fetched_again_with_its_right_content(
    prepared: tuple[Path, Path, hub.Checkpoint], damage: str
) -> None:
    root, cache_dir, ck = prepared
    good = (ck.path / WEIGHTS).read_bytes()
    data = bytearray(good)
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    (ck.path / WEIGHTS).write_bytes(bytes(data))
    # Sizes are always checked; a same-size change needs the digests (--verify).
    again = hub.download(REPO, "main", cache_dir, offline=True, hub_cache=root, show_bars=False, verify=True)
    assert (again.path / WEIGHTS).read_bytes() == good
    assert hub.find_checkpoint(cache_dir, REPO, "main", deep=True) is not None


def test_a_same_size_change_is_found_only_by_the_deep_check(prepared: tuple[Path, Path, hub.Checkpoint]) -> None:
    _, cache_dir, ck = prepared
    data = bytearray((ck.path / WEIGHTS).read_bytes())
    data[0] ^= 0xFF
    (ck.path / WEIGHTS).write_bytes(bytes(data))
    assert hub.find_checkpoint(cache_dir, REPO, "main") is not None  # sizes match
    assert hub.find_checkpoint(cache_dir, REPO, "main", deep=True) is None

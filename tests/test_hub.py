from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi
from huggingface_hub import errors as hf_errors

from llmprep.artifacts import hub
from llmprep.errors import HubError, UsageError
from tests.conftest import run_cli
from tests.doubles import make_hub_cache, tiny_checkpoint_files

REPO = "acme/tiny-llama"


@pytest.fixture
def hub_cache(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "hub"
    return root, make_hub_cache(root, REPO, tiny_checkpoint_files())


def test_offline_download_from_a_prepopulated_hub_cache_records_the_commit(
    tmp_path: Path, hub_cache: tuple[Path, str]
) -> None:
    root, commit = hub_cache
    ck = hub.download(REPO, "main", tmp_path / "cache", offline=True, hub_cache=root, show_bars=False)
    assert ck.path == tmp_path / "cache" / "hf" / REPO / "main"
    assert ck.commit == commit
    assert json.loads((ck.path / hub.META).read_text())["commit"] == commit
    assert (ck.path / "config.json").read_bytes() == tiny_checkpoint_files()["config.json"]


def test_download_takes_only_what_a_runtime_needs(tmp_path: Path, hub_cache: tuple[Path, str]) -> None:
    root, _ = hub_cache
    ck = hub.download(REPO, "main", tmp_path / "cache", offline=True, hub_cache=root, show_bars=False)
    assert sorted(ck.files) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


@pytest.mark.parametrize(
    ("listing", "weights"),
    [
        (["config.json", "model.safetensors", "pytorch_model.bin"], ["model.safetensors"]),
        (["config.json", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"], ["pytorch_model.bin"]),
        (
            [
                "config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "original/consolidated.00.pth",
            ],
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"],
        ),
    ],
)
def test_file_selection_prefers_safetensors_and_skips_other_formats(listing: list[str], weights: list[str]) -> None:
    assert hub.select_files(listing) == sorted(["config.json", *weights])


def test_a_complete_checkpoint_is_reused_without_the_hub(tmp_path: Path, hub_cache: tuple[Path, str]) -> None:
    root, commit = hub_cache
    hub.download(REPO, "main", tmp_path / "cache", offline=True, hub_cache=root, show_bars=False)
    again = hub.download(REPO, "main", tmp_path / "cache", offline=True, hub_cache=tmp_path / "nowhere")
    assert again.commit == commit


def test_a_truncated_checkpoint_is_not_reused(tmp_path: Path, hub_cache: tuple[Path, str]) -> None:
    root, _ = hub_cache
    ck = hub.download(REPO, "main", tmp_path / "cache", offline=True, hub_cache=root, show_bars=False)
    (ck.path / "model.safetensors").write_bytes(b"short")
    assert hub.find_checkpoint(tmp_path / "cache", REPO, "main") is None


def test_a_repo_missing_from_the_offline_cache_is_one_clear_line(tmp_path: Path, hub_cache: tuple[Path, str]) -> None:
    root, _ = hub_cache
    with pytest.raises(HubError) as info:
        hub.download("acme/absent", "main", tmp_path / "cache", offline=True, hub_cache=root)
    assert "acme/absent@main: not in the local Hub cache and the Hub cannot be reached (offline)" in str(info.value)
    assert "\n" not in str(info.value)


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/models/x"))


@pytest.mark.parametrize(
    ("raise_", "token", "message"),
    [
        (
            lambda: hf_errors.GatedRepoError("gated", response=_response(401)),
            None,
            "acme/tiny-llama: gated repository; give a token with --token-file",
        ),
        (
            lambda: hf_errors.GatedRepoError("gated", response=_response(403)),
            "hf_secret",
            "acme/tiny-llama: gated repository; the token has no access",
        ),
        (
            lambda: hf_errors.RepositoryNotFoundError("nope", response=_response(404)),
            None,
            "acme/tiny-llama: no such repository on the Hugging Face Hub",
        ),
        (
            lambda: hf_errors.RevisionNotFoundError("nope", response=_response(404)),
            None,
            "acme/tiny-llama: revision 'main' does not exist; check model.revision",
        ),
        (
            lambda: hf_errors.HfHubHTTPError("bad token hf_secret", response=_response(401)),
            "hf_secret",
            "acme/tiny-llama: the Hub rejected the token (HTTP 401)",
        ),
        (lambda: httpx2.ConnectError("no route"), None, "acme/tiny-llama@main: cannot reach the Hugging Face Hub"),
    ],
)
def test_hub_failures_become_one_line_messages_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raise_: Callable[[], Exception], token: str | None, message: str
) -> None:
    def repo_info(*_args: object, **_kwargs: object) -> None:
        raise raise_()

    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    with pytest.raises(HubError) as info:
        hub.download(REPO, "main", tmp_path / "cache", token=token)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "hf_secret" not in str(info.value)


def test_token_comes_from_the_secret_file_before_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "from-env")
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    assert hub.resolve_token(secret) == "from-file"
    assert hub.resolve_token(None) == "from-env"


def test_an_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("\n")
    with pytest.raises(UsageError, match="the file is empty"):
        hub.resolve_token(secret)


def test_download_command_works_offline_and_never_prints_the_token(tmp_path: Path, hub_cache: tuple[Path, str]) -> None:
    root, commit = hub_cache
    secret = tmp_path / "password"
    secret.write_text("hf_verysecret")
    result = run_cli(
        "download",
        "--set",
        f"model.name={REPO}",
        "--cache",
        str(tmp_path / "cache"),
        "--hub-cache",
        str(root),
        "--token-file",
        str(secret),
        "--json",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["commit"] == commit
    assert "hf_verysecret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("repo", "revision", "field"),
    [("../etc", "main", "model.hfRepo"), ("a/b/c", "main", "model.hfRepo"), ("acme/x", "../up", "model.revision")],
)
def test_repo_ids_and_revisions_cannot_escape_the_cache(tmp_path: Path, repo: str, revision: str, field: str) -> None:
    with pytest.raises(UsageError, match=field):
        hub.checkpoint_dir(tmp_path, repo, revision)

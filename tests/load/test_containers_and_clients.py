"""containers/ and clients/ are checked without a Docker engine or a cluster.

Container files: pinned base tags (never `latest`), every COPY source exists, the entry point
is the `llmprep` console script, and every `llmprep <command> --option` that the chart and the
client manifests run is a command and option the CLI accepts. Client manifests: valid
Kubernetes objects, resources and a locked-down security context on every container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tomllib
import typer.main
import yaml

from llmprep.cli import app
from tests.conftest import ROOT

CONTAINERS = ROOT / "containers"
CONTAINER_FILES = sorted(CONTAINERS.glob("*.containerfile"))
CLIENTS = ROOT / "clients"
CLIENT_FILES = sorted(CLIENTS.glob("*.yaml"))
CLIENT_MODELS = ["gpt2", "opt125m", "llama-3-8b", "llama-3-8b-instruct", "llama-3-70b-instruct", "mistral-7b"]
TRITON_BASE = "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip()]


def from_images(path: Path) -> list[str]:
    stages = set()
    images = []
    for op, args in instructions(path):
        if op == "FROM":
            words = args.split()
            image = words[0]
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
            if image not in stages:
                images.append(image)
    return images


def test_there_are_the_two_container_files() -> None:
    assert [p.name for p in CONTAINER_FILES] == ["client.containerfile", "triton_trt-llm.containerfile"]


@pytest.mark.parametrize("path", CONTAINER_FILES, ids=lambda p: p.name)
def test_every_base_image_has_a_pinned_tag_and_never_latest(path: Path) -> None:
    for image in from_images(path):
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and tag and tag != "latest" and "$" not in image, image
        assert re.search(r"\d", tag), f"{image}: a tag with a version number"


def test_the_triton_image_is_the_release_with_the_tensorrt_llm_that_build_targets() -> None:
    path = CONTAINERS / "triton_trt-llm.containerfile"
    assert from_images(path) == [TRITON_BASE]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["build"]
    pinned = next(e.split("==")[1] for e in extras if e.startswith("tensorrt_llm=="))
    assert f'ai.llmprep.tensorrt-llm.version="{pinned}"' in path.read_text()


def test_the_client_image_installs_llmprep_without_extras() -> None:
    runs = " ".join(args for op, args in instructions(CONTAINERS / "client.containerfile") if op == "RUN")
    assert "pip install /src" in runs and "[" not in runs


@pytest.mark.parametrize("path", CONTAINER_FILES, ids=lambda p: p.name)
def test_every_file_a_container_file_copies_exists(path: Path) -> None:
    copies = [args.split() for op, args in instructions(path) if op == "COPY" and "--from" not in args]
    assert copies
    for words in copies:
        for source in [w for w in words[:-1] if not w.startswith("--")]:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source} is not in the repository"


@pytest.mark.parametrize("path", CONTAINER_FILES, ids=lambda p: p.name)
def test_the_image_runs_as_a_non_root_user(path: Path) -> None:
    users = [args for op, args in instructions(path) if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


@pytest.mark.parametrize("path", CONTAINER_FILES, ids=lambda p: p.name)
def test_the_entry_point_is_the_llmprep_console_script(path: Path) -> None:
    entry = [json.loads(args) for op, args in instructions(path) if op == "ENTRYPOINT"]
    assert entry == [["llmprep"]]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["llmprep"] == "llmprep.cli:main"


def chart_commands() -> list[list[str]]:
    """Every llmprep command line of the rendered chart's pods (rendered by Helm's engine, not parsed by hand)."""
    from llmprep.chart import render

    found = []
    for obj in render({"triton": {"image": {"name": "example.com/llmprep-triton:26.07"}}}):
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            argv = list(container.get("command", [])) + list(container.get("args", []))
            if argv and argv[0] == "llmprep":
                found.append([str(word) for word in argv[1:]])
    return found


def client_commands() -> list[list[str]]:
    commands = []
    for path in CLIENT_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    commands.append([str(a) for a in container["args"]])
    return commands


def check_command(words: list[str]) -> None:
    command = getattr(typer.main.get_command(app), "commands", {}).get(words[0])
    assert command is not None, f"llmprep {words[0]}: no such command"
    accepted = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    for word in words[1:]:
        if word.startswith("--"):
            assert word.split("=")[0] in accepted, f"llmprep {words[0]} has no option {word}"


def test_the_chart_runs_prepare_and_serve_and_the_clients_run_load() -> None:
    used = {words[0] for words in chart_commands() + client_commands()}
    assert used == {"prepare", "serve", "load"}


@pytest.mark.parametrize("words", chart_commands() + client_commands(), ids=lambda w: " ".join(w[:1]))
def test_every_command_the_chart_and_clients_run_is_accepted_by_the_cli(words: list[str]) -> None:
    check_command(words)


def test_the_client_arguments_parse_as_a_load_configuration() -> None:
    from llmprep.load.command import LoadOptions, build_config

    args = client_commands()[0]
    options = dict(zip(args[1::2], args[2::2], strict=False))
    config = build_config(LoadOptions(
        urls=[options["--url"]], model=options["--model"], concurrency=int(options["--concurrency"]),
        duration=options["--duration"], input_tokens=float(options["--input-tokens"]),
        output_tokens=float(options["--output-tokens"]), reconnect_every=options["--reconnect-every"],
        wait_ready=options["--wait-ready"],
    ))
    assert config.profile.level_at(1e9) == 1 and config.reconnect_every == 30 and config.wait_ready == 1800


def deployments() -> list[tuple[str, dict[str, Any]]]:
    return [(p.stem, yaml.safe_load(p.read_text())) for p in CLIENT_FILES if p.name != "kustomization.yaml"]


def test_there_is_one_client_deployment_per_example_model() -> None:
    assert sorted(name for name, _ in deployments()) == sorted(CLIENT_MODELS)
    assert {name: doc["metadata"]["name"] for name, doc in deployments()} == {m: f"client-{m}" for m in CLIENT_MODELS}


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
def test_a_client_deployment_is_a_valid_kubernetes_object(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.30", strict=True)


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
def test_a_client_targets_its_release_service_over_grpc(name: str, doc: dict[str, Any]) -> None:
    args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--url") + 1] == f"{name}:8001"


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
def test_every_client_container_has_requests_limits_and_a_locked_down_security_context(name: str, doc: dict[str, Any]) -> None:
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    for container in pod.get("initContainers", []) + pod["containers"]:
        resources = container["resources"]
        assert set(resources["requests"]) >= {"cpu", "memory"} and set(resources["limits"]) >= {"cpu", "memory"}
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["runAsNonRoot"] is True and security["capabilities"]["drop"] == ["ALL"]


def test_the_kustomization_lists_every_client() -> None:
    kustomization = yaml.safe_load((CLIENTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f"{m}.yaml" for m in CLIENT_MODELS)
    images = {doc["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0] for _, doc in deployments()}
    assert images == {image["name"] for image in kustomization["images"]}


def checkov_binary() -> str | None:
    candidate = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    return candidate if Path(candidate).exists() else shutil.which("checkov")


@pytest.mark.skipif(checkov_binary() is None, reason="checkov is not installed (make setup installs it)")
def test_checkov_finds_nothing_in_the_client_manifests_but_the_cluster_wide_network_policy(tmp_path: Path) -> None:
    for path in CLIENT_FILES:
        if path.name != "kustomization.yaml":
            shutil.copy(path, tmp_path / path.name)
    done = subprocess.run(
        [str(checkov_binary()), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--compact",
         "--quiet", "-o", "json"], capture_output=True, text=True, timeout=300,
    )
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = {check["check_id"] for check in report["results"]["failed_checks"]}
    # CKV2_K8S_6 asks for a NetworkPolicy: a cluster's policy, not something a client manifest can carry.
    assert failed <= {"CKV2_K8S_6"}, failed

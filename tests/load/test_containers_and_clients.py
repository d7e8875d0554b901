"""containers/ and clients/ are checked without a Docker engine or a cluster.

Container files: pinned base tags (never `latest`), every COPY source exists, the entry point
is the `llmprep` console script, and every `llmprep <command> --option` that the chart and the
clients run is a command and option the CLI accepts. Clients: a kustomize base plus one overlay
per model, each rendered (tests/doubles/kustomize.py; and `kubectl kustomize` where kubectl is on
PATH) to a valid Kubernetes object, the same as the hand-written manifest it replaced
(tests/data/clients/), with resources and a locked-down security context on every container.
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
from tests.doubles import kustomize

CONTAINERS = ROOT / "containers"
CONTAINER_FILES = sorted(CONTAINERS.glob("*.containerfile"))
CLIENTS = ROOT / "clients"
CLIENT_MODELS = ["gpt2", "opt125m", "llama-3-8b", "llama-3-8b-instruct", "llama-3-70b-instruct", "mistral-7b"]
HAND_WRITTEN = ROOT / "tests" / "data" / "clients"  # the full manifests the overlays replaced
ARGS = "/spec/template/spec/containers/0/args"
TRITON_BASE = "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip()
    ]


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
    for doc in kustomize.build(CLIENTS):
        if doc.get("kind") == "Deployment":
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
    config = build_config(
        LoadOptions(
            urls=[options["--url"]],
            model=options["--model"],
            concurrency=int(options["--concurrency"]),
            duration=options["--duration"],
            input_tokens=float(options["--input-tokens"]),
            output_tokens=float(options["--output-tokens"]),
            reconnect_every=options["--reconnect-every"],
            wait_ready=options["--wait-ready"],
        )
    )
    assert config.profile.level_at(1e9) == 1 and config.reconnect_every == 30 and config.wait_ready == 1800


def deployments() -> list[tuple[str, dict[str, Any]]]:
    """Each model's overlay, rendered: (model, its one Deployment)."""
    out = []
    for model_dir in sorted((CLIENTS / "models").iterdir()):
        (doc,) = kustomize.build(model_dir)
        out.append((model_dir.name, doc))
    return out


def overlay(model: str) -> dict[str, Any]:
    return yaml.safe_load((CLIENTS / "models" / model / "kustomization.yaml").read_text())


def test_there_is_one_client_deployment_per_example_model() -> None:
    assert sorted(name for name, _ in deployments()) == sorted(CLIENT_MODELS)
    assert {name: doc["metadata"]["name"] for name, doc in deployments()} == {m: f"client-{m}" for m in CLIENT_MODELS}


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
def test_an_overlay_renders_the_hand_written_manifest_it_replaced_field_for_field(
    name: str, doc: dict[str, Any]
) -> None:
    assert doc == yaml.safe_load((HAND_WRITTEN / f"{name}.yaml").read_text())


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
@pytest.mark.parametrize(
    "kube_version", ["1.25.0", "1.30", kubernetes_validate.latest_version()]
)  # the chart's, and 1.30
def test_a_client_deployment_is_a_valid_kubernetes_object(name: str, doc: dict[str, Any], kube_version: str) -> None:
    kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
def test_a_client_targets_its_release_service_over_grpc(name: str, doc: dict[str, Any]) -> None:
    args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--url") + 1] == f"{name}:8001"


@pytest.mark.parametrize(("name", "doc"), deployments(), ids=[n for n, _ in deployments()])
def test_every_client_container_has_requests_limits_and_a_locked_down_security_context(
    name: str, doc: dict[str, Any]
) -> None:
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    for container in pod.get("initContainers", []) + pod["containers"]:
        resources = container["resources"]
        assert set(resources["requests"]) >= {"cpu", "memory"} and set(resources["limits"]) >= {"cpu", "memory"}
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["runAsNonRoot"] is True and security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("model", CLIENT_MODELS)
def test_an_overlay_sets_only_the_name_the_release_and_the_request_shape(model: str) -> None:
    spec = overlay(model)
    assert spec["resources"] == ["../../base"] and spec["nameSuffix"] == f"-{model}"
    assert set(spec) <= {"apiVersion", "kind", "resources", "nameSuffix", "labels", "patches"}
    assert {k for labels in spec["labels"] for k in labels["pairs"]} == {"app", "app.kubernetes.io/instance"}
    replaced = {
        op["path"]: op["value"]
        for patch in spec["patches"]
        for op in yaml.safe_load(patch["patch"])
        if op["op"] == "replace"
    }
    shape = {f"{ARGS}/10", f"{ARGS}/12", f"{ARGS}/14"}  # --input-tokens, --input-stddev, --output-tokens
    assert replaced[f"{ARGS}/2"] == f"{model}:8001" and set(replaced) <= {f"{ARGS}/2"} | shape


@pytest.mark.parametrize("model", CLIENT_MODELS)
def test_every_value_an_overlay_replaces_is_guarded_by_a_test_of_its_flag(model: str) -> None:
    base_args = yaml.safe_load((CLIENTS / "base" / "deployment.yaml").read_text())["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    ops = [op for patch in overlay(model)["patches"] for op in yaml.safe_load(patch["patch"])]
    tested = {op["path"]: op["value"] for op in ops if op["op"] == "test"}
    for op in ops:
        if op["op"] == "replace":
            index = int(op["path"].rsplit("/", 1)[1])
            assert tested[f"{ARGS}/{index - 1}"] == base_args[index - 1] and base_args[index - 1].startswith("--")


def test_a_base_whose_flags_moved_fails_to_build_instead_of_patching_the_wrong_value(tmp_path: Path) -> None:
    shutil.copytree(CLIENTS / "base", tmp_path / "base")
    shutil.copytree(CLIENTS / "models" / "llama-3-8b", tmp_path / "models" / "llama-3-8b")
    deployment = tmp_path / "base" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("- --input-stddev", "- --input-spread"))
    with pytest.raises(kustomize.KustomizeError, match="args/11"):
        kustomize.build(tmp_path / "models" / "llama-3-8b")


def test_the_top_level_kustomization_lists_every_model_and_the_image_is_set_once_in_the_base() -> None:
    top = yaml.safe_load((CLIENTS / "kustomization.yaml").read_text())
    assert sorted(top["resources"]) == sorted(f"models/{m}" for m in CLIENT_MODELS) and "images" not in top
    assert sorted(p.name for p in (CLIENTS / "models").iterdir()) == sorted(CLIENT_MODELS)
    base = yaml.safe_load((CLIENTS / "base" / "kustomization.yaml").read_text())
    images = {doc["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0] for _, doc in deployments()}
    assert images == {image["name"] for image in base["images"]}
    assert all("images" not in overlay(m) for m in CLIENT_MODELS)
    assert [doc["metadata"]["name"] for doc in kustomize.build(CLIENTS)] == [
        f"client-{r.split('/')[1]}" for r in top["resources"]
    ]


def test_the_kustomize_double_sets_an_image_as_kustomize_edit_set_image_does() -> None:
    image = {"name": "llmprep-client", "newName": "registry.example:5000/llmprep-client", "newTag": "0.2.0"}
    assert kustomize._image("llmprep-client:0.1.0", image) == "registry.example:5000/llmprep-client:0.2.0"
    assert kustomize._image("other:0.1.0", image) == "other:0.1.0"
    assert (
        kustomize._image("llmprep-client:0.1.0", {"name": "llmprep-client", "digest": "sha256:ab"})
        == "llmprep-client@sha256:ab"
    )


def kubectl_build(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=True
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


# kubectl embeds kustomize (v5.5.0 in kubectl 1.32 here); `make setup` installs neither, so where
# it is absent the overlays are checked through the double alone.
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is absent: the double alone renders the overlays")
@pytest.mark.parametrize(
    "directory", ["", "base", *(f"models/{m}" for m in CLIENT_MODELS)], ids=lambda d: d or "clients"
)
def test_kubectl_kustomize_renders_what_the_double_renders(directory: str) -> None:
    assert _by_name(kubectl_build(CLIENTS / directory)) == _by_name(kustomize.build(CLIENTS / directory))


def checkov_binary() -> str | None:
    candidate = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    return candidate if Path(candidate).exists() else shutil.which("checkov")


@pytest.mark.skipif(checkov_binary() is None, reason="checkov is not installed (make setup installs it)")
def test_checkov_finds_nothing_in_the_client_manifests_but_the_cluster_wide_network_policy(tmp_path: Path) -> None:
    for name, doc in deployments():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [
            str(checkov_binary()),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = {check["check_id"] for check in report["results"]["failed_checks"]}
    # CKV2_K8S_6 asks for a NetworkPolicy: a cluster's policy, not something a client manifest can carry.
    assert failed <= {"CKV2_K8S_6"}, failed

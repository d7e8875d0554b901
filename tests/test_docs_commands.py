"""Every `llmprep …` command in the docs' and READMEs' code blocks runs as written, or at least parses.

Commands that need nothing but files run for real, offline: the TensorRT-LLM test doubles on
PATH (tests/doubles), a pre-populated Hugging Face Hub cache, and the docs' placeholders
(`values.yaml`, `path/to/config.json`, `/cache`, …) mapped to fixture files. Commands that need a
cluster, a GPU, a server or minutes (status, lab, load, serve, drain, the real-artifact `repo`
forms) are checked against `llmprep <command> --help`: the command exists and takes every
option the docs use. The components' READMEs (chart/, monitoring/, containers/, clients/) are
scanned too, and every other command in their shell blocks either runs here (install.sh --dry-run)
or is skipped with the reason EXTERNAL gives for its program; a program without one fails.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from llmprep.cli.app import app
from tests.conftest import ROOT
from tests.doubles import install_release, make_hub_cache, tiny_checkpoint_files

# The components' own READMEs: every command in their shell blocks is either an `llmprep` command
# (run or parsed like the docs') or a program in EXTERNAL, skipped with its reason, never silently.
COMPONENT_DOCS = [ROOT / name / "README.md" for name in ("chart", "monitoring", "containers", "clients")]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *COMPONENT_DOCS]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
REPO = "acme/tiny-llama"
CLUSTER = "needs a Kubernetes cluster (its API server)"
SSH_FILES = "writes the key files for the `kubectl create secret` beside it, which needs a Kubernetes cluster"
EXTERNAL = {
    "helm": f"{CLUSTER}: install, upgrade and test act on a release in it; the chart's rendering is "
    "tests/chart/ (Helm's engine)",
    "kubectl": CLUSTER,
    "docker": "needs a Docker daemon, the images' base layers and a registry to push to; the containerfiles "
    "are parsed by tests/test_containers_user.py and tests/load/test_containers_and_clients.py",
    "monitoring/install.sh": f"{CLUSTER}, helm and cluster-admin (its --dry-run runs here); "
    "tests/monitoring/test_install.py runs it against stub helm and kubectl",
    "mktemp": SSH_FILES,
    "ssh-keygen": SSH_FILES,
    "cp": SSH_FILES,
    "echo": SSH_FILES,
    "rm": SSH_FILES,
}


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # the command as the docs write it, optional [brackets] opened

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)[1:]

    @property
    def runs_here(self) -> bool:
        """Whether it can run on a laptop without a cluster, GPU, server or network."""
        sub, args = self.argv[0], self.argv[1:]
        if sub in ("plan", "download", "prepare"):
            return True
        if sub == "repo":
            return "standin" in args and "--standin-compute" not in args  # torch compute needs torch
        return sub == "serve" and "--dry-run" in args


def _logical_lines(block: str) -> Iterator[tuple[int, str]]:
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        yield start, line
        i += 1


def _shell_lines(path: Path) -> Iterator[tuple[str, str, str]]:
    """(file:line, the command without its trailing comment, the comment) of every line of a shell block."""
    text = path.read_text()
    for match in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M):
        if match.group(1).strip() not in SHELL_FENCES:
            continue
        first = text.count("\n", 0, match.start(2)) + 1
        for offset, line in _logical_lines(match.group(2)):
            command = re.sub(r"^\$\s+", "", line.strip())
            comment = ""
            split = re.search(r"(^|\s+)#(.*)$", command)  # a trailing comment (or a whole-line one)
            if split:
                command, comment = command[: split.start()], split.group(2).strip()
            yield f"{path.relative_to(ROOT)}:{first + offset}", command, comment


def doc_commands() -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in DOCS:
        for where, command, comment in _shell_lines(path):
            aside = re.match(r"^or:\s+(llmprep .*)$", comment)  # `kubectl get hpa gpt2 -w   # or: llmprep status gpt2`
            for text in (command, aside.group(1) if aside else ""):
                text = re.sub(r"\s+\([^)]*\)$", "", text)  # a trailing "(what it does)"
                if not re.match(r"^llmprep [a-z][a-z-]*(\s|$)", text):
                    continue  # prose or a diagram (`llmprep lab: …`), not a command
                text = text.replace("[", "").replace("]", "")  # optional parts: check them too
                found.append(DocCommand(where, text))
    return found


def external_commands() -> list[tuple[str, str, str]]:
    """(file:line, command, program) of every command of the component READMEs that is not llmprep."""
    found = []
    for path in COMPONENT_DOCS:
        for where, command, _ in _shell_lines(path):
            if command and not command.startswith("llmprep "):
                program = command.split()[0]
                assigned = re.match(r"^\w+=\$\((\S+)", program)  # dir=$(mktemp -d)
                found.append((where, command, assigned.group(1) if assigned else program))
    return found


COMMANDS = doc_commands()
RUNNABLE = [c for c in COMMANDS if c.runs_here]
PARSE_ONLY = [c for c in COMMANDS if not c.runs_here]
EXTERNAL_COMMANDS = external_commands()


def _ids(commands: list[DocCommand]) -> list[str]:
    return [f"{c.where} {c.text[:60]}" for c in commands]


def test_the_docs_show_commands_of_both_kinds() -> None:
    # Guards the extraction: if it finds nothing, the tests below would pass vacuously.
    assert len(RUNNABLE) >= 6 and len(PARSE_ONLY) >= 10
    assert any(c.argv[0] == "plan" for c in RUNNABLE)
    scanned = {where.split(":")[0] for where, _, _ in EXTERNAL_COMMANDS} | {c.where.split(":")[0] for c in COMMANDS}
    assert {str(p.relative_to(ROOT)) for p in COMPONENT_DOCS} <= scanned
    assert any(c.where.startswith("clients/README.md") and c.argv[0] == "status" for c in COMMANDS)


def _runs_here(command: str) -> bool:
    """A non-llmprep command that needs nothing but files: install.sh's --dry-run (look-ups answered by stubs)."""
    return command.split()[0] == "monitoring/install.sh" and "--dry-run" in command.split()


@pytest.mark.parametrize(("where", "command", "program"), EXTERNAL_COMMANDS, ids=[w for w, _, _ in EXTERNAL_COMMANDS])
def test_a_component_readme_command_outside_llmprep_runs_or_is_skipped_with_its_reason(
    where: str, command: str, program: str, tmp_path: Path
) -> None:
    if _runs_here(command):
        # helm and kubectl that find no cluster, so that no kube context of this machine is touched
        for name in ("helm", "kubectl"):
            (tmp_path / name).write_text("#!/bin/sh\nexit 1\n")
            (tmp_path / name).chmod(0o755)
        env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
        done = subprocess.run(
            ["bash", *shlex.split(command)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
        )
        assert done.returncode == 0, f"{where}: {command}\n{done.stderr[-2000:]}"
        return
    assert program in EXTERNAL, (
        f"{where}: `{command}` is neither an llmprep command nor in EXTERNAL; run it here or give its reason"
    )
    pytest.skip(f"{where}: {program}: {EXTERNAL[program]}")


# --------------------------------------------------------------------------- parse against --help


def _command(argv: list[str]) -> tuple[list[str], Any]:
    # typer vendors its own click, so a group is whatever has `commands`
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    for word in argv:
        groups = getattr(command, "commands", None)
        if groups is None or word.startswith("-"):
            break
        sub = groups.get(word)
        if sub is None:
            break
        path.append(word)
        command = sub
    return path, command


@pytest.mark.parametrize("doc", PARSE_ONLY, ids=_ids(PARSE_ONLY))
def test_a_command_that_needs_a_cluster_takes_every_option_the_docs_use(doc: DocCommand) -> None:
    path, command = _command(doc.argv)
    assert path, f"{doc.where}: `llmprep {doc.argv[0]}` is not a command"
    helped = CliRunner().invoke(app, [*path, "--help"])
    assert helped.exit_code == 0, helped.output
    accepted = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    used = {word.split("=", 1)[0] for word in doc.argv[len(path) :] if word.startswith("-")}
    assert used <= accepted | {"--help"}, (
        f"{doc.where}: {sorted(used - accepted)} not in `llmprep {' '.join(path)} --help`"
    )


# --------------------------------------------------------------------------- run offline


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A spec, token file, Hub cache, artifact cache and TensorRT-LLM double; the model downloaded and prepared."""
    root = tmp_path_factory.mktemp("docs")
    make_hub_cache(root / "hub", REPO, tiny_checkpoint_files())
    release = install_release(root, "engine")
    spec = root / "values.yaml"
    spec.write_text(f"gpu: [NVIDIA-H100-80GB-HBM3]\nmodel:\n  name: {REPO}\n")
    token = root / "token"
    token.write_text("hf_docs0test0token0value\n")
    token.chmod(0o600)
    env = {
        **os.environ,
        **release.env,
        "LLMPREP_CACHE": str(root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(root / "hub"),
    }
    places = {
        "values.yaml": spec,
        "model.yaml": spec,
        "/etc/llmprep/model.yaml": spec,
        "path/to/config.json": ROOT / "tests" / "data" / "configs" / "llama-3-70b.json",
        "/cache": root / "cache",
        "/tmp/repo": root / "repo",
        "DIR": root / "hub",
        "/var/run/secrets/hf/password": token,
        "…": token,
    }
    # What the docs' own order would have done first, so each command can also run alone (-k).
    for argv in (["download", "--spec", str(spec)], ["prepare", "--spec", str(spec), "--cache", str(root / "cache")]):
        done = _run([*argv, "--offline", "--hub-cache", str(root / "hub")], env, root)
        assert done.returncode == 0, done.stderr[-2000:]
    return {"root": root, "env": env, "places": places}


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmprep.cli", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize("doc", RUNNABLE, ids=_ids(RUNNABLE))
def test_a_command_that_needs_only_files_runs_as_written(doc: DocCommand, workspace: dict[str, object]) -> None:
    places: dict[str, Path] = workspace["places"]  # type: ignore[assignment]
    argv = [str(places.get(word, word)) for word in doc.argv]
    done = _run(argv, workspace["env"], workspace["root"])  # type: ignore[arg-type]
    assert done.returncode == 0, f"{doc.where}: llmprep {' '.join(argv)}\n{done.stderr[-2000:]}"

"""The images' user is the user the chart runs its pods as, and the Triton image can serve a multi-node group.

No Docker engine runs here: the containerfiles are parsed (final USER, groupadd/useradd, apt-get
install) and the chart is rendered through Helm's engine; the pods' runAsUser/runAsGroup must be
the image's USER, and the image must create a passwd entry for that uid (sshd and OpenMPI look the
running uid up in /etc/passwd).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import CHART, Objects, render
from tests.load.test_containers_and_clients import CONTAINERS, instructions

TRITON = CONTAINERS / "triton_trt-llm.containerfile"
CLIENT = CONTAINERS / "client.containerfile"
MULTINODE = CHART / "models" / "llama-3-70b-multinode.yaml"
RELEASES = {"gpt2": [CHART / "models" / "gpt2.yaml"], "llama-3-70b-multinode": [CHART / "values.yaml", MULTINODE]}


def final_user(path: Path) -> tuple[int, int]:
    """The uid and gid of the last USER instruction (both numeric, `USER uid:gid`)."""
    users = [args.strip() for op, args in instructions(path) if op == "USER"]
    assert users, f"{path.name}: no USER instruction"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), f"{path.name}: USER {users[-1]} is not numeric uid:gid"
    return int(uid), int(gid)


def _commands(path: Path, program: str) -> list[list[str]]:
    """Every `program …` command of the RUN instructions, split into words."""
    found = []
    for op, args in instructions(path):
        if op != "RUN":
            continue
        for part in re.split(r"&&|;|\|\|", args):
            words = shlex.split(part)
            if words and words[0] == program:
                found.append(words)
    return found


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def users(path: Path) -> dict[int, dict[str, Any]]:
    """uid -> {name, gid, home, shell, create_home} from every `useradd` of the file."""
    table = {}
    for words in _commands(path, "useradd"):
        uid = _option(words, "--uid")
        assert uid is not None, f"{path.name}: useradd without --uid: {words}"
        table[int(uid)] = {
            "name": words[-1],
            "gid": int(_option(words, "--gid") or -1),
            "home": _option(words, "--home-dir"),
            "shell": _option(words, "--shell"),
            "create_home": "--create-home" in words or "-m" in words,
        }
    return table


def groups(path: Path) -> dict[int, str]:
    return {int(_option(w, "--gid") or -1): w[-1] for w in _commands(path, "groupadd")}


def apt_packages(path: Path) -> set[str]:
    return {
        w
        for words in _commands(path, "apt-get")
        if "install" in words
        for w in words[words.index("install") + 1 :]
        if not w.startswith("-")
    }


def pod_specs(objects: Objects) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every Deployment, LeaderWorkerSet role and bare Pod the release renders."""
    specs = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Deployment":
            specs.append((name, obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "LeaderWorkerSet":
            lwt = obj["spec"]["leaderWorkerTemplate"]
            specs += [
                (f"{name}/{role}", lwt[f"{role}Template"]["spec"])
                for role in ("leader", "worker")
                if f"{role}Template" in lwt
            ]
        elif obj["kind"] == "Pod":
            specs.append((name, obj["spec"]))
    return specs


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def llmprep_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that run llmprep (the image's entry point): the ones that must be the image's user."""
    return [c for c in containers(spec) if c.get("command", ["llmprep"])[0] == "llmprep"]


@pytest.fixture(scope="module", params=list(RELEASES), ids=list(RELEASES))
def release(request: pytest.FixtureRequest) -> tuple[str, Objects]:
    return request.param, render(RELEASES[request.param])


@pytest.mark.parametrize("path", [TRITON, CLIENT], ids=lambda p: p.name)
def test_the_image_ends_as_uid_and_gid_10001(path: Path) -> None:
    assert final_user(path) == (10001, 10001)


@pytest.mark.parametrize("path", [TRITON, CLIENT], ids=lambda p: p.name)
def test_the_image_creates_a_passwd_and_group_entry_for_its_user(path: Path) -> None:
    uid, gid = final_user(path)
    entry = users(path).get(uid)
    assert entry is not None, f"{path.name}: no useradd --uid {uid}"
    assert entry["gid"] == gid and entry["name"] == "llmprep"
    assert groups(path).get(gid) == "llmprep", f"{path.name}: no groupadd --gid {gid} llmprep"


def test_the_triton_user_has_a_home_directory_and_a_login_shell_for_sshd() -> None:
    entry = users(TRITON)[final_user(TRITON)[0]]
    assert entry["create_home"] and entry["home"] == "/home/llmprep"
    assert entry["shell"] not in (None, "/usr/sbin/nologin", "/bin/false"), entry["shell"]


def test_the_triton_image_installs_sshd_and_ssh_for_multinode_groups() -> None:
    assert {"openssh-server", "openssh-client"} <= apt_packages(TRITON)


def test_the_triton_image_installs_ssh_before_it_drops_root() -> None:
    ops = [op for op, _ in instructions(TRITON)]
    runs = [i for i, (op, args) in enumerate(instructions(TRITON)) if op == "RUN" and "openssh-server" in args]
    assert runs and max(runs) < len(ops) - 1 - ops[::-1].index("USER")


def test_every_release_pod_runs_as_the_triton_images_user(release: tuple[str, Objects]) -> None:
    name, objects = release
    uid, gid = final_user(TRITON)
    specs = pod_specs(objects)
    assert specs, f"{name}: no pod renders"
    for where, spec in specs:
        context = spec.get("securityContext", {})
        assert (context.get("runAsUser"), context.get("runAsGroup")) == (uid, gid), where
        assert context.get("fsGroup") == gid, where
        # Every llmprep container, and every container that names no user of its own.
        for c in [
            c
            for c in containers(spec)
            if c in llmprep_containers(spec) or "runAsUser" not in c.get("securityContext", {})
        ]:
            own = c.get("securityContext", {})
            assert own.get("runAsUser", uid) == uid and own.get("runAsGroup", gid) == gid, f"{where}/{c['name']}"


def test_a_root_helper_container_only_hands_files_to_the_images_user(release: tuple[str, Objects]) -> None:
    _, objects = release
    uid, gid = final_user(TRITON)
    helpers = [
        (where, c)
        for where, spec in pod_specs(objects)
        for c in containers(spec)
        if c.get("securityContext", {}).get("runAsUser", uid) != uid
    ]
    if not helpers:
        pytest.skip("every container runs as the pod's user")
    for where, c in helpers:
        assert c["securityContext"]["runAsUser"] == 0, f"{where}/{c['name']}"
        script = " ".join(c.get("command", []) + c.get("args", []))
        owners = re.findall(r"chown\s+(?:-\S+\s+)*(\S+)", script)
        assert owners and all(o == f"{uid}:{gid}" for o in owners), f"{where}/{c['name']}: {script}"


def test_the_multinode_release_renders_worker_and_leader_pods(release: tuple[str, Objects]) -> None:
    name, objects = release
    roles = [where for where, _ in pod_specs(objects) if where.startswith("LeaderWorkerSet/")]
    assert len(roles) == (2 if name.endswith("multinode") else 0), roles


def test_the_pods_uid_has_a_user_entry_in_the_triton_image(release: tuple[str, Objects]) -> None:
    _, objects = release
    entries = users(TRITON)
    for where, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsUser"] in entries, f"{where}: uid has no useradd in {TRITON.name}"

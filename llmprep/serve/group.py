"""This pod's place in a LeaderWorkerSet group, and how the leader reaches the workers.

LeaderWorkerSet injects the group's variables into every container; `discover_group` reads them
(or the flags that name the group host by host). The leader's mpirun spans the group through a
hostfile of the pods' addresses and launches remote ranks over ssh (`SshOptions`); before it
starts, `wait_for_workers` waits for every worker's sshd to answer.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmprep.errors import ServeError, UsageError

# LeaderWorkerSet injects these into every container of a group (kubernetes-sigs/lws,
# api/leaderworkerset/v1: LwsLeaderAddress, LwsGroupSize, LwsWorkerIndex).
LWS_LEADER_ADDRESS = "LWS_LEADER_ADDRESS"
LWS_GROUP_SIZE = "LWS_GROUP_SIZE"
LWS_WORKER_INDEX = "LWS_WORKER_INDEX"
DEFAULT_SSH_PORT = 2222
DEFAULT_SSH_DIR = Path("/etc/llmprep/ssh")
DEFAULT_HOSTFILE = Path(tempfile.gettempdir()) / "llmprep-hostfile"
DEFAULT_WAIT_WORKERS_SECS = 600.0


@dataclass(frozen=True)
class SshOptions:
    """How the leader's mpirun reaches worker pods, and what the worker's sshd serves.

    `directory` holds the group's keys (a Secret mounted with mode 0400): `id_ed25519` (the
    leader's client key), `authorized_keys` (its public key), `ssh_host_ed25519_key` (the host
    key every pod of the group shares) and `known_hosts` (`* ssh-ed25519 <host public key>`).
    """

    port: int = DEFAULT_SSH_PORT
    directory: Path = DEFAULT_SSH_DIR

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.directory / "authorized_keys"


@dataclass(frozen=True)
class Group:
    """This pod's place in a LeaderWorkerSet group (or a group named host by host)."""

    leader_address: str
    size: int  # pods in the group, leader included
    index: int  # 0 for the leader
    named_hosts: tuple[str, ...] = ()  # --hosts: addresses given explicitly, leader first

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.named_hosts or group_hosts(self.leader_address, self.size)


def group_hosts(leader_address: str, size: int) -> tuple[str, ...]:
    """The group's pod addresses in rank order: the leader, then `<leader pod>-<index>` workers.

    LWS names the leader pod `<lws>-<group>` and worker pods `<lws>-<group>-<index>`, all under
    one headless service, so worker addresses are the leader's with `-<index>` on its first label.
    """
    first, dot, rest = leader_address.partition(".")
    return (leader_address, *(f"{first}-{i}{dot}{rest}" for i in range(1, size)))


def discover_group(
    env: Mapping[str, str],
    *,
    leader_address: str | None = None,
    group_size: int | None = None,
    hosts: Sequence[str] = (),
) -> Group | None:
    """This pod's group from flags, else from the LeaderWorkerSet variables; None outside a group."""
    if hosts:
        if group_size is not None and group_size != len(hosts):
            raise UsageError(f"--group-size: {group_size} does not match the {len(hosts)} addresses of --hosts")
        return Group(hosts[0], len(hosts), _env_int(env, LWS_WORKER_INDEX) or 0, tuple(hosts))
    address = leader_address or env.get(LWS_LEADER_ADDRESS) or None
    size = group_size if group_size is not None else _env_int(env, LWS_GROUP_SIZE)
    index = _env_int(env, LWS_WORKER_INDEX)
    if address is None and size is None and index is None:
        return None
    if size is None or size < 1:
        raise UsageError(f"--group-size: required (or {LWS_GROUP_SIZE}), the number of pods in the group (≥ 1)")
    if address is None:
        raise UsageError(f"--leader-address: required (or {LWS_LEADER_ADDRESS}) for a group of {size} pods")
    return Group(leader_address=address, size=size, index=index or 0)


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name}: must be an integer, got {raw!r}") from None


def hostfile_text(hosts: Sequence[str], slots: int) -> str:
    """An OpenMPI hostfile: one line per pod, `slots` ranks (GPUs) each, leader first."""
    return "".join(f"{host} slots={slots} max_slots={slots}\n" for host in hosts)


def wait_for_workers(
    targets: Sequence[str],
    timeout: float,
    *,
    interval: float = 2.0,
    reachable: Callable[[str], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
) -> None:
    """Retry until every `host:port` accepts a connection; ServeError naming the missing ones."""
    check = reachable or _tcp_reachable
    deadline = clock() + timeout
    missing = list(targets)
    while True:
        missing = [t for t in missing if not check(t)]
        if not missing:
            if log:
                log(f"all {len(targets)} workers answer")
            return
        if clock() >= deadline:
            raise ServeError(
                f"workers not reachable after {timeout:g} s: {', '.join(missing)} "
                "(is `llmprep serve --role worker` running in those pods, with the same --ssh-port?)"
            )
        if log:
            log(f"waiting for {len(missing)} of {len(targets)} workers: {', '.join(missing)}")
        sleep(interval)


def _tcp_reachable(target: str) -> bool:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False

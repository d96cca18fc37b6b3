"""What keeps a fake vCenter contained: its lifeline, the container's limits, and the removal of what a killed
run left behind (containers and state folders), found by the labels and owner files that name their run.

A run is identified by its process id and that process's start time (so a recycled pid is not mistaken for
the run that owned it), in its containers' labels and in its state folders' names (an orphaned fakevc empties
its folder, and a container's mount point stays behind, so the name is what is left to read). A leftover is
anything whose owner is gone; a later start removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["CONTAINER_LIMITS", "LABEL", "Lifeline", "container_kwargs", "owner_id", "remove_leftovers",
           "state_prefix"]

LABEL = "vcconform.fakevc"
#: A state folder's name: vcconform-run<pid>.<start time>-<random>.
RUN_FOLDER = re.compile(r"^vcconform-run(\d+)\.(\d+)-")
#: The user a container runs as when the caller is root (nobody): never uid 0.
NOBODY = 65534
#: The container's ceilings: scale-1000x8 peaks at ~320 MB and 7 threads (bench/results/scale.json).
CONTAINER_LIMITS: dict[str, Any] = {"mem_limit": "1g", "memswap_limit": "1g", "pids_limit": 256}


def _start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of a process, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_id(pid: int | None = None) -> str:
    """``<host>:<pid>:<start time>`` of this process (or ``pid``): what labels and owner files record."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's, or not ours to judge: leave it
    return _start_time(int(pid)) == started


def state_prefix() -> str:
    """The name prefix of this process's state folders (tempfile.mkdtemp adds a random part)."""
    pid = os.getpid()
    return f"vcconform-run{pid}.{_start_time(pid)}-"


class Lifeline:
    """A named pipe in the state folder that this process holds open for writing for as long as it wants the
    simulator to live. fakevc (``-lifeline``) reads it and exits once no writer is left: when ``close`` is
    called, or when this process dies, however it dies. Unlike a parent pid it works across pid namespaces."""

    def __init__(self, state: Path, owner_uid: int | None = None) -> None:
        self.path = state / "lifeline"
        os.mkfifo(self.path, 0o600)
        if owner_uid is not None:
            os.chown(self.path, owner_uid, owner_uid)
        # O_RDWR does not wait for a reader; the descriptor is not inherited by child processes.
        self._fd: int | None = os.open(self.path, os.O_RDWR)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def container_kwargs(state: Path, owner: str) -> dict[str, Any]:
    """docker create arguments that make the container a sandbox: host networking (dockerd runs with
    --bridge=none), never root (nobody when the caller is root, else the caller, so the state files stay
    deletable), no capabilities, no new privileges, a read-only root file system with the state folder as
    the only writable place, memory and pid limits, its own pid namespace, and labels naming the run."""
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (NOBODY, NOBODY)
    if os.getuid() == 0:
        for path in (state, *state.rglob("*")):
            os.chown(path, uid, gid, follow_symlinks=False)
    return {
        "network_mode": "host",
        "user": f"{uid}:{gid}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        **CONTAINER_LIMITS,
        "auto_remove": True,
        "labels": {LABEL: "1", f"{LABEL}.owner": owner, f"{LABEL}.state": str(state)},
    }


def remove_leftovers(docker_client: Any | None = None) -> list[str]:
    """Remove what runs that are gone left behind: their fake vCenter containers (running or only created,
    e.g. after a SIGKILL between create and start) and their state folders (which may hold the TLS key).
    Returns what was removed. Safe with other runs alive: only a dead owner's things go."""
    removed: list[str] = []
    if docker_client is not None:
        with contextlib.suppress(Exception):  # a Docker error must not stop a run that can still start
            # The list call alone (no inspect per container): others come and go meanwhile.
            for c in docker_client.api.containers(all=True, filters={"label": LABEL}):
                labels = c.get("Labels") or {}
                if _owner_alive(labels.get(f"{LABEL}.owner", "")):
                    continue
                with contextlib.suppress(Exception):
                    docker_client.api.remove_container(c["Id"], force=True)
                    removed.append(f"container {c['Id'][:12]}")
                state = labels.get(f"{LABEL}.state", "")
                if Path(state).name.startswith("vcconform-") and Path(state).is_dir():
                    shutil.rmtree(state, ignore_errors=True)
                    removed.append(state)
    for state in Path(tempfile.gettempdir()).glob("vcconform-run*"):
        m = RUN_FOLDER.match(state.name)
        if m and state.is_dir() and _start_time(int(m.group(1))) != m.group(2):
            shutil.rmtree(state, ignore_errors=True)
            removed.append(str(state))
    return removed

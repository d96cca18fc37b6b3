"""The container as a sandbox, and what killed runs leave behind: removed by the next run (issue 10, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.harness import docker_available, start_simulator
from conformance.oracle import Oracle
from conformance.sandbox import LABEL, owner_id, remove_leftovers, state_prefix
from tests.conftest import REPO, STANDARD

NO_DOCKER = docker_available()


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def docker_client() -> Any:
    import docker

    return docker.from_env()


def status_of(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


@pytest.mark.container
@pytest.mark.skipif(NO_DOCKER is not None, reason=f"container backend not tested: {NO_DOCKER}")
def test_the_container_is_a_sandbox() -> None:
    endpoint = start_simulator(STANDARD, "container")
    client = docker_client()
    try:
        oracle = Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file))
        assert len(oracle.inventory().clusters) == 3  # it still serves
        oracle.close()
        (c,) = [c for c in client.containers.list(filters={"label": LABEL})
                if c.labels.get(f"{LABEL}.state") == str(endpoint.state_dir)]
        host, config = c.attrs["HostConfig"], c.attrs["Config"]
        inspect = {k: host[k] for k in ("CapDrop", "SecurityOpt", "ReadonlyRootfs", "Memory", "PidsLimit", "PidMode",
                                        "NetworkMode", "Privileged")}
        print(json.dumps({"User": config["User"], **inspect}))
        assert config["User"].split(":")[0] not in ("", "0", "root")
        assert inspect["CapDrop"] == ["ALL"] and not host["CapAdd"] and not inspect["Privileged"]
        assert inspect["SecurityOpt"] == ["no-new-privileges:true"] and inspect["ReadonlyRootfs"] is True
        assert inspect["Memory"] > 0 and inspect["PidsLimit"] > 0
        assert inspect["PidMode"] in ("", "private") and inspect["NetworkMode"] == "host"
        assert c.labels[f"{LABEL}.owner"] == owner_id()
        # The process itself, as the kernel sees it.
        top = c.top(ps_args="-o pid")["Processes"]
        (pid,) = [int(p[0]) for p in top]
        st = status_of(pid)
        assert st["Uid"].split()[0] != "0" and int(st["CapEff"], 16) == 0 and st["NoNewPrivs"].strip() == "1"
        assert Path(f"/proc/{pid}/ns/pid").resolve() != Path("/proc/self/ns/pid").resolve()
    finally:
        endpoint.stop()
        client.close()


CHILD = """
import sys, time
from conformance.harness import start_simulator
e = start_simulator(sys.argv[1], "container")
print(e.state_dir, flush=True)
time.sleep(600)
"""


@pytest.mark.container
@pytest.mark.skipif(NO_DOCKER is not None, reason=f"container backend not tested: {NO_DOCKER}")
def test_a_killed_run_leaves_no_container_and_its_state_goes() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(STANDARD)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert child.stdout is not None
    state = Path(child.stdout.readline().strip())
    client = docker_client()
    try:
        def mine() -> list[Any]:
            return list(client.api.containers(all=True, filters={"label": f"{LABEL}.state={state}"}))
        assert len(mine()) == 1
        child.kill()  # SIGKILL: no finalizer runs; the lifeline closes with the process
        child.wait()
        assert wait_until(lambda: not mine()), "the container outlived the run that started it"
        assert not (state / "key.pem").exists(), "the TLS key outlived the run"
        remove_leftovers(client)  # the next run: the container's mount point stays behind, empty
        assert not state.exists(), f"{state} left behind"
    finally:
        client.close()


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_leftovers_of_dead_runs_go_and_live_ones_stay() -> None:
    gone = Path(tempfile.mkdtemp(prefix=f"vcconform-run{dead_pid()}.1-"))
    (gone / "key.pem").write_text("secret")
    live = Path(tempfile.mkdtemp(prefix=state_prefix()))
    other = Path(tempfile.mkdtemp(prefix="vcconform-"))  # not named by a run: not ours to judge
    try:
        removed = remove_leftovers()
        assert str(gone) in removed and not gone.exists()
        assert live.exists() and other.exists()
    finally:
        for p in (gone, live, other):
            subprocess.run(["rm", "-rf", str(p)], check=False)


@pytest.mark.container
@pytest.mark.skipif(NO_DOCKER is not None, reason=f"container backend not tested: {NO_DOCKER}")
def test_a_container_left_in_created_is_removed() -> None:
    """A SIGKILL between docker create and start left a container in Created for ever: the labels name its
    run, and the next start removes it."""
    from conformance.harness import default_image

    client = docker_client()
    dead = dead_pid()
    state = Path(tempfile.mkdtemp(prefix=f"vcconform-run{dead}.1-"))
    owner = owner_id().rsplit(":", 2)[0] + f":{dead}:1"
    try:
        c = client.containers.create(default_image(), command=["-version"], network_mode="host",
                                     labels={LABEL: "1", f"{LABEL}.owner": owner, f"{LABEL}.state": str(state)})
        alive = client.containers.create(default_image(), command=["-version"], network_mode="host",
                                         labels={LABEL: "1", f"{LABEL}.owner": owner_id(), f"{LABEL}.state": ""})
        try:
            removed = remove_leftovers(client)  # (another test's start may have swept it already)
            ids = {x["Id"] for x in client.api.containers(all=True, filters={"label": LABEL})}
            assert c.id not in ids and alive.id in ids, removed
            assert not state.exists()
        finally:
            alive.remove(force=True)
    finally:
        subprocess.run(["rm", "-rf", str(state)], check=False)
        client.close()


def test_state_folders_are_named_by_their_run() -> None:
    endpoint = start_simulator(STANDARD)
    try:
        assert endpoint.state_dir.name.startswith(state_prefix())
    finally:
        endpoint.stop()
    assert not endpoint.state_dir.exists()

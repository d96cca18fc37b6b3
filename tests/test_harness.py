"""The harness: both backends start a ready fake vCenter and leave nothing behind, however the run ends; the
password reaches the simulator only through a private file; liveness says what became of a simulator."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from conformance.harness import Endpoint, SimulatorError, docker_available, running_simulator, start_simulator
from conformance.oracle import Oracle, OracleError
from conformance.topology import HostSpec, Topology, load_topology
from tests.conftest import REPO, backend_params


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def container_ids(state: Path | None = None) -> set[str]:
    """Every container, or those of the run whose state folder is ``state`` (tests in parallel start theirs)."""
    import docker

    client = docker.from_env()
    filters = {"label": f"vcconform.fakevc.state={state}"} if state else {}
    try:
        return {c["Id"] for c in client.api.containers(all=True, filters=filters)}  # no inspect: they come and go
    finally:
        client.close()


@pytest.mark.parametrize("backend", backend_params())
def test_ready_endpoint_and_clean_stop(standard: Path, backend: str) -> None:
    before = container_ids() if backend == "container" else set()
    endpoint = start_simulator(standard, backend)
    try:
        info = json.loads((endpoint.state_dir / "ready.json").read_text())
        assert endpoint.url == f"https://127.0.0.1:{endpoint.port}/sdk"
        assert endpoint.backend == backend
        assert endpoint.versions["govmomi"].startswith("v0.")
        # Ready means /about answers over TLS verified with the endpoint's CA file...
        about = requests.get(f"https://127.0.0.1:{endpoint.port}/about", verify=str(endpoint.ca_file), timeout=5)
        assert "RetrievePropertiesEx" in about.json()["methods"]
        # ... and a real pyvmomi login works with the endpoint's credentials.
        oracle = Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file))
        assert oracle.vcenter_uuid == endpoint.instance_uuid
        oracle.close()
        started = container_ids(endpoint.state_dir) - before if backend == "container" else set()
        # A container has a pid namespace of its own: the pid it reports is not one of ours.
        assert backend == "container" or pid_alive(info["pid"])
    finally:
        endpoint.stop()
    assert not endpoint.state_dir.exists()
    assert backend == "container" or wait_until(lambda: not pid_alive(info["pid"]), 5)
    if backend == "container":
        assert len(started) == 1
        assert wait_until(lambda: not (container_ids() & started), 10), "container left behind"
    endpoint.stop()  # a second stop is harmless


def test_password_and_certificate_are_enforced(sim: Endpoint) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{sim.port}/about", timeout=5)  # the system store does not trust it
    with pytest.raises(OracleError, match="refused the credentials"):
        Oracle(sim.host, sim.port, sim.username, "not-the-password", str(sim.ca_file))


def test_two_simulators_run_side_by_side(standard: Path) -> None:
    with running_simulator(standard) as a, running_simulator(standard) as b:
        assert a.port != b.port and a.password != b.password
        # Same topology, same instanceUuid: node names survive a restart.
        assert a.instance_uuid == b.instance_uuid


def test_missing_binary_is_one_line_with_a_hint(standard: Path, tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match=r"^fake vCenter binary not found at .*make simulator[^\n]*$"):
        start_simulator(standard, binary=tmp_path / "fakevc")


def test_a_simulator_that_exits_reports_its_own_words(standard: Path) -> None:
    topo = load_topology(standard)
    dc = topo.datacenters[0]
    broken = HostSpec("broken", cpu_sockets=4, cpu_cores=2, cpu_threads=2, cpu_mhz=1, memory_mb=1)
    bad = Topology(topo.name, "broken.yaml", (type(dc)(dc.name, dc.clusters, (broken,), ()),))
    with pytest.raises(SimulatorError, match=r'exited with code 2: fakevc: broken.yaml: .*"broken": impossible'):
        start_simulator(bad)


def test_unknown_backend_is_refused(standard: Path) -> None:
    with pytest.raises(SimulatorError, match="unknown backend 'vm'"):
        start_simulator(standard, "vm")


@pytest.mark.container
@pytest.mark.skipif(docker_available() is not None, reason="needs a Docker engine")
def test_missing_image_says_make_image(standard: Path) -> None:
    with pytest.raises(SimulatorError, match=r"image vcconform/fakevc:nope not found .*make image"):
        start_simulator(standard, "container", image="vcconform/fakevc:nope")


CHILD = """
import sys, time
from conformance.harness import start_simulator
e = start_simulator(sys.argv[1])
print(e.state_dir, flush=True)
time.sleep(600)
"""


def test_a_killed_parent_leaves_no_simulator(standard: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(standard)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO)
    assert child.stdout is not None
    state = Path(child.stdout.readline().strip())
    pid = json.loads((state / "ready.json").read_text())["pid"]
    child.kill()  # SIGKILL: no finalizer runs; the simulator notices its parent is gone
    child.wait()
    assert wait_until(lambda: not pid_alive(pid), 5), "simulator outlived its parent"
    assert wait_until(lambda: not state.exists(), 5), f"{state} left behind"


INTERRUPTED_CHECK = """
import json, time
def test_waits(vcenter):
    (vcenter.state_dir.parent / "{marker}").write_text(json.dumps(
        [str(vcenter.state_dir), json.loads((vcenter.state_dir / "ready.json").read_text())["pid"]]))
    time.sleep(600)
"""


def test_ctrl_c_during_a_run_stops_the_simulator(tmp_path: Path) -> None:
    marker = f"vcconform-marker-{os.getpid()}.json"
    (tmp_path / "test_interrupted.py").write_text(INTERRUPTED_CHECK.replace("{marker}", marker))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: (tmp_path / marker).exists(), 30), "the check never started"
        state, pid = json.loads((tmp_path / marker).read_text())
        run.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
        run.wait(timeout=30)
    finally:
        run.kill()
    assert not pid_alive(pid)
    assert not Path(state).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("vcconform-", "govcsim-", "fakevc-"))
                and p.is_dir()]


# -- issue 8: the password, private state files, liveness ----------------------------------------------------

def _container(endpoint: Endpoint) -> Any:
    import docker

    client = docker.from_env()
    try:
        return next(c for c in client.containers.list() if str(endpoint.state_dir) in json.dumps(c.attrs["Mounts"]))
    finally:
        client.close()


@pytest.mark.parametrize("backend", backend_params())
def test_the_password_reaches_the_simulator_only_through_a_private_file(standard: Path, backend: str,
                                                                        tmp_path: Path) -> None:
    """Once: the password was in the container's environment (docker inspect) and the trace was 0644."""
    endpoint = start_simulator(standard, backend, trace=True)
    try:
        Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file)).close()
        pid = json.loads((endpoint.state_dir / "ready.json").read_text())["pid"]
        if backend == "container":
            attrs = _container(endpoint).attrs
            assert endpoint.password not in json.dumps(attrs["Config"]) + json.dumps(attrs["Args"])
        else:
            for what in ("environ", "cmdline"):
                assert endpoint.password.encode() not in Path(f"/proc/{pid}/{what}").read_bytes(), what
        assert (endpoint.state_dir / "password").read_text() == endpoint.password
        assert stat.S_IMODE(endpoint.state_dir.stat().st_mode) == 0o700
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in endpoint.state_dir.iterdir()}
        assert {"password", "trace.log", "key.pem", "ready.json", "topology.json"} <= set(modes)
        dirs = {p.name for p in endpoint.state_dir.iterdir() if p.is_dir()}  # vcsim's datastore folders
        assert {name: oct(mode) for name, mode in modes.items() if mode != (0o700 if name in dirs else 0o600)} == {}
    finally:
        endpoint.stop(keep_logs_in=tmp_path)
    trace = tmp_path / "simulator-trace-standard.log"
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    text = trace.read_text()
    assert "Login" in text and "********" in text and endpoint.password not in text


def test_fakevc_refuses_to_start_without_a_password_file(standard: Path, tmp_path: Path) -> None:
    """Once: without a password it served anyone who logged in with "pass"."""
    from conformance.harness import default_binary
    from conformance.topology import load_topology

    (tmp_path / "topology.json").write_text(load_topology(standard).to_json())
    args = [str(default_binary()), "-topology", str(tmp_path / "topology.json"), "-state-dir", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=20, env={**os.environ, "FAKEVC_PASSWORD": "x"})
    assert done.returncode == 2
    assert done.stderr == "fakevc: -password-file is required (a file, mode 0600, holding the password)\n"
    loose = tmp_path / "password"
    loose.write_text("s3cret")
    loose.chmod(0o644)
    done = subprocess.run([*args, "-password-file", str(loose)], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "mode 0644 lets others read it; chmod 600 it" in done.stderr


@pytest.mark.parametrize("backend", backend_params())
def test_liveness_says_what_became_of_the_simulator(standard: Path, backend: str) -> None:
    endpoint = start_simulator(standard, backend)
    try:
        pid = json.loads((endpoint.state_dir / "ready.json").read_text())["pid"]
        if backend == "container":
            pid = _container(endpoint).attrs["State"]["Pid"]  # as the host sees it
        assert endpoint.status() is None and endpoint.probe() is None
        os.kill(pid, signal.SIGSTOP)  # delivered asynchronously: the state follows a moment later
        try:
            assert wait_until(lambda: "stopped (SIGSTOP: process state T)" in str(endpoint.status()), 5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: endpoint.status() is None, 5)
        if backend == "container":
            container = _container(endpoint)
            container.pause()
            try:
                assert endpoint.probe(timeout=2) == f"fake vCenter container {container.id[:12]} paused"
            finally:
                container.unpause()
        endpoint.kill()
        gone = "fake vCenter exited (signal 9)" if backend == "process" else "fake vCenter container"
        assert wait_until(lambda: gone in str(endpoint.status()), 10), endpoint.status()
        assert gone in str(endpoint.probe())
    finally:
        endpoint.stop()
    assert endpoint.status() is None  # stopped on purpose: nothing to report

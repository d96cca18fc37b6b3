"""A verdict that cannot lie (issue 8): each run here once published a passing or misleading verdict, or hung.

Every test runs the real suite (``vcconform run``) in a subprocess against a real fake vCenter, with a
driver from tests/broken_drivers.py that breaks the run the way an attacker or an unlucky user would, and
reads back the report dir. A run that does not end in time is killed (its process group, and the simulator
pids the drivers noted) and the test fails: hanging is one of the lies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.harness import running_simulator
from tests.broken_drivers import HANGING_ENV, LEAKS_ENV, PIDS_ENV
from tests.conftest import REPO, STANDARD

BROKEN = "tests.broken_drivers:"


@dataclass
class Run:
    code: int
    out: str
    err: str
    dir: Path
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        path = self.dir / "report.json"
        assert path.exists(), f"no report.json; the run said:\n{self.out[-3000:]}{self.err[-2000:]}"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def checks(self) -> dict[str, dict[str, Any]]:
        return {c["check"]: c for c in self.report["checks"]}


def _kill_noted_pids(pids_file: Path) -> None:
    if pids_file.exists():
        for pid in {int(p) for p in pids_file.read_text().split()}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
    report_dir = tmp_path / "report"
    pids = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "run", "--report-dir", str(report_dir),
                             "-q", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, PIDS_ENV: str(pids), **(env or {})}, start_new_session=True)
    return proc, report_dir


def finish(proc: subprocess.Popen[str], report_dir: Path, started: float, timeout: float) -> Run:
    pids = report_dir.parent / "pids"
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its xdist workers: a group this test started
        proc.communicate()
        _kill_noted_pids(pids)  # a stopped simulator cannot notice that its parent is gone
        pytest.fail(f"the run did not end within {timeout:.0f}s: it hangs")
    finally:
        _kill_noted_pids(pids)
    return Run(proc.returncode, out, err, report_dir, time.monotonic() - started)


def vcconform(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> Run:
    started = time.monotonic()
    proc, report_dir = start(tmp_path, *args, env=env)
    return finish(proc, report_dir, started, timeout)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- 1. outcome integrity -----------------------------------------------------------------------------------

def test_a_driver_that_kills_its_xdist_worker_is_an_error_not_a_pass(tmp_path: Path) -> None:
    """Once: pytest said "1 failed", yet report.json said CONFORMANT, 37 passed (the crash report, phase ???,
    was ignored)."""
    run = vcconform(tmp_path, "--certify", "-n", "2", "--driver", BROKEN + "KillsItsWorker")
    crashed = run.checks()["test_spawn.py::test_instance_is_found_again_by_uuid"]
    assert crashed["outcome"] == "error"
    assert "crashed while running" in crashed["message"] and "ended the process that ran it" in crashed["message"]
    report = run.report
    assert report["verdict"] == "NONCONFORMANT" and "mandatory SPAWN-06 error" in report["reasons"]
    assert {r["id"]: r["status"] for r in report["requirements"]}["SPAWN-06"] == "error"
    assert run.code == report["exit_code"] == 1
    verdict = next(line for line in run.out.splitlines() if line.startswith("verdict: "))
    assert verdict.startswith("verdict: NONCONFORMANT (") and "mandatory SPAWN-06 error" in verdict


DESELECTED = ("test_nodes.py::test_one_node_per_managed_cluster", "test_nodes.py::test_names_survive_a_vcenter_restart",
              "test_resources.py::test_node_figures_equal_vcenter",
              "test_resources.py::test_disk_figures_count_each_datastore_once")


def test_a_deselected_certification_is_refused(tmp_path: Path) -> None:
    """Once: CONFORMANT, exit 0, on 33 of 37 checks (one check each of NODE-01, NODE-03, RES-01, RES-02 left
    out)."""
    args = [a for check in DESELECTED for a in ("--deselect", check)]
    run = vcconform(tmp_path, "--certify", *args)
    assert run.code == 4
    assert run.err == ("vcconform: --certify runs every check of the catalogue: --deselect would leave checks out "
                       "(drop it, or run without --certify)\n")
    assert run.report["verdict"] == "INCOMPLETE" and run.report["reasons"][0].startswith("did not start: --certify")


def test_a_certification_that_quietly_misses_a_check_is_incomplete(tmp_path: Path) -> None:
    """A plugin (or a stray conftest.py) drops a check that --certify's refusals cannot see: the catalogue
    does."""
    run = vcconform(tmp_path, "--certify", "-p", "tests.deselect_one")
    report = run.report
    assert report["verdict"] == "INCOMPLETE" and run.code == report["exit_code"] == 2
    assert report["not_run"] == ["test_nodes.py::test_names_survive_a_vcenter_restart"]
    assert {r["id"]: r["status"] for r in report["requirements"]}["NODE-03"] == "not run"


def test_a_requirement_is_judged_on_all_its_checks(tmp_path: Path) -> None:
    """Once: a requirement passed when whichever of its checks ran passed."""
    run = vcconform(tmp_path, "--requirement", "NODE-03", "--deselect", DESELECTED[1])
    status = {r["id"]: r for r in run.report["requirements"]}["NODE-03"]
    assert run.checks()["test_nodes.py::test_names_survive_a_driver_restart_and_a_cluster_rename"]["outcome"] == \
        "passed"
    assert status["status"] == "not run" and status["not_run"] == [DESELECTED[1]]
    assert run.report["verdict"] == "NONCONFORMANT" and run.code == 1


# -- 2. reports are never stale --------------------------------------------------------------------------

def _stale_report_dir(directory: Path) -> None:
    directory.mkdir(parents=True)
    stale = {"schema": 2, "verdict": "CONFORMANT", "reasons": [], "checks": []}
    (directory / "report.json").write_text(json.dumps(stale))
    (directory / "report.html").write_text("<div class='verdict CONFORMANT'>CONFORMANT</div>")
    (directory / "junit.xml").write_text("<testsuites><testsuite tests='37' failures='0'/></testsuites>")
    (directory / "simulator-standard.log").write_text("an earlier run's log\n")


@pytest.mark.parametrize(("args", "env", "verdict", "code", "reason"), [
    (["--seed", "abc"], {}, "INCOMPLETE", 4, "did not start: --seed 'abc': expected an integer"),
    (["--driver", "tests.exits_on_import:Driver"], {}, "INCOMPLETE", 4, "called sys.exit(3)"),
    ([], {"VCCONFORM_FAKEVC_BINARY": "/nonexistent/fakevc"}, "ERROR", 3,
     "the fake vCenter did not start: fake vCenter binary not found at /nonexistent/fakevc"),
], ids=["bad-value", "driver-exits-on-import", "simulator-cannot-start"])
def test_a_run_that_fails_at_start_up_leaves_no_stale_report(tmp_path: Path, args: list[str], env: dict[str, str],
                                                            verdict: str, code: int, reason: str) -> None:
    """Once: a run that failed at start-up left the previous run's CONFORMANT report.json/report.html."""
    _stale_report_dir(tmp_path / "report")
    run = vcconform(tmp_path, "--requirement", "NODE-01", *args, env=env)
    report = run.report
    assert report["verdict"] == verdict and run.code == report["exit_code"] == code, (run.out, run.err)
    assert reason in report["reasons"][0]
    assert "CONFORMANT</div>" not in (run.dir / "report.html").read_text()
    assert verdict in (run.dir / "report.html").read_text()
    assert not (run.dir / "simulator-standard.log").exists() or "earlier run" not in \
        (run.dir / "simulator-standard.log").read_text()
    junit = run.dir / "junit.xml"
    assert not junit.exists() or "tests='37'" not in junit.read_text()


@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGTERM, "stopped by SIGTERM"),
                                             (signal.SIGINT, "interrupted (Ctrl-C)")])
def test_an_interrupted_run_says_incomplete_and_stops_the_simulator(tmp_path: Path, sig: int, reason: str) -> None:
    """Once: SIGTERM to `vcconform run` skipped clean-up and left the report of an earlier run (or none)."""
    _stale_report_dir(tmp_path / "report")
    hanging = tmp_path / "hanging"
    started = time.monotonic()
    proc, report_dir = start(tmp_path, "--driver", BROKEN + "HangsInRefresh", "--requirement", "NODE-01",
                             env={HANGING_ENV: str(hanging), "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 60
        while not hanging.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hanging.exists(), "the check never started"
        marker = json.loads((report_dir / "report.json").read_text())  # while it runs: a marker, not a verdict
        assert marker["verdict"] == "INCOMPLETE" and "under way" in marker["reasons"][0]
        state = next(tmp_path.glob("vcconform-*"))  # the simulator's state dir (TMPDIR)
        simulator = json.loads((state / "ready.json").read_text())["pid"]
        proc.send_signal(sig)
        run = finish(proc, report_dir, started, 60)
    finally:
        if proc.poll() is None:  # a failed assertion above: the run this test started must not outlive it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    report = run.report
    assert report["verdict"] == "INCOMPLETE" and report["reasons"][0] == reason
    assert run.code == report["exit_code"] == 2
    assert not pid_alive(simulator), "the fake vCenter outlived the run"
    assert not state.exists(), f"{state} left behind"


# -- 3. infrastructure failures are named as such ----------------------------------------------------------

@pytest.mark.parametrize(("driver", "line"), [
    ("KillsTheSimulator", "fake vCenter exited (signal 9) during "
                          "test_nodes.py::test_a_cluster_named_twice_is_one_node"),
    ("StopsTheSimulator", "fake vCenter stopped (SIGSTOP: process state T) during "
                          "test_nodes.py::test_a_cluster_named_twice_is_one_node"),
])
def test_a_simulator_that_dies_mid_run_is_an_infrastructure_error(tmp_path: Path, driver: str, line: str) -> None:
    """Once: every later check failed with "Connection refused" and the reasons blamed the driver ("mandatory
    NODE-01 failed"), in 2,000 lines; a stopped simulator hung the run forever."""
    run = vcconform(tmp_path, "--driver", BROKEN + driver, "--requirement", "NODE-01", "--requirement", "RES-01",
                    "--requirement", "SEC-01", timeout=120)
    report = run.report
    assert report["verdict"] == "ERROR" and run.code == report["exit_code"] == 3
    assert report["reasons"][0] == line and not [r for r in report["reasons"] if "mandatory" in r]
    assert report["ended"]["kind"] == "infrastructure"
    outcomes = {c: r["outcome"] for c, r in run.checks().items()}
    assert outcomes == {"test_nodes.py::test_one_node_per_managed_cluster": "passed",
                        "test_nodes.py::test_one_node_per_cluster_on_the_heterogeneous_topology": "passed",
                        "test_nodes.py::test_a_cluster_named_twice_is_one_node": "error"}  # and the run ended there
    assert f"Interrupted: {line}" in run.out and f"verdict: ERROR ({line}" in run.out
    assert len(run.out.splitlines()) < 80, "the run should end with one line, not pages of fallout"
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert pids and not any(pid_alive(p) for p in pids), "a stopped simulator was left behind"


# -- 4. every wait is bounded --------------------------------------------------------------------------

def test_a_hanging_driver_constructor_errors_with_its_stack_and_the_run_goes_on(tmp_path: Path) -> None:
    """Once: a constructor that hung hung the run forever."""
    run = vcconform(tmp_path, "--driver", BROKEN + "HangsInConstructor", "--requirement", "NODE-01",
                    env={"VCCONFORM_CHECK_TIMEOUT": "10"}, timeout=90)
    checks = run.checks()
    assert len(checks) == 3  # the run went on to the next checks
    for check in checks.values():
        assert check["outcome"] == "error"
        assert check["message"].startswith("the driver's constructor did not return within 5s; it was at:")
        assert "broken_drivers.py" in check["message"] and "client.recv(1)" in check["message"]
    assert run.report["verdict"] == "NONCONFORMANT" and run.report["reasons"][0] == "mandatory NODE-01 error"
    assert run.code == 1


def test_a_hung_check_errors_with_its_stack_and_the_run_goes_on(tmp_path: Path) -> None:
    """A driver blocked in a socket read: the watchdog ends the check and the next one runs."""
    run = vcconform(tmp_path, "--driver", BROKEN + "HangsInRefresh", "--requirement", "NODE-01",
                    env={"VCCONFORM_CHECK_TIMEOUT": "4"}, timeout=90)
    checks = run.checks()
    assert len(checks) == 3
    for check in checks.values():
        assert check["outcome"] == "error"
        assert check["message"].startswith("the check ran past --check-timeout (4s); it was at:")
        assert "in get_available_nodes" in check["message"] and "client.recv(1)" in check["message"]
    assert run.report["verdict"] == "NONCONFORMANT" and run.code == 1


# -- 5. no secret in any artefact ----------------------------------------------------------------------

@pytest.mark.parametrize("site", ["fake", "existing"])
def test_no_password_reaches_any_artefact(tmp_path: Path, site: str) -> None:
    """Once: passwords were copied word for word from driver exception texts into report.json, junit.xml and
    report.html, and into the 0644 SOAP trace."""
    leaks = tmp_path / "leaks"
    args = ["--driver", BROKEN + "LeaksPasswords", "--vcsim-trace", "-o", "junit_logging=all", "-rA",
            "--requirement", "NODE-01", "--requirement", "SEC-03", "--requirement", "SEC-04"]
    env = {LEAKS_ENV: str(leaks)}
    if site == "fake":
        run = vcconform(tmp_path, *args, env=env)
    else:
        with running_simulator(STANDARD) as sim:
            inventory = tmp_path / "inventory.yaml"
            inventory.write_text("clusters:\n" + "".join(f"  - {p}\n" for p in sim.topology.cluster_paths()))
            run = vcconform(tmp_path, *args, "--vcenter-url", sim.url, "--vcenter-username", sim.username,
                            "--vcenter-ca-file", str(sim.ca_file), "--vcenter-inventory", str(inventory),
                            env={**env, "VCCONFORM_VCENTER_PASSWORD": sim.password})
    passwords = set(leaks.read_text().split())
    # The fake site's two simulators and SEC-04's wrong password; an existing vCenter has only its own.
    assert len(passwords) >= (3 if site == "fake" else 1), passwords
    failed = [c for c in run.report["checks"] if c["outcome"] == "failed"]
    assert failed and all("********" in c["message"] for c in failed if "cannot list nodes" in c["message"])
    files = [p for p in run.dir.rglob("*") if p.is_file()]
    if site == "fake":
        traces = [p for p in files if p.name.startswith("simulator-trace-")]
        assert traces and all(p.stat().st_mode & 0o077 == 0 for p in traces), "traces must be 0600"
        assert any("********" in p.read_text() for p in traces)
    found = [f"{p.name}: {pw}" for p in files for pw in passwords if pw in p.read_text(errors="replace")]
    assert not found, f"passwords in the report dir: {found}"
    assert not [pw for pw in passwords if pw in run.out + run.err], "a password reached the terminal output"

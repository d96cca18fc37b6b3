"""The whole suite against driver processes that break the protocol (issue 12): each run ends with one clear
line and the verdict ERROR (exit 3) — the suite could not talk to the driver, so nothing was proven about it —
never a hang; the checks that did not run are named. A contract error that is the wrong one is no protocol
failure: the check it breaks fails, and the verdict is NONCONFORMANT. Every run here is ``vcconform run`` in a
subprocess with its own fake vCenter; the driver is the reference behind tests/protocol_faults.py.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.test_run_integrity import Run, vcconform

#: How the suite names the driver processes these tests start (python or python3, as the venv has it).
PROGRAM = Path(sys.executable).name


def faulty(fault: str, method: str) -> str:
    return shlex.join([sys.executable, "-m", "tests.protocol_faults", fault, method])


#: (fault, the method it hits, the requirement run, what the one line says, the check it happens in)
BROKEN = [
    ("crash", "get_available_resource", "RES-01", "exited with status 2 while answering get_available_resource",
     "test_resources.py::test_node_figures_equal_vcenter"),
    ("hang", "get_available_nodes", "NODE-01", "did not answer get_available_nodes within 3s; it was killed",
     "test_nodes.py::test_one_node_per_managed_cluster"),
    ("garbage", "get_available_nodes", "NODE-01",
     "wrote what is not a protocol message on stdout (not JSON): 'refreshing nodes...'",
     "test_nodes.py::test_one_node_per_managed_cluster"),
    ("unknown-method", "get_info", "SPAWN-06",
     "does not implement get_info: JSON-RPC error -32601 (Method not found): no method 'get_info'",
     "test_spawn.py::test_instance_is_found_again_by_uuid"),
]


def reason_of(run: Run) -> str:
    reason: str = run.report["reasons"][0]
    return reason


def assert_protocol_error(run: Run, says: str, check: str) -> None:
    report = run.report
    assert run.code == report["exit_code"] == 3, run.out[-2000:]
    assert report["verdict"] == "ERROR" and report["ended"]["kind"] == "driver"
    reason = report["reasons"][0]
    assert reason.startswith(f"driver process {PROGRAM} (pid ") and says in reason, reason
    assert f" during {check}" in reason or f" during conformance/checks/{check}" in reason, reason
    assert "\n" not in reason
    broken = run.checks()
    (name,) = [c for c in broken if c.endswith(check)]
    assert broken[name]["outcome"] == "error" and says in broken[name]["message"]
    assert f"verdict: ERROR ({reason}" in run.out
    # The driver's own words are kept: the tail in the report, every line in the report dir.
    assert list(run.dir.glob("driver-stderr*.log"))


@pytest.mark.parametrize(("fault", "method", "requirement", "says", "check"), BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_a_driver_process_that_breaks_the_protocol_ends_the_run_with_error(
        tmp_path: Path, fault: str, method: str, requirement: str, says: str, check: str) -> None:
    run = vcconform(tmp_path, "--driver-command", faulty(fault, method), "--driver-timeout", "3",
                    "--requirement", requirement, timeout=120)
    assert_protocol_error(run, says, check)
    if fault == "crash":  # RES-01 has a second check: the run stopped before it
        assert "test_resources.py::test_node_figures_on_the_heterogeneous_topology" in run.report["not_run"]
        assert len(run.report["checks"]) == 1
        assert "panic: runtime error" in run.report["ended"]["log_tail"]
        assert reason_of(run).endswith(f"during {check}; its last stderr line: panic: runtime error: invalid memory "
                                       "address or nil pointer dereference")
        assert "the driver process's last stderr lines:" in run.out


def test_a_wrong_contract_error_fails_the_check_it_breaks(tmp_path: Path) -> None:
    run = vcconform(tmp_path, "--driver-command", faulty("wrong-error", "get_available_resource"),
                    "--requirement", "RES-04", timeout=120)
    report = run.report
    assert report["verdict"] == "NONCONFORMANT" and run.code == 1
    assert report["reasons"][0] == "mandatory RES-04 failed"
    (check,) = report["checks"]
    assert check["outcome"] == "failed" and "InstanceNotFound" in check["message"], check
    assert report["ended"] is None


def test_a_driver_that_fails_its_handshake_runs_no_check(tmp_path: Path) -> None:
    command = shlex.join([sys.executable, "-c", "import sys; print('libfoo.so: not found', file=sys.stderr); "
                                                "sys.exit(7)"])
    run = vcconform(tmp_path, "--driver-command", command, "--requirement", "NODE-01", timeout=120)
    report = run.report
    assert run.code == 3 and report["verdict"] == "ERROR" and report["ended"]["kind"] == "driver"
    # It may exit before or after the handshake is sent: the line says which.
    reason = report["reasons"][0]
    assert re.fullmatch(rf"driver process {re.escape(PROGRAM)} \(pid \d+\) exited with status 7 "
                        r"(while answering initialize|before it was asked anything); its last stderr line: "
                        r"libfoo.so: not found \(at the handshake, before any check\)", reason), reason
    assert report["checks"] == [] and report["not_run"]

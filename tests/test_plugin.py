"""The plugin end to end: an existing vCenter (--vcenter-url), certification mode, xdist, and what the
reports hold (and never hold: the password)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conformance.harness import running_simulator
from tests.conftest import REPO, STANDARD


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--report-dir", str(tmp_path), "-q",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    report = tmp_path / "report.json"
    assert report.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    return done.returncode, json.loads(report.read_text()), done.stdout


def test_existing_vcenter_runs_what_needs_no_control_api(tmp_path: Path) -> None:
    with running_simulator(STANDARD) as sim:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text("clusters:\n" + "".join(f"  - {p}\n" for p in sim.topology.cluster_paths())
                             + "scratch_datacenter: DC0\n")
        code, report, out = run(tmp_path, "--vcenter-url", sim.url, "--vcenter-username", sim.username,
                                "--vcenter-ca-file", str(sim.ca_file), "--vcenter-inventory", str(inventory),
                                env={"VCCONFORM_VCENTER_PASSWORD": sim.password})
        password = sim.password
    outcomes = {c["check"].split("::")[1]: (c["outcome"], c["message"]) for c in report["checks"]}
    assert outcomes["test_one_node_per_managed_cluster"][0] == "passed"
    assert outcomes["test_vm_lands_in_the_nodes_cluster"][0] == "passed"
    assert outcomes["test_added_cluster_appears_after_refresh"][0] == "passed"
    skipped = {k: m for k, (o, m) in outcomes.items() if o == "skipped"}
    assert "needs the fake vCenter's control API" in skipped["test_expired_session_is_replaced"]
    assert "heterogeneous topology needs the fake vCenter" in skipped["test_node_figures_on_the_heterogeneous_topology"]
    assert not [k for k, (o, _) in outcomes.items() if o in ("failed", "error")], outcomes
    assert report["environment"]["backend"] == "external"
    assert report["verdict"] == "NONCONFORMANT" and code == 1  # mandatory checks could not run
    for name in ("report.json", "report.html", "junit.xml"):
        assert password not in (tmp_path / name).read_text(), f"the password is in {name}"
    assert password not in out


def test_certify_refuses_to_skip_a_mandatory_check(tmp_path: Path) -> None:
    # A certification runs the whole catalogue (it refuses --requirement and any other selection).
    code, report, _ = run(tmp_path, "--certify", "--seed", "1234", "--heterogeneous-topology",
                          str(tmp_path / "absent.yaml"))
    checks = {c["check"].split("::")[1]: c for c in report["checks"]}
    hetero = checks["test_one_node_per_cluster_on_the_heterogeneous_topology"]
    assert hetero["outcome"] == "failed"
    assert "certify: mandatory NODE-01 may not be skipped" in hetero["message"]
    # Optional checks may still skip, with the reason.
    assert checks["test_placement_inventory_matches"]["outcome"] in ("skipped", "passed")
    assert report["reproduce"]["seed"] == 1234 and report["reproduce"]["certify"] is True
    assert report["environment"]["topologies"]["standard"]["sha256"]
    assert code == 1


def test_an_undeclared_capability_skips_its_check_before_any_driver_is_built(tmp_path: Path) -> None:
    mark = tmp_path / "built"
    _, report, _ = run(tmp_path, "--driver", "tests.broken_drivers:WithoutNotifications", "--requirement", "CHURN-06",
                       env={"VCCONFORM_TEST_MARK": str(mark)})
    assert report["checks"], report
    for check in report["checks"]:
        assert check["outcome"] == "skipped" and "update_notifications" in check["message"], check
    assert not mark.exists(), "a driver was built for a check that skips"


def test_reports_hold_matrix_versions_and_html(tmp_path: Path) -> None:
    _, report, out = run(tmp_path, "--requirement", "NODE-01", "--requirement", "RES-04")
    assert set(report["capability_matrix"]) == {"NODE", "RES", "SPAWN", "CHURN", "FAULT", "SEC", "EFF"}
    assert report["capability_matrix"]["SPAWN"]["support"] == "missing"  # not run
    assert {"suite", "pyvmomi", "simulator.govmomi"} <= set(report["versions"])
    page = (tmp_path / "report.html").read_text()
    assert "Capability matrix" in page and report["verdict"] in page and "<script" not in page
    assert "vcconform certification summary" in out and "verdict:" in out


def test_checks_pass_under_xdist(tmp_path: Path) -> None:
    _, report, _ = run(tmp_path, "-n", "2", "--requirement", "NODE-01",
                          "--requirement", "SPAWN-01", "--requirement", "CHURN-02")
    assert {c["outcome"] for c in report["checks"] if "heterogeneous" not in c["check"]} == {"passed"}
    assert report["environment"]["backend"] == "process"


def test_checks_pass_in_reverse_order(tmp_path: Path) -> None:
    """Each check starts from a clean inventory or cleans up after itself, so order does not matter."""
    _, report, _ = run(tmp_path, "-p", "tests.reverse_order")
    assert report["verdict"] == "CONFORMANT", [c for c in report["checks"] if c["outcome"] != "passed"]


def test_a_leak_in_any_check_is_sec_03s_failure_and_never_reaches_a_file(tmp_path: Path) -> None:
    """The credential scan runs in every check: a driver that logs, prints or raises its password passes
    NODE-01 and RES-04 on their own terms, fails SEC-03, and the password is redacted everywhere."""
    with running_simulator(STANDARD) as sim:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text("clusters:\n" + "".join(f"  - {p}\n" for p in sim.topology.cluster_paths()))
        code, report, out = run(tmp_path, "--driver", "tests.broken_drivers:LeaksItsPassword",
                                "--vcenter-url", sim.url, "--vcenter-username", sim.username,
                                "--vcenter-ca-file", str(sim.ca_file), "--vcenter-inventory", str(inventory),
                                "--requirement", "NODE-01", "--requirement", "RES-04",
                                env={"VCCONFORM_VCENTER_PASSWORD": sim.password})
        password = sim.password
    own = {c["check"].split("::", 1)[1]: c["outcome"] for c in report["checks"] if "SEC-03" not in c["requirements"]}
    assert own["test_one_node_per_managed_cluster"] == own["test_unknown_node_raises_node_not_found"] == "passed"
    leaks = [c for c in report["checks"] if c["check"].endswith("::credential-scan")]
    assert leaks and all(c["outcome"] == "failed" and c["requirements"] == ["SEC-03"] for c in leaks), leaks
    message = " ".join(c["message"] for c in leaks)
    assert "WARNING log record of leaky" in message and "printed" in message and "get_available_resource" in message
    assert {r["id"]: r["status"] for r in report["requirements"]}["SEC-03"] == "failed" and code == 1
    for name in ("report.json", "report.html", "junit.xml"):
        assert password not in (tmp_path / name).read_text(), f"the password is in {name}"
    assert password not in out


def test_an_unknown_profile_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--report-dir", str(tmp_path),
                           "--requirement", "NODE-01"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "VCCONFORM_PROFILE": "huge"})
    assert done.returncode == 4
    assert "--profile 'huge': expected one of standard, scale" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout

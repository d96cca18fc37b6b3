"""The command line: a bad driver path, a class that is no driver, a driver whose constructor raises and a
bad topology each give one line naming the problem and the fix; nothing is lost (the report still comes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def vcconform(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("driver", "expected"), [
    ("no_such_package.driver:Driver", "cannot import 'no_such_package.driver' (ModuleNotFoundError"),
    ("driver_under_test.reference", "expected package.module:Class"),
    ("driver_under_test.reference:Nope", "has no class 'Nope'"),
    ("tests.broken_drivers:NotADriver", "does not implement the contract: missing get_available_nodes"),
])
def test_bad_driver_is_one_line(tmp_path: Path, driver: str, expected: str) -> None:
    done = vcconform("run", "--driver", driver, "--report-dir", str(tmp_path))
    assert done.returncode == 4
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_bad_topology_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ndatacenters: {}\n")
    done = vcconform("run", "--topology", str(bad), "--report-dir", str(tmp_path))
    assert done.returncode == 4
    assert done.stderr == f"vcconform: {bad}: datacenters: expected a list, got {{}}\n"


def test_a_constructor_that_raises_is_reported_per_check(tmp_path: Path) -> None:
    done = vcconform("run", "--driver", "tests.broken_drivers:RaisesInConstructor", "--report-dir", str(tmp_path),
                     "-q")
    assert done.returncode == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "NONCONFORMANT"
    messages = {c["message"] for c in report["checks"]}
    assert messages == {"Failed: the driver's constructor raised RuntimeError: license server unreachable"}
    assert {c["outcome"] for c in report["checks"]} <= {"error", "failed"}  # in a fixture, or in the check


def test_topology_command_checks_a_file(standard: Path) -> None:
    done = vcconform("topology", str(standard))
    assert done.returncode == 0
    assert "is valid: 1 datacenter(s), 3 cluster(s), 6 clustered host(s)" in done.stdout

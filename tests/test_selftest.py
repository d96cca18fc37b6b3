"""The self-test: every check fails against a mutant it targets, and the reference driver passes them all.

Each run is the real suite (``vcconform run``) in a subprocess with its own fake vCenter, read back from
its report.json, exactly as a vendor's run would be.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.requirements import REQUIREMENTS
from driver_under_test.mutants import MUTANTS
from tests.conftest import REPO


def run_suite(tmp_path: Path, driver: str, *requirements: str) -> tuple[int, dict[str, Any]]:
    args = [sys.executable, "-m", "conformance.cli", "run", "--driver", driver, "--report-dir", str(tmp_path),
            "-q"]
    for rid in requirements:
        args += ["--requirement", rid]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    report = tmp_path / "report.json"
    assert report.exists(), f"no report; the run said:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
    return done.returncode, json.loads(report.read_text())


def test_reference_driver_passes_every_check(tmp_path: Path) -> None:
    code, report = run_suite(tmp_path, "driver_under_test.reference:ReferenceDriver")
    failing = [c for c in report["checks"] if c["outcome"] != "passed"]
    assert not failing, failing
    assert report["verdict"] == "CONFORMANT" and code == 0
    assert {r["id"] for r in report["requirements"] if r["status"] == "passed"} == set(REQUIREMENTS)
    assert (tmp_path / "junit.xml").exists()


def test_every_requirement_is_targeted_by_a_mutant() -> None:
    targeted = {rid for m in MUTANTS.values() for rid in m.targets}
    assert targeted == set(REQUIREMENTS), f"no mutant for {sorted(set(REQUIREMENTS) - targeted)}"


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught_by_the_checks_it_targets(tmp_path: Path, name: str) -> None:
    mutant = MUTANTS[name]
    code, report = run_suite(tmp_path, f"driver_under_test.mutants:{name}", *mutant.targets)
    errors = [c for c in report["checks"] if c["outcome"] == "error"]
    assert not errors, f"checks that could not run, so caught nothing: {errors}"
    for rid in mutant.targets:
        outcomes = {c["check"]: c["outcome"] for c in report["checks"] if rid in c["requirements"]}
        assert "failed" in outcomes.values(), f"{name} escaped {rid}: {outcomes}"
    assert report["verdict"] == "NONCONFORMANT" and code != 0

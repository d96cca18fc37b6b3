"""The self-test: every check fails against a mutant it targets, and the reference driver passes them all.

Each run is the real suite (``vcconform run``) in a subprocess with its own fake vCenter, read back from
its report.json, exactly as a vendor's run would be.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conformance.cli import check_ids
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


def test_every_mutant_is_caught_and_every_check_catches_one(tmp_path: Path) -> None:
    """Each mutant runs against the checks of the requirements it targets (two runs at a time). It is caught
    when each target requirement has a check that fails; and every check must fail for some mutant."""
    def run(name: str) -> tuple[str, dict[str, Any]]:
        return name, run_suite(tmp_path / name, f"driver_under_test.mutants:{name}", *MUTANTS[name].targets)[1]

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(pool.map(run, sorted(MUTANTS)))
    problems = []
    caught_by: dict[str, list[str]] = {}
    for name, report in reports.items():
        for check in report["checks"]:
            if check["outcome"] == "error":
                problems.append(f"{name}: {check['check']} could not run: {check['message'][:300]}")
            if check["outcome"] == "failed":
                caught_by.setdefault(check["check"].split("::")[-1], []).append(name)
        for rid in MUTANTS[name].targets:
            if not any(c["outcome"] == "failed" for c in report["checks"] if rid in c["requirements"]):
                problems.append(f"{name} escaped {rid}")
    checks = {c.split("::")[-1] for covered in check_ids().values() for c in covered}
    problems += [f"check {c} failed for no mutant: it may be unable to fail" for c in sorted(checks - set(caught_by))]
    assert not problems, "\n".join(problems)

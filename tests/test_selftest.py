"""The self-test: every check fails against a mutant it targets, and the reference driver passes them all.

Each run is the real suite (``vcconform run``) in a subprocess with its own fake vCenter, read back from
its report.json, exactly as a vendor's run would be. A mutant runs against the checks of the requirements it
targets (and of those it ``runs``); the check a mutant was written for (``proves``) must be the only one of
that run to fail. ``VCCONFORM_SELFTEST_FULL=1`` (``make selftest-full``) runs every mutant against the whole
suite instead, so "only it catches" holds suite-wide, and writes the catch matrix to build/selftest/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conformance.cli import check_ids
from conformance.requirements import REQUIREMENTS
from driver_under_test.mutants import MUTANTS
from tests.conftest import REPO

FULL = os.environ.get("VCCONFORM_SELFTEST_FULL", "").lower() in ("1", "true", "yes")


def run_suite(tmp_path: Path, driver: str, *requirements: str,
              args: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--driver", driver, "--report-dir", str(tmp_path),
           "-q", *args]
    for rid in requirements:
        cmd += ["--requirement", rid]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    report = tmp_path / "report.json"
    assert report.exists(), f"no report; the run said:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
    return done.returncode, json.loads(report.read_text())


def check_of(result: dict[str, Any]) -> str:
    """A report entry's check: the function name, or <function>::credential-scan for a leak it caused."""
    return str(result["check"]).split("::", 1)[1]


def test_reference_driver_passes_every_check(tmp_path: Path) -> None:
    code, report = run_suite(tmp_path, "driver_under_test.reference:ReferenceDriver")
    failing = [c for c in report["checks"] if c["outcome"] != "passed"]
    assert not failing, failing
    assert report["verdict"] == "CONFORMANT" and code == 0
    assert {p: v["verdict"] for p, v in report["verdicts"].items()} == {"standard": "CONFORMANT", "scale": "CONFORMANT"}
    assert {r["id"] for r in report["requirements"] if r["status"] == "passed"} == set(REQUIREMENTS)
    assert (tmp_path / "junit.xml").exists()


def test_every_requirement_is_targeted_by_two_mutants() -> None:
    by_requirement = {rid: sorted(n for n, m in MUTANTS.items() if rid in m.targets) for rid in REQUIREMENTS}
    few = {rid: names for rid, names in by_requirement.items() if len(names) < 2}
    assert not few, f"requirements with fewer than two mutants: {few}"
    unknown = {n: m.targets + m.runs for n, m in MUTANTS.items() if set(m.targets + m.runs) - set(REQUIREMENTS)}
    assert not unknown, unknown


def test_the_scale_profile_makes_efficiency_decide(tmp_path: Path) -> None:
    """EFF-01 fails a driver in the scale profile: reported in the standard one, mandatory in scale."""
    code, report = run_suite(tmp_path, "driver_under_test.mutants:QueriesEachCluster", "EFF-01",
                             args=("--profile", "scale"))
    assert report["profile"] == "scale" and report["reproduce"]["profile"] == "scale"
    assert report["verdict"] == "NONCONFORMANT" and "mandatory EFF-01 failed" in report["reasons"] and code == 1
    levels = {r["id"]: r["level"] for r in report["requirements"]}
    assert levels["EFF-01"] == "mandatory"


def test_every_mutant_is_caught_and_every_check_catches_one(tmp_path: Path) -> None:
    """Each mutant runs against the checks of the requirements it targets (two runs at a time). It is caught
    when each target requirement has a check that fails; the checks it ``proves`` are the only ones of its
    run to fail; the requirements it only ``runs`` pass. Every check must fail for some mutant."""
    def run(name: str) -> tuple[str, dict[str, Any]]:
        m = MUTANTS[name]
        scope = () if FULL else tuple(dict.fromkeys(m.targets + m.runs))
        return name, run_suite(tmp_path / name, f"driver_under_test.mutants:{name}", *scope)[1]

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(pool.map(run, sorted(MUTANTS)))
    problems = []
    caught_by: dict[str, list[str]] = {}
    for name, report in reports.items():
        m = MUTANTS[name]
        # A mutant that reads vCenter itself costs calls the efficiency checks count: not its mistake.
        own_calls = getattr(m, "reads_vcenter_itself", False)
        failed = {check_of(c) for c in report["checks"] if c["outcome"] in ("failed", "error")
                  and not (own_calls and any(r.startswith("EFF-") for r in c["requirements"]))}
        for check in report["checks"]:
            if check["outcome"] == "error" and not FULL:  # against the whole suite, some cannot even start
                problems.append(f"{name}: {check['check']} could not run: {check['message'][:300]}")
            if check["outcome"] == "failed" or (FULL and check["outcome"] == "error"):
                caught_by.setdefault(check_of(check), []).append(name)
        for rid in m.targets:
            if not any(c["outcome"] == "failed" for c in report["checks"] if rid in c["requirements"]):
                problems.append(f"{name} escaped {rid}")
        for rid in m.runs:
            wrong = [check_of(c) for c in report["checks"] if rid in c["requirements"] and c["outcome"] == "failed"]
            if wrong:
                problems.append(f"{name}: {rid} is not what it breaks, yet {wrong} failed")
        if m.proves:
            if not set(m.proves) <= failed:
                problems.append(f"{name}: written for {sorted(m.proves)}, which did not all fail (failed: "
                                f"{sorted(failed)})")
            if failed - set(m.proves):
                problems.append(f"{name}: written for {sorted(m.proves)} only, but {sorted(failed - set(m.proves))} "
                                "failed too")
        if any(r.startswith("EFF-") for r in m.targets) and report["verdicts"]["scale"]["verdict"] != "NONCONFORMANT":
            problems.append(f"{name}: breaks an efficiency budget, yet the scale profile's verdict is "
                            f"{report['verdicts']['scale']['verdict']}")
    checks = {c.split("::")[-1] for covered in check_ids().values() for c in covered}
    problems += [f"check {c} failed for no mutant: it may be unable to fail" for c in sorted(checks - set(caught_by))]
    if FULL:
        out = REPO / "build" / "selftest"
        out.mkdir(parents=True, exist_ok=True)
        (out / "catch-matrix.json").write_text(json.dumps(
            {c: sorted(ms) for c, ms in sorted(caught_by.items())}, indent=2) + "\n")
    assert not problems, "\n".join(problems)


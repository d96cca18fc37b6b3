"""Verdict rules and report shape (pure logic: outcomes in, report out)."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.report import CONFORMANT, NONCONFORMANT, CheckResult, build_report, summary_lines, write_json
from conformance.requirements import REQUIREMENTS


def all_passed() -> list[CheckResult]:
    return [CheckResult(f"test_{rid}", (rid,), "passed") for rid in REQUIREMENTS]


def report(results: list[CheckResult]) -> dict:  # type: ignore[type-arg]
    return build_report(results, versions={"suite": "0"}, driver={"class": "d"}, environment={})


def test_every_mandatory_requirement_passed_is_conformant() -> None:
    r = report(all_passed())
    assert r["verdict"] == CONFORMANT and r["reasons"] == []


def test_one_failure_is_nonconformant_and_named() -> None:
    results = all_passed()
    results[0] = CheckResult(results[0].check, results[0].requirements, "failed", "observed 1, required 2")
    r = report(results)
    assert r["verdict"] == NONCONFORMANT
    assert r["reasons"] == [f"mandatory {results[0].requirements[0]} failed"]
    assert r["checks"][0]["message"] == "observed 1, required 2"


def test_a_mandatory_requirement_skipped_or_not_run_is_not_conformant() -> None:
    skipped = all_passed()
    skipped[1].outcome = "skipped"
    assert report(skipped)["verdict"] == NONCONFORMANT
    assert report(all_passed()[1:])["reasons"] == [f"1 mandatory requirement not run ({next(iter(REQUIREMENTS))})"]


def test_report_is_written_as_json_and_summarized(tmp_path: Path) -> None:
    r = report(all_passed())
    path = write_json(r, tmp_path / "out")
    assert json.loads(path.read_text())["verdict"] == CONFORMANT
    lines = summary_lines(r)
    assert lines[-1] == "verdict: CONFORMANT"
    assert len(lines) == len(REQUIREMENTS) + 4  # header, one per requirement, areas, other profiles, verdict


def test_both_profiles_are_judged_from_the_same_results() -> None:
    """EFF requirements are reported in the standard profile and mandatory in the scale profile."""
    results = all_passed()
    eff = next(r for r in results if r.requirements[0].startswith("EFF-"))
    eff.outcome, eff.message = "failed", "calls per refresh {'1': 1, '10': 10, '100': 100}"
    standard = report(results)
    assert standard["verdict"] == CONFORMANT and standard["profile"] == "standard"
    assert standard["verdicts"]["scale"] == {"verdict": NONCONFORMANT,
                                             "reasons": [f"mandatory {eff.requirements[0]} failed"]}
    scale = build_report(results, versions={}, driver={}, environment={}, profile="scale")
    assert scale["verdict"] == NONCONFORMANT and scale["verdicts"]["standard"]["verdict"] == CONFORMANT
    levels = {r["id"]: r for r in scale["requirements"]}[eff.requirements[0]]
    assert (levels["level"], levels["levels"]) == ("mandatory", {"standard": "optional", "scale": "mandatory"})
    lines = summary_lines(scale)
    assert lines[-1].startswith("verdict (scale profile): NONCONFORMANT") and "standard: CONFORMANT" in lines[-2]

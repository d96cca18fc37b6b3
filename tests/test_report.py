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
    assert len(lines) == len(REQUIREMENTS) + 3  # header, one per requirement, areas, verdict


def test_efficiency_figures_are_drawn_inline_with_the_budgets() -> None:
    """Calls and bytes per refresh against N as inline SVG (no script, nothing fetched), budgets dashed."""
    from conformance.budgets import BYTES_PER_REFRESH
    from conformance.report import efficiency_html, render_html

    results = all_passed()
    eff = next(r for r in results if r.requirements == ("EFF-02",))
    eff.evidence = {"calls_per_refresh": {"1": 1, "10": 1, "100": 12}, "threshold": 4,
                    "bytes_per_refresh": {"1": 3474, "10": 14804, "100": 4_146_205},
                    "ms_per_refresh": {"1": 8.6, "10": 18.3, "100": 120.5},
                    "server_ms_per_refresh": {"1": 1.3, "10": 3.2, "100": 38.9},
                    "calls_per_spawn": 5, "bytes_per_spawn": 3809}
    r = report(results)
    page = render_html(r)
    section = page[page.index("<h2>Efficiency</h2>"):page.index("<h2>All checks</h2>")]
    assert section.count("<svg") == 2 and section == f"<h2>Efficiency</h2>{efficiency_html(r['efficiency'])}\n"
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "stroke-dasharray" in section  # the budget lines
    assert "4.0 MiB" in section and "3.7 KiB" in section  # the table under the charts
    assert BYTES_PER_REFRESH.describe() in section
    assert any(line.startswith("vCenter bytes per full refresh: N=1: 3,474") for line in summary_lines(r))

"""Verdict rules and report shape (pure logic: outcomes in, report out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.report import (
    CONFORMANT,
    ERROR,
    EXIT_CODES,
    INCOMPLETE,
    NONCONFORMANT,
    CheckResult,
    ReportDirError,
    RunEnd,
    build_report,
    check_key,
    exit_code,
    prepare_report_dir,
    render_html,
    summary_lines,
    write_json,
)
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


# -- issue 8: the verdict against the whole catalogue, how the run ended, exit codes, the report dir ------

def catalogue() -> dict[str, tuple[tuple[str, ...], int]]:
    return {f"test_{rid}.py::test_it": ((rid,), 1) for rid in REQUIREMENTS}


def results_for(cat: dict[str, tuple[tuple[str, ...], int]]) -> list[CheckResult]:
    return [CheckResult(key, rids, "passed") for key, (rids, _) in cat.items()]


def test_a_requirement_with_a_check_that_did_not_run_is_not_run() -> None:
    cat = catalogue()
    cat["test_NODE-01.py::test_other"] = (("NODE-01",), 1)  # a second check of NODE-01 that did not run
    r = build_report(results_for(catalogue()), versions={}, driver={}, environment={}, expected=cat)
    status = {q["id"]: q for q in r["requirements"]}["NODE-01"]
    assert status["status"] == "not run" and status["not_run"] == ["test_NODE-01.py::test_other"]
    assert r["verdict"] == NONCONFORMANT and r["reasons"] == ["1 mandatory requirement not run (NODE-01)"]
    certified = build_report(results_for(catalogue()), versions={}, driver={}, environment={}, expected=cat,
                             certify=True)
    assert certified["verdict"] == INCOMPLETE and certified["exit_code"] == 2
    assert certified["not_run"] == ["test_NODE-01.py::test_other"]


def test_every_parameter_set_of_a_check_must_run() -> None:
    cat = catalogue()
    cat["test_RES-01.py::test_it"] = (("RES-01",), 2)
    results = results_for(catalogue())
    r = build_report(results, versions={}, driver={}, environment={}, expected=cat, certify=True)
    assert r["verdict"] == INCOMPLETE
    results[[c.check for c in results].index("test_RES-01.py::test_it")].check = "test_RES-01.py::test_it[a]"
    results.append(CheckResult("test_RES-01.py::test_it[b]", ("RES-01",), "passed"))
    r = build_report(results, versions={}, driver={}, environment={}, expected=cat, certify=True)
    assert r["verdict"] == CONFORMANT and r["exit_code"] == 0


def test_an_error_is_never_a_pass() -> None:
    results = results_for(catalogue())
    results[0].outcome = "error"
    r = build_report(results, versions={}, driver={}, environment={}, expected=catalogue(), certify=True)
    assert r["verdict"] == NONCONFORMANT and r["reasons"] == [f"mandatory {results[0].requirements[0]} error"]


def test_how_the_run_ended_decides_before_the_checks() -> None:
    results = results_for(catalogue())
    results[0].outcome = "failed"
    dead = RunEnd("infrastructure", "fake vCenter exited (signal 9) during test_x", "last words")
    r = build_report(results, versions={}, driver={}, environment={}, expected=catalogue(), ended=dead)
    assert r["verdict"] == ERROR and r["reasons"] == [dead.reason] and r["exit_code"] == 3  # no blame
    assert "last words" in render_html(r) and "  last words" in summary_lines(r)
    stopped = build_report(results, versions={}, driver={}, environment={},
                           ended=RunEnd("interrupted", "stopped by SIGTERM"))
    assert stopped["verdict"] == INCOMPLETE and stopped["reasons"][0] == "stopped by SIGTERM"
    assert stopped["exit_code"] == 2
    refused = build_report([], versions={}, driver={}, environment={}, ended=RunEnd("usage", "did not start: x"))
    assert (refused["verdict"], refused["exit_code"], refused["reasons"]) == (INCOMPLETE, 4, ["did not start: x"])
    assert {v: exit_code(v) for v in EXIT_CODES} == {CONFORMANT: 0, NONCONFORMANT: 1, INCOMPLETE: 2, ERROR: 3}


def test_a_driver_process_that_broke_the_protocol_is_an_error_that_blames_no_requirement() -> None:
    results = results_for(catalogue())
    results[0].outcome = "error"
    broken = RunEnd("driver", "driver process x (pid 7) exited with status 2 while answering spawn during test_x",
                    "panic: nil map")
    r = build_report(results, versions={}, driver={}, environment={}, expected=catalogue(), ended=broken)
    assert r["verdict"] == ERROR and r["reasons"] == [broken.reason] and r["exit_code"] == 3
    assert "the driver process's last stderr lines:" in summary_lines(r) and "  panic: nil map" in summary_lines(r)
    assert "The driver process&#x27;s last stderr lines" in render_html(r)


def test_check_keys_ignore_folders_and_parameters() -> None:
    assert check_key("conformance/checks/test_nodes.py::test_a[x-1]") == "test_nodes.py::test_a"
    assert check_key("test_nodes.py::test_a") == "test_nodes.py::test_a"


def test_a_new_run_leaves_nothing_of_the_last_one(tmp_path: Path) -> None:
    for name in ("report.json", "report.html", "junit.xml", "simulator-standard.log", "simulator-trace-x.log",
                 "driver-stderr.log", "driver-stderr-gw1.log"):
        (tmp_path / name).write_text("CONFORMANT")
    elsewhere = tmp_path / "elsewhere.xml"
    elsewhere.write_text("old")
    marker = build_report([], versions={}, driver={}, environment={}, ended=RunEnd("interrupted", "under way"))
    prepare_report_dir(tmp_path, elsewhere, marker=marker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == INCOMPLETE
    assert "<div class='verdict INCOMPLETE'>" in (tmp_path / "report.html").read_text()
    with pytest.raises(ReportDirError, match=r"^--report-dir .*report.json: is a file, not a directory$"):
        prepare_report_dir(tmp_path / "report.json")


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

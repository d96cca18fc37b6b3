"""The Nova result page: every failure explained, and the committed page current with its committed report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

resultpage = pytest.importorskip("vcconform_nova.resultpage", reason="the [nova] extra is not installed")

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def _report(status: dict[str, str]) -> dict[str, object]:
    from conformance.requirements import REQUIREMENTS

    return {"verdict": "NONCONFORMANT", "reasons": [], "driver": {"version": "nova 0.0.0"},
            "requirements": [{"id": r, "level": REQUIREMENTS[r].level, "title": REQUIREMENTS[r].title,
                              "status": status.get(r, "passed")} for r in REQUIREMENTS],
            "checks": [{"check": "t.py::test_x", "requirements": [r], "outcome": "failed", "message": "observed x"}
                       for r, s in status.items() if s == "failed"]}


def test_an_unexplained_failure_refuses_the_page() -> None:
    with pytest.raises(resultpage.PageError, match="NODE-02"):
        resultpage.render(_report({"NODE-02": "failed"}), resultpage.explanations())


def test_an_explained_failure_names_its_kind_and_source() -> None:
    text = resultpage.render(_report({"RES-02": "failed", "EFF-01": "failed"}), resultpage.explanations())
    assert "### RES-02: Nova deviation" in text and "host.py" in text
    assert "### EFF-01: deliberate stricter requirement" in text and "Rationale (catalogue)" in text


def test_the_snapshot_keeps_what_the_page_needs_and_no_paths() -> None:
    report = _report({"RES-02": "failed"})
    report["environment"] = {"topologies": {"standard": {"file": "/home/someone/standard.yaml", "sha256": "ab"}}}
    report["reproduce"] = {"seed": 13, "arguments": ["--report-dir=/home/someone/out"],
                           "topologies": {"standard": {"file": "/home/someone/standard.yaml", "sha256": "ab"}}}
    kept = resultpage.snapshot(report)
    assert "/home/someone" not in json.dumps(kept)
    assert kept["reproduce"] == {"seed": 13, "topologies": {"standard": "ab"}}
    explained = resultpage.explanations()
    assert resultpage.render(kept, explained) == resultpage.render(report, explained)


def test_a_partial_run_must_agree_with_the_committed_outcomes(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    committed = _report({"RES-02": "failed"})
    monkeypatch.setattr(resultpage, "snapshot_path", lambda report: tmp_path / "nova.report.json")
    (tmp_path / "nova.report.json").write_text(json.dumps(resultpage.snapshot(committed)))
    now = _report({"EFF-01": "failed"})
    for r in now["requirements"]:
        if r["id"] not in ("RES-02", "EFF-01", "NODE-01"):
            r["status"] = "not run"
    assert resultpage.agrees_with_snapshot(now) == [
        "RES-02: passed now, failed on the committed page", "EFF-01: failed now, passed on the committed page"]


@pytest.mark.parametrize("report", sorted(RESULTS.glob("nova-*.report.json")), ids=lambda p: p.name)
def test_the_committed_page_is_current(report: Path) -> None:
    data = json.loads(report.read_text())
    text = resultpage.render(data, resultpage.explanations())  # raises for an unexplained failure
    page = resultpage.page_path(data)
    assert page.exists() and page.read_text() == text, (
        f"{page} is not current: run python -m vcconform_nova.resultpage {report}")


def test_a_partial_run_that_judged_nothing_is_refused(tmp_path: Path) -> None:
    report = _report({})
    for r in report["requirements"]:
        r["status"] = "not run"
    report["verdict"], report["reasons"] = "INCOMPLETE", ["the driver did not import"]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert resultpage.main([str(path), "--explained"]) == 1

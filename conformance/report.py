"""Turn check outcomes into a verdict and a certification report (report.json, plus a terminal summary)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conformance.requirements import MANDATORY, REQUIREMENTS

__all__ = ["CONFORMANT", "NONCONFORMANT", "CheckResult", "build_report", "summary_lines", "write_json"]

CONFORMANT = "CONFORMANT"
NONCONFORMANT = "NONCONFORMANT"
REPORT_SCHEMA = 1


@dataclass
class CheckResult:
    """One check's outcome: passed, failed, error (the check could not run) or skipped."""

    check: str  # pytest node id
    requirements: tuple[str, ...]
    outcome: str
    message: str = ""
    duration_s: float = 0.0


def _requirement_status(outcomes: list[str]) -> str:
    if not outcomes:
        return "not run"
    if any(o in ("failed", "error") for o in outcomes):
        return "failed"
    if all(o == "passed" for o in outcomes):
        return "passed"
    return "skipped" if all(o == "skipped" for o in outcomes) else "partial"


def build_report(results: Iterable[CheckResult], *, versions: dict[str, str], driver: dict[str, Any],
                 environment: dict[str, Any]) -> dict[str, Any]:
    """The report as a JSON-ready dict. The verdict is CONFORMANT only when every mandatory requirement
    has passing checks and no check failed; anything else (including requirements that were not run) is
    NONCONFORMANT, with the reasons listed."""
    results = list(results)
    per_req: dict[str, list[str]] = {rid: [] for rid in REQUIREMENTS}
    for r in results:
        for rid in r.requirements:
            per_req.setdefault(rid, []).append(r.outcome)
    requirements = []
    reasons = []
    for rid, outcomes in per_req.items():
        req = REQUIREMENTS.get(rid)
        level = req.level if req else "unknown"
        status = _requirement_status(outcomes)
        requirements.append({"id": rid, "level": level, "title": req.title if req else "", "status": status})
        if status == "failed":
            reasons.append(f"{rid} failed")
        elif level == MANDATORY and status != "passed":
            reasons.append(f"mandatory {rid} {status}")
    return {
        "schema": REPORT_SCHEMA,
        "verdict": NONCONFORMANT if reasons else CONFORMANT,
        "reasons": reasons,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions,
        "driver": driver,
        "environment": environment,
        "requirements": requirements,
        "checks": [
            {**asdict(r), "requirements": list(r.requirements),
             "level": _level(r.requirements), "duration_s": round(r.duration_s, 3)}
            for r in results
        ],
    }


def _level(rids: tuple[str, ...]) -> str:
    levels = {REQUIREMENTS[r].level for r in rids if r in REQUIREMENTS}
    return MANDATORY if MANDATORY in levels or not levels else levels.pop()


def write_json(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    return path


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A table of requirements and their status, then the verdict."""
    lines = [f"{'requirement':<11} {'level':<9} {'status':<8} title"]
    for r in report["requirements"]:
        lines.append(f"{r['id']:<11} {r['level']:<9} {r['status']:<8} {r['title'][:70]}")
    verdict = report["verdict"]
    if report["reasons"]:
        verdict += " (" + "; ".join(report["reasons"]) + ")"
    lines.append(f"verdict: {verdict}")
    return lines

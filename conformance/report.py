"""Turn check outcomes into a verdict and a certification report: report.json, report.html (opens without a
server) and a summary table for the terminal."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.requirements import AREAS, MANDATORY, PROFILES, REQUIREMENTS, level_in

__all__ = ["CONFORMANT", "NONCONFORMANT", "CheckResult", "build_report", "summary_lines", "write_html",
           "write_json"]

CONFORMANT = "CONFORMANT"
NONCONFORMANT = "NONCONFORMANT"
REPORT_SCHEMA = 2


@dataclass
class CheckResult:
    """One check's outcome: passed, failed, error (the check could not run) or skipped."""

    check: str  # pytest node id
    requirements: tuple[str, ...]
    outcome: str
    message: str = ""
    duration_s: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


def _requirement_status(outcomes: list[str]) -> str:
    if not outcomes:
        return "not run"
    if any(o in ("failed", "error") for o in outcomes):
        return "failed"
    if all(o == "passed" for o in outcomes):
        return "passed"
    return "skipped" if all(o == "skipped" for o in outcomes) else "partial"


def _support(statuses: list[str]) -> str:
    """Nova's support-matrix words for an area: complete, partial or missing."""
    if statuses and all(s == "passed" for s in statuses):
        return "complete"
    return "partial" if any(s == "passed" for s in statuses) else "missing"


def build_report(results: Iterable[CheckResult], *, versions: dict[str, str], driver: dict[str, Any],
                 environment: dict[str, Any], reproduce: dict[str, Any] | None = None,
                 profile: str = "standard") -> dict[str, Any]:
    """The report as a JSON-ready dict.

    Verdict: CONFORMANT when every mandatory requirement passed and no optional requirement failed for a
    capability the driver declares. A mandatory requirement that failed, skipped or was not run, or a
    declared capability that is broken, makes it NONCONFORMANT; the reasons are listed. An optional
    requirement without a capability shows in the matrix but does not decide the verdict. Which
    requirements are mandatory depends on the profile (conformance.requirements.PROFILES): the report holds
    the verdict of every profile, from the same results, and names the one that decides (``profile``).
    """
    results = list(results)
    declared = {k for k, v in (driver.get("capabilities") or {}).items() if v}
    per_req: dict[str, list[str]] = {rid: [] for rid in REQUIREMENTS}
    for r in results:
        for rid in r.requirements:
            per_req.setdefault(rid, []).append(r.outcome)
    statuses = {rid: _requirement_status(outcomes) for rid, outcomes in per_req.items()}
    verdicts = {p: _verdict(statuses, declared, p) for p in PROFILES}
    requirements: list[dict[str, Any]] = []
    for rid, status in statuses.items():
        req = REQUIREMENTS.get(rid)
        requirements.append({"id": rid, "area": rid.split("-")[0],
                             "level": level_in(req, profile) if req else "unknown",
                             "levels": {p: level_in(req, p) for p in PROFILES} if req else {},
                             "capability": req.capability if req else None,
                             "title": req.title if req else "", "status": status})
    matrix = {area: {"title": title, "support": _support([r["status"] for r in requirements if r["area"] == area]),
                     "requirements": {r["id"]: r["status"] for r in requirements if r["area"] == area}}
              for area, title in AREAS.items()}
    return {
        "schema": REPORT_SCHEMA,
        "profile": profile,
        "verdict": verdicts[profile]["verdict"],
        "reasons": verdicts[profile]["reasons"],
        "verdicts": verdicts,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions,
        "driver": driver,
        "environment": environment,
        "reproduce": reproduce or {},
        "capability_matrix": matrix,
        "requirements": requirements,
        "efficiency": _efficiency(results),
        "checks": [
            {**asdict(r), "requirements": list(r.requirements), "level": _level(r.requirements),
             "duration_s": round(r.duration_s, 3)}
            for r in results
        ],
    }


def _verdict(statuses: dict[str, str], declared: set[str], profile: str) -> dict[str, Any]:
    """The verdict and its reasons, with each requirement at its level in the profile."""
    reasons: list[str] = []
    not_run: list[str] = []
    for rid, status in statuses.items():
        req = REQUIREMENTS.get(rid)
        level = level_in(req, profile) if req else "unknown"
        if level == MANDATORY and status == "not run":
            not_run.append(rid)
        elif level == MANDATORY and status != "passed":
            reasons.append(f"mandatory {rid} {status}")
        elif req and req.capability in declared and status == "failed":
            reasons.append(f"{rid} failed although the driver declares {req.capability}")
    if not_run:
        reasons.append(f"{len(not_run)} mandatory requirement{'s' if len(not_run) > 1 else ''} not run"
                       + (f" ({', '.join(not_run)})" if len(not_run) <= 3 else ""))
    return {"verdict": NONCONFORMANT if reasons else CONFORMANT, "reasons": reasons}


def _efficiency(results: list[CheckResult]) -> dict[str, Any]:
    """The EFF figures the efficiency checks recorded (calls per refresh by cluster count)."""
    out: dict[str, Any] = {}
    for r in results:
        if any(rid.startswith("EFF-") for rid in r.requirements):
            out.update(r.evidence)
    return out


def _level(rids: tuple[str, ...]) -> str:
    levels = {REQUIREMENTS[r].level for r in rids if r in REQUIREMENTS}
    return MANDATORY if MANDATORY in levels or not levels else levels.pop()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_json(report: dict[str, Any], directory: Path) -> Path:
    return _write(directory / "report.json", json.dumps(report, indent=2) + "\n")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A table of requirements and their status, the area matrix, then the verdict."""
    lines = [f"{'requirement':<11} {'level':<9} {'status':<8} title"]
    for r in report["requirements"]:
        lines.append(f"{r['id']:<11} {r['level']:<9} {r['status']:<8} {r['title'][:80]}")
    lines.append("areas: " + ", ".join(f"{a} {m['support']}" for a, m in report["capability_matrix"].items()))
    eff = report.get("efficiency", {}).get("calls_per_refresh")
    if eff:
        lines.append("vCenter calls per full refresh: " + ", ".join(f"N={n}: {c}" for n, c in eff.items()))

    def said(v: dict[str, Any]) -> str:
        return str(v["verdict"]) + (" (" + "; ".join(v["reasons"]) + ")" if v["reasons"] else "")

    profile = report.get("profile", "standard")
    others = {p: v for p, v in report.get("verdicts", {}).items() if p != profile}
    if others:
        lines.append("other profiles: " + "; ".join(f"{p}: {said(v)}" for p, v in others.items()))
    named = f" ({profile} profile)" if profile != "standard" else ""
    lines.append(f"verdict{named}: {said(report)}")
    return lines


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{margin:0 0 .2em} .verdict{font-size:1.4em;font-weight:bold;padding:.4em .8em;display:inline-block}
.CONFORMANT{background:#d7f5dd} .NONCONFORMANT{background:#fbd5d5}
table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left} .passed,.complete{background:#d7f5dd} .failed,.error,.missing{background:#fbd5d5}
.skipped,.partial,.not.run{background:#fff3c4} pre{white-space:pre-wrap;margin:0;font-size:12px}
"""


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: verdict, versions, the area x requirement matrix, failures, EFF figures."""
    e = html.escape

    def row(*cells: str, cls: str = "") -> str:
        return "<tr>" + "".join(f"<td class='{cls}'>{c}</td>" if i == len(cells) - 1 and cls else f"<td>{c}</td>"
                                for i, c in enumerate(cells)) + "</tr>"

    parts = [f"<!doctype html><meta charset='utf-8'><title>vcconform report: {e(report['verdict'])}</title>",
             f"<style>{_CSS}</style><h1>vcconform certification report</h1>",
             f"<div class='verdict {e(report['verdict'])}'>{e(report['verdict'])}</div>"]
    if report["reasons"]:
        parts.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in report["reasons"]) + "</ul>")
    verdicts = report.get("verdicts", {})
    if verdicts:
        parts.append("<h2>Verdict by profile</h2><table><tr><th>profile</th><th>reasons</th><th>verdict</th></tr>")
        parts += [row(e(p) + (" (this run's)" if p == report.get("profile") else ""), e(", ".join(v["reasons"])),
                      e(v["verdict"]), cls=v["verdict"]) for p, v in verdicts.items()]
        parts.append("</table>")
    drv = report.get("driver", {})
    parts.append("<h2>Versions</h2><table>")
    facts = {"driver": f"{drv.get('class', '?')} {drv.get('version', '')}",
             "declared capabilities": ", ".join(k for k, v in (drv.get("capabilities") or {}).items() if v) or "none",
             **report["versions"], "finished at": report["finished_at"],
             "seed": str(report.get("reproduce", {}).get("seed", "")), "profile": str(report.get("profile", ""))}
    parts += [row(e(k), e(str(v))) for k, v in facts.items()] + ["</table>"]
    parts.append("<h2>Capability matrix</h2><table><tr><th>area</th><th>support</th><th>requirements</th></tr>")
    for area, m in report["capability_matrix"].items():
        reqs = " ".join(f"<span class='{e(st)}'>&nbsp;{e(rid)}&nbsp;</span>" for rid, st in m["requirements"].items())
        parts.append(f"<tr><td>{e(area)}: {e(m['title'])}</td><td class='{e(m['support'])}'>{e(m['support'])}</td>"
                     f"<td>{reqs}</td></tr>")
    parts.append("</table><h2>Requirements</h2><table><tr><th>id</th><th>level</th><th>title</th><th>status</th></tr>")
    for r in report["requirements"]:
        level = r["level"] + (f" ({r['capability']})" if r.get("capability") else "")
        parts.append(row(e(r["id"]), e(level), e(r["title"]), e(r["status"]), cls=r["status"]))
    parts.append("</table>")
    failures = [c for c in report["checks"] if c["outcome"] in ("failed", "error")]
    if failures:
        parts.append("<h2>Failures (observed vs required)</h2><table><tr><th>check</th><th>requirements</th>"
                     "<th>message</th></tr>")
        parts += [row(e(c["check"]), e(", ".join(c["requirements"])), f"<pre>{e(c['message'])}</pre>")
                  for c in failures]
        parts.append("</table>")
    eff = report.get("efficiency", {})
    if eff:
        parts.append(f"<h2>Efficiency</h2><pre>{e(json.dumps(eff, indent=2))}</pre>")
    parts.append("<h2>All checks</h2><table><tr><th>check</th><th>requirements</th><th>seconds</th>"
                 "<th>outcome</th></tr>")
    parts += [row(e(c["check"]), e(", ".join(c["requirements"])), f"{c['duration_s']:.2f}", e(c["outcome"]),
                  cls=c["outcome"]) for c in report["checks"]]
    parts.append("</table>")
    context = {"environment": report.get("environment", {}), "reproduce": report.get("reproduce", {})}
    parts.append(f"<h2>Environment and reproduction</h2><pre>{e(json.dumps(context, indent=2))}</pre>")
    return "\n".join(parts) + "\n"


def write_html(report: dict[str, Any], directory: Path) -> Path:
    return _write(directory / "report.html", render_html(report))

"""Turn check outcomes into a verdict and a certification report: report.json, report.html (opens without a
server) and a summary table for the terminal.

A verdict never claims more than was proven. Four verdicts, each with its exit status (``EXIT_CODES``):

- CONFORMANT (0): every check of the catalogue that decides the verdict ran and passed;
- NONCONFORMANT (1): a mandatory requirement failed, errored, skipped or did not run, or a declared
  capability is broken;
- INCOMPLETE (2; 4 when the run could not start because of a bad input): the run was interrupted, or a
  certification did not run every check of the catalogue;
- ERROR (3): the infrastructure failed (the fake vCenter died or stopped answering), the suite itself
  crashed, or a driver process (``--driver-command``) broke the protocol (it exited, hung or wrote what is
  not a protocol message): the suite could not talk to the driver, so nothing is said about its conformance.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.budgets import BYTES_PER_REFRESH, BYTES_PER_SPAWN, CALLS_PER_REFRESH
from conformance.masking import scrub
from conformance.requirements import AREAS, MANDATORY, PROFILES, REQUIREMENTS, level_in

__all__ = ["CONFORMANT", "ERROR", "EXIT_CODES", "INCOMPLETE", "NONCONFORMANT", "CheckResult", "ReportDirError",
           "RunEnd", "build_report", "check_key", "efficiency_html", "exit_code", "log_tail_title",
           "prepare_report_dir", "render_html", "summary_lines", "write_html", "write_json"]

CONFORMANT = "CONFORMANT"
NONCONFORMANT = "NONCONFORMANT"
INCOMPLETE = "INCOMPLETE"
ERROR = "ERROR"
#: The process's exit status for each verdict; an INCOMPLETE run that could not start (bad input) exits 4.
EXIT_CODES = {CONFORMANT: 0, NONCONFORMANT: 1, INCOMPLETE: 2, ERROR: 3}
USAGE_EXIT_CODE = 4
REPORT_SCHEMA = 3
#: Files a run writes into its report dir; all are removed (or replaced) when a run starts.
REPORT_FILES = ("report.json", "report.html", "junit.xml")
KEPT_LOG_GLOBS = ("simulator-*.log", "driver-stderr*.log")


@dataclass
class CheckResult:
    """One check's outcome: passed, failed, error (the check could not run) or skipped."""

    check: str  # pytest node id
    requirements: tuple[str, ...]
    outcome: str
    message: str = ""
    duration_s: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunEnd:
    """How a run ended when it did not run its checks to the end."""

    #: "interrupted", "usage" (could not start: bad input), "infrastructure", "crash" (the suite's) or "driver"
    #: (a driver process broke the protocol)
    kind: str
    reason: str  # one line
    log_tail: str = ""  # the simulator's last words ("infrastructure"), or the driver process's ("driver")


def log_tail_title(end: RunEnd) -> str:
    """Whose last words ``end.log_tail`` holds."""
    return "the driver process's last stderr lines" if end.kind == "driver" else "the fake vCenter's last log lines"


def check_key(nodeid: str) -> str:
    """A check's catalogue key, ``test_nodes.py::test_name``: the node id's file name and function, without
    the folder (which depends on how pytest was started) and without parameters."""
    path, _, rest = nodeid.partition("::")
    return f"{path.rsplit('/', 1)[-1]}::{rest.split('[', 1)[0].split('::')[-1]}"


def _requirement_status(outcomes: list[str], missing: int = 0) -> str:
    """failed > error > not run (a check of the catalogue has no outcome) > skipped > partial > passed."""
    if any(o == "failed" for o in outcomes):
        return "failed"
    if any(o == "error" for o in outcomes):
        return "error"
    if missing or not outcomes:
        return "not run"
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
                 expected: Mapping[str, tuple[tuple[str, ...], int]] | None = None, certify: bool = False,
                 ended: RunEnd | None = None, profile: str = "standard") -> dict[str, Any]:
    """The report as a JSON-ready dict.

    ``expected`` is the catalogue: check key (``check_key``) -> (its requirement ids, how many items it has);
    a requirement with a check that has fewer outcomes than items is "not run", whatever else ran. Without
    it, the checks that ran are taken as the catalogue.

    Verdict (see the module's docstring): ERROR when ``ended`` is an infrastructure failure or a crash of the
    suite; INCOMPLETE when the run was interrupted or could not start; NONCONFORMANT when a mandatory
    requirement failed, errored, skipped or was not run, or an optional one failed for a capability the
    driver declares; INCOMPLETE when a certification (``certify``) did not run every check; CONFORMANT
    otherwise. An optional requirement without a capability (EFF-01) shows in the matrix but does not decide
    the verdict (in a certification it must still run). Which requirements are mandatory depends on the
    profile (conformance.requirements.PROFILES): the report holds the verdict of every profile, from the
    same results, and names the one that decides (``profile``: verdict, reasons and exit code).
    """
    results = list(results)
    declared = {k for k, v in (driver.get("capabilities") or {}).items() if v}
    per_req: dict[str, list[str]] = {rid: [] for rid in REQUIREMENTS}
    for r in results:
        for rid in r.requirements:
            per_req.setdefault(rid, []).append(r.outcome)
    ran: dict[str, set[str]] = {}
    for r in results:
        ran.setdefault(check_key(r.check), set()).add(r.check)
    missing_by_req: dict[str, list[str]] = {}
    for key, (rids, count) in (expected or {}).items():
        if len(ran.get(key, ())) < count:
            for rid in rids:
                missing_by_req.setdefault(rid, []).append(key)
    not_run_checks = sorted({k for keys in missing_by_req.values() for k in keys})
    statuses = {rid: _requirement_status(outcomes, len(missing_by_req.get(rid, ())))
                for rid, outcomes in per_req.items()}
    verdicts = {p: _verdict(statuses, declared, p, ended=ended, certify=certify, not_run_checks=not_run_checks,
                            ran_any=bool(results)) for p in PROFILES}
    requirements: list[dict[str, Any]] = []
    for rid, status in statuses.items():
        req = REQUIREMENTS.get(rid)
        requirements.append({"id": rid, "area": rid.split("-")[0],
                             "level": level_in(req, profile) if req else "unknown",
                             "levels": {p: level_in(req, p) for p in PROFILES} if req else {},
                             "capability": req.capability if req else None,
                             "title": req.title if req else "", "status": status,
                             "not_run": missing_by_req.get(rid, [])})
    verdict, reasons = verdicts[profile]["verdict"], verdicts[profile]["reasons"]
    matrix = {area: {"title": title, "support": _support([r["status"] for r in requirements if r["area"] == area]),
                     "requirements": {r["id"]: r["status"] for r in requirements if r["area"] == area}}
              for area, title in AREAS.items()}
    return {
        "schema": REPORT_SCHEMA,
        "profile": profile,
        "verdict": verdict,
        "reasons": reasons,
        "verdicts": verdicts,
        "exit_code": exit_code(verdict, ended),
        "certify": certify,
        "ended": asdict(ended) if ended else None,
        "not_run": not_run_checks,
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


def _verdict(statuses: dict[str, str], declared: set[str], profile: str, *, ended: RunEnd | None, certify: bool,
             not_run_checks: list[str], ran_any: bool) -> dict[str, Any]:
    """The verdict and its reasons with each requirement at its level in the profile (see build_report)."""
    reasons: list[str] = []
    not_run: list[str] = []
    for rid, status in statuses.items():
        req = REQUIREMENTS.get(rid)
        level = level_in(req, profile) if req else "unknown"
        if level == MANDATORY and status == "not run":
            not_run.append(rid)
        elif level == MANDATORY and status != "passed":
            reasons.append(f"mandatory {rid} {status}")
        elif req and req.capability in declared and status in ("failed", "error"):
            reasons.append(f"{rid} {status} although the driver declares {req.capability}")
    not_run_reason = []
    if not_run:
        not_run_reason.append(f"{len(not_run)} mandatory requirement{'s' if len(not_run) > 1 else ''} not run"
                              + (f" ({', '.join(not_run)})" if len(not_run) <= 3 else ""))
    if ended is not None and ended.kind in ("infrastructure", "crash", "driver"):
        verdict = ERROR
        reasons = [ended.reason] + ([f"{len(not_run_checks)} checks did not run"] if not_run_checks else [])
    elif ended is not None:  # what ran before the end is worth knowing; what did not run, only if some did
        verdict, reasons = INCOMPLETE, [ended.reason, *reasons, *(not_run_reason if ran_any else [])]
    elif reasons:
        verdict, reasons = NONCONFORMANT, reasons + not_run_reason
    elif certify and not_run_checks:
        verdict = INCOMPLETE
        reasons = [f"certification incomplete: {len(not_run_checks)} check{'s' if len(not_run_checks) > 1 else ''}"
                   f" of the catalogue did not run ({', '.join(not_run_checks[:3])}"
                   f"{', ...' if len(not_run_checks) > 3 else ''})"]
    elif not_run_reason:
        verdict, reasons = NONCONFORMANT, not_run_reason
    else:
        verdict = CONFORMANT
    return {"verdict": verdict, "reasons": reasons}


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


def exit_code(verdict: str, ended: RunEnd | None = None) -> int:
    """The exit status that goes with a verdict (4: an INCOMPLETE run that could not start)."""
    if verdict == INCOMPLETE and ended is not None and ended.kind == "usage":
        return USAGE_EXIT_CODE
    return EXIT_CODES[verdict]


def _write(path: Path, text: str) -> Path:
    """Write atomically: a reader sees the old file or the new one, never half of one. (The callers mask
    the report's strings before they serialize it: masking the serialized text could break its syntax.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # a report is for sharing; mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json(report: dict[str, Any], directory: Path) -> Path:
    return _write(directory / "report.json", json.dumps(scrub(json.loads(json.dumps(report))), indent=2) + "\n")


class ReportDirError(ValueError):
    """The report dir cannot be used; the message is one line."""


def prepare_report_dir(directory: Path, junit: Path | None = None, *, marker: dict[str, Any] | None = None) -> None:
    """Make the report dir ready for a run: no report of an earlier run may survive it. Removes report.json,
    report.html, the JUnit file and kept simulator logs, then writes ``marker`` (an INCOMPLETE report that
    says the run is under way) as report.json and report.html."""
    if directory.exists() and not directory.is_dir():
        raise ReportDirError(f"--report-dir {directory}: is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            (directory / name).unlink(missing_ok=True)
        for pattern in KEPT_LOG_GLOBS:
            for old in directory.glob(pattern):
                old.unlink(missing_ok=True)
        if junit is not None:
            junit.unlink(missing_ok=True)
        if marker is not None:
            write_json(marker, directory)
            write_html(marker, directory)
    except OSError as e:
        raise ReportDirError(f"--report-dir {directory}: {e.strerror or e}") from None


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A table of requirements and their status, the area matrix, then the verdict."""
    lines = [f"{'requirement':<11} {'level':<9} {'status':<8} title"]
    for r in report["requirements"]:
        lines.append(f"{r['id']:<11} {r['level']:<9} {r['status']:<8} {r['title'][:80]}")
    lines.append("areas: " + ", ".join(f"{a} {m['support']}" for a, m in report["capability_matrix"].items()))
    eff = report.get("efficiency", {}).get("calls_per_refresh")
    if eff:
        lines.append("vCenter calls per full refresh: " + ", ".join(f"N={n}: {c}" for n, c in eff.items()))
    eff = report.get("efficiency", {}).get("bytes_per_refresh")
    if eff:
        lines.append("vCenter bytes per full refresh: " + ", ".join(f"N={n}: {c:,}" for n, c in eff.items()))
    ended = report.get("ended") or {}
    if ended.get("log_tail"):
        lines.append(log_tail_title(RunEnd(**ended)) + ":")
        lines += ["  " + line for line in ended["log_tail"].splitlines()]

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
.CONFORMANT{background:#d7f5dd} .NONCONFORMANT{background:#fbd5d5} .ERROR{background:#f5c6a5}
.INCOMPLETE{background:#fff3c4}
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
        parts += [row(e(p) + (" (this run's)" if p == report.get("profile") else ""), e("; ".join(v["reasons"])),
                      e(v["verdict"]), cls=v["verdict"]) for p, v in verdicts.items()]
        parts.append("</table>")
    ended = report.get("ended") or {}
    if ended.get("log_tail"):
        parts.append(f"<h2>{e(log_tail_title(RunEnd(**ended)).capitalize())}</h2><pre>{e(ended['log_tail'])}</pre>")
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
        parts.append(f"<h2>Efficiency</h2>{efficiency_html(eff)}")
    parts.append("<h2>All checks</h2><table><tr><th>check</th><th>requirements</th><th>seconds</th>"
                 "<th>outcome</th></tr>")
    parts += [row(e(c["check"]), e(", ".join(c["requirements"])), f"{c['duration_s']:.2f}", e(c["outcome"]),
                  cls=c["outcome"]) for c in report["checks"]]
    parts.append("</table>")
    context = {"environment": report.get("environment", {}), "reproduce": report.get("reproduce", {})}
    parts.append(f"<h2>Environment and reproduction</h2><pre>{e(json.dumps(context, indent=2))}</pre>")
    return "\n".join(parts) + "\n"


def _chart(title: str, points: dict[int, float], budget: dict[int, float], *, log_y: bool,
           label: Any) -> str:
    """One small SVG line chart: the driver's figure and its budget (dashed) against N, N on a log axis."""
    w, h, left, right, top, bottom = 340, 190, 62, 22, 24, 34
    ns = sorted(set(points) | set(budget))
    values = [v for v in (*points.values(), *budget.values()) if v > 0] or [1.0]
    lo, hi = (min(values) / 2, max(values) * 2) if log_y else (0.0, max(values) * 1.15)

    def x(n: int) -> float:
        span = math.log10(ns[-1]) - math.log10(ns[0]) if len(ns) > 1 else 1.0
        return left + (w - left - right) * ((math.log10(n) - math.log10(ns[0])) / span if len(ns) > 1 else 0.5)

    def y(v: float) -> float:
        if log_y:
            f = (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        else:
            f = (v - lo) / (hi - lo) if hi > lo else 0.0
        return top + (h - top - bottom) * (1 - f)

    def line(series: dict[int, float], color: str, dashed: bool) -> str:
        pts = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in sorted(series.items()))
        style = f"stroke='{color}' " + ("stroke-width='1.5' stroke-dasharray='5 4'" if dashed else "stroke-width='2'")
        dots = "" if dashed else "".join(f"<circle cx='{x(n):.1f}' cy='{y(v):.1f}' r='3' fill='{color}'/>"
                                         for n, v in sorted(series.items()))
        return f"<polyline points='{pts}' fill='none' {style}/>{dots}"

    if log_y:  # powers of four from 1 KiB: 1, 4, 16, 64, 256 KiB, 1 MiB...
        ticks = [1024.0 * 4 ** k for k in range(-5, 16) if lo <= 1024.0 * 4 ** k <= hi]
    else:
        step = max(1, math.ceil(hi / 4))
        ticks = [float(t) for t in range(0, int(hi) + 1, step)]
    grid = "".join(f"<line x1='{left}' x2='{w - right}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#eee'/>"
                   f"<text x='{left - 4}' y='{y(t) + 4:.1f}' text-anchor='end'>{html.escape(label(t))}</text>"
                   for t in ticks)
    xaxis = "".join(f"<text x='{x(n):.1f}' y='{h - bottom + 14}' text-anchor='middle'>{n}</text>" for n in ns)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
            f"role='img' aria-label='{html.escape(title)}' style='font:11px sans-serif;margin-right:1em'>"
            f"<text x='{left}' y='14' font-weight='bold'>{html.escape(title)}</text>{grid}{xaxis}"
            f"<text x='{(left + w - right) / 2:.0f}' y='{h - 4}' text-anchor='middle'>clusters (N)</text>"
            f"<line x1='{left}' x2='{left}' y1='{top}' y2='{h - bottom}' stroke='#999'/>"
            f"<line x1='{left}' x2='{w - right}' y1='{h - bottom}' y2='{h - bottom}' stroke='#999'/>"
            + line(budget, "#c0392b", dashed=True) + line(points, "#1f5fa8", dashed=False) + "</svg>")


def _size(n: float) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.0f} {unit}" if n / div >= 10 or n % div == 0 else f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def efficiency_html(eff: dict[str, Any]) -> str:
    """The EFF figures as two small inline SVG charts (calls and bytes per full refresh against the number of
    clusters, the budgets of conformance/budgets.py dashed) and a table with time and spawn figures."""
    calls = {int(n): float(c) for n, c in (eff.get("calls_per_refresh") or {}).items()}
    sizes = {int(n): float(b) for n, b in (eff.get("bytes_per_refresh") or {}).items()}
    ns = sorted(set(calls) | set(sizes))
    if not ns:
        return f"<pre>{html.escape(json.dumps(eff, indent=2))}</pre>"
    limit = float(eff.get("threshold") or CALLS_PER_REFRESH.base)
    parts = ["<div>"]
    if calls:
        parts.append(_chart("vCenter calls per full refresh", calls, {n: limit for n in ns}, log_y=False,
                            label=lambda t: f"{t:.0f}"))
    if sizes:
        parts.append(_chart("vCenter bytes per full refresh", sizes, {n: float(BYTES_PER_REFRESH.at(n)) for n in ns},
                            log_y=True, label=_size))
    parts.append("</div><p><span style='color:#1f5fa8'>&#9679;&#8212;</span> the driver &nbsp; "
                 "<span style='color:#c0392b'>- - -</span> budget (conformance/budgets.py: calls "
                 f"{html.escape(CALLS_PER_REFRESH.describe())}, bytes {html.escape(BYTES_PER_REFRESH.describe())})</p>")
    ms = eff.get("ms_per_refresh") or {}
    server = eff.get("server_ms_per_refresh") or {}

    def cells(n: int) -> str:
        figures = (f"{calls[n]:.0f}" if n in calls else "", _size(sizes[n]) if n in sizes else "",
                   str(ms.get(str(n), "")), str(server.get(str(n), "")))
        return "".join(f"<td>{html.escape(f)}</td>" for f in figures)
    rows = "".join(f"<tr><td>{n}</td>{cells(n)}</tr>" for n in ns)
    parts.append("<table><tr><th>clusters</th><th>calls per refresh</th><th>bytes per refresh</th>"
                 f"<th>ms per refresh</th><th>of which vCenter (ms)</th></tr>{rows}</table>")
    if eff.get("bytes_per_spawn") is not None:
        parts.append(f"<p>One spawn: {html.escape(str(eff.get('calls_per_spawn')))} calls, "
                     f"{_size(float(eff['bytes_per_spawn']))} (budget {html.escape(BYTES_PER_SPAWN.describe())}).</p>")
    return "".join(parts)


def write_html(report: dict[str, Any], directory: Path) -> Path:
    return _write(directory / "report.html", render_html(scrub(json.loads(json.dumps(report)))))

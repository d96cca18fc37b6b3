"""Write docs/results/nova-<version>.md from a run's report.json and the explanations kept beside the adapter.

    python -m vcconform_nova.resultpage build/nova/report.json            # the page and its report snapshot
    python -m vcconform_nova.resultpage build/nova/report.json --check    # fail if the page is not current
    python -m vcconform_nova.resultpage build/nova-ci/report.json --explained  # a partial run (CI): every
        failure explained, and every requirement it ran has the outcome the committed snapshot records

Every requirement that did not pass needs an explanation (explanations.yaml); without one the page is not
written and the command fails, naming the requirement. Beside the page goes ``nova-<version>.report.json``:
the part of the report the page is made of (no file paths, no arguments; the report is masked already), so
that tests/test_nova_results.py can tell that the committed page is current. Nova's calls per refresh at
1, 10 and 100 clusters come from bench/results/nova.json (``bench/nova.py``) when it exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
BENCH = REPO / "bench" / "results" / "nova.json"
KINDS = {"deviation": "Nova deviation", "stricter": "deliberate stricter requirement",
         "not_applicable": "not applicable"}
NOT_PASSED = ("failed", "error")
#: The fields of a report the page uses: the snapshot keeps these and nothing else.
SNAPSHOT_KEYS = ("verdict", "reasons", "driver", "versions", "requirements", "checks", "efficiency")


class PageError(ValueError):
    """The page cannot be written: a failure has no explanation, or the input is not a report."""


def explanations(path: Path = HERE / "explanations.yaml") -> dict[str, dict[str, str]]:
    """The explanations by requirement id; each has a known ``kind`` and a ``text``."""
    data = yaml.safe_load(path.read_text()) or {}
    for rid, entry in data.items():
        if entry.get("kind") not in KINDS or not entry.get("text"):
            raise PageError(f"{path}: {rid}: needs a text and a kind, one of {', '.join(KINDS)}")
    return dict(data)


def snapshot(report: dict[str, Any]) -> dict[str, Any]:
    """What of a report the page is made of (see SNAPSHOT_KEYS), with the seed and the topologies' hashes."""
    out = {k: report[k] for k in SNAPSHOT_KEYS if k in report}
    out["requirements"] = [{k: r[k] for k in ("id", "level", "title", "status") if k in r}
                           for r in report["requirements"]]
    out["checks"] = [{k: c[k] for k in ("check", "requirements", "outcome", "message") if k in c}
                     for c in report["checks"]]
    reproduce = report.get("reproduce", {})
    out["reproduce"] = {"seed": reproduce.get("seed"),
                        "topologies": {name: t.get("sha256") for name, t in reproduce.get("topologies", {}).items()}}
    return out


def _first_line(text: str | None, limit: int = 600) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit] + " ..."


def _bench_section() -> list[str]:
    if not BENCH.exists():
        return []
    data = json.loads(BENCH.read_text())
    out = ["## vCenter calls per full refresh at 1, 10 and 100 clusters", "",
           f"Measured by `bench/nova.py` (Nova {data.get('nova', '?')}, bench/results/nova.json, "
           f"{data.get('machine', {}).get('cpus', '?')} CPUs): the efficiency "
           "topology (N clusters of one host, one shared datastore), N VMwareVCDriver instances in one process, "
           "every size whole (nothing extrapolated). A full refresh is `get_available_nodes(refresh=True)` and "
           "every node's `get_available_resource`, which for Nova is its `get_available_resource` and "
           "`update_provider_tree`, as the resource tracker calls them. Calls and bytes are counted by the fake "
           "vCenter; the largest of the runs.", "",
           "| clusters | Nova calls | per cluster | Nova bytes | Nova ms per refresh | Nova start (s) "
           "| Nova memory (MiB) | reference calls | reference bytes |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in data.get("sizes", []):
        nova, ref = row["nova"], row["reference"]
        out.append(f"| {row['clusters']} | {nova['calls']} | {nova['calls_per_cluster']:g} | {nova['bytes']:,} "
                   f"| {nova['ms']:,} | {row['nova_start_s']} | {row['nova_rss_mb_after_refreshes']:,} "
                   f"| {ref['calls']} | {ref['bytes']:,} |")
    methods = sorted({m for row in data.get("sizes", []) for m in row["nova"]["by_method"]})
    out += ["", f"Nova's calls are {', '.join(methods)}: per cluster and refresh, `get_available_resource` reads "
            "the cluster's hosts and their stats and its datastores (`vm_util.get_stats_from_cluster`, "
            "`ds_util.get_datastore`), and `update_provider_tree` reads them all again "
            "(`vm_util.get_stats_from_cluster`, `ds_util.get_available_datastores`).", ""]
    return out


def render(report: dict[str, Any], explained: dict[str, dict[str, str]]) -> str:
    """The page (markdown) for a report; PageError when a failure has no explanation."""
    from conformance.requirements import REQUIREMENTS

    version = str(report.get("driver", {}).get("version", "unknown"))
    failing = [r for r in report["requirements"] if r["status"] in NOT_PASSED]
    missing = [r["id"] for r in failing if r["id"] not in explained]
    if missing:
        raise PageError(f"no explanation for {', '.join(missing)}: add them to {HERE / 'explanations.yaml'}")
    seed = report.get("reproduce", {}).get("seed", "")
    versions = report.get("versions", {})
    kinds = Counter(explained[r["id"]]["kind"] for r in failing)
    statuses = Counter(r["status"] for r in report["requirements"])
    out = [f"# Upstream Nova {version.split()[-1]} through vcconform", "",
           "Generated by `python -m vcconform_nova.resultpage` from the report of "
           f"`make conformance DRIVER=nova` (seed {seed}; snapshot beside this page); "
           "tests/test_nova_results.py fails when the page is not current.", "",
           "Nova ran as an operator runs it against several clusters: one `VMwareVCDriver` per cluster "
           "(drivers/nova/vcconform_nova), each configured only through Nova's options (`[vmware] host_ip`, "
           "`host_port`, `host_username`, `host_password`, `ca_file`, `insecure`, `cluster_name`, "
           "`datastore_regex`; `task_poll_interval` 0.1 s to keep the run short), nothing of Nova or oslo.vmware "
           "patched. Against the fake vCenter (govmomi "
           f"{versions.get('simulator.govmomi', '?')}), process backend, standard topology and the checks' own.",
           "", f"Verdict: **{report['verdict']}**" + (f" ({'; '.join(report['reasons'])})"
                                                       if report.get("reasons") else ""), "",
           "Requirements: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + "; of those not "
           "passed: " + (", ".join(f"{n} {KINDS[k]}" for k, n in sorted(kinds.items())) or "none") + ".", "",
           "| requirement | level | Nova | why |", "| --- | --- | --- | --- |"]
    skipped = [r for r in report["requirements"] if r["status"] == "skipped" and r["id"] in explained]
    for r in report["requirements"]:
        why = KINDS[explained[r["id"]]["kind"]] if r in failing or r in skipped else ""
        out.append(f"| {r['id']} | {r['level']} | {r['status']} | {why} |")
    if skipped:
        out += ["", "## Requirements that do not apply", ""]
        for r in skipped:
            out += [f"- {r['id']} ({r['title']}): {explained[r['id']]['text'].strip()}"]
    out += ["", "## Each requirement Nova did not pass", ""]
    for r in failing:
        e = explained[r["id"]]
        req = REQUIREMENTS.get(r["id"])
        out += [f"### {r['id']}: {KINDS[e['kind']]}", "", f"Requirement: {r['title']}.", "", e["text"].strip(), ""]
        if e.get("source"):
            out += [f"Source: {e['source']}.", ""]
        if e["kind"] == "deviation":
            out += [f"Nova bug: {e.get('bug') or 'none on record that we found'}.", ""]
        if e["kind"] == "stricter" and req:
            out += [f"Rationale (catalogue): {req.rationale}", ""]
        out.append("What the checks saw:")
        out.append("")
        for c in report["checks"]:
            if r["id"] in c["requirements"] and c["outcome"] in NOT_PASSED:
                out.append(f"- `{c['check']}` ({c['outcome']}): {_first_line(c.get('message')) or c['outcome']}")
        out.append("")
    eff = report.get("efficiency", {}).get("calls_per_refresh")
    out += _bench_section()
    if eff:
        out += ["In this run (EFF-01's evidence): " + ", ".join(f"N = {n}: {c}" for n, c in eff.items()) + ".", ""]
    return "\n".join(out).rstrip() + "\n"


def page_path(report: dict[str, Any]) -> Path:
    version = str(report.get("driver", {}).get("version", "unknown")).split()[-1]
    return REPO / "docs" / "results" / f"nova-{version}.md"


def snapshot_path(report: dict[str, Any]) -> Path:
    return page_path(report).with_suffix(".report.json")


def agrees_with_snapshot(report: dict[str, Any]) -> list[str]:
    """The requirements a (partial) run ran whose outcome differs from the committed snapshot's."""
    path = snapshot_path(report)
    if not path.exists():
        return []
    committed = {r["id"]: r["status"] for r in json.loads(path.read_text())["requirements"]}
    return [f"{r['id']}: {r['status']} now, {committed.get(r['id'])} on the committed page"
            for r in report["requirements"] if r["status"] != "not run" and committed.get(r["id"]) != r["status"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcconform_nova.resultpage", description=__doc__)
    parser.add_argument("report", help="report.json of a run with --driver vcconform_nova:NovaDriver")
    parser.add_argument("--check", action="store_true", help="fail unless the committed page is current")
    parser.add_argument("--explained", action="store_true",
                        help="a partial run (CI): every failure explained and every outcome as committed")
    args = parser.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text())
        text = render(report, explanations())
    except (OSError, ValueError, KeyError) as e:
        print(f"resultpage: {e}", file=sys.stderr)
        return 2
    if args.explained:
        ran = [r for r in report["requirements"] if r["status"] != "not run"]
        if report.get("verdict") in ("ERROR", "INCOMPLETE") or not ran:
            print(f"resultpage: the run did not judge Nova ({report.get('verdict')}: "
                  + "; ".join(report.get("reasons") or ["no requirement ran"]) + ")", file=sys.stderr)
            return 1
        differ = agrees_with_snapshot(report)
        if differ:
            print(f"resultpage: Nova's outcome changed since {snapshot_path(report)} was written: "
                  + "; ".join(differ) + " (run `make conformance DRIVER=nova` and write the page again)",
                  file=sys.stderr)
            return 1
        return 0
    target = page_path(report)
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"resultpage: {target} is not current; run python -m vcconform_nova.resultpage {args.report}",
                  file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    snapshot_path(report).write_text(json.dumps(snapshot(report), indent=1, sort_keys=True) + "\n")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

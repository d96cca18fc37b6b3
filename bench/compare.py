"""Benchmark: the reference driver and fake vCenter of two revisions side by side, interleaved run by run.

The machine this project is measured on is shared: wall times taken minutes apart differ by a factor of two
with the load. This measures the working tree and an earlier revision (``--before``, default ``main``) in one
run, alternating between them at every measurement so both see the same load: for each size (clusters of
two hosts as in bench/refresh.py, and scale-1000x8), each revision's reference driver against its own fake
vCenter (the earlier one built from that revision's source), on the same topology (same morefs and
instanceUuid, so both must report identical figures, or the run stops):

- ``full``: a full refresh, ``get_available_nodes(refresh=True)`` and every node's figures;
- ``follow``: the figures current again after one host entered or left maintenance mode: the earlier
  revision by a full refresh if it has no cheaper way (its ``get_available_nodes()`` serves the old snapshot),
  the working tree by ``get_available_nodes()``, which applies vCenter's changes.

Calls and response bytes are counted on the client (driver_under_test.callcount: what pyvmomi sent and read),
which works for any revision; wall time and the client's CPU time are medians. The earlier revision's fake
vCenter is started by that revision's own harness. Writes bench/results/compare.json and prints the
before/after table; the committed results compare against 5da2b78 (main before issue 11).

Run: .venv/bin/python bench/compare.py [--before main] [--sizes 1,10,100,1000,1000x8] [--runs 5].
Needs git and the Go toolchain (to build the earlier fake vCenter). Numbers belong here, never in tests.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.contract import ComputeDriver, DriverConfig
from conformance.control import Control
from conformance.harness import Endpoint, govmomi_pin, start_simulator
from conformance.topology import load_topology
from driver_under_test.callcount import count_calls, count_received
from driver_under_test.reference import ReferenceDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refresh import FIGURES, SCALE, Figures, toggled_host, topology

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "compare.json"


def load(where: Path, relative: str, name: str) -> Any:
    """A module of the exported revision, under its own name beside the working tree's."""
    spec = importlib.util.spec_from_file_location(name, where / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def build_revision(rev: str, where: Path) -> tuple[Callable[..., Endpoint], type[ComputeDriver], str]:
    """How to start the revision's fake vCenter (its binary, started by its own harness: the arguments and
    the way the password goes change between revisions) and its reference driver class, from a `git archive`
    of it."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    binary = where / "fakevc"
    subprocess.run(["go", "build", "-trimpath", "-o", str(binary), "."], cwd=where / "containers" / "fakevc",
                   check=True, env={**os.environ, "CGO_ENABLED": "0"})
    harness = load(where, "conformance/harness.py", f"harness_{commit}")
    driver = load(where, "driver_under_test/reference.py", f"reference_{commit}")
    return functools.partial(harness.start_simulator, binary=binary, timeout=300), driver.ReferenceDriver, commit


def figures(driver: ComputeDriver, refresh: bool) -> Figures:
    out = {}
    for node in driver.get_available_nodes(refresh=refresh):
        res = driver.get_available_resource(node)
        out[node] = {k: int(res[k]) for k in FIGURES}  # type: ignore[literal-required]
    return out


def measure(driver: Any, operation: Callable[[], Figures]) -> tuple[dict[str, float], Figures]:
    with count_calls(driver._si) as calls, count_received(driver._si) as received:
        cpu, started = time.process_time(), time.perf_counter()
        result = operation()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"calls": calls.total, "bytes": received.total, "ms": wall * 1000, "cpu_ms": cpu * 1000}, result


def summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    return {"calls": int(max(s["calls"] for s in samples)), "bytes": int(max(s["bytes"] for s in samples)),
            "median_ms": round(statistics.median(s["ms"] for s in samples), 1),
            "cpu_ms": round(statistics.median(s["cpu_ms"] for s in samples), 1), "runs": len(samples)}


def run_size(size: str, runs: int, before: tuple[Callable[..., Endpoint], type[ComputeDriver]]) -> dict[str, Any]:
    topo = load_topology(SCALE) if size == "1000x8" else topology(int(size))
    paths = topo.cluster_paths()
    runs = min(runs, 3) if len(paths) >= 1000 else runs
    endpoints: dict[str, Endpoint] = {}
    drivers: dict[str, Any] = {}
    try:
        for name, start in (("before", before[0]), ("after", functools.partial(start_simulator, timeout=300))):
            endpoints[name] = start(topo)
        for name, cls in (("before", before[1]), ("after", ReferenceDriver)):
            e = endpoints[name]
            drivers[name] = cls(DriverConfig(url=e.url, username=e.username, password=e.password,
                                             clusters=tuple(paths), ca_file=str(e.ca_file)))
        controls = {name: Control(e) for name, e in endpoints.items()}
        samples: dict[str, dict[str, list[dict[str, float]]]] = {n: {"full": [], "follow": []} for n in drivers}
        for d in drivers.values():  # warm: log-in, the view, the watch are set-up, not a refresh
            figures(d, refresh=True)
            figures(d, refresh=False)
        host = toggled_host(endpoints["after"], paths[-1])
        for i in range(runs):
            order = list(drivers) if i % 2 == 0 else list(reversed(drivers))
            got: dict[str, Figures] = {}
            for name in order:
                sample, got[name] = measure(drivers[name], functools.partial(figures, drivers[name], refresh=True))
                samples[name]["full"].append(sample)
            if got["before"] != got["after"]:
                raise SystemExit(f"{size}: the two revisions disagree on the figures of a full refresh")
            for name in order:
                controls[name].set_host(host, maintenance=i % 2 == 0)
            for name in order:
                d = drivers[name]
                sample, got[name] = measure(d, functools.partial(figures, d, refresh=False))
                if got[name] != figures(d, refresh=True):  # no cheaper way: the figures a full refresh gives
                    sample, got[name] = measure(d, functools.partial(figures, d, refresh=True))
                    sample["full_refresh"] = 1
                samples[name]["follow"].append(sample)
            if got["before"] != got["after"]:
                raise SystemExit(f"{size}: the two revisions disagree on the figures after a host change")
        row: dict[str, Any] = {"size": size, "clusters": len(paths),
                               "hosts": sum(len(c.hosts) for dc in topo.datacenters for c in dc.clusters)}
        for name in drivers:
            row[name] = {op: summary(s) for op, s in samples[name].items()}
            row[name]["follow"]["how"] = ("full refresh" if any("full_refresh" in s for s in samples[name]["follow"])
                                          else "get_available_nodes()")
        row["ratio"] = {op: {k: round(row["before"][op][k] / row["after"][op][k], 1) if row["after"][op][k] else None
                             for k in ("calls", "bytes", "median_ms", "cpu_ms")} for op in ("full", "follow")}
        return row
    finally:
        for d in drivers.values():
            d.close()
        for e in endpoints.values():
            e.stop()


def table(rows: list[dict[str, Any]], before: str) -> str:
    def cell(m: dict[str, Any]) -> str:
        return f"{m['calls']} / {m['bytes']:,} / {m['median_ms']:,.1f} ({m['cpu_ms']:,.1f})"
    lines = [f"| N | full refresh, before ({before}): calls / bytes / ms (client CPU ms) | after | "
             f"current after one host change, before | after |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['size']} | {cell(r['before']['full'])} | {cell(r['after']['full'])} | "
              f"{cell(r['before']['follow'])} ({r['before']['follow']['how']}) | "
              f"{cell(r['after']['follow'])} ({r['after']['follow']['how']}) |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the earlier revision (a git rev)")
    parser.add_argument("--sizes", default="1,10,100,1000,1000x8", help="cluster counts or 1000x8, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="measurements per size and revision (3 at 1000+)")
    parser.add_argument("--out", default=str(OUT), help="where the JSON goes")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(s != "1000x8" and not s.isdigit() for s in sizes):
        parser.error(f"--sizes: expected numbers or 1000x8, got {args.sizes!r}")
    where = Path(tempfile.mkdtemp(prefix="vcconform-compare-"))
    try:
        try:
            start, cls, commit = build_revision(args.before, where)
        except subprocess.CalledProcessError as e:
            raise SystemExit(f"cannot build revision {args.before!r}: {' '.join(map(str, e.cmd))} failed") from None
        rows = []
        for size in sizes:
            rows.append(run_size(size, args.runs, (start, cls)))
            r = rows[-1]
            print(f"{size:>7}: full {r['ratio']['full']} | follow {r['ratio']['follow']}", flush=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    results = {
        "what": "the reference driver and fake vCenter of two revisions, interleaved: calls and response bytes "
                "(client-side), wall and client CPU time, per full refresh and to follow one host change",
        "before": {"rev": args.before, "commit": commit}, "after": "working tree",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "govmomi": govmomi_pin(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "sizes": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(rows, commit))
    return 0


if __name__ == "__main__":
    sys.exit(main())

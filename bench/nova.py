"""Benchmark: what upstream Nova's VMware driver costs vCenter per full refresh at 1, 10 and 100 clusters.

Nova runs through vcconform_nova exactly as in the suite: one ``VMwareVCDriver`` per cluster (Nova manages
one cluster per driver), all in one process, each with its own vCenter session. A *full refresh* is the
resource tracker's periodic task for every node: ``get_available_nodes(refresh=True)`` (Nova answers from
memory), then each node's ``get_available_resource``, which is Nova's ``get_available_resource`` and
``update_provider_tree`` (the two calls ``update_available_resource`` makes per node). The topology is the
efficiency checks' (EFF-01, EFF-02): N clusters of one host, one shared datastore.

Every size is measured whole, in one process: N drivers started, then --runs refreshes, each counted by the
fake vCenter (control API ``GET /calls``: every SOAP call and every response byte, whatever the session).
Nothing is extrapolated: the 100 drivers of N = 100 all run (about 4 GB; the suite's adapter refuses more
than VCCONFORM_NOVA_MAX_CLUSTERS, 16 by default, which this benchmark raises to N). Also recorded: the time
and the Nova process's resident memory to start the N drivers, and the reference driver's figures on the
same topology. Writes bench/results/nova.json.

Run: .venv/bin/python bench/nova.py [--sizes 1,10,100] [--runs 3] [--out FILE]  (needs the [nova] extra).
Not part of `make test`: numbers belong here, never in timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conformance.checks.test_efficiency import clusters_topology  # noqa: E402
from conformance.contract import ComputeDriver, DriverConfig  # noqa: E402
from conformance.control import Control  # noqa: E402
from conformance.harness import govmomi_pin, start_simulator  # noqa: E402
from driver_under_test.reference import ReferenceDriver  # noqa: E402

OUT = REPO / "bench" / "results" / "nova.json"


def rss_mb(pid: int) -> int:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def refresh(driver: ComputeDriver) -> int:
    nodes = driver.get_available_nodes(refresh=True)
    for node in nodes:
        driver.get_available_resource(node)
    return len(nodes)


def measure(driver: ComputeDriver, control: Control, n: int, runs: int) -> dict[str, Any]:
    refresh(driver)  # warm: what a start sets up is not a refresh
    calls, sizes, times, methods = [], [], [], {}
    for _ in range(runs):
        control.reset_calls()
        started = time.perf_counter()
        got = refresh(driver)
        times.append(time.perf_counter() - started)
        counted = control.calls()
        if got != n:
            raise SystemExit(f"{n} clusters gave {got} nodes")
        calls.append(int(counted["total"]))
        sizes.append(int(counted["bytes"]))
        methods = dict(counted["by_method"])
    return {"calls": max(calls), "calls_per_cluster": round(max(calls) / n, 2), "bytes": max(sizes),
            "bytes_per_cluster": round(max(sizes) / n), "ms": round(statistics.median(times) * 1000, 1),
            "by_method": methods}


def run_size(n: int, runs: int) -> dict[str, Any]:
    from vcconform_nova import NovaDriver

    topo = clusters_topology(n)
    endpoint = start_simulator(topo, "process")
    try:
        control = Control(endpoint)
        config = DriverConfig(url=endpoint.url, username=endpoint.username, password=endpoint.password,
                              clusters=tuple(topo.cluster_paths()), ca_file=str(endpoint.ca_file))
        row: dict[str, Any] = {"clusters": n}
        os.environ["VCCONFORM_NOVA_MAX_CLUSTERS"] = str(n)
        started = time.perf_counter()
        nova = NovaDriver(config)
        try:
            row["nova_start_s"] = round(time.perf_counter() - started, 1)
            row["nova_rss_mb_after_start"] = rss_mb(nova._worker.proc.pid)
            row["nova"] = measure(nova, control, n, runs)
            row["nova_rss_mb_after_refreshes"] = rss_mb(nova._worker.proc.pid)
        finally:
            nova.close()
        reference = ReferenceDriver(config)
        try:
            row["reference"] = measure(reference, control, n, runs)
        finally:
            reference.close()
        return row
    finally:
        endpoint.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="cluster counts, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="measured refreshes per size")
    parser.add_argument("--out", default=str(OUT), help="where the JSON goes")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: expected whole numbers, comma-separated, got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.runs < 1:
        parser.error("--sizes and --runs: expected whole numbers above 0")
    from vcconform_nova import nova_version  # imports no Nova: that happens in the adapter's own process

    if nova_version() == "not installed":
        print("bench/nova.py: the [nova] extra is not installed (pip install -e '.[nova]')", file=sys.stderr)
        return 2
    rows = []
    for n in sizes:
        rows.append(run_size(n, args.runs))
        r = rows[-1]
        print(f"{n:>4} clusters: Nova {r['nova']['calls']} calls, {r['nova']['bytes']:,} bytes, "
              f"{r['nova']['ms']} ms per refresh (start {r['nova_start_s']} s, {r['nova_rss_mb_after_start']} MiB); "
              f"reference {r['reference']['calls']} calls, {r['reference']['bytes']:,} bytes", flush=True)
    results = {
        "what": "per full refresh (get_available_nodes(refresh=True), then every node's get_available_resource, "
                "which for Nova is get_available_resource and update_provider_tree): vCenter calls and response "
                "bytes counted by the fake vCenter (largest of the runs), wall time (median); every size measured "
                "whole, N drivers in one process, nothing extrapolated",
        "topology": "EFF-01's: N clusters of one host, one shared datastore (conformance.checks.test_efficiency)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "govmomi": govmomi_pin(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "nova": nova_version(),
        "reference": ReferenceDriver.version,
        "runs_per_size": args.runs,
        "sizes": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

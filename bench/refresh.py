"""Benchmark: vCenter calls and wall time per full refresh for 1, 10, 100 and 1000 clusters.

A full refresh is what Nova's resource tracker asks of a driver: the node list, then every node's figures.
For each size, in the same run against the same fake vCenter, it measures the reference driver (one
RetrievePropertiesEx over a kept ContainerView) and a baseline that sends one PropertyCollector query per
cluster (the shape of Nova's vm_util.get_stats_from_cluster, with its per-cluster calls folded into one
query each, so the baseline is a generous one), checks that both compute the same figures, and records
calls counted on the client (driver_under_test.callcount) and, when the fake vCenter has its control API,
on the server. It also records the calls of one spawn. Writes bench/results/refresh.json.

Run: .venv/bin/python bench/refresh.py [--sizes 1,10,100,1000] [--runs 5]. Not part of `make test`: numbers
belong here, never in timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from conformance.contract import DriverConfig, Instance, node_name
from conformance.harness import Endpoint, govmomi_pin, start_simulator
from conformance.topology import ClusterSpec, DatacenterSpec, DatastoreSpec, HostSpec, Topology
from driver_under_test.callcount import count_calls
from driver_under_test.reference import ReferenceDriver

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "refresh.json"
PC = vmodl.query.PropertyCollector
MIB, GIB = 1 << 20, 1 << 30
CLUSTERS_PER_DATACENTER = 100
LATENCY_MS = 5  # added to every call in the second measurement: a vCenter on the same LAN, lightly loaded
FIGURES = ("vcpus", "memory_mb", "local_gb", "local_gb_used", "memory_mb_used")


def topology(n: int) -> Topology:
    """n clusters of two hosts (two sizes) in datacenters of up to 100 clusters; each cluster has a private
    datastore and shares one per datacenter; one host in ten is in maintenance, so the figures filter."""
    datacenters = []
    for d in range(0, n, CLUSTERS_PER_DATACENTER):
        clusters, stores, everyone = [], [], []
        for i in range(d, min(n, d + CLUSTERS_PER_DATACENTER)):
            hosts = (HostSpec(f"h{i}a", 2, 32, 64, 2400, 262144, maintenance=i % 10 == 0),
                     HostSpec(f"h{i}b", 1, 8, 16, 2100, 65536))
            clusters.append(ClusterSpec(f"C{i}", hosts))
            stores.append(DatastoreSpec(f"ds{i}", "VMFS", 2048 * 1024, (1024 + i % 512) * 1024,
                                        tuple(h.name for h in hosts)))
            everyone += [h.name for h in hosts]
        stores.append(DatastoreSpec(f"shared{d}", "NFS", 8192 * 1024, 4096 * 1024, tuple(everyone)))
        datacenters.append(DatacenterSpec(f"DC{d // CLUSTERS_PER_DATACENTER}", tuple(clusters), (), tuple(stores)))
    return Topology(f"bench-{n}", f"<bench/refresh.py: {n} clusters>", tuple(datacenters))


class PerClusterBaseline:
    """One PropertyCollector query per cluster (its hosts and datastores traversed), reading the same
    properties as the reference and computing the same figures: only the shape of the calls differs."""

    def __init__(self, endpoint: Endpoint, paths: list[str]) -> None:
        context = ssl.create_default_context(cafile=str(endpoint.ca_file))
        self.si = SmartConnect(host=endpoint.host, port=endpoint.port, user=endpoint.username,
                               pwd=endpoint.password, sslContext=context, connectionPoolTimeout=-1)
        content = self.si.RetrieveContent()
        self.pc = content.propertyCollector
        self.uuid = content.about.instanceUuid
        # Resolved once, as Nova does at start-up; not counted in a refresh.
        self.clusters = [content.searchIndex.FindByInventoryPath(p) for p in paths]

    def refresh(self) -> dict[str, dict[str, int]]:
        out = {}
        for cluster in self.clusters:
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=cluster, skip=False, selectSet=[
                    PC.TraversalSpec(name="h", path="host", skip=False, type=vim.ComputeResource),
                    PC.TraversalSpec(name="d", path="datastore", skip=False, type=vim.ComputeResource)])],
                propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=list(ReferenceDriver.host_properties)),
                         PC.PropertySpec(type=vim.Datastore, pathSet=["summary"])])
            result = self.pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
            objects = list(result.objects)
            while result.token:
                result = self.pc.ContinueRetrievePropertiesEx(result.token)
                objects += result.objects
            hosts, stores = [], []
            for o in objects:
                p = {x.name: x.val for x in o.propSet}
                if isinstance(o.obj, vim.HostSystem):
                    if p["runtime.connectionState"] == "connected" and not p["runtime.inMaintenanceMode"]:
                        hosts.append(p)
                elif isinstance(o.obj, vim.Datastore):
                    s = p["summary"]
                    if s.accessible and s.maintenanceMode in (None, "normal"):
                        stores.append(s)
            capacity = sum(s.capacity for s in stores)
            out[node_name(cluster._moId, self.uuid)] = {
                "vcpus": sum(h["summary.hardware.numCpuThreads"] for h in hosts),
                "memory_mb": sum(h["summary.hardware.memorySize"] for h in hosts) // MIB,
                "local_gb": capacity // GIB,
                "local_gb_used": (capacity - sum(s.freeSpace for s in stores)) // GIB,
                "memory_mb_used": sum(h.get("summary.quickStats.overallMemoryUsage") or 0 for h in hosts)}
        return out

    def close(self) -> None:
        Disconnect(self.si)


def reference_refresh(driver: ReferenceDriver) -> dict[str, dict[str, int]]:
    out = {}
    for node in driver.get_available_nodes(refresh=True):
        res = driver.get_available_resource(node)
        out[node] = {k: int(res[k]) for k in FIGURES}  # type: ignore[literal-required]
    return out


def server_counter(endpoint: Endpoint) -> Any:
    """The fake vCenter's own call counter (conformance.control), or None while it does not exist."""
    try:
        from conformance.control import Control  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return Control(endpoint)


def measure(refresh: Callable[[], dict[str, dict[str, int]]], si: Any, control: Any, runs: int) -> dict[str, Any]:
    refresh()  # warm: log-in and set-up are not a refresh
    times, calls, server, methods = [], [], [], {}
    figures: dict[str, dict[str, int]] = {}
    for _ in range(runs):
        if control is not None:
            control.reset_calls()
        with count_calls(si) as log:
            started = time.perf_counter()
            figures = refresh()
            times.append(time.perf_counter() - started)
        calls.append(log.total)
        methods = log.by_method
        if control is not None:
            server.append(int(control.calls()["total"]))
    return {"calls_per_refresh": max(calls), "by_method": methods,
            "server_calls_per_refresh": max(server) if server else None,
            "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "figures": figures}


def spawn_calls(driver: ReferenceDriver) -> dict[str, Any]:
    """Calls of one spawn (and of finding and destroying the instance again), counted on the client."""
    node = driver.get_available_nodes(refresh=True)[1]
    instance = Instance(uuid=str(uuid.uuid4()), name="bench", root_gb=1)
    out: dict[str, Any] = {}
    for what, call in (("spawn", lambda: driver.spawn(instance, node)), ("get_info", lambda: driver.get_info(instance)),
                       ("list_instances", driver.list_instances), ("destroy", lambda: driver.destroy(instance))):
        with count_calls(driver._si) as log:
            call()
        out[what] = {"calls": log.total, "by_method": log.by_method}
    return out


def run_size(n: int, runs: int) -> dict[str, Any]:
    topo = topology(n)
    started = time.perf_counter()
    endpoint = start_simulator(topo, timeout=300)
    ready_s = time.perf_counter() - started
    try:
        control = server_counter(endpoint)
        paths = topo.cluster_paths()
        driver = ReferenceDriver(DriverConfig(url=endpoint.url, username=endpoint.username,
                                              password=endpoint.password, clusters=tuple(paths),
                                              ca_file=str(endpoint.ca_file)))
        baseline = PerClusterBaseline(endpoint, paths)
        try:
            ref = measure(lambda: reference_refresh(driver), driver._si, control, runs)
            base = measure(baseline.refresh, baseline.si, control, runs)
            if ref.pop("figures") != base.pop("figures"):
                raise SystemExit(f"{n} clusters: the reference and the baseline disagree on the figures")
            row: dict[str, Any] = {
                "clusters": n, "hosts": sum(len(c.hosts) for dc in topo.datacenters for c in dc.clusters),
                "datacenters": len(topo.datacenters), "simulator_ready_s": round(ready_s, 2),
                "reference": ref, "baseline_per_cluster": base,
                "time_ratio_baseline_to_reference": round(base["median_s"] / ref["median_s"], 1)}
            if control is not None:
                control.set_latency("*", LATENCY_MS)
                slow = {name: measure(refresh, si, control, max(1, runs // 2)) for name, refresh, si in (
                    ("reference", lambda: reference_refresh(driver), driver._si),
                    ("baseline_per_cluster", baseline.refresh, baseline.si))}
                control.clear_latency()
                row[f"with_{LATENCY_MS}ms_per_call"] = {
                    name: {"calls_per_refresh": m["calls_per_refresh"], "median_s": m["median_s"]}
                    for name, m in slow.items()}
            if n == 10:
                row["reference_calls_per_instance_operation"] = spawn_calls(driver)
            return row
        finally:
            baseline.close()
            driver.close()
    finally:
        endpoint.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000", help="cluster counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="measured refreshes per size and driver")
    parser.add_argument("--out", default=str(OUT), help="where the JSON goes")
    args = parser.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        rows.append(run_size(n, args.runs))
        r = rows[-1]
        print(f"{n:5d} clusters: reference {r['reference']['calls_per_refresh']} calls "
              f"{r['reference']['median_s'] * 1000:.1f} ms | baseline {r['baseline_per_cluster']['calls_per_refresh']} "
              f"calls {r['baseline_per_cluster']['median_s'] * 1000:.1f} ms", flush=True)
    results = {
        "what": "vCenter calls and wall time per full refresh (node list + every node's figures)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "govmomi": govmomi_pin()},
        "runs_per_size": args.runs,
        "server_side_counter": rows[0]["reference"]["server_calls_per_refresh"] is not None,
        "sizes": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

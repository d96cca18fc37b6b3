"""Benchmark: what a refresh of every node's figures costs vCenter and the driver: calls, bytes, time.

A refresh is what Nova's resource tracker asks of a driver: the node list, then every node's figures. For
each size (1, 10, 100, 1000 clusters of two hosts, and fixtures/topologies/scale-1000x8.yaml: 1,000
clusters of eight hosts), in one run against one fake vCenter, side by side:

- ``reference_full``: the reference driver's full refresh, ``get_available_nodes(refresh=True)`` and every
  node's ``get_available_resource``;
- ``reference_incremental``: the same figures brought up to date after one host change (a host enters or
  leaves maintenance mode through the control API) by ``get_available_nodes()`` (refresh=False), which
  applies vCenter's WaitForUpdatesEx deltas; ``reference_notified`` does it through ``wait_for_changes``;
- ``naive_per_cluster``: one PropertyCollector query per cluster, its hosts and datastores traversed,
  reading the properties the reference reads (the shape of a driver that loops over its clusters);
- ``nova``: Nova's figure set fetched as nova.virt.vmwareapi does per cluster (vm_util.get_stats_from_cluster
  and ds_util.get_available_datastores): the cluster's ``host``, then its hosts' whole ``summary.hardware``,
  ``summary.runtime`` and ``summary.quickStats``, the cluster's ``datastore``, then its datastores' six
  summary fields: four queries per cluster.

The full-refresh variants must compute the same figures, or the run stops; an incremental one whose figures
differ from a full refresh taken after it is marked ``stale``. Calls are counted on the client
(driver_under_test.callcount) and on the server; bytes (response bodies) and server time (from a call's
start to its answer's first byte) come from the fake vCenter's counters for the variant's own session
(conformance.control.session_id); the client's CPU time beside the wall time tells the driver's own work
from waiting (the machine is shared). Each variant is measured --runs times (3 at 1,000 clusters and more,
Nova's shape once). Up to 100 clusters, each refresh is also timed with 5 ms added to every call (a vCenter
on the same LAN). Writes bench/results/refresh.json; bench/results/refresh-before.json holds the same run
before issue 11 (the reference reading more per host, fakevc's answers 1.6 times larger).

Run: .venv/bin/python bench/refresh.py [--sizes 1,10,100,1000,1000x8] [--runs 5] [--variants ...] [--out FILE].
Not part of `make test`: numbers belong here, never in timed assertions.
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
from conformance.control import Control, session_id
from conformance.harness import Endpoint, govmomi_pin, start_simulator
from conformance.topology import ClusterSpec, DatacenterSpec, DatastoreSpec, HostSpec, Topology, load_topology
from driver_under_test.callcount import count_calls
from driver_under_test.reference import ReferenceDriver

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "refresh.json"
SCALE = REPO / "fixtures" / "topologies" / "scale-1000x8.yaml"
PC = vmodl.query.PropertyCollector
MIB, GIB = 1 << 20, 1 << 30
CLUSTERS_PER_DATACENTER = 100
LATENCY_MS = 5  # added to every call in the latency measurement: a vCenter on the same LAN, lightly loaded
LATENCY_UP_TO = 100  # clusters; above, the per-cluster variants would take minutes per refresh
FIGURES = ("vcpus", "memory_mb", "local_gb", "local_gb_used", "memory_mb_used")
#: What the naive variant reads: the figures' leaf properties, as the reference does.
HOST_LEAVES = ["summary.hardware.numCpuThreads", "summary.hardware.memorySize",
               "summary.quickStats.overallMemoryUsage", "runtime.connectionState", "runtime.inMaintenanceMode"]
DATASTORE_LEAVES = ["summary.accessible", "summary.maintenanceMode", "summary.capacity", "summary.freeSpace"]
#: Nova's datastore types (ds_util.ALL_SUPPORTED_DS_TYPES); the bench topologies use only these.
NOVA_DS_TYPES = {"VMFS", "NFS", "NFS41", "vsan"}

Figures = dict[str, dict[str, int]]


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


def connect(endpoint: Endpoint) -> Any:
    return SmartConnect(host=endpoint.host, port=endpoint.port, user=endpoint.username, pwd=endpoint.password,
                        sslContext=ssl.create_default_context(cafile=str(endpoint.ca_file)),
                        connectionPoolTimeout=-1)


def retrieve(pc: Any, spec: Any) -> list[Any]:
    """One RetrievePropertiesEx and its continuations."""
    result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    objects = []
    while result is not None:
        objects += result.objects
        result = pc.ContinueRetrievePropertiesEx(result.token) if result.token else None
    return objects


def props(o: Any) -> dict[str, Any]:
    return {p.name: p.val for p in o.propSet}


def figures(hosts: list[tuple[int, int, int]], stores: list[tuple[int, int]]) -> dict[str, int]:
    """The reference's figures from (threads, memory bytes, memory MiB used) of the schedulable hosts and
    (capacity, free) of the usable datastores (docs/driver.md)."""
    capacity = sum(c for c, _ in stores)
    return {"vcpus": sum(t for t, _, _ in hosts), "memory_mb": sum(m for _, m, _ in hosts) // MIB,
            "local_gb": capacity // GIB, "local_gb_used": (capacity - sum(f for _, f in stores)) // GIB,
            "memory_mb_used": sum(u for _, _, u in hosts)}


class PerCluster:
    """A driver-less client that resolves its clusters once (as Nova does at start-up, not counted) and then
    reads each cluster on its own."""

    def __init__(self, endpoint: Endpoint, paths: list[str]) -> None:
        self.si = connect(endpoint)
        content = self.si.RetrieveContent()
        self.pc = content.propertyCollector
        self.uuid = content.about.instanceUuid
        self.clusters = [content.searchIndex.FindByInventoryPath(p) for p in paths]

    def refresh(self) -> Figures:
        return {node_name(c._moId, self.uuid): self.cluster_figures(c) for c in self.clusters}

    def cluster_figures(self, cluster: Any) -> dict[str, int]:
        raise NotImplementedError

    def close(self) -> None:
        Disconnect(self.si)


class NaivePerCluster(PerCluster):
    """One query per cluster (its hosts and datastores traversed), reading the reference's leaf properties."""

    def cluster_figures(self, cluster: Any) -> dict[str, int]:
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=cluster, skip=True, selectSet=[
                PC.TraversalSpec(name="h", path="host", skip=False, type=vim.ComputeResource),
                PC.TraversalSpec(name="d", path="datastore", skip=False, type=vim.ComputeResource)])],
            propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=HOST_LEAVES),
                     PC.PropertySpec(type=vim.Datastore, pathSet=DATASTORE_LEAVES)])
        hosts, stores = [], []
        for o in retrieve(self.pc, spec):
            p = props(o)
            if isinstance(o.obj, vim.HostSystem):
                if p["runtime.connectionState"] == "connected" and not p["runtime.inMaintenanceMode"]:
                    hosts.append((p["summary.hardware.numCpuThreads"], p["summary.hardware.memorySize"],
                                  p.get("summary.quickStats.overallMemoryUsage") or 0))
            elif p["summary.accessible"] and p.get("summary.maintenanceMode") in (None, "normal"):
                stores.append((p["summary.capacity"], p["summary.freeSpace"]))
        return figures(hosts, stores)


class Nova(PerCluster):
    """Nova's four queries per cluster: vm_util.get_stats_from_cluster (the cluster's hosts, then their whole
    hardware, runtime and quickStats summaries) and ds_util.get_available_datastores (the cluster's
    datastores, then six summary fields of each). Figures as the reference defines them, from what Nova
    reads (Nova floors memory per host; the bench's hosts are whole MiB, so the sums agree)."""

    def one(self, obj: Any, paths: list[str]) -> dict[str, Any]:
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=obj)],
                             propSet=[PC.PropertySpec(type=type(obj), pathSet=paths)])
        found = retrieve(self.pc, spec)
        return props(found[0]) if found else {}

    def many(self, kind: Any, objs: list[Any], paths: list[str]) -> list[Any]:
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o) for o in objs],
                             propSet=[PC.PropertySpec(type=kind, pathSet=paths)])
        return retrieve(self.pc, spec)

    def cluster_figures(self, cluster: Any) -> dict[str, int]:
        hosts, stores = [], []
        refs = self.one(cluster, ["host"]).get("host") or []
        if refs:
            for o in self.many(vim.HostSystem, list(refs),
                               ["summary.hardware", "summary.runtime", "summary.quickStats"]):
                p = props(o)
                hw, rt, qs = p["summary.hardware"], p["summary.runtime"], p["summary.quickStats"]
                if rt.inMaintenanceMode is False and rt.connectionState == "connected":
                    hosts.append((hw.numCpuThreads, hw.memorySize, qs.overallMemoryUsage or 0))
        refs = self.one(cluster, ["datastore"]).get("datastore") or []
        if refs:
            for o in self.many(vim.Datastore, list(refs),
                               ["summary.type", "summary.name", "summary.accessible", "summary.maintenanceMode",
                                "summary.capacity", "summary.freeSpace"]):
                p = props(o)
                if (p["summary.type"] in NOVA_DS_TYPES and p["summary.accessible"]
                        and p.get("summary.maintenanceMode") in (None, "normal")):
                    stores.append((p["summary.capacity"], p["summary.freeSpace"]))
        return figures(hosts, stores)


def driver_figures(driver: ReferenceDriver, refresh: bool) -> Figures:
    out = {}
    for node in driver.get_available_nodes(refresh=refresh):
        res = driver.get_available_resource(node)
        out[node] = {k: int(res[k]) for k in FIGURES}  # type: ignore[literal-required]
    return out


def notified_figures(driver: ReferenceDriver) -> Figures:
    if not driver.wait_for_changes(10):
        raise SystemExit("wait_for_changes saw no change after a host changed")
    return driver_figures(driver, refresh=False)


class Meter:
    """Calls (client and server), response bytes, server time and wall time of one operation."""

    def __init__(self, control: Control) -> None:
        self.control = control

    def __call__(self, si: Any, operation: Callable[[], Figures]) -> tuple[dict[str, Any], Figures]:
        self.control.reset_calls()
        with count_calls(si) as log:
            cpu, started = time.process_time(), time.perf_counter()
            result = operation()
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
        server = self.control.calls()
        mine = server["sessions"].get(session_id(si), {"calls": 0, "bytes": 0, "server_ms": 0.0})
        return {"s": took, "cpu_s": cpu, "calls": log.total, "by_method": log.by_method, "server_calls": mine["calls"],
                "bytes": mine["bytes"], "server_ms": mine["server_ms"]}, result


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    times = [s["s"] for s in samples]
    last = samples[-1]
    return {"calls": max(s["calls"] for s in samples), "server_calls": max(s["server_calls"] for s in samples),
            "by_method": last["by_method"], "bytes": max(s["bytes"] for s in samples),
            "server_ms": round(statistics.median(s["server_ms"] for s in samples), 1),
            "median_ms": round(statistics.median(times) * 1000, 1),
            "client_cpu_ms": round(statistics.median(s["cpu_s"] for s in samples) * 1000, 1),
            # wall time less the server's: the driver's own work and the transfer (its CPU time is above)
            "client_ms": round(statistics.median(s["s"] * 1000 - s["server_ms"] for s in samples), 1),
            "min_ms": round(min(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1), "runs": len(samples)}


def measure(meter: Meter, si: Any, operation: Callable[[], Figures], runs: int) -> tuple[dict[str, Any], Figures]:
    samples: list[dict[str, Any]] = []
    result: Figures = {}
    for _ in range(runs):
        sample, result = meter(si, operation)
        samples.append(sample)
    return summarize(samples), result


def toggled_host(endpoint: Endpoint, cluster_path: str) -> str:
    """A connected host of the cluster that is not in maintenance: the one the incremental runs toggle."""
    si = connect(endpoint)
    try:
        cluster = si.RetrieveContent().searchIndex.FindByInventoryPath(cluster_path)
        return str(next(h.name for h in cluster.host
                        if h.runtime.connectionState == "connected" and not h.runtime.inMaintenanceMode))
    finally:
        Disconnect(si)


def spawn_costs(driver: ReferenceDriver, meter: Meter) -> dict[str, Any]:
    """Calls and bytes of one spawn, and of finding, listing and destroying the instance again."""
    node = driver.get_available_nodes(refresh=True)[-1]
    instance = Instance(uuid=str(uuid.uuid4()), name="bench", root_gb=1)
    out: dict[str, Any] = {}
    for what, call in (("spawn", lambda: driver.spawn(instance, node)), ("get_info", lambda: driver.get_info(instance)),
                       ("list_instances", driver.list_instances), ("destroy", lambda: driver.destroy(instance))):
        sample, _ = meter(driver._si, lambda call=call: (call(), {})[1])  # type: ignore[misc]
        out[what] = {k: sample[k] for k in ("calls", "by_method", "server_calls", "bytes", "server_ms")}
    return out


VARIANTS = ("reference_full", "reference_incremental", "reference_notified", "naive_per_cluster", "nova")


def run_size(size: str, runs: int, variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    topo = load_topology(SCALE) if size == "1000x8" else topology(int(size))
    paths = topo.cluster_paths()
    big = len(paths) >= 1000
    runs = min(runs, 3) if big else runs
    started = time.perf_counter()
    endpoint = start_simulator(topo, timeout=300)
    ready_s = time.perf_counter() - started
    try:
        control = Control(endpoint)
        meter = Meter(control)
        config = DriverConfig(url=endpoint.url, username=endpoint.username, password=endpoint.password,
                              clusters=tuple(paths), ca_file=str(endpoint.ca_file))
        driver = ReferenceDriver(config)
        notified = ReferenceDriver(config)
        naive, nova = NaivePerCluster(endpoint, paths), Nova(endpoint, paths)
        try:
            row: dict[str, Any] = {
                "size": size, "clusters": len(paths),
                "hosts": sum(len(c.hosts) for dc in topo.datacenters for c in dc.clusters),
                "datastores": sum(len(dc.datastores) for dc in topo.datacenters),
                "simulator_ready_s": round(ready_s, 2)}
            def full() -> Figures:
                return driver_figures(driver, refresh=True)

            full()  # warm: log-in and the view are set-up, not a refresh
            row["reference_full"], want = measure(meter, driver._si, full, runs)
            for name, client in (("naive_per_cluster", naive), ("nova", nova)):
                if name not in variants:
                    continue
                # Nova's shape reads whole host summaries: minutes per refresh at 1,000 clusters, and its figures
                # vary little from run to run; one run (and no warm-up: it has no set-up) is enough there.
                if not (big and name == "nova"):
                    client.refresh()
                row[name], got = measure(meter, client.si, client.refresh, 1 if big and name == "nova" else runs)
                if got != want:
                    raise SystemExit(f"{size}: {name} and the reference disagree on the figures")

            # Incremental: one host enters (odd runs: leaves) maintenance, then the figures are brought up to
            # date; a full refresh afterwards must agree with them.
            host = toggled_host(endpoint, paths[-1])

            def incremental() -> Figures:
                return driver_figures(driver, refresh=False)

            def notified_() -> Figures:
                return notified_figures(notified)

            incremental()  # warm: the first update sets up the driver's watch (a full read)
            notified.wait_for_changes(0)
            for name, d, operation in (("reference_incremental", driver, incremental),
                                       ("reference_notified", notified, notified_)):
                if name not in variants:
                    continue
                samples, stale = [], False
                for i in range(runs):
                    control.set_host(host, maintenance=i % 2 == 0)
                    sample, got = meter(d._si, operation)
                    samples.append(sample)
                    stale = stale or got != full_figures(config)
                row[name] = {**summarize(samples), **({"stale": True} if stale else {})}
                if runs % 2:  # the host back as it was for the next variant
                    control.set_host(host, maintenance=False)
                    operation()

            if len(paths) <= LATENCY_UP_TO:
                control.set_latency("*", LATENCY_MS)
                slow = {}
                for name, si, operation in (("reference_full", driver._si, full),
                                            ("naive_per_cluster", naive.si, naive.refresh),
                                            ("nova", nova.si, nova.refresh)):
                    if name not in variants:
                        continue
                    slow[name] = {k: v for k, v in measure(meter, si, operation, max(1, runs // 2))[0].items()
                                  if k in ("calls", "median_ms")}
                control.clear_latency()
                row[f"with_{LATENCY_MS}ms_per_call"] = slow
            if size == "10":
                row["reference_per_instance_operation"] = spawn_costs(driver, meter)
            return row
        finally:
            for client in (naive, nova):
                client.close()
            driver.close()
            notified.close()
    finally:
        endpoint.stop()


def full_figures(config: DriverConfig) -> Figures:
    """The figures by a new driver's first full refresh: what the incremental figures must equal."""
    d = ReferenceDriver(config)
    try:
        return driver_figures(d, refresh=True)
    finally:
        d.close()


def line(r: dict[str, Any]) -> str:
    def cell(name: str) -> str:
        m = r.get(name)
        if not m:
            return f"{name} -"
        stale = " STALE" if m.get("stale") else ""
        return f"{name} {m['calls']} calls {m['bytes'] / 1024:.0f} KiB {m['median_ms']:.1f} ms{stale}"
    return f"{r['size']:>7}: " + " | ".join(cell(n) for n in ("reference_full", "reference_incremental",
                                                             "reference_notified", "naive_per_cluster", "nova"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000,1000x8",
                        help="cluster counts (clusters of two hosts) or 1000x8 (the scale topology), comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="measured refreshes per size and variant (3 at 1000+)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which variants, comma-separated")
    parser.add_argument("--out", default=str(OUT), help="where the JSON goes")
    args = parser.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: expected some of {', '.join(VARIANTS)}, got {args.variants!r}")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s != "1000x8" and not s.isdigit():
            parser.error(f"--sizes: expected numbers or 1000x8, got {s!r}")
    rows = []
    for size in sizes:
        rows.append(run_size(size, args.runs, variants))
        print(line(rows[-1]), flush=True)
    results = {
        "what": "per refresh of every node's figures: vCenter calls (client and server), response bytes (server, "
                "the variant's session), server time and wall time (client), by variant and size",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "govmomi": govmomi_pin(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "driver_version": ReferenceDriver.version,
        "runs_per_size": args.runs,
        "variants": list(variants),
        "sizes": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

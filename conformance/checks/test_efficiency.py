"""Efficiency: what a full refresh (every node and its resources) and a spawn cost vCenter, for 1, 10 and 100
clusters: calls, bytes and time, counted by the fake vCenter itself, reported, and held to the budgets of
conformance/budgets.py (calls: EFF-01, with --eff-max-calls; bytes: EFF-02). Time is reported only."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import pytest

from conformance.budgets import BYTES_PER_REFRESH, BYTES_PER_SPAWN, CALLS_PER_REFRESH, EFFICIENCY_SIZES
from conformance.contract import ComputeDriver, DriverConfig, Instance
from conformance.fixtures import Site, construct
from conformance.harness import start_simulator
from conformance.plugin import setting
from conformance.topology import ClusterSpec, DatacenterSpec, DatastoreSpec, HostSpec, Topology

pytestmark = pytest.mark.needs_control
SIZES = EFFICIENCY_SIZES
REFRESHES = 3  # measured full refreshes per size: calls and bytes are the largest, time the median
SPAWN_SIZE = 10  # the size whose site also measures one spawn

#: Measured costs by driver class and backend: the two checks share one measurement per worker.
_measured: dict[tuple[type[ComputeDriver], str], dict[str, Any]] = {}


def clusters_topology(n: int) -> Topology:
    """n clusters of one host each, all mounting one shared datastore."""
    clusters = tuple(ClusterSpec(f"C{i}", (HostSpec(f"C{i}_H0", 1, 4, 8, 2000, 16384),)) for i in range(n))
    hosts = tuple(c.hosts[0].name for c in clusters)
    return Topology(f"eff-{n}", f"<generated: {n} clusters>", (DatacenterSpec(
        "DC0", clusters, (), (DatastoreSpec("shared", "VMFS", 1 << 20, 1 << 19, hosts),)),))


def _refresh_all(driver: ComputeDriver) -> list[str]:
    nodes = driver.get_available_nodes(refresh=True)
    for node in nodes:
        driver.get_available_resource(node)
    return nodes


def _measure_size(driver_class: type[ComputeDriver], backend: str, n: int) -> dict[str, Any]:
    from conformance.control import Control

    topo = clusters_topology(n)
    endpoint = start_simulator(topo, backend)
    try:
        control = Control(endpoint)
        driver = construct(driver_class, DriverConfig(
            url=endpoint.url, username=endpoint.username, password=endpoint.password,
            clusters=tuple(topo.cluster_paths()), ca_file=str(endpoint.ca_file)))
        try:
            driver.get_available_nodes(refresh=True)  # warm: log-in and set-up are not a refresh
            calls, sizes, times, server = [], [], [], []
            for _ in range(REFRESHES):
                control.reset_calls()
                started = time.perf_counter()
                nodes = _refresh_all(driver)
                times.append(time.perf_counter() - started)
                counted = control.calls()
                calls.append(int(counted["total"]))
                sizes.append(int(counted["bytes"]))
                server.append(float(counted["server_ms"]))
                assert len(nodes) == n, f"{n} clusters gave {len(nodes)} nodes (see NODE-01)"
            row: dict[str, Any] = {"calls": max(calls), "bytes": max(sizes),
                                   "ms": round(statistics.median(times) * 1000, 1),
                                   "server_ms": round(statistics.median(server), 1)}
            if n == SPAWN_SIZE:
                instance = Instance(uuid=str(uuid.uuid4()), name="eff-spawn", vcpus=1, memory_mb=256, root_gb=1)
                control.reset_calls()
                try:
                    driver.spawn(instance, nodes[0])
                except Exception as e:  # EFF-02 says so; the refresh figures stand
                    row["spawn"] = {"error": f"{type(e).__name__}: {e}"}
                else:
                    counted = control.calls()
                    row["spawn"] = {"calls": int(counted["total"]), "bytes": int(counted["bytes"])}
            return row
        finally:
            driver.close()
    finally:
        endpoint.stop()


def measured(driver_class: type[ComputeDriver], site: Site, pytestconfig: pytest.Config) -> dict[str, Any]:
    """Calls, bytes and time per full refresh for each size, and one spawn's calls and bytes; measured once
    per worker and driver, inside the check that asks first (so a driver that raises fails the check)."""
    if site.vcenter.backend == "external":
        pytest.skip("counts calls and bytes with the fake vCenter's control API (not available with --vcenter-url)")
    backend = setting(pytestconfig, "--vcsim-backend") or "process"
    key = (driver_class, backend)
    if key not in _measured:
        _measured[key] = {str(n): _measure_size(driver_class, backend, n) for n in SIZES}
    return _measured[key]


def _record(evidence: dict[str, Any], sizes: dict[str, Any]) -> None:
    """The figures every EFF check reports alike (the report draws them: conformance/report.py)."""
    spawn: dict[str, Any] = next((row["spawn"] for row in sizes.values() if "spawn" in row), {})
    evidence["calls_per_refresh"] = {n: row["calls"] for n, row in sizes.items()}
    evidence["bytes_per_refresh"] = {n: row["bytes"] for n, row in sizes.items()}
    evidence["ms_per_refresh"] = {n: row["ms"] for n, row in sizes.items()}
    evidence["server_ms_per_refresh"] = {n: row["server_ms"] for n, row in sizes.items()}
    evidence["calls_per_spawn"] = spawn.get("calls")
    evidence["bytes_per_spawn"] = spawn.get("bytes")


@pytest.mark.requirement("EFF-01")
@pytest.mark.covers("method.get_available_nodes:refresh", "method.get_available_resource:node")
def test_calls_per_refresh_do_not_grow_with_clusters(driver_class: type[ComputeDriver], site: Site,
                                                     pytestconfig: pytest.Config, evidence: dict[str, Any]) -> None:
    sizes = measured(driver_class, site, pytestconfig)
    limit = int(setting(pytestconfig, "--eff-max-calls") or CALLS_PER_REFRESH.base)
    _record(evidence, sizes)
    evidence["threshold"] = limit
    calls = evidence["calls_per_refresh"]
    over = {n: c for n, c in calls.items() if c > limit}
    assert not over, (f"vCenter calls per full refresh {calls} (by cluster count); required at most {limit} "
                      f"at every size (one ContainerView + PropertyCollector query covers any number; vCenter "
                      f"pages its answer at 100 objects, which the count includes)")


@pytest.mark.requirement("EFF-02")
def test_bytes_per_refresh_and_spawn_stay_within_budget(driver_class: type[ComputeDriver], site: Site,
                                                        pytestconfig: pytest.Config,
                                                        evidence: dict[str, Any]) -> None:
    sizes = measured(driver_class, site, pytestconfig)
    _record(evidence, sizes)
    evidence["budgets"] = {b.key: {"base": b.base, "per_cluster": b.per_cluster}
                           for b in (CALLS_PER_REFRESH, BYTES_PER_REFRESH, BYTES_PER_SPAWN)}
    problems = [f"{n} clusters: {row['bytes']:,} bytes per full refresh, required {BYTES_PER_REFRESH.describe()} "
                f"({BYTES_PER_REFRESH.at(int(n)):,})" for n, row in sizes.items()
                if row["bytes"] > BYTES_PER_REFRESH.at(int(n))]
    spawn: dict[str, Any] = sizes[str(SPAWN_SIZE)].get("spawn", {})
    if "error" in spawn:
        problems.append(f"the spawn whose bytes are measured failed: {spawn['error']}")
    elif spawn.get("bytes", 0) > BYTES_PER_SPAWN.at(SPAWN_SIZE):
        problems.append(f"one spawn: {spawn['bytes']:,} bytes, required {BYTES_PER_SPAWN.describe()}")
    assert not problems, ("; ".join(problems) + " (read leaf properties, not whole summary or hardware objects; "
                          "see conformance/budgets.py)")

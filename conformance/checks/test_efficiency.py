"""Efficiency: vCenter calls per full refresh (every node and its resources) for 1, 10 and 100 clusters,
counted by the fake vCenter itself, reported, and held to a threshold (--eff-max-calls)."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.budgets import CALLS_PER_REFRESH
from conformance.contract import ComputeDriver, DriverConfig
from conformance.fixtures import Site, construct
from conformance.harness import start_simulator
from conformance.plugin import setting
from conformance.topology import ClusterSpec, DatacenterSpec, DatastoreSpec, HostSpec, Topology

pytestmark = pytest.mark.needs_control
SIZES = (1, 10, 100)


def clusters_topology(n: int) -> Topology:
    """n clusters of one host each, all mounting one shared datastore."""
    clusters = tuple(ClusterSpec(f"C{i}", (HostSpec(f"C{i}_H0", 1, 4, 8, 2000, 16384),)) for i in range(n))
    hosts = tuple(c.hosts[0].name for c in clusters)
    return Topology(f"eff-{n}", f"<generated: {n} clusters>", (DatacenterSpec(
        "DC0", clusters, (), (DatastoreSpec("shared", "VMFS", 1 << 20, 1 << 19, hosts),)),))


@pytest.mark.requirement("EFF-01")
@pytest.mark.covers("method.get_available_nodes:refresh", "method.get_available_resource:node")
def test_calls_per_refresh_do_not_grow_with_clusters(driver_class: type[ComputeDriver], site: Site,
                                                     pytestconfig: pytest.Config, evidence: dict[str, Any]) -> None:
    if site.vcenter.backend == "external":
        pytest.skip("counts calls with the fake vCenter's control API (not available with --vcenter-url)")
    from conformance.control import Control

    limit = int(setting(pytestconfig, "--eff-max-calls") or CALLS_PER_REFRESH)
    backend = setting(pytestconfig, "--vcsim-backend") or "process"
    calls: dict[str, int] = {}
    for n in SIZES:
        topo = clusters_topology(n)
        endpoint = start_simulator(topo, backend)
        try:
            control = Control(endpoint)
            driver = construct(driver_class, DriverConfig(
                url=endpoint.url, username=endpoint.username, password=endpoint.password,
                clusters=tuple(topo.cluster_paths()), ca_file=str(endpoint.ca_file)))
            try:
                driver.get_available_nodes(refresh=True)  # warm: log-in and set-up are not a refresh
                control.reset_calls()
                nodes = driver.get_available_nodes(refresh=True)
                for node in nodes:
                    driver.get_available_resource(node)
                calls[str(n)] = int(control.calls()["total"])
                assert len(nodes) == n, f"{n} clusters gave {len(nodes)} nodes (see NODE-01)"
            finally:
                driver.close()
        finally:
            endpoint.stop()
    evidence["calls_per_refresh"] = calls
    evidence["threshold"] = limit
    over = {n: c for n, c in calls.items() if c > limit}
    assert not over, (f"vCenter calls per full refresh {calls} (by cluster count); required at most {limit} "
                      f"at every size (one ContainerView + PropertyCollector query covers any number)")

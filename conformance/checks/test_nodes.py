"""Node enumeration: one node per managed cluster, named by the scheme, stable, and nothing else."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from pyVmomi import vim

from conformance.checks.common import node_set_problems
from conformance.contract import ComputeDriver
from conformance.fixtures import Cleanup, Site
from conformance.oracle import Oracle

Make = Callable[..., ComputeDriver]


@pytest.mark.requirement("NODE-01")
@pytest.mark.covers("config.url:https", "config.username:valid", "config.password:valid", "config.clusters:by-path",
                    "config.ca_file:set", "config.insecure:false", "method.__init__:connects",
                    "method.get_available_nodes:refresh")
def test_one_node_per_managed_cluster(driver: ComputeDriver, oracle: Oracle) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    assert expected, "the site has no managed cluster: this check needs at least one"
    problems = node_set_problems(driver.get_available_nodes(refresh=True), expected)
    assert not problems, f"node set differs from vCenter's managed clusters (required: {sorted(expected)}): " \
                         + "; ".join(problems)


@pytest.mark.requirement("NODE-01")
@pytest.mark.covers("config.clusters:in-folders", "cluster:empty")
def test_one_node_per_cluster_on_the_heterogeneous_topology(make_driver: Make, hetero: Site) -> None:
    driver = make_driver(site_=hetero)
    expected = hetero.oracle.inventory().expected_nodes(driver.config.clusters)
    problems = node_set_problems(driver.get_available_nodes(refresh=True), expected)
    assert not problems, "heterogeneous topology (folders, empty and same-named clusters): " + "; ".join(problems)


@pytest.mark.requirement("NODE-01")
@pytest.mark.covers("config.clusters:same-cluster-twice", "config.clusters:by-moref")
def test_a_cluster_named_twice_is_one_node(make_driver: Make, oracle: Oracle, site: Site) -> None:
    """A cluster named by its path and by its moref (a configuration grown by hand) is still one node."""
    inv = oracle.inventory()
    twice = inv.by_path(site.clusters[0])
    driver = make_driver(clusters=(twice.moref, *site.clusters, twice.path))
    problems = node_set_problems(driver.get_available_nodes(refresh=True), inv.expected_nodes(site.clusters))
    assert not problems, (f"{twice.path} is configured by moref ({twice.moref}) and by path, twice: "
                          + "; ".join(problems))


@pytest.mark.requirement("NODE-02")
@pytest.mark.covers("config.clusters:standalone-host", "config.clusters:resource-pool")
def test_standalone_hosts_and_pools_are_never_nodes(make_driver: Make, oracle: Oracle, site: Site) -> None:
    """The pools named are those of a cluster the driver does not manage otherwise (where a driver that takes
    a pool for its cluster adds a node), the root pool and child pools, by path and by moref."""
    inv = oracle.inventory()
    clusters = [inv.by_path(p) for p in site.clusters if inv.cluster(p)]
    if len(clusters) < 2:
        pytest.skip("needs two managed clusters (one whose pools are named instead of it)")
    given = max(clusters, key=lambda c: (sum(p.startswith(c.path + "/") for p in inv.pools.values()), c.path))
    kept = tuple(c.path for c in clusters if c.moref != given.moref)
    named = [ref for h in inv.standalone_hosts.values() for ref in (h.parent_path, h.parent)]
    named += [ref for moref, path in sorted(inv.pools.items()) if path.startswith(given.path + "/")
              for ref in (path, moref)]
    driver = make_driver(clusters=(*kept, *named))
    problems = node_set_problems(driver.get_available_nodes(refresh=True), inv.expected_nodes(kept))
    assert not problems, ("standalone hosts and resource pools must never be nodes, even when the "
                          f"configuration names them ({', '.join(named)}): " + "; ".join(problems))


@pytest.mark.requirement("NODE-03")
@pytest.mark.covers("config.clusters:by-moref", "cluster:renamed", "method.close:called")
def test_names_survive_a_driver_restart_and_a_cluster_rename(make_driver: Make, oracle: Oracle,
                                                             cleanup: Cleanup) -> None:
    inv = oracle.inventory()
    morefs = tuple(inv.by_path(p).moref for p in make_driver().config.clusters if inv.cluster(p))
    first = make_driver(clusters=morefs)  # by moref: a rename keeps the cluster configured
    before = sorted(first.get_available_nodes(refresh=True))
    first.close()
    again = sorted(make_driver(clusters=morefs).get_available_nodes(refresh=True))
    assert again == before, f"a new driver instance reports {again}, the previous one {before}"

    victim = inv.clusters[morefs[0]]
    oracle.rename(victim.moref, vim.ClusterComputeResource, victim.name + "-renamed")
    cleanup.later(lambda: oracle.rename(victim.moref, vim.ClusterComputeResource, victim.name))
    driver = make_driver(clusters=morefs)
    after = sorted(driver.get_available_nodes(refresh=True))
    assert after == before, f"after renaming {victim.path}, nodes are {after}; required unchanged {before}"


@pytest.mark.requirement("NODE-03")
@pytest.mark.resets
@pytest.mark.covers("vcenter:restarted")
def test_names_survive_a_vcenter_restart(driver: ComputeDriver, control: Any) -> None:
    before = sorted(driver.get_available_nodes(refresh=True))
    control.reset()  # a restart: sessions end, the inventory is as loaded
    after = sorted(driver.get_available_nodes(refresh=True))
    assert after == before, f"after a vCenter restart the driver reports {after}; required unchanged {before}"


@pytest.mark.requirement("NODE-04")
@pytest.mark.covers("config.clusters:same-name-two-datacenters")
def test_same_named_clusters_in_two_datacenters_are_two_nodes(make_driver: Make, oracle: Oracle,
                                                              scratch_datacenter: str, cleanup: Cleanup,
                                                              new_uuid: Callable[[], str]) -> None:
    inv = oracle.inventory()
    original = next(c for c in inv.clusters.values() if c.datacenter == scratch_datacenter and c.hosts)
    dc = oracle.create_datacenter(f"vcconform-dc-{new_uuid()[:8]}")
    cleanup.entity(oracle, dc, vim.Datacenter)
    twin = oracle.create_cluster(dc, original.name)
    cleanup.entity(oracle, twin, vim.ClusterComputeResource)
    oracle.add_host(twin, f"twin-{new_uuid()[:8]}")
    inv = oracle.inventory()
    paths = (original.path, inv.clusters[twin].path)
    expected = inv.expected_nodes(paths)
    assert len(expected) == 2
    problems = node_set_problems(make_driver(clusters=paths).get_available_nodes(refresh=True), expected)
    assert not problems, f"clusters {paths[0]} and {paths[1]} share a name: " + "; ".join(problems)


@pytest.mark.requirement("NODE-05")
@pytest.mark.covers("config.clusters:missing")
def test_missing_cluster_is_left_out_with_a_warning(make_driver: Make, oracle: Oracle, site: Site,
                                                    caplog: pytest.LogCaptureFixture,
                                                    new_uuid: Callable[[], str]) -> None:
    missing = f"{site.clusters[0].rsplit('/', 1)[0]}/absent-{new_uuid()[:8]}"
    caplog.set_level(logging.WARNING)
    driver = make_driver(clusters=(*site.clusters, missing))
    nodes = driver.get_available_nodes(refresh=True)
    problems = node_set_problems(nodes, oracle.inventory().expected_nodes(site.clusters))
    assert not problems, f"with missing cluster {missing} configured: " + "; ".join(problems)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING and missing in r.getMessage()]
    assert warned, f"no warning (python logging, WARNING or above) names the missing cluster {missing}"


@pytest.mark.requirement("NODE-06")
@pytest.mark.covers("config.service_id:distinct")
def test_two_services_split_the_clusters(make_driver: Make, oracle: Oracle, site: Site) -> None:
    if len(site.clusters) < 2:
        pytest.skip("needs at least two managed clusters")
    half = len(site.clusters) // 2
    a_clusters, b_clusters = site.clusters[:half], site.clusters[half:]
    a = make_driver(clusters=a_clusters, service_id="compute-a")
    b = make_driver(clusters=b_clusters, service_id="compute-b")
    a_nodes, b_nodes = set(a.get_available_nodes(refresh=True)), set(b.get_available_nodes(refresh=True))
    inv = oracle.inventory()
    assert not a_nodes & b_nodes, f"both services report {sorted(a_nodes & b_nodes)}"
    problems = (node_set_problems(sorted(a_nodes), inv.expected_nodes(a_clusters))
                + node_set_problems(sorted(b_nodes), inv.expected_nodes(b_clusters)))
    assert not problems, "each service must report exactly its own clusters: " + "; ".join(problems)

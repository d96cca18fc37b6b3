"""Cluster add and remove: the node set follows the configuration and vCenter, and giving a cluster away
never touches its instances."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pyVmomi import vim

from conformance.checks.common import assert_figures
from conformance.contract import ComputeDriver, Instance, node_name
from conformance.fixtures import Cleanup, Site
from conformance.oracle import Oracle

Make = Callable[..., ComputeDriver]


def _new_cluster(oracle: Oracle, datacenter: str, name: str, cleanup: Cleanup) -> tuple[str, str]:
    """Create a cluster with one host in the datacenter; return (moref, inventory path)."""
    moref = oracle.create_cluster(datacenter, name)
    cleanup.entity(oracle, moref, vim.ClusterComputeResource)
    oracle.add_host(moref, f"{name}-h0")
    return moref, oracle.inventory().clusters[moref].path


@pytest.mark.requirement("CHURN-01")
def test_added_cluster_appears_after_refresh(driver: ComputeDriver, oracle: Oracle, scratch_datacenter: str,
                                             cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    before = driver.get_available_nodes(refresh=True)
    moref, path = _new_cluster(oracle, scratch_datacenter, f"added-{new_uuid()[:8]}", cleanup)
    driver.reconfigure(replace(driver.config, clusters=(*driver.config.clusters, path)))
    got = driver.get_available_nodes(refresh=True)
    want = node_name(moref, oracle.vcenter_uuid)
    assert want in got, f"cluster {path} was created and configured, but node {want} is not in {sorted(got)}"
    lost = sorted(set(before) - set(got))
    assert not lost, f"nodes disappeared when a cluster was added: {lost}"


@pytest.mark.requirement("CHURN-02")
def test_removed_cluster_disappears_after_refresh(driver: ComputeDriver, oracle: Oracle) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    if len(expected) < 2:
        pytest.skip("needs at least two managed clusters")
    before = set(driver.get_available_nodes(refresh=True))
    assert before == set(expected), f"node set wrong before the change (see NODE-01): {sorted(before)}"
    removed_path = driver.config.clusters[-1]
    removed = [n for n, c in expected.items() if c.path == "/" + removed_path.strip("/")]
    driver.reconfigure(replace(driver.config, clusters=driver.config.clusters[:-1]))
    got = set(driver.get_available_nodes(refresh=True))
    assert not got.intersection(removed), (f"{removed_path} was removed from the configuration, "
                                           f"but node {removed[0]} is still reported")
    assert got == set(expected) - set(removed), f"other nodes changed: observed {sorted(got)}"


@pytest.mark.requirement("CHURN-03")
def test_node_set_follows_clusters_created_and_destroyed_in_vcenter(
        make_driver: Make, oracle: Oracle, site: Site, scratch_datacenter: str, cleanup: Cleanup,
        new_uuid: Callable[[], str]) -> None:
    name = f"later-{new_uuid()[:8]}"
    dc_path = oracle.inventory().datacenters[scratch_datacenter]
    path = f"/{dc_path}/host/{name}"
    driver = make_driver(clusters=(*site.clusters, path))
    before = set(driver.get_available_nodes(refresh=True))
    moref, real_path = _new_cluster(oracle, scratch_datacenter, name, cleanup)
    assert real_path == path, f"fake vCenter made {real_path}, expected {path}"
    node = node_name(moref, oracle.vcenter_uuid)
    got = set(driver.get_available_nodes(refresh=True))
    assert got == before | {node}, (f"configured cluster {path} now exists in vCenter; required nodes "
                                    f"{sorted(before | {node})}, observed {sorted(got)}")
    oracle.destroy(moref, vim.ClusterComputeResource)
    got = set(driver.get_available_nodes(refresh=True))
    assert got == before, f"cluster {path} was destroyed in vCenter; node {node} must go, observed {sorted(got)}"


@pytest.mark.requirement("CHURN-04")
@pytest.mark.resets
def test_host_move_moves_capacity(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    inv = oracle.inventory()
    clusters = [inv.by_path(p) for p in driver.config.clusters if inv.cluster(p)]
    source = max(clusters, key=lambda c: len(c.hosts))
    dest = next((c for c in clusters if c.moref != source.moref), None)
    if dest is None or len(source.hosts) < 2:
        pytest.skip("needs two managed clusters, one with two hosts")
    assert_figures(driver, oracle, when="before the move")
    oracle.move_host(source.hosts[-1].moref, dest.moref)
    assert_figures(driver, oracle, when=f"after {source.hosts[-1].name} moved from {source.path} to {dest.path}")


@pytest.mark.requirement("CHURN-05")
def test_giving_a_cluster_away_keeps_its_instances(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                                   new_uuid: Callable[[], str]) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    driver.get_available_nodes(refresh=True)
    removed_path = "/" + driver.config.clusters[-1].strip("/")
    node = next(n for n, c in expected.items() if c.path == removed_path)
    instance = Instance(uuid=new_uuid(), name="churn-05")
    cleanup.instance(oracle, instance.uuid)
    driver.spawn(instance, node)
    driver.reconfigure(replace(driver.config, clusters=driver.config.clusters[:-1]))
    driver.get_available_nodes(refresh=True)
    driver.list_instances()
    vms = oracle.find_vms(instance.uuid)
    assert vms, f"instance {instance.uuid} on {removed_path} was destroyed when the cluster left the configuration"
    assert vms[0].power_state == "poweredOn", f"its VM was powered off ({vms[0].power_state})"


@pytest.mark.requirement("CHURN-06")
@pytest.mark.capability("update_notifications")
def test_wait_for_changes_follows_vcenter(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                          new_uuid: Callable[[], str]) -> None:
    driver.get_available_nodes(refresh=True)
    cluster = oracle.inventory().by_path(driver.config.clusters[0])
    changed: list[bool] = []
    waiter = threading.Thread(target=lambda: changed.append(driver.wait_for_changes(timeout=20)))
    waiter.start()
    host = oracle.add_host(cluster.moref, f"notified-{new_uuid()[:8]}")
    cleanup.later(lambda: oracle.remove_host(host))
    waiter.join(timeout=30)
    assert changed == [True], f"a host was added to {cluster.path}; wait_for_changes returned {changed or 'nothing'}"
    inv = oracle.inventory()
    res = driver.get_available_resource(node_name(cluster.moref, inv.vcenter_uuid))
    want = inv.expected_resources(inv.clusters[cluster.moref])
    assert res.get("vcpus") == want["vcpus"], (f"after the notification, vcpus observed {res.get('vcpus')}, "
                                              f"required {want['vcpus']} (no refresh was asked for)")

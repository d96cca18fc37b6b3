"""Cluster add and remove: the node set follows the configuration and vCenter, and giving a cluster away
never touches its instances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pyVmomi import vim

from conformance.checks.common import assert_figures
from conformance.contract import ComputeDriver, DriverError, Instance, InstanceNotFound, node_name
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
@pytest.mark.covers("config.clusters:reconfigured", "method.reconfigure:applied", "cluster:created-later")
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
@pytest.mark.covers("config.clusters:reconfigured", "method.reconfigure:applied")
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
@pytest.mark.covers("cluster:created-later", "cluster:destroyed")
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
@pytest.mark.covers("host:moved")
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


@pytest.mark.requirement("CHURN-04")
@pytest.mark.resets
@pytest.mark.covers("instance:host-moved-to-managed-cluster", "instance:host-moved-to-unmanaged-cluster",
                    "host:moved", "vm:powered-off")
def test_instances_follow_their_host_to_another_cluster(make_driver: Make, oracle: Oracle, site: Site,
                                                       cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    """An operator moves a host, with its powered-off VM, to another managed cluster: the instance is now on
    that cluster's node. Then to a cluster the driver does not manage: it is no longer the driver's."""
    inv = oracle.inventory()
    clusters = [inv.by_path(p) for p in site.clusters if inv.cluster(p)]
    if len(clusters) < 3:
        pytest.skip("needs three clusters: two managed, one not")
    source = max(clusters[:-1], key=lambda c: (len(c.hosts), c.path))
    dest = next(c for c in clusters[:-1] if c.moref != source.moref)
    outside = clusters[-1]
    if len(source.hosts) < 2:
        pytest.skip("needs a managed cluster with two hosts (one moves away)")
    driver = make_driver(clusters=tuple(c.path for c in clusters[:-1]))
    driver.get_available_nodes(refresh=True)
    instance = Instance(uuid=new_uuid(), name="churn-04-moved")
    cleanup.instance(oracle, instance.uuid)
    driver.spawn(instance, node_name(source.moref, inv.vcenter_uuid))
    (vm,) = oracle.find_vms(instance.uuid)
    oracle.power(vm.moref, False)  # a host leaves its cluster in maintenance mode: only powered-off VMs stay on it
    host = inv.host(vm.host)
    problems = []
    oracle.move_host(host.moref, dest.moref)
    want = node_name(dest.moref, inv.vcenter_uuid)
    driver.get_available_nodes(refresh=True)
    try:
        got = driver.get_info(instance).nodename
        if got != want:
            problems.append(f"after {host.name} moved with the instance's VM from {source.path} to {dest.path}, "
                            f"get_info reports node {got}; required {want}")
    except DriverError as e:
        problems.append(f"after {host.name} moved to {dest.path}, get_info raised {type(e).__name__} ({e})")
    if instance.uuid not in driver.list_instances():
        problems.append(f"after {host.name} moved to managed {dest.path}, the instance is not listed")
    oracle.move_host(host.moref, outside.moref)
    driver.get_available_nodes(refresh=True)
    if instance.uuid in driver.list_instances():
        problems.append(f"after {host.name} moved on to unmanaged {outside.path}, the instance is still listed")
    try:
        info = driver.get_info(instance)
        problems.append(f"after {host.name} moved on to unmanaged {outside.path}, get_info reports {info}; "
                        "required InstanceNotFound")
    except InstanceNotFound:
        pass
    if not oracle.find_vms(instance.uuid):
        problems.append("the instance's VM is gone from vCenter")
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("CHURN-05")
@pytest.mark.covers("instance:unmanaged-cluster", "instance:cluster-removed-from-config",
                    "method.destroy:not-managed", "config.service_id:distinct")
def test_giving_a_cluster_away_keeps_its_instances(make_driver: Make, oracle: Oracle, site: Site, cleanup: Cleanup,
                                                   new_uuid: Callable[[], str]) -> None:
    """Service A spawns on its last cluster; service B (the other clusters) never lists, reports or destroys
    that instance. Then A gives the cluster away: the VM stays, running, and is no longer A's."""
    if len(site.clusters) < 2:
        pytest.skip("needs at least two managed clusters")
    inv = oracle.inventory()
    given = "/" + site.clusters[-1].strip("/")
    a = make_driver(service_id="compute-a")
    b = make_driver(clusters=site.clusters[:-1], service_id="compute-b")
    a.get_available_nodes(refresh=True)
    b.get_available_nodes(refresh=True)
    node = next(n for n, c in inv.expected_nodes(site.clusters).items() if c.path == given)
    instance = Instance(uuid=new_uuid(), name="churn-05")
    cleanup.instance(oracle, instance.uuid)
    a.spawn(instance, node)
    problems = _not_its_own(b, "service B, which never managed it", instance)
    a.reconfigure(replace(a.config, clusters=site.clusters[:-1]))
    a.get_available_nodes(refresh=True)
    problems += _not_its_own(a, f"service A, after {given} left its configuration", instance)
    vms = oracle.find_vms(instance.uuid)
    if not vms:
        problems.append(f"instance {instance.uuid} on {given} was destroyed when the cluster left the configuration")
    elif vms[0].power_state != "poweredOn":
        problems.append(f"its VM was powered off ({vms[0].power_state})")
    assert not problems, "; ".join(problems)


def _not_its_own(driver: ComputeDriver, who: str, instance: Instance) -> list[str]:
    """What a driver does wrong with an instance outside its clusters: list it, report it, destroy it."""
    problems = []
    if instance.uuid in driver.list_instances():
        problems.append(f"{who} lists instance {instance.uuid}")
    try:
        info = driver.get_info(instance)
        problems.append(f"{who} reports {info} for it; required InstanceNotFound")
    except InstanceNotFound:
        pass
    driver.destroy(instance)  # succeeds, and must leave another service's VM alone
    return problems


@pytest.mark.requirement("CHURN-06")
@pytest.mark.capability("update_notifications")
@pytest.mark.covers("method.wait_for_changes:managed-change", "host:added")
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


@pytest.mark.requirement("CHURN-06")
@pytest.mark.capability("update_notifications")
@pytest.mark.resets
@pytest.mark.needs_control
@pytest.mark.covers("method.wait_for_changes:unmanaged-change", "cluster:unmanaged-changed")
def test_wait_for_changes_stays_asleep_on_unmanaged_changes(make_driver: Make, oracle: Oracle, site: Site,
                                                            control: Any, new_uuid: Callable[[], str]) -> None:
    """Changes to a cluster the driver does not manage, made again and again while it waits (a host added,
    a host stopping to respond and coming back): wait_for_changes must run to its timeout and return False."""
    if len(site.clusters) < 2:
        pytest.skip("needs two clusters (one managed, one not)")
    inv = oracle.inventory()
    other = inv.by_path(site.clusters[-1])
    driver = make_driver(clusters=site.clusters[:-1])
    driver.get_available_nodes(refresh=True)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(driver.wait_for_changes(timeout=4)))
    waiter.start()
    added = oracle.add_host(other.moref, f"elsewhere-{new_uuid()[:8]}")
    for state in ("notResponding", "connected", "notResponding", "connected"):
        time.sleep(0.5)
        control.set_host(added, connection_state=state)
    waiter.join(timeout=30)
    assert woke == [False], (f"only {other.path}, which the driver does not manage, changed; wait_for_changes "
                             f"returned {woke or 'nothing (still waiting after 30 s)'}, required False")

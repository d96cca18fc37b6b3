"""Spawn routing: an instance spawned for a node lands in that node's cluster, on a usable host, and is
found again; failed and misdirected spawns leave nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from conformance.contract import ComputeDriver, DriverError, Instance, InstanceNotFound, NodeNotFound, node_name
from conformance.fixtures import Cleanup
from conformance.oracle import ClusterFacts, Oracle

Make = Callable[..., ComputeDriver]


def placement_problems(oracle: Oracle, instance: Instance, cluster: ClusterFacts) -> list[str]:
    """Where the instance's VM is, against where it must be (SPAWN-01)."""
    vms = oracle.find_vms(instance.uuid)
    if len(vms) != 1:
        return [f"{cluster.path}: {len(vms)} VMs carry instance uuid {instance.uuid}, required 1"]
    vm = vms[0]
    problems = []
    if vm.pool_owner != cluster.moref:
        problems.append(f"{cluster.path}: VM's resource pool belongs to {vm.pool_owner}, required {cluster.moref}")
    if vm.host_parent != cluster.moref:
        problems.append(f"{cluster.path}: VM runs on host {vm.host} of {vm.host_parent}, "
                        f"required a host of {cluster.moref}")
    foreign = set(vm.datastores) - {d.moref for d in cluster.datastores}
    if foreign:
        problems.append(f"{cluster.path}: VM uses datastores {sorted(foreign)} the cluster does not mount")
    return problems


@pytest.mark.requirement("SPAWN-01")
def test_vm_lands_in_the_nodes_cluster(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                       new_uuid: Callable[[], str]) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    nodes = set(driver.get_available_nodes(refresh=True))
    problems = []
    for name, cluster in sorted(expected.items(), key=lambda kv: kv[1].path):
        if name not in nodes:
            problems.append(f"{cluster.path}: no node {name} to spawn on (see NODE-01)")
            continue
        instance = Instance(uuid=new_uuid(), name=f"spawn-{cluster.name}")
        cleanup.instance(oracle, instance.uuid)
        driver.spawn(instance, name)
        problems += placement_problems(oracle, instance, cluster)
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("SPAWN-02")
@pytest.mark.resets
def test_never_on_a_host_in_maintenance_or_not_connected(driver: ComputeDriver, oracle: Oracle, control: Any,
                                                         cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    inv = oracle.inventory()
    cluster = max((inv.by_path(p) for p in driver.config.clusters if inv.cluster(p)), key=lambda c: len(c.hosts))
    if len(cluster.hosts) < 3:
        pytest.skip("needs a managed cluster with three hosts")
    maintenance, unreachable, *good = cluster.hosts
    oracle.set_maintenance(maintenance.moref, True)
    control.set_host(unreachable.moref, connection_state="notResponding")
    node = node_name(cluster.moref, inv.vcenter_uuid)
    driver.get_available_nodes(refresh=True)
    problems = []
    for i in range(4):
        instance = Instance(uuid=new_uuid(), name=f"spawn-02-{i}")
        cleanup.instance(oracle, instance.uuid)
        driver.spawn(instance, node)
        for vm in oracle.find_vms(instance.uuid):
            if vm.host not in {h.moref for h in good}:
                problems.append(f"VM {vm.name} runs on {vm.host}; required one of {[h.moref for h in good]} "
                                f"({maintenance.moref} is in maintenance, {unreachable.moref} not responding)")
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("SPAWN-03")
def test_unknown_or_removed_node_creates_nothing(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                                 new_uuid: Callable[[], str]) -> None:
    inv = oracle.inventory()
    nodes = driver.get_available_nodes(refresh=True)
    expected = inv.expected_nodes(driver.config.clusters)
    unknown = node_name("domain-c0", inv.vcenter_uuid)
    removed_path = driver.config.clusters[-1]
    removed = next(n for n, c in expected.items() if c.path == "/" + removed_path.strip("/"))
    assert removed in nodes, f"node {removed} missing before the change (see NODE-01)"
    driver.reconfigure(replace(driver.config, clusters=driver.config.clusters[:-1]))
    problems = []
    for label, name in (("unknown node", unknown), ("node removed from the configuration (before a refresh)",
                                                    removed)):
        instance = Instance(uuid=new_uuid(), name="spawn-03")
        cleanup.instance(oracle, instance.uuid)
        try:
            driver.spawn(instance, name)
            problems.append(f"spawn on {label} {name} returned; required NodeNotFound")
        except NodeNotFound:
            pass
        if oracle.find_vms(instance.uuid):
            problems.append(f"spawn on {label} {name} left a VM behind")
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("SPAWN-04")
@pytest.mark.resets
def test_failed_spawn_leaves_no_vm(driver: ComputeDriver, oracle: Oracle, control: Any, cleanup: Cleanup,
                                   new_uuid: Callable[[], str]) -> None:
    node = driver.get_available_nodes(refresh=True)[0]
    control.add_fault("PowerOnVM_Task", "SystemError", message="injected by vcconform: power-on failed")
    instance = Instance(uuid=new_uuid(), name="spawn-04")
    cleanup.instance(oracle, instance.uuid)
    with pytest.raises(DriverError):
        driver.spawn(instance, node)
        pytest.fail("spawn returned although powering the VM on failed; required a DriverError")
    left = oracle.find_vms(instance.uuid)
    assert not left, f"the failed spawn left VM(s) {[v.moref for v in left]} behind; required none"


@pytest.mark.requirement("SPAWN-05")
def test_concurrent_spawns_land_right(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                      new_uuid: Callable[[], str]) -> None:
    inv = oracle.inventory()
    expected = inv.expected_nodes(driver.config.clusters)
    driver.get_available_nodes(refresh=True)
    work = [(Instance(uuid=new_uuid(), name=f"spawn-05-{i}"), name, cluster)
            for i in range(2) for name, cluster in sorted(expected.items())]
    for instance, _, _ in work:
        cleanup.instance(oracle, instance.uuid)
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        for future in [pool.submit(driver.spawn, instance, name) for instance, name, _ in work]:
            future.result()
    problems = [p for instance, _, cluster in work for p in placement_problems(oracle, instance, cluster)]
    assert not problems, f"{len(work)} concurrent spawns: " + "; ".join(problems)


@pytest.mark.requirement("SPAWN-06")
def test_instance_is_found_again_by_uuid(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                         new_uuid: Callable[[], str]) -> None:
    nodes = driver.get_available_nodes(refresh=True)
    instances = [(Instance(uuid=new_uuid(), name=f"spawn-06-{i}"), node) for i, node in enumerate(nodes)]
    for instance, node in instances:
        cleanup.instance(oracle, instance.uuid)
        driver.spawn(instance, node)
    listed = set(driver.list_instances())
    problems = [f"{i.uuid} (on {n}) not in list_instances()" for i, n in instances if i.uuid not in listed]
    for instance, node in instances:
        info = driver.get_info(instance)
        if (info.state, info.nodename) != ("running", node):
            problems.append(f"get_info({instance.uuid}) observed ({info.state}, {info.nodename}), "
                            f"required (running, {node})")
    instance, _ = instances[-1]
    driver.destroy(instance)
    if oracle.find_vms(instance.uuid):
        problems.append(f"destroy({instance.uuid}) left the VM in vCenter")
    try:
        driver.destroy(instance)
    except Exception as e:
        problems.append(f"destroying a missing instance raised {type(e).__name__}: {e}; required success")
    if instance.uuid in driver.list_instances():
        problems.append(f"destroyed {instance.uuid} still in list_instances()")
    try:
        driver.get_info(instance)
        problems.append(f"get_info of destroyed {instance.uuid} returned; required InstanceNotFound")
    except InstanceNotFound:
        pass
    assert not problems, "; ".join(problems)

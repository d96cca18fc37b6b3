"""Spawn routing: an instance spawned for a node lands in that node's cluster."""

from __future__ import annotations

import uuid

import pytest

from conformance.contract import ComputeDriver, Instance
from conformance.oracle import Oracle
from conformance.plugin import Cleanup


@pytest.mark.requirement("SPAWN-01")
def test_vm_lands_in_the_nodes_cluster(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    nodes = set(driver.get_available_nodes(refresh=True))
    problems = []
    for name, cluster in sorted(expected.items()):
        if name not in nodes:
            problems.append(f"{cluster.path}: no node {name} to spawn on (see NODE-01)")
            continue
        instance = Instance(uuid=str(uuid.uuid4()), name=f"spawn-{cluster.name}")
        cleanup.instances.append(instance.uuid)
        driver.spawn(instance, name)
        vms = oracle.find_vms(instance.uuid)
        if len(vms) != 1:
            problems.append(f"{cluster.path}: {len(vms)} VMs carry instance uuid {instance.uuid}, required 1")
            continue
        vm = vms[0]
        if vm.pool_owner != cluster.moref:
            problems.append(f"{cluster.path}: VM's resource pool belongs to {vm.pool_owner}, "
                            f"required {cluster.moref}")
        if vm.host_parent != cluster.moref:
            problems.append(f"{cluster.path}: VM runs on host {vm.host} of {vm.host_parent}, "
                            f"required a host of {cluster.moref}")
    assert not problems, "; ".join(problems)

"""Spawn routing: an instance spawned for a node lands in that node's cluster, on a usable host and
datastore, in the configured pool, and is found again; failed and misdirected spawns leave nothing behind.

The host and datastore checks take away, round after round, exactly the one a naive policy picks (the most
free memory, the most free space), so that a driver ignoring a state cannot land right by luck."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from conformance.contract import ComputeDriver, DriverError, Instance, InstanceNotFound, NodeNotFound, node_name
from conformance.fixtures import Cleanup, Site
from conformance.oracle import MIB, ClusterFacts, DatastoreFacts, HostFacts, Inventory, Oracle, VmFacts

Make = Callable[..., ComputeDriver]


def placement_problems(oracle: Oracle, instance: Instance, cluster: ClusterFacts, pool: str | None = None) -> list[str]:
    """Where the instance's VM is, against where it must be (SPAWN-01); ``pool``: the pool it must be in."""
    vms = oracle.find_vms(instance.uuid)
    if len(vms) != 1:
        return [f"{cluster.path}: {len(vms)} VMs carry instance uuid {instance.uuid}, required 1"]
    vm = vms[0]
    problems = []
    if vm.pool_owner != cluster.moref:
        problems.append(f"{cluster.path}: VM's resource pool belongs to {vm.pool_owner}, required {cluster.moref}")
    elif pool is not None and vm.resource_pool != pool:
        problems.append(f"{cluster.path}: VM is in resource pool {vm.resource_pool}, required {pool}")
    if vm.host_parent != cluster.moref:
        problems.append(f"{cluster.path}: VM runs on host {vm.host} of {vm.host_parent}, "
                        f"required a host of {cluster.moref}")
    foreign = set(vm.datastores) - {d.moref for d in cluster.datastores}
    if foreign:
        problems.append(f"{cluster.path}: VM uses datastores {sorted(foreign)} the cluster does not mount")
    return problems


def _managed(inv: Inventory, driver: ComputeDriver) -> list[ClusterFacts]:
    return sorted((inv.by_path(p) for p in driver.config.clusters if inv.cluster(p)), key=lambda c: c.path)


def _pools_of(inv: Inventory, cluster: ClusterFacts) -> dict[str, str]:
    """A cluster's child pools: path below its root pool ('tenants/nova') -> moref."""
    root = cluster.path + "/Resources/"
    return {path[len(root):]: moref for moref, path in inv.pools.items() if path.startswith(root)}


@pytest.mark.requirement("SPAWN-01")
@pytest.mark.covers("method.spawn:node", "config.resource_pool:none", "instance:managed")
def test_vm_lands_in_the_nodes_cluster(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                       new_uuid: Callable[[], str]) -> None:
    """Every node, its cluster's root pool (no resource_pool is configured; the clusters have child pools)."""
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
        problems += placement_problems(oracle, instance, cluster, pool=cluster.resource_pool)
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("SPAWN-01")
@pytest.mark.covers("config.resource_pool:nested")
def test_vm_goes_into_the_configured_pool(make_driver: Make, oracle: Oracle, site: Site, cleanup: Cleanup,
                                          new_uuid: Callable[[], str]) -> None:
    """resource_pool is a path below the root pool: tenants/nova, not the pool named nova beside tenants."""
    inv = oracle.inventory()
    have = {c.moref: _pools_of(inv, c) for c in (inv.by_path(p) for p in site.clusters if inv.cluster(p))}
    nested = sorted({rel for pools in have.values() for rel in pools if "/" in rel},
                    key=lambda rel: (not any(rel.rsplit("/", 1)[1] in pools for pools in have.values()), rel))
    if not nested:
        pytest.skip("no managed cluster has a nested resource pool (such as tenants/nova)")
    wanted = nested[0]
    driver = make_driver(resource_pool=wanted)
    nodes = set(driver.get_available_nodes(refresh=True))
    problems = []
    for moref, pools in sorted(have.items()):
        cluster = inv.clusters[moref]
        name = node_name(moref, inv.vcenter_uuid)
        if wanted not in pools:
            continue
        if name not in nodes:
            problems.append(f"{cluster.path}: no node {name} to spawn on (see NODE-01)")
            continue
        instance = Instance(uuid=new_uuid(), name=f"spawn-pool-{cluster.name}")
        cleanup.instance(oracle, instance.uuid)
        driver.spawn(instance, name)
        problems += placement_problems(oracle, instance, cluster, pool=pools[wanted])
    assert not problems, f"resource_pool {wanted!r}: " + "; ".join(problems)


def _free_mb(h: HostFacts) -> int:
    return h.memory_bytes // MIB - h.memory_used_mb


def _spawn_where(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup, instance: Instance,
                 node: str) -> tuple[VmFacts | None, str]:
    """Spawn and return the VM (None, and why, when the spawn raised or made no VM)."""
    cleanup.instance(oracle, instance.uuid)
    try:
        driver.spawn(instance, node)
    except DriverError as e:
        return None, f"spawn raised {type(e).__name__} ({e})"
    vms = oracle.find_vms(instance.uuid)
    return (vms[0], "") if len(vms) == 1 else (None, f"{len(vms)} VMs carry its uuid")


@pytest.mark.requirement("SPAWN-02")
@pytest.mark.resets
@pytest.mark.covers("host:maintenance", "host:not-responding", "host:disconnected", "host:preferred-unschedulable")
def test_never_on_a_host_in_maintenance_or_not_connected(driver: ComputeDriver, oracle: Oracle, control: Any,
                                                         cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    """Round after round the host a most-free-memory policy picks is made unschedulable: in maintenance
    mode, not responding, disconnected (with the next pick in maintenance mode too)."""
    inv = oracle.inventory()
    cluster = max(_managed(inv, driver), key=lambda c: (len(c.hosts), c.path))
    if len(cluster.hosts) < 3:
        pytest.skip("needs a managed cluster with three hosts")
    node = node_name(cluster.moref, inv.vcenter_uuid)
    rounds: list[tuple[str, list[dict[str, Any]]]] = [
        ("in maintenance mode", [{"maintenance": True}]),
        ("not responding", [{"connection_state": "notResponding"}]),
        ("disconnected, the next in maintenance mode", [{"connection_state": "disconnected"}, {"maintenance": True}])]
    problems = []
    for r, (label, states) in enumerate(rounds):
        hosts = sorted(oracle.inventory().clusters[cluster.moref].hosts, key=lambda h: (-_free_mb(h), h.name))
        bad = hosts[:len(states)]
        for h, state in zip(bad, states, strict=True):
            control.set_host(h.moref, **state)
        good = {h.moref for h in oracle.inventory().clusters[cluster.moref].hosts if h.schedulable}
        driver.get_available_nodes(refresh=True)
        for i in range(2):
            vm, why = _spawn_where(driver, oracle, cleanup, Instance(uuid=new_uuid(), name=f"spawn-02-{r}-{i}"), node)
            if vm is None:
                problems.append(f"with {bad[0].name} {label}: {why}; {len(good)} schedulable hosts remained")
            elif vm.host not in good:
                problems.append(f"with {bad[0].name} {label}: VM {vm.name} runs on {vm.host}; required one of "
                                f"{sorted(good)}")
        for h in bad:
            control.set_host(h.moref, connection_state="connected", maintenance=False)
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("SPAWN-02")
@pytest.mark.resets
@pytest.mark.needs_control
@pytest.mark.covers("datastore:preferred-unusable", "datastore:inaccessible", "datastore:in-maintenance",
                    "datastore:entering-maintenance", "datastore:filtered-out", "config.datastore_regex:excludes")
def test_never_on_an_unusable_or_filtered_datastore(make_driver: Make, oracle: Oracle, site: Site, control: Any,
                                                    cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    """Round after round the datastore a most-free-space policy picks is taken away: inaccessible, in
    maintenance, entering maintenance, left out by datastore_regex."""
    inv = oracle.inventory()
    clusters = [c for c in (inv.by_path(p) for p in site.clusters if inv.cluster(p))
                if sum(d.usable for d in c.datastores) >= 2 and any(h.schedulable for h in c.hosts)]
    if not clusters:
        pytest.skip("needs a managed cluster with two usable datastores")
    cluster = clusters[0]
    node = node_name(cluster.moref, inv.vcenter_uuid)

    def preferred() -> DatastoreFacts:
        now = oracle.inventory().clusters[cluster.moref]
        return max((d for d in now.datastores if d.usable), key=lambda d: (d.free, d.name))

    rounds: list[tuple[str, dict[str, Any]]] = [("inaccessible", {"accessible": False}),
                                                ("in maintenance", {"maintenance": "inMaintenance"}),
                                                ("entering maintenance", {"maintenance": "enteringMaintenance"}),
                                                ("left out by datastore_regex", {})]
    problems = []
    for r, (label, state) in enumerate(rounds):
        ds = preferred()
        regex = None if state else f"(?!{re.escape(ds.name)}$).*"
        if state:
            control.set_datastore(ds.moref, **state)
        driver = make_driver(datastore_regex=regex)
        driver.get_available_nodes(refresh=True)
        now = oracle.inventory().clusters[cluster.moref]
        allowed = {d.moref for d in now.datastores if d.usable and (regex is None or re.fullmatch(regex, d.name))}
        for i in range(2):
            vm, why = _spawn_where(driver, oracle, cleanup, Instance(uuid=new_uuid(), name=f"spawn-02-ds-{r}-{i}"),
                                   node)
            if vm is None:
                problems.append(f"with {ds.name} {label}: {why}; other usable datastores remained")
            elif not set(vm.datastores) <= allowed:
                problems.append(f"with {ds.name} {label}: VM {vm.name} uses {sorted(vm.datastores)}; required "
                                f"only {sorted(allowed)}")
        if state:
            control.set_datastore(ds.moref, accessible=True, maintenance="normal")
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("SPAWN-03")
@pytest.mark.covers("method.spawn:unknown-node", "config.clusters:reconfigured")
def test_unknown_or_removed_node_creates_nothing(make_driver: Make, oracle: Oracle, site: Site, cleanup: Cleanup,
                                                 new_uuid: Callable[[], str]) -> None:
    """Unknown: no such cluster; removed from the configuration (before a refresh); an existing cluster the
    driver does not manage; a managed cluster's moref with another vCenter's uuid."""
    inv = oracle.inventory()
    managed = site.clusters[:-1] if len(site.clusters) > 2 else site.clusters
    driver = make_driver(clusters=managed)
    nodes = driver.get_available_nodes(refresh=True)
    expected = inv.expected_nodes(managed)
    removed = next(n for n, c in expected.items() if c.path == "/" + managed[-1].strip("/"))
    assert removed in nodes, f"node {removed} missing before the change (see NODE-01)"
    driver.reconfigure(replace(driver.config, clusters=managed[:-1]))
    cases = [("unknown node", node_name("domain-c0", inv.vcenter_uuid)),
             ("node removed from the configuration (before a refresh)", removed),
             ("node of another vCenter", node_name(inv.by_path(managed[0]).moref,
                                                   "00000000-0000-4000-8000-0000000000f0"))]
    if managed != site.clusters:
        cases.append(("node of a cluster this driver does not manage",
                      node_name(inv.by_path(site.clusters[-1]).moref, inv.vcenter_uuid)))
    problems = []
    for label, name in cases:
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
@pytest.mark.covers("instance:spawn-failed", "vcenter:persistent-fault")
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


@pytest.mark.requirement("SPAWN-04")
@pytest.mark.covers("config.resource_pool:missing", "instance:spawn-failed")
def test_spawn_without_the_configured_pool_fails_cleanly(make_driver: Make, oracle: Oracle, site: Site,
                                                         cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    """A configured resource_pool that one cluster lacks: a spawn there raises a DriverError and creates
    nothing (never a VM in the root pool instead)."""
    inv = oracle.inventory()
    have = {c.moref: _pools_of(inv, c) for c in (inv.by_path(p) for p in site.clusters if inv.cluster(p))}
    every = sorted({rel for pools in have.values() for rel in pools}, key=lambda rel: (-rel.count("/"), rel))
    wanted = next((rel for rel in every if any(rel not in pools for pools in have.values())), None)
    if wanted is None:
        pytest.skip("needs a resource pool that one managed cluster has and another lacks")
    lacking = next(inv.clusters[m] for m, pools in sorted(have.items()) if wanted not in pools)
    driver = make_driver(resource_pool=wanted)
    node = node_name(lacking.moref, inv.vcenter_uuid)
    assert node in driver.get_available_nodes(refresh=True), f"node {node} missing (see NODE-01)"
    instance = Instance(uuid=new_uuid(), name="spawn-04-pool")
    cleanup.instance(oracle, instance.uuid)
    with pytest.raises(DriverError):
        driver.spawn(instance, node)
        vms = oracle.find_vms(instance.uuid)
        pytest.fail(f"spawn on {lacking.path}, which has no resource pool {wanted!r}, returned and made "
                    f"{[(v.moref, inv.pools.get(v.resource_pool, v.resource_pool)) for v in vms]}; required a "
                    "DriverError")
    left = oracle.find_vms(instance.uuid)
    assert not left, f"the failed spawn left VM(s) {[v.moref for v in left]} behind; required none"


@pytest.mark.requirement("SPAWN-05")
@pytest.mark.covers("method.spawn:concurrent")
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
@pytest.mark.covers("method.list_instances:listed", "method.get_info:found", "method.get_info:missing",
                    "method.destroy:existing", "method.destroy:missing", "instance:destroyed", "vm:powered-on",
                    "vm:powered-off")
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
    stopped, stopped_node = instances[0]
    for vm in oracle.find_vms(stopped.uuid):
        oracle.power(vm.moref, False)
    info = driver.get_info(stopped)
    if (info.state, info.nodename) != ("shutdown", stopped_node):
        problems.append(f"after its VM was powered off, get_info({stopped.uuid}) observed ({info.state}, "
                        f"{info.nodename}), required (shutdown, {stopped_node})")
    if stopped.uuid not in driver.list_instances():
        problems.append(f"powered-off {stopped.uuid} not in list_instances()")
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

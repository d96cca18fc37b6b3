"""Per-cluster resource reporting: each node's figures against the oracle's, as vCenter changes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks.common import CORE_FIGURES, DISK_FIGURES, assert_figures, figure_problems
from conformance.contract import ComputeDriver, Instance, NodeNotFound, node_name
from conformance.fixtures import Cleanup, Site
from conformance.oracle import Inventory, Oracle

Make = Callable[..., ComputeDriver]


@pytest.mark.requirement("RES-01")
@pytest.mark.covers("host:connected", "method.get_available_resource:node")
def test_node_figures_equal_vcenter(driver: ComputeDriver, oracle: Oracle) -> None:
    assert_figures(driver, oracle, CORE_FIGURES)


@pytest.mark.requirement("RES-01")
@pytest.mark.covers("host:maintenance", "host:not-responding", "host:disconnected", "host:threads-equal-cores",
                    "host:memory-not-whole-mib", "host:largest-unschedulable", "cluster:empty")
def test_node_figures_on_the_heterogeneous_topology(make_driver: Make, hetero: Site) -> None:
    """Hosts of every state, the largest of a cluster unschedulable, memory sizes that are not whole MiB
    (summed in bytes, then floored) or GiB."""
    driver = make_driver(site_=hetero)
    assert_figures(driver, hetero.oracle, CORE_FIGURES, "heterogeneous topology")


@pytest.mark.requirement("RES-02")
@pytest.mark.covers("datastore:shared", "datastore:standalone-host-only", "config.datastore_regex:none")
def test_disk_figures_count_each_datastore_once(driver: ComputeDriver, oracle: Oracle) -> None:
    assert_figures(driver, oracle, DISK_FIGURES)


@pytest.mark.requirement("RES-02")
@pytest.mark.covers("datastore:inaccessible", "datastore:in-maintenance", "datastore:entering-maintenance",
                    "datastore:shared")
def test_disk_figures_on_the_heterogeneous_topology(make_driver: Make, hetero: Site) -> None:
    """Datastores of every type and state: inaccessible (the largest of its cluster), in maintenance,
    entering maintenance; none of those counts."""
    assert_figures(make_driver(site_=hetero), hetero.oracle, DISK_FIGURES, "heterogeneous topology")


@pytest.mark.requirement("RES-02")
@pytest.mark.covers("config.datastore_regex:excludes", "config.datastore_regex:prefix-only", "datastore:filtered-out")
def test_disk_figures_follow_the_datastore_filter(make_driver: Make, hetero: Site) -> None:
    """datastore_regex must match a datastore's whole name. First a filter naming the private usable
    datastores only (the shared ones, the largest, are left out), then one naming a datastore whose name is
    the prefix of another's: re.match or re.search would take both. Unusable datastores are left out by both
    filters, so this check is about the filter alone."""
    inv = hetero.oracle.inventory()
    clusters = [inv.by_path(p) for p in hetero.clusters if inv.cluster(p)]
    mounts: dict[str, int] = {}
    for c in clusters:
        for d in c.datastores:
            if d.usable:
                mounts[d.name] = mounts.get(d.name, 0) + 1
    shared = sorted(n for n, count in mounts.items() if count > 1)
    private = sorted(n for n, count in mounts.items() if count == 1)
    if not shared or not private:
        pytest.skip("the heterogeneous topology needs usable datastores shared by two clusters and private ones")
    whitelist = "(?:" + "|".join(map(re.escape, private)) + ")"
    problems = figure_problems(make_driver(site_=hetero, datastore_regex=whitelist), inv, DISK_FIGURES)
    assert not problems, f"datastore_regex {whitelist!r} (leaves out {', '.join(shared)}): " + "; ".join(problems)
    pairs = sorted((a.name, b.name) for c in clusters for a in c.datastores for b in c.datastores
                   if a.usable and b.usable and a.name != b.name and b.name.startswith(a.name))
    if not pairs:
        pytest.skip("the heterogeneous topology has no two usable datastores of one cluster where one name is "
                    "a prefix of the other (the whole-name part of this check could not run)")
    whole, longer = pairs[0]
    problems = figure_problems(make_driver(site_=hetero, datastore_regex=re.escape(whole)), inv, DISK_FIGURES)
    assert not problems, (f"datastore_regex {re.escape(whole)!r} names {whole} as a whole name, not {longer}: "
                          + "; ".join(problems))


@pytest.mark.requirement("RES-03")
@pytest.mark.resets
@pytest.mark.covers("host:maintenance", "host:not-responding", "host:added", "host:moved", "host:removed")
def test_figures_follow_host_changes(driver: ComputeDriver, oracle: Oracle, control: Any,
                                     new_uuid: Callable[[], str]) -> None:
    inv = oracle.inventory()
    clusters = sorted((inv.by_path(p) for p in driver.config.clusters if inv.cluster(p)), key=lambda c: c.path)
    multi = [c for c in clusters if len(c.hosts) >= 2]
    if len(clusters) < 2 or not multi:
        pytest.skip("needs two managed clusters, one of them with two hosts")
    a = multi[0]
    b = next(c for c in clusters if c.moref != a.moref)
    assert_figures(driver, oracle, when="before any change")
    oracle.set_maintenance(a.hosts[0].moref, True)
    assert_figures(driver, oracle, when=f"after {a.hosts[0].name} entered maintenance mode")
    control.set_host(a.hosts[1].moref, connection_state="notResponding")
    assert_figures(driver, oracle, when=f"after {a.hosts[1].name} stopped responding")
    control.set_host(a.hosts[1].moref, connection_state="connected")
    oracle.set_maintenance(a.hosts[0].moref, False)
    oracle.add_host(b.moref, f"added-{new_uuid()[:8]}")
    assert_figures(driver, oracle, when=f"after a host was added to {b.path}")
    oracle.move_host(a.hosts[0].moref, b.moref)
    assert_figures(driver, oracle, when=f"after {a.hosts[0].name} moved from {a.path} to {b.path}")
    oracle.remove_host(a.hosts[0].moref)
    assert_figures(driver, oracle, when=f"after {a.hosts[0].name} was removed")


@pytest.mark.requirement("RES-03")
@pytest.mark.resets
@pytest.mark.needs_control
@pytest.mark.covers("datastore:state-changed", "datastore:inaccessible", "datastore:in-maintenance")
def test_disk_figures_follow_datastore_state_changes(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    """A datastore that becomes inaccessible or enters maintenance leaves the figures at the next refresh,
    and comes back when it is usable again; the shared one (in most nodes) goes first."""
    inv = oracle.inventory()
    clusters = [inv.by_path(p) for p in driver.config.clusters if inv.cluster(p)]
    count: dict[str, int] = {}
    for c in clusters:
        for d in c.datastores:
            count[d.moref] = count.get(d.moref, 0) + 1
    if len(count) < 2:
        pytest.skip("needs two datastores in the managed clusters")
    first, second = sorted(count, key=lambda m: (-count[m], m))[:2]
    names = {d.moref: d.name for c in clusters for d in c.datastores}
    assert_figures(driver, oracle, DISK_FIGURES, "before any change")
    control.set_datastore(first, accessible=False)
    assert_figures(driver, oracle, DISK_FIGURES, f"after datastore {names[first]} became inaccessible")
    control.set_datastore(second, maintenance="inMaintenance")
    assert_figures(driver, oracle, DISK_FIGURES, f"after datastore {names[second]} entered maintenance mode")
    control.set_datastore(first, accessible=True)
    control.set_datastore(second, maintenance="normal")
    assert_figures(driver, oracle, DISK_FIGURES, "once both datastores were usable again")


@pytest.mark.requirement("RES-04")
@pytest.mark.covers("method.get_available_resource:unknown-node")
def test_unknown_node_raises_node_not_found(make_driver: Make, oracle: Oracle, site: Site) -> None:
    """Unknown: a name of no cluster, a standalone host's, an existing cluster this driver does not manage,
    and a managed cluster's moref with another vCenter's uuid (morefs are unique only within one vCenter)."""
    inv = oracle.inventory()
    managed = site.clusters[:-1] if len(site.clusters) > 1 else site.clusters
    driver = make_driver(clusters=managed)
    driver.get_available_nodes(refresh=True)
    unknown = [node_name("domain-c0", inv.vcenter_uuid), "not-a-node"]
    unknown += [node_name(h.parent, inv.vcenter_uuid) for h in inv.standalone_hosts.values()]
    unknown.append(node_name(inv.by_path(managed[0]).moref, "00000000-0000-4000-8000-0000000000f0"))
    if len(site.clusters) > 1:
        unknown.append(node_name(inv.by_path(site.clusters[-1]).moref, inv.vcenter_uuid))
    for name in unknown:
        with pytest.raises(NodeNotFound):
            got = driver.get_available_resource(name)
            pytest.fail(f"get_available_resource({name!r}) returned {got!r}; required NodeNotFound")


@pytest.mark.requirement("RES-05")
@pytest.mark.covers("vm:powered-on", "vm:powered-off", "vm:memory-in-use-not-configured")
def test_used_memory_follows_vm_power(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup,
                                      new_uuid: Callable[[], str]) -> None:
    keys = ("memory_mb_used",)
    nodes = driver.get_available_nodes(refresh=True)
    assert_figures(driver, oracle, keys, "before any VM runs")
    before = oracle.inventory()
    instance = Instance(uuid=new_uuid(), name="res-05", vcpus=2, memory_mb=2048)
    cleanup.instance(oracle, instance.uuid)
    driver.spawn(instance, nodes[0])
    after = oracle.inventory()
    used = sum(h.memory_used_mb for c in after.clusters.values() for h in c.hosts)
    if used == sum(h.memory_used_mb for c in before.clusters.values() for h in c.hosts):
        pytest.fail("the fake vCenter's usage figures did not move with a powered-on VM: a simulator "
                    "fidelity problem, not the driver's", pytrace=False)
    assert_figures(driver, oracle, keys, "with one VM powered on")
    (vm,) = oracle.find_vms(instance.uuid)
    oracle.power(vm.moref, False)
    assert_figures(driver, oracle, keys, "after the VM was powered off")


@pytest.mark.requirement("RES-05")
@pytest.mark.resets
@pytest.mark.needs_control
@pytest.mark.covers("host:vms-running-while-unschedulable", "host:maintenance")
def test_used_memory_leaves_out_hosts_that_are_not_schedulable(driver: ComputeDriver, oracle: Oracle, control: Any,
                                                              cleanup: Cleanup, new_uuid: Callable[[], str]) -> None:
    """VMs keep running on a host forced into maintenance mode (the control API sets it without moving them):
    its quickStats still count them, but the host is no longer schedulable, so memory_mb_used leaves it out,
    as memory_mb does."""
    inv = oracle.inventory()
    cluster = max((inv.by_path(p) for p in driver.config.clusters if inv.cluster(p)),
                  key=lambda c: (sum(h.schedulable for h in c.hosts), c.path))
    if sum(h.schedulable for h in cluster.hosts) < 2:
        pytest.skip("needs a managed cluster with two schedulable hosts")
    node = node_name(cluster.moref, inv.vcenter_uuid)
    driver.get_available_nodes(refresh=True)
    hosts = []
    for i in range(2):
        instance = Instance(uuid=new_uuid(), name=f"res-05-busy-{i}", memory_mb=3072)
        cleanup.instance(oracle, instance.uuid)
        driver.spawn(instance, node)
        hosts += [vm.host for vm in oracle.find_vms(instance.uuid)]
    if not hosts:
        pytest.fail(f"no VM was made on {node} (see SPAWN-01)", pytrace=False)
    busy = hosts[0]
    control.set_host(busy, maintenance=True)
    host = oracle.inventory().host(busy)
    if host.memory_used_mb <= 0:
        pytest.fail(f"the fake vCenter shows no memory in use on {host.name}, which runs VMs: a simulator "
                    "fidelity problem, not the driver's", pytrace=False)
    assert_figures(driver, oracle, ("memory_mb_used", "memory_mb"),
                   f"with VMs running on {host.name} ({host.memory_used_mb} MiB in use), now in maintenance mode")


def inventory_problems(driver: ComputeDriver, inv: Inventory) -> list[str]:
    """The placement inventory of every node against its figures and the largest schedulable host and
    usable datastore (RES-06)."""
    nodes = set(driver.get_available_nodes(refresh=True))
    problems = []
    for name, cluster in sorted(inv.expected_nodes(driver.config.clusters).items(), key=lambda kv: kv[1].path):
        if name not in nodes:
            continue
        res = driver.get_available_resource(name)
        records = res.get("inventory") or {}
        want_total = {"VCPU": res.get("vcpus"), "MEMORY_MB": res.get("memory_mb"), "DISK_GB": res.get("local_gb")}
        largest = inv.largest_host(cluster, driver.config.datastore_regex)
        for rc in ("VCPU", "MEMORY_MB", "DISK_GB"):
            rec = records.get(rc)
            if rec is None:
                problems.append(f"{cluster.path}: no {rc} record")
                continue
            if rec.get("total") != want_total[rc]:
                problems.append(f"{cluster.path}: {rc} total observed {rec.get('total')}, required {want_total[rc]}")
            if want_total[rc] and rec.get("max_unit") != largest[rc]:
                problems.append(f"{cluster.path}: {rc} max_unit observed {rec.get('max_unit')}, required "
                                f"{largest[rc]} (the largest schedulable host or usable datastore)")
    return problems


@pytest.mark.requirement("RES-06")
@pytest.mark.capability("placement_inventory")
def test_placement_inventory_matches(driver: ComputeDriver, oracle: Oracle) -> None:
    problems = inventory_problems(driver, oracle.inventory())
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("RES-06")
@pytest.mark.capability("placement_inventory")
@pytest.mark.covers("host:largest-unschedulable", "datastore:largest-unusable", "host:memory-not-whole-mib")
def test_placement_inventory_on_the_heterogeneous_topology(make_driver: Make, hetero: Site) -> None:
    """max_unit where it is easy to get wrong: the largest host of a cluster in maintenance mode (and one
    larger still not responding), its largest datastore inaccessible, memory sizes that are not whole MiB."""
    problems = inventory_problems(make_driver(site_=hetero), hetero.oracle.inventory())
    assert not problems, "heterogeneous topology: " + "; ".join(problems)

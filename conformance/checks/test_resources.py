"""Per-cluster resource reporting: each node's figures against the oracle's, as vCenter changes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks.common import CORE_FIGURES, DISK_FIGURES, assert_figures
from conformance.contract import ComputeDriver, Instance, NodeNotFound, node_name
from conformance.fixtures import Cleanup, Site
from conformance.oracle import Oracle

Make = Callable[..., ComputeDriver]


@pytest.mark.requirement("RES-01")
def test_node_figures_equal_vcenter(driver: ComputeDriver, oracle: Oracle) -> None:
    assert_figures(driver, oracle, CORE_FIGURES)


@pytest.mark.requirement("RES-01")
def test_node_figures_on_the_heterogeneous_topology(make_driver: Make, hetero: Site) -> None:
    driver = make_driver(site_=hetero)
    assert_figures(driver, hetero.oracle, CORE_FIGURES, "heterogeneous topology")


@pytest.mark.requirement("RES-02")
def test_disk_figures_count_each_datastore_once(driver: ComputeDriver, oracle: Oracle) -> None:
    assert_figures(driver, oracle, DISK_FIGURES)


@pytest.mark.requirement("RES-02")
def test_disk_figures_on_the_heterogeneous_topology(make_driver: Make, hetero: Site) -> None:
    assert_figures(make_driver(site_=hetero), hetero.oracle, DISK_FIGURES, "heterogeneous topology")


@pytest.mark.requirement("RES-03")
@pytest.mark.resets
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


@pytest.mark.requirement("RES-04")
def test_unknown_node_raises_node_not_found(driver: ComputeDriver, oracle: Oracle) -> None:
    driver.get_available_nodes(refresh=True)
    inv = oracle.inventory()
    unknown = [node_name("domain-c0", inv.vcenter_uuid), "not-a-node"]
    unknown += [node_name(h.parent, inv.vcenter_uuid) for h in inv.standalone_hosts.values()]
    for name in unknown:
        with pytest.raises(NodeNotFound):
            got = driver.get_available_resource(name)
            pytest.fail(f"get_available_resource({name!r}) returned {got!r}; required NodeNotFound")


@pytest.mark.requirement("RES-05")
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


@pytest.mark.requirement("RES-06")
@pytest.mark.capability("placement_inventory")
def test_placement_inventory_matches(driver: ComputeDriver, oracle: Oracle) -> None:
    nodes = set(driver.get_available_nodes(refresh=True))
    inv = oracle.inventory()
    problems = []
    for name, cluster in inv.expected_nodes(driver.config.clusters).items():
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
                                f"{largest[rc]} (the largest single host or datastore)")
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("RES-06")
@pytest.mark.capability("placement_inventory")
def test_placement_inventory_without_usable_datastore(make_driver: Make, oracle: Oracle) -> None:
    """A filter no datastore name matches (as a whole or as a prefix): every node still has its inventory."""
    driver = make_driver(datastore_regex="vcconform-no-datastore-has-this-name")
    nodes = set(driver.get_available_nodes(refresh=True))
    inv = oracle.inventory()
    problems = []
    for name, cluster in sorted(inv.expected_nodes(driver.config.clusters).items(), key=lambda kv: kv[1].path):
        if name not in nodes:
            continue
        try:
            res = driver.get_available_resource(name)
        except Exception as e:
            problems.append(f"{cluster.path}: get_available_resource raised {type(e).__name__} ({e})")
            continue
        records = res.get("inventory") or {}
        largest = inv.largest_host(cluster, driver.config.datastore_regex)
        for rc, total in (("VCPU", res.get("vcpus")), ("MEMORY_MB", res.get("memory_mb"))):
            rec = records.get(rc)
            if not total:
                continue
            if rec is None:
                problems.append(f"{cluster.path}: no {rc} record (the cluster has no usable datastore, but CPU and "
                                "memory to offer)")
            elif (rec.get("total"), rec.get("max_unit")) != (total, largest[rc]):
                problems.append(f"{cluster.path}: {rc} total/max_unit observed {rec.get('total')}/{rec.get('max_unit')}"
                                f", required {total}/{largest[rc]}")
        disk = records.get("DISK_GB")
        if disk is not None and (disk.get("total"), disk.get("max_unit")) != (0, 0):
            problems.append(f"{cluster.path}: DISK_GB total/max_unit observed {disk.get('total')}/"
                            f"{disk.get('max_unit')} with no usable datastore; required none or 0/0")
    assert not problems, "; ".join(problems)


@pytest.mark.requirement("RES-07")
def test_datastore_regex_matches_whole_names(make_driver: Make, oracle: Oracle, site: Site) -> None:
    inv = oracle.inventory()
    names = sorted({d.name for p in site.clusters if (c := inv.cluster(p)) for d in c.datastores if d.usable})
    if not names:
        pytest.skip("the managed clusters have no usable datastore")
    target = max(names, key=len)
    prefix = next((target[:n] for n in range(len(target) // 2, len(target))
                   if not any(re.fullmatch(re.escape(target[:n]), x) for x in inv.datastores.values())), None)
    if prefix is None:
        pytest.skip(f"every prefix of {target} is also a datastore's whole name")
    for regex, about in ((re.escape(prefix), f"a prefix of {target}, the whole name of none"),
                         (re.escape(target), f"the whole name of {target}")):
        driver = make_driver(datastore_regex=regex)
        assert_figures(driver, oracle, DISK_FIGURES, f"datastore_regex {regex!r} ({about})")

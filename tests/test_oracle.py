"""The oracle reads what the topology file put into the fake vCenter (so both ends agree)."""

from __future__ import annotations

from conformance.contract import node_name
from conformance.harness import Endpoint
from conformance.oracle import Inventory, Oracle, figure_mismatch


def test_inventory_matches_the_topology(sim: Endpoint, sim_oracle: Oracle) -> None:
    inv = sim_oracle.inventory()
    (dc,) = sim.topology.datacenters
    by_path = {c.path: c for c in inv.clusters.values()}
    for spec in dc.clusters:
        facts = by_path[f"/DC0/host/{spec.name}"]
        assert sorted(h.name for h in facts.hosts) == sorted(h.name for h in spec.hosts)
        hosts = {h.name: h for h in spec.hosts}
        for h in facts.hosts:
            assert (h.threads, h.memory_bytes // 2**20) == (hosts[h.name].cpu_threads, hosts[h.name].memory_mb)
        # The expected figures come from vCenter's hosts; on this topology they equal the file's sums.
        want = Inventory.expected_resources(facts)
        assert (want["vcpus"], want["memory_mb"]) == (sum(h.cpu_threads for h in spec.hosts),
                                                      sum(h.memory_mb for h in spec.hosts))
    assert [h.name for h in inv.standalone_hosts.values()] == [h.name for h in dc.standalone_hosts]
    assert sorted(inv.datastores.values()) == sorted(d.name for d in dc.datastores)


def test_configured_clusters_resolve_by_path_and_moref(sim_oracle: Oracle) -> None:
    inv = sim_oracle.inventory()
    c = next(iter(inv.clusters.values()))
    want = {node_name(c.moref, inv.vcenter_uuid): c}
    assert inv.expected_nodes([c.path]) == want
    assert inv.expected_nodes([c.moref]) == want
    assert inv.expected_nodes([c.path.lstrip("/")]) == want
    assert inv.expected_nodes(["/DC0/host/absent"]) == {}


def test_memory_may_be_floored_per_host_or_once_and_nothing_else() -> None:
    """RES-01: from the sum of the hosts' floors to the floor of the sum; above offers memory no VM can have,
    below loses some; every other figure is exact."""
    want = {"memory_mb": 8194, "memory_mb_floor": 8193, "vcpus": 8}
    assert figure_mismatch("memory_mb", 8194, want) is None
    assert figure_mismatch("memory_mb", 8193, want) is None
    assert "required 8193 to 8194" in (figure_mismatch("memory_mb", 8195, want) or "")
    assert figure_mismatch("memory_mb", 8192, want) is not None
    assert figure_mismatch("memory_mb", None, want) is not None
    assert figure_mismatch("vcpus", 8, want) is None
    assert figure_mismatch("vcpus", 9, want) == "vcpus observed 9, required 8"

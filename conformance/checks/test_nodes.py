"""Node enumeration: one node per managed cluster, named by the scheme, and nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.contract import ComputeDriver, DriverConfig
from conformance.oracle import ClusterFacts, Oracle


def _diff(got: list[str], expected: dict[str, ClusterFacts]) -> list[str]:
    problems = []
    if len(got) != len(set(got)):
        problems.append(f"duplicate node names in {sorted(got)}")
    for name in sorted(expected.keys() - set(got)):
        problems.append(f"missing node {name} (cluster {expected[name].path})")
    for name in sorted(set(got) - expected.keys()):
        problems.append(f"unexpected node {name}")
    return problems


@pytest.mark.requirement("NODE-01")
def test_one_node_per_managed_cluster(driver: ComputeDriver, oracle: Oracle) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    assert expected, "the topology has no cluster: this check needs at least one"
    got = driver.get_available_nodes(refresh=True)
    problems = _diff(got, expected)
    assert not problems, ("node set differs from vCenter's managed clusters "
                          f"(required: {sorted(expected)}): " + "; ".join(problems))


@pytest.mark.requirement("NODE-02")
def test_standalone_host_is_never_a_node(make_driver: Callable[..., ComputeDriver], oracle: Oracle,
                                         base_config: DriverConfig) -> None:
    inv = oracle.inventory()
    if not inv.standalone_hosts:
        pytest.skip("the topology has no standalone host")
    # Name each standalone host's compute resource (by path and by moref) as if it were a cluster.
    named = [ref for h in inv.standalone_hosts.values() for ref in (h.parent_path, h.parent)]
    driver = make_driver(clusters=(*base_config.clusters, *named))
    expected = inv.expected_nodes(base_config.clusters)
    problems = _diff(driver.get_available_nodes(refresh=True), expected)
    assert not problems, ("standalone hosts must never be nodes, even when the configuration names them "
                          f"({', '.join(named)}): " + "; ".join(problems))

"""Per-cluster resource reporting: each node's figures against the oracle's."""

from __future__ import annotations

import pytest

from conformance.contract import ComputeDriver
from conformance.oracle import Oracle


@pytest.mark.requirement("RES-01")
def test_node_figures_equal_vcenter(driver: ComputeDriver, oracle: Oracle) -> None:
    nodes = set(driver.get_available_nodes(refresh=True))
    inv = oracle.inventory()
    expected = inv.expected_nodes(driver.config.clusters)
    problems = []
    for name, cluster in sorted(expected.items()):
        if name not in nodes:
            problems.append(f"{cluster.path}: no node {name} to ask (see NODE-01)")
            continue
        got = driver.get_available_resource(name)
        for key, want in inv.expected_resources(cluster).items():
            if got.get(key) != want:
                problems.append(f"{cluster.path}: {key} observed {got.get(key)!r}, required {want}")
    assert not problems, "; ".join(problems)

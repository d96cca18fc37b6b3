"""Helpers shared by the checks: comparing a driver's figures with the oracle's, and naming differences
the way a vendor needs to read them (observed vs required)."""

from __future__ import annotations

from collections.abc import Iterable

from conformance.contract import ComputeDriver, NodeNotFound
from conformance.oracle import ClusterFacts, Inventory, Oracle

#: The figures every node must report equal to the oracle's (RES-01, RES-02, RES-05).
CORE_FIGURES = ("vcpus", "memory_mb")
DISK_FIGURES = ("local_gb", "local_gb_used")


def node_set_problems(got: list[str], expected: dict[str, ClusterFacts]) -> list[str]:
    """Differences between the nodes a driver reports and the nodes it must report."""
    problems = []
    if len(got) != len(set(got)):
        problems.append(f"duplicate node names in {sorted(got)}")
    for name in sorted(expected.keys() - set(got)):
        problems.append(f"missing node {name} (cluster {expected[name].path})")
    for name in sorted(set(got) - expected.keys()):
        problems.append(f"unexpected node {name}")
    return problems


def figure_problems(driver: ComputeDriver, inv: Inventory, keys: Iterable[str] = CORE_FIGURES) -> list[str]:
    """Refresh the driver, then compare every expected node's figures with the oracle's snapshot."""
    nodes = set(driver.get_available_nodes(refresh=True))
    keys = tuple(keys)
    problems = []
    for name, cluster in sorted(inv.expected_nodes(driver.config.clusters).items(), key=lambda kv: kv[1].path):
        if name not in nodes:
            problems.append(f"{cluster.path}: no node {name} (see NODE-01)")
            continue
        try:
            got = driver.get_available_resource(name)
        except NodeNotFound:
            problems.append(f"{cluster.path}: get_available_resource({name!r}) raised NodeNotFound")
            continue
        want = inv.expected_resources(cluster, driver.config.datastore_regex)
        for key in keys:
            if got.get(key) != want[key]:
                problems.append(f"{cluster.path}: {key} observed {got.get(key)!r}, required {want[key]}")
    return problems


def assert_figures(driver: ComputeDriver, oracle: Oracle, keys: Iterable[str] = CORE_FIGURES,
                   when: str = "") -> None:
    problems = figure_problems(driver, oracle.inventory(), keys)
    assert not problems, (f"{when}: " if when else "") + "; ".join(problems)

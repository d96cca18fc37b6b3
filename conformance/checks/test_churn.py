"""Cluster add and remove: the node set follows the configuration and vCenter."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from conformance.contract import ComputeDriver, node_name
from conformance.oracle import Oracle
from conformance.plugin import Cleanup


@pytest.mark.requirement("CHURN-01")
def test_added_cluster_appears_after_refresh(driver: ComputeDriver, oracle: Oracle, cleanup: Cleanup) -> None:
    before = driver.get_available_nodes(refresh=True)
    first = next(iter(oracle.inventory().clusters.values()))
    name = f"added-{uuid.uuid4().hex[:8]}"
    moref = oracle.create_cluster(first.datacenter, name)
    cleanup.clusters.append(moref)
    oracle.add_host(moref, f"{name}-h0")
    path = first.path.rsplit("/", 1)[0] + "/" + name
    driver.reconfigure(replace(driver.config, clusters=(*driver.config.clusters, path)))
    got = driver.get_available_nodes(refresh=True)
    want = node_name(moref, oracle.vcenter_uuid)
    assert want in got, f"cluster {path} was created and configured, but node {want} is not in {sorted(got)}"
    lost = sorted(set(before) - set(got))
    assert not lost, f"nodes disappeared when a cluster was added: {lost}"


@pytest.mark.requirement("CHURN-02")
def test_removed_cluster_disappears_after_refresh(driver: ComputeDriver, oracle: Oracle) -> None:
    expected = oracle.inventory().expected_nodes(driver.config.clusters)
    if len(expected) < 2:
        pytest.skip("needs a topology with at least two clusters")
    before = set(driver.get_available_nodes(refresh=True))
    assert before == set(expected), f"node set wrong before the change (see NODE-01): {sorted(before)}"
    removed_path = driver.config.clusters[-1]
    removed = [n for n, c in expected.items() if c.path == "/" + removed_path.strip("/")]
    kept = tuple(c for c in driver.config.clusters if c != removed_path)
    driver.reconfigure(replace(driver.config, clusters=kept))
    got = set(driver.get_available_nodes(refresh=True))
    assert not got.intersection(removed), (f"{removed_path} was removed from the configuration, "
                                           f"but node {removed[0]} is still reported")
    assert got == set(expected) - set(removed), f"other nodes changed: observed {sorted(got)}"

"""The reference driver against a real fake vCenter: behaviour the checks do not cover, and its failure rules."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from conformance.contract import (
    AuthenticationFailed,
    DriverConfig,
    Instance,
    InstanceNotFound,
    NodeNotFound,
    VCenterUnavailable,
    node_name,
)
from conformance.harness import Endpoint
from conformance.oracle import Oracle
from driver_under_test.reference import ReferenceDriver


@pytest.fixture
def config(sim: Endpoint) -> DriverConfig:
    return DriverConfig(url=sim.url, username=sim.username, password=sim.password,
                        clusters=tuple(sim.topology.cluster_paths()), ca_file=str(sim.ca_file))


@pytest.fixture
def driver(config: DriverConfig) -> Iterator[ReferenceDriver]:
    d = ReferenceDriver(config)
    yield d
    d.close()


def test_wrong_password_is_authentication_failed_without_the_password(config: DriverConfig) -> None:
    with pytest.raises(AuthenticationFailed) as err:
        ReferenceDriver(replace(config, password="hunter2-wrong"))
    assert "hunter2-wrong" not in str(err.value)


def test_untrusted_certificate_is_refused_unless_insecure(config: DriverConfig) -> None:
    with pytest.raises(VCenterUnavailable, match="untrusted certificate"):
        ReferenceDriver(replace(config, ca_file=None))
    insecure = ReferenceDriver(replace(config, ca_file=None, insecure=True))
    assert insecure.get_available_nodes(refresh=True)
    insecure.close()


def test_unreachable_vcenter_is_vcenter_unavailable(config: DriverConfig) -> None:
    with pytest.raises(VCenterUnavailable, match="cannot reach"):
        ReferenceDriver(replace(config, url="https://127.0.0.1:1/sdk"))


def test_missing_cluster_is_left_out_with_a_warning(config: DriverConfig, sim_oracle: Oracle,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    d = ReferenceDriver(replace(config, clusters=(*config.clusters, "/DC0/host/no-such-cluster")))
    with caplog.at_level(logging.WARNING):
        nodes = d.get_available_nodes(refresh=True)
    d.close()
    assert set(nodes) == set(sim_oracle.inventory().expected_nodes(config.clusters))
    assert "no-such-cluster" in caplog.text


def test_clusters_can_be_named_by_moref(config: DriverConfig, sim_oracle: Oracle) -> None:
    inv = sim_oracle.inventory()
    morefs = tuple(c.moref for c in inv.clusters.values())
    d = ReferenceDriver(replace(config, clusters=morefs))
    assert set(d.get_available_nodes(refresh=True)) == {node_name(m, inv.vcenter_uuid) for m in morefs}
    d.close()


def test_unknown_node_raises_node_not_found_and_creates_nothing(driver: ReferenceDriver, sim_oracle: Oracle) -> None:
    instance = Instance(uuid=str(uuid.uuid4()), name="lost")
    with pytest.raises(NodeNotFound):
        driver.get_available_resource("domain-c0.nope")
    with pytest.raises(NodeNotFound):
        driver.spawn(instance, "domain-c0.nope")
    assert sim_oracle.find_vms(instance.uuid) == []


def test_spawn_list_info_destroy_round_trip(driver: ReferenceDriver, sim_oracle: Oracle) -> None:
    node = driver.get_available_nodes(refresh=True)[0]
    instance = Instance(uuid=str(uuid.uuid4()), name="round-trip", vcpus=2, memory_mb=512)
    driver.spawn(instance, node)
    try:
        assert instance.uuid in driver.list_instances()
        info = driver.get_info(instance)
        assert (info.state, info.nodename) == ("running", node)
    finally:
        driver.destroy(instance)
    assert sim_oracle.find_vms(instance.uuid) == []
    assert instance.uuid not in driver.list_instances()
    with pytest.raises(InstanceNotFound):
        driver.get_info(instance)
    driver.destroy(instance)  # destroying a missing instance succeeds


def test_removed_node_is_refused_by_spawn_before_any_refresh(driver: ReferenceDriver, sim_oracle: Oracle,
                                                             config: DriverConfig) -> None:
    nodes = driver.get_available_nodes(refresh=True)
    inv = sim_oracle.inventory()
    dropped = inv.cluster(config.clusters[-1])
    assert dropped is not None
    driver.reconfigure(replace(config, clusters=config.clusters[:-1]))
    instance = Instance(uuid=str(uuid.uuid4()), name="too-late")
    with pytest.raises(NodeNotFound):
        driver.spawn(instance, node_name(dropped.moref, inv.vcenter_uuid))
    assert sim_oracle.find_vms(instance.uuid) == []
    assert len(driver.get_available_nodes(refresh=True)) == len(nodes) - 1


def test_figures_are_not_served_after_a_failed_refresh(driver: ReferenceDriver, sim: Endpoint) -> None:
    node = driver.get_available_nodes(refresh=True)[0]
    driver.close()  # the session is gone: the next refresh cannot succeed
    with pytest.raises(VCenterUnavailable):
        driver.get_available_nodes(refresh=True)
    with pytest.raises(VCenterUnavailable):
        driver.get_available_resource(node)

"""The reference driver against a real fake vCenter: its specification (docs/driver.md), call by call."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim, vmodl

from conformance.contract import (
    AuthenticationFailed,
    DriverConfig,
    DriverError,
    Instance,
    InstanceNotFound,
    NodeNotFound,
    SpawnFailed,
    VCenterUnavailable,
    node_name,
)
from conformance.harness import Endpoint, start_simulator
from conformance.oracle import Inventory, Oracle, wait_for_task
from conformance.topology import ClusterSpec, DatacenterSpec, DatastoreSpec, HostSpec, Topology
from driver_under_test.callcount import count_calls
from driver_under_test.config import ConfigError, load_config
from driver_under_test.reference import ReferenceDriver

GIB_IN_MB = 1024


def host(name: str, threads: int = 16, memory_gb: int = 64, **state: Any) -> HostSpec:
    return HostSpec(name, 1, threads // 2, threads, 2000, memory_gb * 1024, **state)


#: Two datacenters with a same-named cluster each, hosts of several sizes (one in maintenance, one
#: disconnected), an empty cluster, a standalone host, a datastore shared by two clusters, a private one and
#: one the datastore filter can leave out. The fixture adds a cluster inside folders and a resource pool.
SITE = Topology("driver-tests", "<tests/test_reference_driver.py>", (
    DatacenterSpec("DC0", (
        ClusterSpec("C0", (host("c0a", 32, 128), host("c0b", 16, 64, maintenance=True))),
        ClusterSpec("C1", (host("c1a", 8, 32), host("c1b", 64, 256, connection_state="disconnected"),
                           host("c1c", 16, 64))),
        ClusterSpec("Empty", ()),
    ), (host("solo"),), (
        DatastoreSpec("shared", "VMFS", 4096 * GIB_IN_MB, 3072 * GIB_IN_MB, ("c0a", "c0b", "c1a", "c1b", "c1c")),
        DatastoreSpec("c0-nfs", "NFS", 1024 * GIB_IN_MB, 1000 * GIB_IN_MB, ("c0a", "c0b")),
        DatastoreSpec("scratch-c0", "VMFS", 8192 * GIB_IN_MB, 10 * GIB_IN_MB, ("c0a",)),
    )),
    DatacenterSpec("DC1", (ClusterSpec("C0", (host("dc1a"),)),), (), (
        DatastoreSpec("dc1-ds", "VMFS", 100 * GIB_IN_MB, 50 * GIB_IN_MB, ("dc1a",)),)),
))
FOLDER_CLUSTER = "/DC0/host/prod/deep/C2"


@dataclass
class Site:
    endpoint: Endpoint
    oracle: Oracle
    clusters: tuple[str, ...]  # every cluster, by inventory path

    def config(self, **overrides: Any) -> DriverConfig:
        e = self.endpoint
        return replace(DriverConfig(url=e.url, username=e.username, password=e.password, clusters=self.clusters,
                                    ca_file=str(e.ca_file)), **overrides)

    def inventory(self) -> Inventory:
        return self.oracle.inventory()

    def node(self, path: str) -> str:
        inv = self.inventory()
        return node_name(inv.by_path(path).moref, inv.vcenter_uuid)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    endpoint = start_simulator(SITE)
    oracle = Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file))
    try:
        content = oracle.content
        dc0 = content.searchIndex.FindByInventoryPath("/DC0")
        deep = dc0.hostFolder.CreateFolder("prod").CreateFolder("deep")
        oracle.add_host(deep.CreateClusterEx(name="C2", spec=vim.cluster.ConfigSpecEx())._moId, "c2a")
        free = vim.ResourceAllocationInfo(limit=-1, reservation=0, expandableReservation=True,
                                          shares=vim.SharesInfo(level="normal"))
        root = content.searchIndex.FindByInventoryPath("/DC0/host/C1/Resources")
        root.CreateResourcePool("nova", vim.ResourceConfigSpec(cpuAllocation=free, memoryAllocation=free))
        yield Site(endpoint, oracle, (*SITE.cluster_paths(), FOLDER_CLUSTER))
    finally:
        oracle.close()
        endpoint.stop()


@pytest.fixture
def make(site: Site) -> Iterator[Callable[..., ReferenceDriver]]:
    """Drivers on the site's vCenter (every cluster unless told otherwise), closed after the test."""
    made: list[ReferenceDriver] = []

    def build(**overrides: Any) -> ReferenceDriver:
        made.append(ReferenceDriver(site.config(**overrides)))
        return made[-1]

    yield build
    for d in made:
        d.close()


@pytest.fixture
def instances(site: Site) -> Iterator[Callable[..., Instance]]:
    """New instances; whatever VM they get is removed after the test, through the oracle."""
    made: list[Instance] = []

    def new(**fields: Any) -> Instance:
        made.append(Instance(uuid=str(uuid.uuid4()), name=f"test-{len(made)}", **fields))
        return made[-1]

    yield new
    for i in made:
        for vm in site.oracle.find_vms(i.uuid):
            site.oracle.destroy(vm.moref, vim.VirtualMachine)


def remove_host(oracle: Oracle, moref: str) -> None:
    """As vCenter wants it: maintenance mode first, then away."""
    oracle.set_maintenance(moref, True)
    oracle.destroy(moref, vim.HostSystem)


def end_other_sessions(oracle: Oracle) -> int:
    """What vCenter does to an idle session (or an admin to a stuck one): every session but the oracle's ends."""
    sm = oracle.content.sessionManager
    mine = sm.currentSession.key
    keys = [s.key for s in sm.sessionList if s.key != mine]
    sm.TerminateSession(keys)
    return len(keys)


# -- configuration and security ------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "message"), [
    ({"url": "http://127.0.0.1/sdk"}, "url: expected https://host"),
    ({"url": "https://127.0.0.1:99999/sdk"}, "url: the port"),
    ({"datastore_regex": "(unclosed"}, "datastore_regex: '(unclosed' is not a regular expression"),
    ({"service_id": "two words"}, "service_id: expected"),
    ({"ca_file": "/no/such/ca.pem"}, "ca_file: no such file /no/such/ca.pem"),
    ({"resource_pool": "/abs"}, "resource_pool: expected a pool path"),
    ({"clusters": ("",)}, "clusters: every entry"),
])
def test_bad_configuration_is_one_clear_line(site: Site, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ReferenceDriver(site.config(**overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert site.endpoint.password not in str(err.value)


def test_wrong_password_is_authentication_failed_without_the_password(site: Site) -> None:
    with pytest.raises(AuthenticationFailed) as err:
        ReferenceDriver(site.config(password="hunter2-wrong"))
    assert "hunter2-wrong" not in str(err.value) and "hunter2-wrong" not in repr(err.value)


def test_wrong_credentials_at_a_new_login_are_tried_once(site: Site, make: Callable[..., ReferenceDriver]) -> None:
    d = make()
    d.get_available_nodes(refresh=True)
    d.reconfigure(replace(d.config, password="rotated-away"))  # credentials apply at the next login
    end_other_sessions(site.oracle)
    with count_calls(d._si) as calls, pytest.raises(AuthenticationFailed):
        d.get_available_nodes(refresh=True)
    assert calls.by_method.get("Login") == 1
    with pytest.raises(VCenterUnavailable, match="last refresh failed"):
        d.get_available_resource(site.node("/DC0/host/C0"))


def test_untrusted_certificate_is_refused_unless_insecure(site: Site, make: Callable[..., ReferenceDriver]) -> None:
    with pytest.raises(VCenterUnavailable, match="untrusted certificate"):
        ReferenceDriver(site.config(ca_file=None))
    assert make(ca_file=None, insecure=True).get_available_nodes(refresh=True)


def test_unreachable_vcenter_is_vcenter_unavailable_after_bounded_attempts(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(VCenterUnavailable, match=r"failed .* after 3 attempts"):
        ReferenceDriver(site.config(url="https://127.0.0.1:1/sdk"))
    assert len([r for r in caplog.records if "trying again" in r.getMessage()]) == 2


def test_credentials_never_appear_in_reprs_logs_or_errors(site: Site, make: Callable[..., ReferenceDriver],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    d = make()
    texts += [repr(d), str(d), repr(d.config)]
    d.get_available_nodes(refresh=True)
    end_other_sessions(site.oracle)  # a login again happens below
    for bad in (lambda: d.get_available_resource("nope"), lambda: d.spawn(Instance("u", "n"), "nope"),
                lambda: ReferenceDriver(site.config(password="Wrong-" + site.endpoint.password))):
        with pytest.raises(DriverError) as err:
            bad()
        texts += [str(err.value), repr(err.value)]
    texts += [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if site.endpoint.password in t]


def test_load_config_takes_credentials_from_the_environment_or_a_file(tmp_path: Path, site: Site) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(site.endpoint.ca_file.read_bytes())
    file = tmp_path / "driver.toml"
    file.write_text(f'url = "{site.endpoint.url}"\nclusters = ["/DC0/host/C0", "domain-c9"]\nca_file = "ca.pem"\n'
                    'service_id = "compute-eu-1"\ndatastore_regex = "shared|c0-.*"\nresource_pool = "nova"\n')
    env = {"VCENTER_USERNAME": site.endpoint.username, "VCENTER_PASSWORD": site.endpoint.password}
    config = load_config(file, env)
    assert (config.username, config.password, config.ca_file) == (site.endpoint.username, site.endpoint.password,
                                                                  str(ca))
    assert (config.clusters, config.service_id, config.resource_pool) == (("/DC0/host/C0", "domain-c9"),
                                                                          "compute-eu-1", "nova")
    secret = tmp_path / "secret"
    secret.write_text(site.endpoint.password + "\n")
    file.write_text(file.read_text() + f'username = "{site.endpoint.username}"\npassword_file = "secret"\n')
    from_file = load_config(file, {})
    assert from_file.password == site.endpoint.password
    ReferenceDriver(from_file).close()  # it works against vCenter


@pytest.mark.parametrize(("text", "env", "message"), [
    ('url = "https://vc/sdk"\nclusters = []\npassword = "s3cret-in-file"\n', {}, "password: not allowed"),
    ('url = "https://vc/sdk"\nclusters = []\nusername = "u"\n', {}, "password: set $VCENTER_PASSWORD"),
    ('url = "https://vc/sdk"\nclusters = []\n', {"VCENTER_PASSWORD": "s3cret-in-env"}, "username: set it"),
    ('url = "https://vc/sdk"\nclusters = "C0"\n', {}, "clusters: expected a list"),
    ('url = "https://vc/sdk"\nclusterz = []\n', {}, "clusterz: unknown key"),
    ('clusters = []\n', {}, "url: required"),
    ('url = "https://vc/sdk"\nclusters = [\n', {}, "not valid TOML"),
    ('url = "https://vc/sdk"\nclusters = []\nusername = "u"\n', {"VCENTER_PASSWORD": "s3cret-in-env",
                                                              "X": ""}, None),
])
def test_load_config_errors_are_one_line_without_secrets(tmp_path: Path, text: str, env: dict[str, str],
                                                         message: str | None) -> None:
    file = tmp_path / "driver.toml"
    file.write_text(text)
    if message is None:
        assert load_config(file, env).password == "s3cret-in-env"
        return
    with pytest.raises(ConfigError) as err:
        load_config(file, env)
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and "s3cret" not in str(err.value)


# -- nodes ---------------------------------------------------------------------------------------------------

def test_nodes_by_path_with_folders_and_by_moref_across_datacenters(site: Site,
                                                                   make: Callable[..., ReferenceDriver]) -> None:
    inv = site.inventory()
    want = {node_name(inv.by_path(p).moref, inv.vcenter_uuid) for p in site.clusters}
    assert len(want) == len(site.clusters)  # /DC0/host/C0 and /DC1/host/C0 are two nodes
    assert set(make().get_available_nodes(refresh=True)) == want
    by_moref = tuple(inv.by_path(p).moref for p in site.clusters)
    assert set(make(clusters=by_moref).get_available_nodes(refresh=True)) == want


def test_missing_clusters_standalone_hosts_and_pools_are_left_out_with_a_warning(
        site: Site, make: Callable[..., ReferenceDriver], caplog: pytest.LogCaptureFixture) -> None:
    inv = site.inventory()
    solo = next(iter(inv.standalone_hosts.values()))
    pool = inv.by_path("/DC0/host/C1").resource_pool
    odd = ("/DC0/host/absent", "domain-c424242", solo.parent_path, solo.parent, "/DC0/host/C1/Resources", pool)
    with caplog.at_level(logging.WARNING):
        nodes = make(clusters=("/DC0/host/C0", *odd)).get_available_nodes(refresh=True)
    assert nodes == [site.node("/DC0/host/C0")]
    for ref in odd:
        assert ref in caplog.text


def test_node_names_survive_a_rename_and_a_driver_restart(site: Site, make: Callable[..., ReferenceDriver]) -> None:
    c1 = site.inventory().by_path("/DC0/host/C1")
    before = make(clusters=(c1.moref,)).get_available_nodes(refresh=True)
    site.oracle.rename(c1.moref, vim.ClusterComputeResource, "C1-renamed")
    try:
        assert make(clusters=(c1.moref,)).get_available_nodes(refresh=True) == before
    finally:
        site.oracle.rename(c1.moref, vim.ClusterComputeResource, "C1")


def test_node_set_follows_clusters_created_and_destroyed_in_vcenter(site: Site,
                                                                    make: Callable[..., ReferenceDriver]) -> None:
    d = make(clusters=("/DC1/host/later",))
    assert d.get_available_nodes(refresh=True) == []
    dc1 = next(ref for ref, name in site.inventory().datacenters.items() if name == "DC1")
    moref = site.oracle.create_cluster(dc1, "later")
    try:
        assert d.get_available_nodes(refresh=True) == [node_name(moref, site.inventory().vcenter_uuid)]
    finally:
        site.oracle.destroy(moref, vim.ClusterComputeResource)
    assert d.get_available_nodes(refresh=True) == []


# -- resources -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("regex", [None, "shared|c0-.*|dc1-ds"])
def test_figures_follow_the_definition(site: Site, make: Callable[..., ReferenceDriver], regex: str | None) -> None:
    d = make(datastore_regex=regex)
    d.get_available_nodes(refresh=True)
    inv = site.inventory()
    for name, cluster in inv.expected_nodes(site.clusters).items():
        got = d.get_available_resource(name)
        want = inv.expected_resources(cluster, regex)
        del want["memory_mb_floor"]  # the least RES-01 accepts; the reference floors the sum once
        assert {k: got.get(k) for k in want} == want, cluster.path
        largest = inv.largest_host(cluster)
        disk = [ds for ds in cluster.datastores if ds.usable and (regex is None or ds.name != "scratch-c0")]
        # RES-06: a disk must fit in one datastore's free space.
        largest["DISK_GB"] = max((ds.free // (1 << 30) for ds in disk), default=0)
        inventory = got["inventory"]
        assert {rc: (r["total"], r["max_unit"]) for rc, r in inventory.items()} == {
            "VCPU": (want["vcpus"], largest["VCPU"]), "MEMORY_MB": (want["memory_mb"], largest["MEMORY_MB"]),
            "DISK_GB": (want["local_gb"], largest["DISK_GB"])}, cluster.path
    # By hand, for the cluster that has it all: c0b is in maintenance; shared (4096 GiB, 1024 used) and
    # c0-nfs (1024, 24 used) count once each; scratch-c0 (8192, 8182 used) only without the filter.
    c0 = d.get_available_resource(site.node("/DC0/host/C0"))
    assert (c0["vcpus"], c0["memory_mb"]) == (32, 128 * 1024)
    assert (c0["local_gb"], c0["local_gb_used"]) == ((5120, 1048) if regex else (13312, 9230))


def test_figures_follow_a_host_added_to_a_cluster(site: Site, make: Callable[..., ReferenceDriver]) -> None:
    d = make(clusters=("/DC0/host/C1",))
    node = d.get_available_nodes(refresh=True)[0]
    before = d.get_available_resource(node)["vcpus"]
    moref = site.oracle.add_host(site.inventory().by_path("/DC0/host/C1").moref, "added-c1")
    try:
        d.get_available_nodes(refresh=True)
        assert d.get_available_resource(node)["vcpus"] == before + site.inventory().host(moref).threads
    finally:
        remove_host(site.oracle, moref)


def test_unknown_node_raises_node_not_found(make: Callable[..., ReferenceDriver]) -> None:
    d = make()
    d.get_available_nodes(refresh=True)
    with pytest.raises(NodeNotFound):
        d.get_available_resource("domain-c0.nope")


# -- instances -----------------------------------------------------------------------------------------------

def test_spawn_list_info_destroy_round_trip(site: Site, make: Callable[..., ReferenceDriver],
                                            instances: Callable[..., Instance]) -> None:
    d = make()
    node = site.node("/DC0/host/C0")
    d.get_available_nodes(refresh=True)
    instance = instances(vcpus=2, memory_mb=512, root_gb=3)
    d.spawn(instance, node)
    (vm,) = site.oracle.find_vms(instance.uuid)
    inv = site.inventory()
    c0 = inv.by_path("/DC0/host/C0")
    assert (vm.pool_owner, vm.host_parent, vm.power_state) == (c0.moref, c0.moref, "poweredOn")
    assert inv.host(vm.host).schedulable
    # The policy: the usable datastore with the most free space (shared: 3072 GiB free).
    assert [inv.datastores[ds] for ds in vm.datastores] == ["shared"]
    disks = [dev for dev in site.oracle._obj(vim.VirtualMachine, vm.moref).config.hardware.device
             if isinstance(dev, vim.vm.device.VirtualDisk)]
    assert [disk.capacityInKB for disk in disks] == [3 * 1024 * 1024]
    assert instance.uuid in d.list_instances()
    assert (d.get_info(instance).state, d.get_info(instance).nodename) == ("running", node)
    d.destroy(instance)
    assert site.oracle.find_vms(instance.uuid) == []
    assert instance.uuid not in d.list_instances()
    with pytest.raises(InstanceNotFound):
        d.get_info(instance)
    d.destroy(instance)  # destroying a missing instance succeeds


def test_spawn_goes_into_the_configured_resource_pool(site: Site, make: Callable[..., ReferenceDriver],
                                                      instances: Callable[..., Instance]) -> None:
    d = make(resource_pool="nova")
    d.get_available_nodes(refresh=True)
    instance = instances()
    d.spawn(instance, site.node("/DC0/host/C1"))
    (vm,) = site.oracle.find_vms(instance.uuid)
    assert site.inventory().pools[vm.resource_pool] == "/DC0/host/C1/Resources/nova"
    assert site.inventory().host(vm.host).name in ("c1a", "c1c")  # c1b is disconnected
    missing = instances()
    with pytest.raises(SpawnFailed, match="no resource pool /DC0/host/C0/Resources/nova"):
        d.spawn(missing, site.node("/DC0/host/C0"))
    assert site.oracle.find_vms(missing.uuid) == []


def test_spawns_that_cannot_start_create_nothing(site: Site, make: Callable[..., ReferenceDriver],
                                                 instances: Callable[..., Instance]) -> None:
    d = make()
    d.get_available_nodes(refresh=True)
    removed = site.node(site.clusters[-1])
    d.reconfigure(replace(d.config, clusters=site.clusters[:-1]))
    cases = [("domain-c0.nope", NodeNotFound, {}), (removed, NodeNotFound, {}),
             (site.node("/DC0/host/Empty"), SpawnFailed, {}), (site.node("/DC1/host/C0"), SpawnFailed, {"root_gb": 51})]
    for node, error, fields in cases:
        instance = instances(**fields)
        with pytest.raises(error):
            d.spawn(instance, node)
        assert site.oracle.find_vms(instance.uuid) == [], node


def test_a_vm_outside_the_managed_clusters_is_not_listed_found_or_destroyed(
        site: Site, make: Callable[..., ReferenceDriver], instances: Callable[..., Instance]) -> None:
    owner, other = make(clusters=("/DC0/host/C0",)), make(clusters=("/DC0/host/C1",))
    instance = instances()
    owner.spawn(instance, owner.get_available_nodes(refresh=True)[0])
    other.get_available_nodes(refresh=True)
    assert instance.uuid not in other.list_instances()
    with pytest.raises(InstanceNotFound):
        other.get_info(instance)
    other.destroy(instance)  # succeeds, and leaves another service's VM alone
    assert [vm.power_state for vm in site.oracle.find_vms(instance.uuid)] == ["poweredOn"]


def test_concurrent_spawns_land_in_their_clusters(site: Site, make: Callable[..., ReferenceDriver],
                                                  instances: Callable[..., Instance]) -> None:
    d = make(clusters=("/DC0/host/C0", "/DC0/host/C1", "/DC1/host/C0"))
    work = [(instances(), node) for node in d.get_available_nodes(refresh=True) for _ in range(2)]
    threads = [threading.Thread(target=d.spawn, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    inv = site.inventory()
    owners = {node_name(c.moref, inv.vcenter_uuid): c.moref for c in inv.clusters.values()}
    assert [[vm.host_parent for vm in site.oracle.find_vms(i.uuid)] for i, _ in work] == \
        [[owners[node]] for _, node in work]


# -- sessions, faults and cost -------------------------------------------------------------------------------

def test_an_ended_session_is_replaced_once_for_concurrent_callers(site: Site, make: Callable[..., ReferenceDriver],
                                                                  instances: Callable[..., Instance]) -> None:
    d = make()
    nodes = d.get_available_nodes(refresh=True)
    assert end_other_sessions(site.oracle) >= 1
    results: list[Any] = []
    callers = [lambda: d.get_available_nodes(refresh=True), d.list_instances,
               lambda: d.spawn(instances(), site.node("/DC0/host/C1"))] * 2
    with count_calls(d._si) as calls:
        threads = [threading.Thread(target=lambda f=f: results.append(f())) for f in callers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == len(callers) and results.count(nodes) == 2
    assert calls.by_method["Login"] == 1


def test_a_spawn_first_after_the_session_ended_logs_in_again(site: Site, make: Callable[..., ReferenceDriver],
                                                             instances: Callable[..., Instance]) -> None:
    """Its first call reads the cluster's hosts, which vCenter answers without a session too (every property
    in missingSet, NotAuthenticated): the driver must see that, not an empty cluster."""
    d = make(clusters=("/DC0/host/C1",))
    node = d.get_available_nodes(refresh=True)[0]
    assert end_other_sessions(site.oracle) >= 1
    instance = instances()
    with count_calls(d._si) as calls:
        d.spawn(instance, node)
    assert calls.by_method["Login"] == 1
    assert len(site.oracle.find_vms(instance.uuid)) == 1


def test_a_failed_refresh_leaves_no_figures_to_serve(make: Callable[..., ReferenceDriver]) -> None:
    endpoint = start_simulator(SITE)
    try:
        d = ReferenceDriver(DriverConfig(url=endpoint.url, username=endpoint.username, password=endpoint.password,
                                         clusters=SITE.cluster_paths(), ca_file=str(endpoint.ca_file)))
        node = d.get_available_nodes(refresh=True)[0]
        assert d.get_available_resource(node)["vcpus"] > 0
    finally:
        endpoint.stop()  # vCenter is gone: every call now fails
    with pytest.raises(VCenterUnavailable, match=r"refresh: .* after 3 attempts"):
        d.get_available_nodes(refresh=True)
    with pytest.raises(VCenterUnavailable, match="last refresh failed"):
        d.get_available_resource(node)
    d.close()
    with pytest.raises(VCenterUnavailable, match="closed"):
        d.get_available_nodes(refresh=True)


def test_calls_per_operation(site: Site, make: Callable[..., ReferenceDriver],
                             instances: Callable[..., Instance]) -> None:
    d = make()
    with count_calls(d._si) as calls:
        nodes = d.get_available_nodes(refresh=True)
        assert calls.by_method == {"CreateContainerView": 1, "RetrievePropertiesEx": 1}
        calls.clear()
        d.get_available_nodes(refresh=True)
        for node in nodes:
            d.get_available_resource(node)
        assert calls.by_method == {"RetrievePropertiesEx": 1}  # a refresh: one query, whatever the clusters
        calls.clear()
        instance = instances()
        d.spawn(instance, site.node("/DC0/host/C1"))
        # The placement reads the cluster's hosts (names, mounted datastores) now, then creates and powers on.
        assert {k: v for k, v in calls.by_method.items() if k != "Fetch"} == {
            "RetrievePropertiesEx": 1, "CreateVM_Task": 1, "PowerOnVM_Task": 1}
        assert 2 <= calls.by_method["Fetch"] <= 4  # task polls: once each when a task is done at once
        d.list_instances()
        calls.clear()
        d.list_instances()
        assert calls.by_method == {"RetrievePropertiesEx": 1}
        calls.clear()
        d.get_info(instance)
        assert calls.by_method == {"FindAllByUuid": 1, "RetrievePropertiesEx": 1}


def test_a_paged_answer_is_read_to_its_end(site: Site, make: Callable[..., ReferenceDriver]) -> None:
    whole = make()
    nodes = whole.get_available_nodes(refresh=True)

    class Paged(ReferenceDriver):
        page_size = 4

    paged = Paged(site.config())
    try:
        with count_calls(paged._si) as calls:
            assert paged.get_available_nodes(refresh=True) == nodes
        assert calls.by_method["ContinueRetrievePropertiesEx"] >= 5
        assert [paged.get_available_resource(n) for n in nodes] == [whole.get_available_resource(n) for n in nodes]
    finally:
        paged.close()


def test_a_refresh_costs_the_same_for_1_and_60_clusters() -> None:
    costs = []
    for n in (1, 60):
        topo = Topology(f"n{n}", "<generated>", (DatacenterSpec("DC", tuple(
            ClusterSpec(f"C{i}", (host(f"h{i}"),)) for i in range(n)), (), ()),))
        endpoint = start_simulator(topo)
        try:
            d = ReferenceDriver(DriverConfig(url=endpoint.url, username=endpoint.username,
                                             password=endpoint.password, clusters=tuple(topo.cluster_paths()),
                                             ca_file=str(endpoint.ca_file)))
            d.get_available_nodes(refresh=True)
            with count_calls(d._si) as calls:
                assert len(d.get_available_nodes(refresh=True)) == n
                costs.append(dict(calls.by_method))
            d.close()
        finally:
            endpoint.stop()
    # One query whatever the number of clusters. vCenter pages its answer (100 objects), so the 125 objects of 60
    # clusters (their hosts, the datacenter and its four folders) take a second call: a page, not a query.
    assert costs == [{"RetrievePropertiesEx": 1}, {"RetrievePropertiesEx": 1, "ContinueRetrievePropertiesEx": 1}]


# -- what a refresh reads, and updates between refreshes ------------------------------------------------------

@contextlib.contextmanager
def property_requests(si: Any) -> Iterator[list[tuple[Any, str]]]:
    """(type, path) of every PropertySpec sent through the connection until the block ends ("*": all)."""
    stub, seen = si._stub, list[tuple[Any, str]]()
    original = stub.InvokeMethod

    def invoke(mo: Any, info: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        for arg in args:
            for spec in arg if isinstance(arg, list) else [arg]:
                if isinstance(spec, vmodl.query.PropertyCollector.FilterSpec):
                    for ps in spec.propSet:
                        seen.extend([(ps.type, "*")] if ps.all else [(ps.type, p) for p in ps.pathSet or ()])
        return original(mo, info, args, *rest, **kwargs)

    stub.InvokeMethod = invoke
    try:
        yield seen
    finally:
        del stub.InvokeMethod


def whole_objects(requested: list[tuple[Any, str]]) -> list[str]:
    """The requested paths whose value is a data object (or an array of them), such as a whole summary or
    hardware object, rather than a leaf (a number, string, enum, moref or array of morefs)."""
    out = []
    for kind, path in requested:
        t = kind
        for part in [] if path == "*" else path.split("."):
            t = t._GetPropertyInfo(part).type
        item = getattr(t, "Item", t)
        if path == "*" or (isinstance(item, type) and issubclass(item, vmodl.DynamicData)):
            out.append(f"{kind._wsdlName}.{path}")
    return out


def test_the_driver_asks_for_leaf_properties_only(site: Site, make: Callable[..., ReferenceDriver],
                                                  instances: Callable[..., Instance]) -> None:
    """No whole summary or hardware object: the answer's size is most of a refresh's cost (docs/driver.md)."""
    assert whole_objects([(vim.HostSystem, "summary"), (vim.HostSystem, "summary.hardware"),
                          (vim.HostSystem, "hardware"), (vim.Datastore, "summary"), (vim.Datastore, "host"),
                          (vim.HostSystem, "summary.hardware.memorySize"), (vim.HostSystem, "datastore"),
                          (vim.ComputeResource, "*")]) == [
        "HostSystem.summary", "HostSystem.summary.hardware", "HostSystem.hardware", "Datastore.summary",
        "Datastore.host", "ComputeResource.*"]
    d = make()
    with property_requests(d._si) as requested:
        d.get_available_nodes(refresh=True)
        d.get_available_nodes()  # sets up the watch for updates
        assert d.wait_for_changes(timeout=0) is False
        instance = instances(root_gb=1)
        d.spawn(instance, site.node("/DC0/host/C1"))
        assert instance.uuid in d.list_instances()
        d.get_info(instance)
        d.destroy(instance)
    assert set(ReferenceDriver.host_properties) <= {p for t, p in requested if t is vim.HostSystem}
    assert whole_objects(requested) == []

    class ReadsWholeSummaries(ReferenceDriver):
        host_properties = (*ReferenceDriver.host_properties, "summary")

    greedy = ReadsWholeSummaries(site.config())
    try:
        with property_requests(greedy._si) as requested:
            greedy.get_available_nodes(refresh=True)
        assert whole_objects(requested) == ["HostSystem.summary"]
    finally:
        greedy.close()


def state(d: ReferenceDriver, refresh: bool) -> dict[str, Any]:
    """Every node's path and figures, after a full refresh or an update."""
    nodes = d.get_available_nodes(refresh=refresh)
    assert d._nodes is not None
    return {n: (d._nodes[n].path, d.get_available_resource(n)) for n in nodes}


def differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """Per node, what differs: (observed, required), down to single figures."""
    out: dict[str, Any] = {}
    for n in sorted(set(got) | set(want)):
        g, w = got.get(n), want.get(n)
        if g is None or w is None or g[0] != w[0]:
            out[n] = (g, w)
        elif g[1] != w[1]:
            out[n] = {k: (g[1].get(k), w[1].get(k)) for k in set(g[1]) | set(w[1]) if g[1].get(k) != w[1].get(k)}
    return out


def test_updates_between_full_refreshes_keep_the_figures_current(
        ctl: tuple[ReferenceDriver, Any], controlled: tuple[Endpoint, Any]) -> None:
    """get_available_nodes() applies vCenter's changes (one WaitForUpdatesEx), and gives what a full refresh
    would: host states, a host added and removed, a VM's memory and disk, a cluster renamed and destroyed."""
    d, control = ctl
    endpoint, _ = controlled
    oracle = Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file))
    fresh = ReferenceDriver(d.config)
    c1 = oracle.inventory().by_path("/DC0/host/C1").moref
    try:
        state(d, refresh=True)
        with count_calls(d._si) as calls:
            state(d, refresh=False)  # the watch's set-up reads everything once
        assert calls.by_method["WaitForUpdatesEx"] >= 1 and "CreateFilter" in calls.by_method

        def same_as_a_full_refresh(what: str) -> None:
            with count_calls(d._si) as calls:
                got = state(d, refresh=False)
            assert calls.by_method == {"WaitForUpdatesEx": 1}, what
            want = state(fresh, refresh=True)
            assert got == want, (what, differences(got, want))

        control.set_host("c0a", maintenance=True)
        same_as_a_full_refresh("a host in maintenance")
        control.set_host("c1c", connection_state="notResponding")
        control.set_host("c0a", maintenance=False)
        same_as_a_full_refresh("host states")
        added = oracle.add_host(c1, "added-c1")
        same_as_a_full_refresh("a host added")
        instance = Instance(uuid=str(uuid.uuid4()), name="update", memory_mb=4096, root_gb=8)
        d.spawn(instance, node_name(c1, oracle.inventory().vcenter_uuid))
        same_as_a_full_refresh("a VM started: memory used, datastore space")
        d.destroy(instance)
        remove_host(oracle, added)
        same_as_a_full_refresh("the VM and the host gone")
        oracle.rename(c1, vim.ClusterComputeResource, "C1-renamed")  # configured by path: it is no node now
        same_as_a_full_refresh("a cluster renamed")
        oracle.destroy(oracle.inventory().by_path("/DC0/host/Empty").moref, vim.ClusterComputeResource)
        same_as_a_full_refresh("a cluster destroyed")
        with count_calls(d._si) as calls:
            state(d, refresh=True)
        assert calls.by_method == {"RetrievePropertiesEx": 1}  # refresh=True stays a full refresh
    finally:
        fresh.close()
        oracle.close()


def test_a_full_refresh_during_a_wait_loses_no_change(ctl: tuple[ReferenceDriver, Any],
                                                     controlled: tuple[Endpoint, Any]) -> None:
    d, control = ctl
    fresh = ReferenceDriver(d.config)
    try:
        state(d, refresh=False)
        assert d.wait_for_changes(timeout=0) is False
        outcome: list[bool] = []
        waiter = threading.Thread(target=lambda: outcome.append(d.wait_for_changes(timeout=5)))
        waiter.start()
        with count_calls(d._si) as calls:
            d.get_available_nodes()  # the waiter holds the watch: no second wait, the snapshot as it is
        assert calls.total == 0
        control.set_host("c1a", maintenance=True)
        state(d, refresh=True)
        control.set_host("c1c", maintenance=True)
        waiter.join(timeout=10)
        assert outcome == [True]
        state(d, refresh=False)
        assert state(d, refresh=False) == state(fresh, refresh=True)
    finally:
        fresh.close()


# -- update notifications ------------------------------------------------------------------------------------

def test_wait_for_changes_reports_changes_to_managed_clusters_only(site: Site,
                                                                   make: Callable[..., ReferenceDriver]) -> None:
    d = make(clusters=("/DC0/host/C1",))
    node = d.get_available_nodes(refresh=True)[0]
    assert d.wait_for_changes(timeout=0) is False  # nothing changed; this sets up the watch
    outcome: list[bool] = []

    added: list[str] = []

    def add_host_while_waiting(cluster: str) -> None:
        waiter = threading.Thread(target=lambda: outcome.append(d.wait_for_changes(timeout=2)))
        waiter.start()
        added.append(site.oracle.add_host(site.inventory().by_path(cluster).moref, f"notified-{len(added)}"))
        waiter.join()

    try:
        add_host_while_waiting(FOLDER_CLUSTER)
        assert outcome == [False]  # another cluster changed: nothing this driver reports did
        add_host_while_waiting("/DC0/host/C1")
        assert outcome == [False, True]
        inv = site.inventory()
        assert d.get_available_resource(node)["vcpus"] == inv.expected_resources(inv.by_path("/DC0/host/C1"))["vcpus"]
        end_other_sessions(site.oracle)  # the watch ends with the session: it is set up again, nothing is missed
        assert d.wait_for_changes(timeout=0) is False
    finally:
        for moref in added:
            remove_host(site.oracle, moref)
    assert d.wait_for_changes(timeout=1) is True  # a host of C1 went into maintenance, then away


def test_destroy_after_a_new_login_removes_a_powered_off_vm(site: Site, make: Callable[..., ReferenceDriver],
                                                        instances: Callable[..., Instance]) -> None:
    d = make(clusters=("/DC0/host/C1",))
    instance = instances()
    d.spawn(instance, d.get_available_nodes(refresh=True)[0])
    (vm,) = site.oracle.find_vms(instance.uuid)
    task = site.oracle._obj(vim.VirtualMachine, vm.moref).PowerOffVM_Task()
    wait_for_task(task)
    end_other_sessions(site.oracle)
    d.destroy(instance)  # finds a powered-off VM after logging in again, and destroys it
    assert site.oracle.find_vms(instance.uuid) == []


# -- with the fake vCenter's control API: faults, expiry, restart, slow tasks, server-side counts -------------

@pytest.fixture(scope="module")
def controlled() -> Iterator[tuple[Endpoint, Any]]:
    """A fake vCenter of its own (the SITE topology) and its control API; skipped until the API exists."""
    control_module = pytest.importorskip("conformance.control")
    endpoint = start_simulator(SITE)
    control = control_module.Control(endpoint)
    try:
        yield endpoint, control
    finally:
        control.close()
        endpoint.stop()


@pytest.fixture
def ctl(controlled: tuple[Endpoint, Any]) -> Iterator[tuple[ReferenceDriver, Any]]:
    """A driver on the controlled vCenter, every cluster; the vCenter is reset afterwards."""
    endpoint, control = controlled
    d = ReferenceDriver(DriverConfig(url=endpoint.url, username=endpoint.username, password=endpoint.password,
                                     clusters=tuple(SITE.cluster_paths()), ca_file=str(endpoint.ca_file)))
    try:
        yield d, control
    finally:
        d.close()
        control.reset()


def test_server_counts_one_call_per_refresh(ctl: tuple[ReferenceDriver, Any]) -> None:
    d, control = ctl
    d.get_available_nodes(refresh=True)
    control.reset_calls()
    with count_calls(d._si) as calls:
        for node in d.get_available_nodes(refresh=True):
            d.get_available_resource(node)
    assert control.calls()["by_method"] == calls.by_method == {"RetrievePropertiesEx": 1}


def test_a_transient_fault_is_retried(ctl: tuple[ReferenceDriver, Any]) -> None:
    d, control = ctl
    before = {n: d.get_available_resource(n) for n in d.get_available_nodes(refresh=True)}
    control.add_fault("RetrievePropertiesEx", "SystemError", count=1)
    control.reset_calls()
    assert {n: d.get_available_resource(n) for n in d.get_available_nodes(refresh=True)} == before
    assert control.calls()["by_method"] == {"RetrievePropertiesEx": 2}


def test_a_persistent_fault_is_vcenter_unavailable_and_no_figures(ctl: tuple[ReferenceDriver, Any]) -> None:
    d, control = ctl
    node = d.get_available_nodes(refresh=True)[0]
    control.add_fault("RetrievePropertiesEx", "HostCommunication")
    control.reset_calls()
    with pytest.raises(VCenterUnavailable, match=r"HostCommunication.* after 3 attempts"):
        d.get_available_nodes(refresh=True)
    assert control.calls()["by_method"] == {"RetrievePropertiesEx": 3}
    with pytest.raises(VCenterUnavailable, match="last refresh failed"):
        d.get_available_resource(node)
    control.clear_faults()
    assert node in d.get_available_nodes(refresh=True)


def test_a_failed_power_on_leaves_no_vm(ctl: tuple[ReferenceDriver, Any]) -> None:
    d, control = ctl
    node = d.get_available_nodes(refresh=True)[0]
    control.add_fault("PowerOnVM_Task", "SystemError", message="injected: power-on failed")
    instance = Instance(uuid=str(uuid.uuid4()), name="fails")
    with pytest.raises(SpawnFailed, match="power-on failed") as err:
        d.spawn(instance, node)
    assert "could not be removed" not in str(err.value)
    assert instance.uuid not in d.list_instances()
    control.clear_faults()
    d.destroy(instance)  # nothing left to destroy


def test_expired_sessions_and_a_restart_log_in_once_each(ctl: tuple[ReferenceDriver, Any]) -> None:
    d, control = ctl
    nodes = d.get_available_nodes(refresh=True)
    d.list_instances()
    for end in (control.expire_sessions, control.reset):
        end()
        control.reset_calls()
        assert d.get_available_nodes(refresh=True) == nodes
        assert d.list_instances() == []
        assert control.calls()["by_method"].get("Login") == 1


def test_wrong_credentials_are_tried_once_on_the_server(controlled: tuple[Endpoint, Any]) -> None:
    endpoint, control = controlled
    control.reset_calls()
    with pytest.raises(AuthenticationFailed):
        ReferenceDriver(DriverConfig(url=endpoint.url, username=endpoint.username, password="not-it",
                                     clusters=(), ca_file=str(endpoint.ca_file)))
    assert control.calls()["by_method"].get("Login") == 1


def test_slow_tasks_and_latency_are_waited_for(ctl: tuple[ReferenceDriver, Any]) -> None:
    d, control = ctl
    node = d.get_available_nodes(refresh=True)[0]
    control.set_task_delay("CreateVM_Task", 400)
    control.set_latency("*", 100)
    instance = Instance(uuid=str(uuid.uuid4()), name="slow")
    with count_calls(d._si) as calls:
        d.spawn(instance, node)
    assert 3 <= calls.by_method["Fetch"] <= 8  # polls back off: 0, 50, 100, 200 ms... not a busy loop
    assert d.get_info(instance).state == "running"

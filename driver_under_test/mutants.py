"""Deliberately broken variants of the reference driver: each one must be caught by the checks it targets.

``make selftest`` (part of ``make test``) runs the suite against every mutant here and fails unless each
is caught by the requirements in its ``targets``, so no check can silently stop being able to fail.
Each mutant changes one thing and stands for a mistake a real driver makes. How they change the reference:

- through its small seams: ``_managed_clusters``, ``_is_cluster``, ``_host_vcpus``, ``_placement``,
  ``_schedulable``, ``_relogin`` (a new login after the session ended), ``_forget_session_objects`` (a view
  or collector of an ended session), ``host_properties``; and the Node of ``_nodes`` for the older ones;
- or only through the contract's public methods, computing their wrong answer from vCenter facts read with
  a session of their own (``Peeks``: the suite's Oracle, logged in with the driver's configuration), so they
  keep working however the reference reads vCenter;
- two replace ``ssl.create_default_context`` while the reference connects (every pyvmomi driver builds its
  TLS context with it), to get verification wrong in one specific way.

``proves`` names the check a mutant was written for: in its self-test run that check (or those checks) must
fail and no other. ``runs`` adds requirements whose checks must run for the mistake to show (a password
logged at a re-login shows in FAULT-01's check, and is SEC-03's failure, not FAULT-01's).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from pyVmomi import vim, vmodl

from conformance.contract import (
    AuthenticationFailed,
    DriverConfig,
    Instance,
    InstanceInfo,
    InstanceNotFound,
    NodeNotFound,
    Resources,
    SpawnFailed,
    VCenterUnavailable,
    node_name,
)
from conformance.oracle import GIB, MIB, ClusterFacts, DatastoreFacts, HostFacts, Inventory, Oracle
from driver_under_test.reference import Node, ReferenceDriver

__all__ = ["MUTANTS"]

LOG = logging.getLogger(__name__)


class Mutant(ReferenceDriver):
    #: The requirement ids whose checks must fail against this mutant.
    targets: ClassVar[tuple[str, ...]] = ()
    #: The checks (function name, or ``<function>::credential-scan``) this mutant was written for: the only
    #: ones that fail in its self-test run.
    proves: ClassVar[tuple[str, ...]] = ()
    #: Requirements whose checks also run in its self-test (and must not fail: the mistake is the targets').
    runs: ClassVar[tuple[str, ...]] = ()


class Peeks(Mutant):
    """A mutant that reads vCenter with a session of its own (the suite's Oracle, with the driver's
    configuration) to compute its wrong answer; not a mutant itself. Those reads are vCenter calls the
    efficiency checks count: the self-test does not hold them against what the mutant ``proves``."""

    reads_vcenter_itself: ClassVar[bool] = True

    def _oracle(self) -> Oracle:
        oracle: Oracle | None = self.__dict__.get("_peek")
        if oracle is None:
            u = urllib.parse.urlsplit(self.config.url)
            oracle = self._peek = Oracle(str(u.hostname), u.port or 443, self.config.username, self.config.password,
                                         self.config.ca_file, insecure=self.config.insecure)
        return oracle

    def _cluster(self, nodename: str) -> tuple[Inventory, ClusterFacts]:
        """The cluster of a node of this driver (a configured cluster that exists), as vCenter has it. (Not
        through get_available_nodes: the reference may apply pending updates there, which its own
        wait_for_changes would then never see.)"""
        inv = self._oracle().inventory()
        cluster = inv.clusters.get(nodename.split(".")[0])
        if cluster is None or nodename not in inv.expected_nodes(self.config.clusters):
            raise NodeNotFound(f"{nodename!r} is not a node of this driver")
        return inv, cluster

    def _usable(self, d: DatastoreFacts) -> bool:
        pattern = self.config.datastore_regex
        return d.usable and (pattern is None or re.fullmatch(pattern, d.name) is not None)

    def _disk(self, res: Resources, stores: list[DatastoreFacts]) -> Resources:
        """The figures with local_gb from these datastores (the inventory's total kept consistent)."""
        capacity = sum(d.capacity for d in stores)
        res["local_gb"] = capacity // GIB
        res["local_gb_used"] = res["local_gb"] - sum(d.free for d in stores) // GIB  # RES-02's rounding
        if "inventory" in res:
            res["inventory"]["DISK_GB"]["total"] = res["local_gb"]
        return res

    def _spawn_on(self, instance: Instance, nodename: str, host_ok: Callable[[HostFacts], bool],
                  ds_ok: Callable[[DatastoreFacts], bool], pool: str | None = None) -> None:
        """Spawn as the mutant's own policy says: the datastore with the most free space that ``ds_ok``
        allows and a host ``host_ok`` allows mounts, and that host with the most free memory; into the
        configured resource pool (missing: SpawnFailed, nothing created)."""
        inv, cluster = self._cluster(nodename)
        if pool is None and self.config.resource_pool:
            want = f"{cluster.path}/Resources/{self.config.resource_pool.strip('/')}"
            pool = next((moref for moref, path in inv.pools.items() if path == want), None)
            if pool is None:
                raise SpawnFailed(f"no resource pool {want}")
        hosts = [h for h in cluster.hosts if host_ok(h)]
        stores = [d for d in cluster.datastores if ds_ok(d) and any(d.moref in h.datastores for h in hosts)]
        if not stores:
            raise SpawnFailed(f"no host and datastore for {instance.uuid} on {nodename}")
        ds = max(stores, key=lambda d: (d.free, d.name))
        host = max((h for h in hosts if ds.moref in h.datastores),
                   key=lambda h: (h.memory_bytes // MIB - h.memory_used_mb, h.name))
        try:
            self._oracle().create_vm(cluster, instance.uuid, instance.uuid, ds.name, host=host.moref, pool=pool,
                                     memory_mb=instance.memory_mb)
        except (vmodl.MethodFault, OSError) as e:
            for vm in self._oracle().find_vms(instance.uuid):
                self._oracle().destroy(vm.moref, vim.VirtualMachine)
            raise SpawnFailed(f"spawn of {instance.uuid} failed: {type(e).__name__}") from None

    def close(self) -> None:
        peek: Oracle | None = self.__dict__.pop("_peek", None)
        if peek is not None:
            peek.close()
        super().close()


def _free_mb(h: HostFacts) -> int:
    return h.memory_bytes // MIB - h.memory_used_mb


@contextlib.contextmanager
def _tls_contexts(change: Callable[[Callable[..., ssl.SSLContext], dict[str, Any]], ssl.SSLContext]) -> Iterator[None]:
    """While the driver connects, ``ssl.create_default_context`` is ``change(original, kwargs)``."""
    original = ssl.create_default_context
    ssl.create_default_context = lambda *args, **kwargs: change(original, kwargs)
    try:
        yield
    finally:
        ssl.create_default_context = original


# -- NODE ------------------------------------------------------------------------------------------------

class DropsLastCluster(Mutant):
    """Loses one managed cluster (an off-by-one over the configured list)."""

    targets = ("NODE-01",)

    def _managed_clusters(self) -> tuple[str, ...]:
        return self.config.clusters[:-1]


class DisplayNameNodes(Mutant):
    """Names nodes by cluster display name: neither unique nor stable (Nova bug 1329261)."""

    targets = ("NODE-01", "NODE-03")

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        super().get_available_nodes(refresh)
        assert self._nodes is not None
        self._nodes = {node.cluster.name: node for node in self._nodes.values()}
        return sorted(self._nodes)


class StandaloneHostsAsNodes(Mutant):
    """Treats every compute resource as a cluster, so a standalone host named in the config is a node."""

    targets = ("NODE-02",)

    @staticmethod
    def _is_cluster(obj: Any) -> bool:
        return isinstance(obj, vim.ComputeResource)


class KeysByClusterName(Mutant):
    """Indexes clusters by display name, so same-named clusters of two datacenters collapse into one."""

    targets = ("NODE-04",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        super().get_available_nodes(refresh)
        assert self._nodes is not None
        by_name: dict[str, Node] = {}
        for node in self._nodes.values():
            by_name.setdefault(node.cluster.name, node)
        self._nodes = {node.name: node for node in by_name.values()}
        return sorted(self._nodes)


class FailsOnMissingCluster(Mutant):
    """Treats a configured cluster that vCenter lacks as fatal, taking every other node down with it."""

    targets = ("NODE-05",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        if len(nodes) < len(self.config.clusters):
            raise VCenterUnavailable("a configured cluster is missing")
        return nodes


class SilentAboutMissingCluster(Mutant):
    """Leaves a missing cluster out without telling the operator."""

    targets = ("NODE-05",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        logging.disable(logging.WARNING)
        try:
            return super().get_available_nodes(refresh)
        finally:
            logging.disable(logging.NOTSET)


class ManagesTheWholeDatacenter(Mutant):
    """Manages every cluster of the datacenters its configured clusters are in, overlapping other services."""

    targets = ("NODE-06",)

    def _managed_clusters(self) -> tuple[str, ...]:
        content = self._si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ClusterComputeResource], True)
        try:
            return (*self.config.clusters, *(c._moId for c in view.view))
        finally:
            view.DestroyView()


class ReadsFirstPageOnly(Mutant):
    """Takes the first answer of each RetrievePropertiesEx and ignores its token (the rest of a paged answer)."""

    targets = ("NODE-07",)

    def _retrieve(self, spec: Any) -> list[Any]:
        result = self._content.propertyCollector.RetrievePropertiesEx(
            [spec], vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=self.page_size))
        return list(result.objects) if result is not None else []


class StopsAfterFourPages(Mutant):
    """Follows a paged answer's token three times at most (a "safety" cap against endless loops), then keeps
    what it has: right while vCenter's answers fit in four pages."""

    targets = ("NODE-07",)

    def _retrieve(self, spec: Any) -> list[Any]:
        pc = self._content.propertyCollector
        options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=self.page_size)
        result = pc.RetrievePropertiesEx([spec], options)
        objects: list[Any] = []
        for _ in range(4):
            if result is None:
                break
            objects.extend(result.objects)
            result = pc.ContinueRetrievePropertiesEx(result.token) if result.token else None
        return objects


# -- RES -------------------------------------------------------------------------------------------------

class CountsCoresNotThreads(Mutant):
    """Reports physical cores as vcpus, where the requirement is hardware threads."""

    targets = ("RES-01",)
    host_properties = (*ReferenceDriver.host_properties, "summary.hardware.numCpuCores")

    def _host_vcpus(self, host: dict[str, Any]) -> int:
        return int(host["summary.hardware.numCpuCores"])


class CountsUnschedulableHosts(Mutant):
    """Counts hosts in maintenance mode and hosts that are not connected."""

    targets = ("RES-01", "RES-03")

    @staticmethod
    def _schedulable(host: dict[str, Any]) -> bool:
        return True


class CountsDatastorePerHost(Mutant):
    """Adds a shared datastore once per host that mounts it."""

    targets = ("RES-02",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        assert self._nodes is not None
        hosts = max(1, len(self._nodes[nodename].hosts))
        res["local_gb"] = res.get("local_gb", 0) * hosts
        return res


class ReportsEffectiveMemory(Mutant):
    """Reports the cluster's summary.effectiveMemory as memory_mb: what is left for VMs after the hypervisor's
    share, where the requirement (and Nova) is the hosts' hardware memory."""

    targets = ("RES-01",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        res["memory_mb"] = int(self._node(nodename).cluster.summary.effectiveMemory)
        return res


class CountsConfiguredVmMemory(Mutant):
    """Reports memory_mb_used as the configured memory of the powered-on VMs: it misses what the hypervisor
    uses and each VM's overhead (quickStats.overallMemoryUsage counts both)."""

    targets = ("RES-05",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        used = 0
        for host in self._node(nodename).hosts:
            if self._schedulable(host):
                used += sum(vm.config.hardware.memoryMB for vm in host["ref"].vm
                            if vm.runtime.powerState == "poweredOn")
        res["memory_mb_used"] = used
        return res


class FiguresFromFirstLook(Mutant):
    """Reads a node's figures once and serves them for ever (the start-up snapshot)."""

    targets = ("RES-03", "CHURN-04")

    def get_available_resource(self, nodename: str) -> Resources:
        cache: dict[str, Resources] = self.__dict__.setdefault("_first_look", {})
        if nodename not in cache:
            cache[nodename] = super().get_available_resource(nodename)
        return cache[nodename]


class ZerosForUnknownNode(Mutant):
    """Answers an unknown node with zeros instead of NodeNotFound."""

    targets = ("RES-04",)

    def get_available_resource(self, nodename: str) -> Resources:
        try:
            return super().get_available_resource(nodename)
        except NodeNotFound:
            return Resources(vcpus=0, memory_mb=0, local_gb=0, vcpus_used=0, memory_mb_used=0, local_gb_used=0)


class IgnoresUsedMemory(Mutant):
    """Reports memory_mb_used as zero, whatever runs."""

    targets = ("RES-05",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        res["memory_mb_used"] = 0
        return res


class WholeClusterMaxUnit(Mutant):
    """Declares a placement inventory whose max_unit is the whole cluster, not the largest host."""

    targets = ("RES-06",)
    capabilities: ClassVar[Mapping[str, bool]] = {"placement_inventory": True}

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        totals = {"VCPU": res["vcpus"], "MEMORY_MB": res["memory_mb"], "DISK_GB": res["local_gb"]}
        res["inventory"] = {rc: {"total": t, "reserved": 0, "min_unit": 1, "max_unit": t, "step_size": 1,
                                 "allocation_ratio": 1.0} for rc, t in totals.items()}
        return res


# -- SPAWN -----------------------------------------------------------------------------------------------

def _create_and_power_on(driver: ReferenceDriver, instance: Instance, node: Node, host: Any = None,
                         clean_up: bool = True) -> None:
    """A plain spawn for the mutants that change how one is done (not what the reference does)."""
    ds = max(node.datastores, key=lambda d: d.freeSpace)
    config = vim.vm.ConfigSpec(name=instance.uuid, instanceUuid=instance.uuid, numCPUs=instance.vcpus,
                               memoryMB=instance.memory_mb, guestId="otherGuest64",
                               files=vim.vm.FileInfo(vmPathName=f"[{ds.name}]"))
    vm = _wait(node.vm_folder.CreateVM_Task(config=config, pool=node.pool, host=host))
    try:
        _wait(vm.PowerOnVM_Task())
    except Exception as e:
        if clean_up:
            _wait(vm.Destroy_Task())
        raise VCenterUnavailable(f"power-on failed: {type(e).__name__}") from None


def _wait(task: Any) -> Any:
    while task.info.state in ("queued", "running"):
        time.sleep(0.01)
    if task.info.state == "error":
        raise task.info.error
    return task.info.result


class SpawnsInFirstCluster(Mutant):
    """Ignores the node it is given and places every VM in the first managed cluster."""

    targets = ("SPAWN-01",)

    def _placement(self, node: Node) -> Node:
        assert self._nodes is not None
        return self._nodes[min(self._nodes)]


class PinsFirstHost(Mutant):
    """Chooses the host itself, always the cluster's first, whatever its state."""

    targets = ("SPAWN-02",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        assert self._nodes is not None
        node = self._nodes.get(nodename)
        if node is None:
            raise NodeNotFound(nodename)
        host = vim.HostSystem(node.host_refs[0], node.cluster._stub)
        _create_and_power_on(self, instance, node, host=host)


class AppliesConfigAtRefresh(Mutant):
    """Takes a new configuration only at the next refresh, so a spawn before it may use a removed node."""

    targets = ("SPAWN-03",)

    def reconfigure(self, config: DriverConfig) -> None:
        self._pending = config

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        pending = self.__dict__.pop("_pending", None)
        if pending is not None:
            self.config = pending
        return super().get_available_nodes(refresh)


class LeavesVmOnFailure(Mutant):
    """Does not remove the VM when powering it on fails."""

    targets = ("SPAWN-04",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        assert self._nodes is not None
        if nodename not in self._nodes:
            raise NodeNotFound(nodename)
        _create_and_power_on(self, instance, self._nodes[nodename], clean_up=False)


class RacySpawn(Mutant):
    """Keeps the spawn's target node on the driver object, where concurrent spawns overwrite it."""

    targets = ("SPAWN-05",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        self._target = nodename
        time.sleep(0.3)  # the window a real driver has while it, say, looks up an image
        super().spawn(instance, self._target)


class DestroyMissingRaises(Mutant):
    """Raises when asked to destroy an instance that has no VM (Nova requires success)."""

    targets = ("SPAWN-06",)

    def destroy(self, instance: Instance) -> None:
        if instance.uuid not in self.list_instances():
            raise InstanceNotFound(instance.uuid)
        super().destroy(instance)


# -- CHURN -----------------------------------------------------------------------------------------------

class IgnoresReconfigure(Mutant):
    """Reads the cluster list once at start-up, so configuration changes never reach the node set."""

    targets = ("CHURN-01", "CHURN-02")

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(config)
        self._startup_clusters = config.clusters

    def _managed_clusters(self) -> tuple[str, ...]:
        return self._startup_clusters


class FreezesNodeSet(Mutant):
    """Never adds a node after the first refresh, even for a configured cluster that appears later."""

    targets = ("CHURN-03",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        first = self.__dict__.setdefault("_first_nodes", set(nodes))
        return [n for n in nodes if n in first]


class DestroysUnmanagedInstances(Mutant):
    """Cleans up the instances of clusters that leave its configuration (they belong to another service)."""

    targets = ("CHURN-05",)

    def reconfigure(self, config: DriverConfig) -> None:
        assert self._nodes is not None
        leaving = {n.name for n in self._nodes.values() if n.configured_as not in config.clusters}
        for uuid in self.list_instances():  # still listed: the old configuration applies until here
            instance = Instance(uuid=uuid, name=uuid)
            if self.get_info(instance).nodename in leaving:
                self.destroy(instance)
        super().reconfigure(config)


class NotificationsNeverFire(Mutant):
    """Declares update notifications but never reports a change."""

    targets = ("CHURN-06",)
    capabilities: ClassVar[Mapping[str, bool]] = {"update_notifications": True}

    def wait_for_changes(self, timeout: float) -> bool:
        time.sleep(min(timeout, 1.0))
        return False


# -- FAULT -----------------------------------------------------------------------------------------------

class NoRelogin(Mutant):
    """Never logs in again: once vCenter ends its session (expiry, restart) every call fails."""

    targets = ("FAULT-01", "FAULT-04", "NODE-03")

    def _relogin(self, seen: int) -> None:
        raise VCenterUnavailable("the vCenter session has ended")


class ServesLastGoodFigures(Mutant):
    """Answers from its last good snapshot when vCenter fails, as if the figures were fresh."""

    targets = ("FAULT-02",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        try:
            nodes = super().get_available_nodes(refresh)
        except VCenterUnavailable:
            return list(self.__dict__.get("_good_nodes", []))
        self._good_nodes = nodes
        self._good_resources = {n: super(ServesLastGoodFigures, self).get_available_resource(n) for n in nodes}
        return nodes

    def get_available_resource(self, nodename: str) -> Resources:
        try:
            return super().get_available_resource(nodename)
        except VCenterUnavailable:
            return self.__dict__.get("_good_resources", {}).get(nodename) or Resources(vcpus=0, memory_mb=0)


class ImpatientDriver(Mutant):
    """Gives up on any vCenter operation that takes longer than 200 ms (an over-tight client time-out)."""

    targets = ("FAULT-03",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        started = time.monotonic()
        nodes = super().get_available_nodes(refresh)
        if time.monotonic() - started > 0.2:
            raise VCenterUnavailable("timed out after 200 ms")
        return nodes


# -- SEC -------------------------------------------------------------------------------------------------

class VerifiesNothing(Mutant):
    """Turns TLS verification off whatever the configuration says."""

    targets = ("SEC-01",)

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(replace(config, insecure=True))


class IgnoresCaBundle(Mutant):
    """Verifies only against the system store, ignoring the configured CA bundle."""

    targets = ("SEC-02",)

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(replace(config, ca_file=None))


class LogsCredentials(Mutant):
    """Logs its login, password included, at debug level."""

    targets = ("SEC-03",)

    def __init__(self, config: DriverConfig) -> None:
        LOG.debug("logging in to %s as %s with password %s", config.url, config.username, config.password)
        super().__init__(config)


class RetriesLoginForever(Mutant):
    """Retries a refused login again and again (here six times) before giving up."""

    targets = ("SEC-04",)

    def __init__(self, config: DriverConfig) -> None:
        for _ in range(5):
            try:
                super().__init__(config)
                return
            except AuthenticationFailed:
                time.sleep(0.01)
        super().__init__(config)


# -- EFF -------------------------------------------------------------------------------------------------

class QueriesEachCluster(Mutant):
    """Reads each cluster with a query of its own (one round trip per cluster per refresh)."""

    targets = ("EFF-01",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        if refresh and self._nodes:
            for node in self._nodes.values():
                _ = node.cluster.summary  # a PropertyCollector round trip per cluster
        return nodes


class RefreshesOnEveryResourceCall(Mutant):
    """Refreshes before answering each node's figures ("always fresh"): one query per cluster per refresh."""

    targets = ("EFF-01",)

    def get_available_resource(self, nodename: str) -> Resources:
        self.get_available_nodes(refresh=True)
        return super().get_available_resource(nodename)


# -- mutants of the coverage matrix: each one's mistake shows only in the state a check puts it in -----------

class OneNodePerEntry(Peeks):
    """Reports one node per configuration entry, so a cluster named by path and by moref is two nodes."""

    targets = ("NODE-01",)
    proves = ("test_a_cluster_named_twice_is_one_node",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        inv = self._oracle().inventory()
        entries = [inv.cluster(e) for e in self.config.clusters]
        return [n for n in (node_name(c.moref, inv.vcenter_uuid) for c in entries if c) if n in nodes]


class PoolsAsTheirCluster(Peeks):
    """Takes a resource pool named in the configuration for the cluster that owns it."""

    targets = ("NODE-02",)
    proves = ("test_standalone_hosts_and_pools_are_never_nodes",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = set(super().get_available_nodes(refresh))
        inv = self._oracle().inventory()
        for entry in self.config.clusters:
            path = inv.pools.get(entry) or next((p for p in inv.pools.values() if p == "/" + entry.strip("/")), None)
            owner = next((c for c in inv.clusters.values() if path and path.startswith(c.path + "/Resources")), None)
            if owner is not None:
                nodes.add(node_name(owner.moref, inv.vcenter_uuid))
        return sorted(nodes)


class ResolvesByClusterNameOnly(Peeks):
    """Resolves a configured path by its last name, the first cluster of that name in any datacenter."""

    targets = ("NODE-04",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        super().get_available_nodes(refresh)
        inv = self._oracle().inventory()
        by_name: dict[str, ClusterFacts] = {}
        for c in sorted(inv.clusters.values(), key=lambda c: c.moref):
            by_name.setdefault(c.name, c)
        found = [inv.clusters.get(e) or by_name.get(e.rstrip("/").rsplit("/", 1)[-1]) for e in self.config.clusters]
        return sorted({node_name(c.moref, inv.vcenter_uuid) for c in found if c})


class SharedNodeCache(Mutant):
    """Keeps the nodes it has seen in a cache shared by every driver instance of the process."""

    targets = ("NODE-06",)
    _seen: ClassVar[set[str]] = set()

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        SharedNodeCache._seen.update(super().get_available_nodes(refresh))
        return sorted(SharedNodeCache._seen)


class RoundsMemoryToGiB(Mutant):
    """Reports memory_mb in whole GiB (as if hosts only came in GiB): right only for GiB-sized hosts (the
    hosts vCenter adds for RES-03 are not: vcsim's template has 4 GiB less 512 KiB)."""

    targets = ("RES-01", "RES-03")
    proves = ("test_node_figures_on_the_heterogeneous_topology", "test_figures_follow_host_changes")

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        res["memory_mb"] = res["memory_mb"] // 1024 * 1024
        if "inventory" in res:
            res["inventory"]["MEMORY_MB"]["total"] = res["memory_mb"]
        return res


class RoundsEachHostMemoryUp(Peeks):
    """Rounds each host's memory up to whole MiB before summing: it offers up to 1 MiB per host whose memory
    is not whole MiB that no VM can have (flooring each host, as Nova does, is right; see
    conformance.oracle.figure_mismatch)."""

    targets = ("RES-01", "RES-03")
    proves = ("test_node_figures_on_the_heterogeneous_topology", "test_figures_follow_host_changes")

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        res["memory_mb"] = sum(-(-h.memory_bytes // MIB) for h in cluster.hosts if h.schedulable)
        if "inventory" in res:
            res["inventory"]["MEMORY_MB"]["total"] = res["memory_mb"]
        return res


class MaxUnitOverAllHosts(Peeks):
    """Takes VCPU and MEMORY_MB max_unit from the cluster's largest host, schedulable or not."""

    targets = ("RES-06",)
    proves = ("test_placement_inventory_on_the_heterogeneous_topology",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        if cluster.hosts and "inventory" in res:
            res["inventory"]["VCPU"]["max_unit"] = max(h.threads for h in cluster.hosts)
            res["inventory"]["MEMORY_MB"]["max_unit"] = max(h.memory_bytes // MIB for h in cluster.hosts)
        return res


class MaxUnitOverAllDatastores(Peeks):
    """Takes DISK_GB max_unit from the most free space on any datastore of the cluster, usable or not."""

    targets = ("RES-06",)
    proves = ("test_placement_inventory_on_the_heterogeneous_topology",
              "test_placement_inventory_without_usable_datastore")

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        if cluster.datastores and "inventory" in res:
            res["inventory"]["DISK_GB"]["max_unit"] = max(d.free // GIB for d in cluster.datastores)
        return res


class CountsUnusableDatastores(Peeks):
    """Counts every datastore the cluster mounts, accessible or not, in maintenance or not."""

    targets = ("RES-02", "RES-03")
    proves = ("test_disk_figures_on_the_heterogeneous_topology", "test_disk_figures_follow_datastore_state_changes")

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        pattern = self.config.datastore_regex
        return self._disk(res, [d for d in cluster.datastores if pattern is None or re.fullmatch(pattern, d.name)])


class OnlyInMaintenanceIsUnusable(Peeks):
    """Leaves out datastores in maintenance mode but counts those still entering it."""

    targets = ("RES-02",)
    proves = ("test_disk_figures_on_the_heterogeneous_topology",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        return self._disk(res, [d for d in cluster.datastores if self._usable(replace(d, maintenance="normal"))
                                and d.maintenance != "inMaintenance"])


class IgnoresDatastoreRegex(Peeks):
    """Counts every usable datastore, whatever datastore_regex says."""

    targets = ("RES-02",)
    proves = ("test_disk_figures_follow_the_datastore_filter",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        return self._disk(res, [d for d in cluster.datastores if d.usable])


class MatchesDatastoreRegexAsPrefix(Peeks):
    """Matches datastore_regex with re.match (as Nova does): 'nfs' also takes 'nfs-old'."""

    targets = ("RES-02",)
    proves = ("test_disk_figures_follow_the_datastore_filter",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        pattern = self.config.datastore_regex
        return self._disk(res, [d for d in cluster.datastores
                                if d.usable and (pattern is None or re.match(pattern, d.name))])


class UsableDatastoresFromFirstLook(Peeks):
    """Decides once, the first time it sees a datastore, whether it is usable, and never again."""

    targets = ("RES-03",)
    proves = ("test_disk_figures_follow_datastore_state_changes",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        seen: dict[str, bool] = self.__dict__.setdefault("_first_look", {})
        for d in cluster.datastores:
            seen.setdefault(d.moref, self._usable(d))
        return self._disk(res, [d for d in cluster.datastores if seen[d.moref]])


class ParsesMorefFromNodeName(Mutant):
    """Finds a node by the cluster moref in its name, whatever vCenter uuid follows it."""

    targets = ("RES-04",)
    proves = ("test_unknown_node_raises_node_not_found",)

    def get_available_resource(self, nodename: str) -> Resources:
        try:
            return super().get_available_resource(nodename)
        except NodeNotFound:
            moref = nodename.split(".")[0]
            same = [n for n in self.get_available_nodes() if n.split(".")[0] == moref]
            if not same:
                raise
            return super().get_available_resource(same[0])


class UsedMemoryOfEveryHost(Peeks):
    """Sums memory in use over every host of the cluster, schedulable or not."""

    targets = ("RES-05",)
    proves = ("test_used_memory_leaves_out_hosts_that_are_not_schedulable",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        _, cluster = self._cluster(nodename)
        res["memory_mb_used"] = sum(h.memory_used_mb for h in cluster.hosts)
        return res


class FirstChildPool(Peeks):
    """Without a configured resource_pool, spawns into the cluster's first child pool, if it has one."""

    targets = ("SPAWN-01",)
    proves = ("test_vm_lands_in_the_nodes_cluster",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        pool = self.config.resource_pool
        if pool is None and nodename in self.get_available_nodes():
            inv, cluster = self._cluster(nodename)
            root = cluster.path + "/Resources/"
            pool = min((p[len(root):] for p in inv.pools.values() if p.startswith(root) and "/" not in p[len(root):]),
                       default=None)
        _with_config(self, replace(self.config, resource_pool=pool), super().spawn, instance, nodename)


_CONFIG_SWAP = threading.Lock()


def _with_config(driver: Mutant, config: DriverConfig, call: Callable[..., Any], *args: Any) -> Any:
    """Run one call with another configuration (a mutant's wrong reading of its own); one at a time, so
    concurrent spawns never see each other's."""
    with _CONFIG_SWAP:
        kept = driver.config
        driver.config = config
        try:
            return call(*args)
        finally:
            driver.config = kept


class IgnoresResourcePool(Mutant):
    """Spawns into the cluster's root pool whatever resource_pool says (where the pool is missing too)."""

    targets = ("SPAWN-01", "SPAWN-04")
    proves = ("test_vm_goes_into_the_configured_pool", "test_spawn_without_the_configured_pool_fails_cleanly")

    def spawn(self, instance: Instance, nodename: str) -> None:
        _with_config(self, replace(self.config, resource_pool=None), super().spawn, instance, nodename)


class PoolByLeafName(Mutant):
    """Looks the configured pool up by its last name only: tenants/nova becomes the pool nova."""

    targets = ("SPAWN-01",)
    proves = ("test_vm_goes_into_the_configured_pool",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        pool = self.config.resource_pool
        leaf = pool.strip("/").rsplit("/", 1)[-1] if pool else None
        _with_config(self, replace(self.config, resource_pool=leaf), super().spawn, instance, nodename)


class MostFreeHostIgnoringMaintenance(Peeks):
    """Places on the connected host with the most free memory, in maintenance mode or not."""

    targets = ("SPAWN-02",)
    proves = ("test_never_on_a_host_in_maintenance_or_not_connected",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        self._spawn_on(instance, nodename, lambda h: h.connection_state == "connected", self._usable)


class MostFreeHostIgnoringConnection(Peeks):
    """Places on the host outside maintenance mode with the most free memory, connected or not."""

    targets = ("SPAWN-02",)
    proves = ("test_never_on_a_host_in_maintenance_or_not_connected",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        self._spawn_on(instance, nodename, lambda h: not h.maintenance, self._usable)


class PlacesOnMostFreeDatastore(Peeks):
    """Places on the datastore with the most free space, accessible or not, in maintenance or not."""

    targets = ("SPAWN-02",)
    proves = ("test_never_on_an_unusable_or_filtered_datastore",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        pattern = self.config.datastore_regex
        self._spawn_on(instance, nodename, lambda h: h.schedulable,
                       lambda d: pattern is None or re.fullmatch(pattern, d.name) is not None)


class PlacesOnFilteredDatastore(Peeks):
    """Applies datastore_regex to the figures but not to placement."""

    targets = ("SPAWN-02",)
    proves = ("test_never_on_an_unusable_or_filtered_datastore",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        self._spawn_on(instance, nodename, lambda h: h.schedulable, lambda d: d.usable)


class SpawnsOnAnyExistingCluster(Peeks):
    """Trusts the scheduler: a node name that is not one of its nodes but names a cluster of this vCenter
    is spawned on anyway."""

    targets = ("SPAWN-03",)
    proves = ("test_unknown_or_removed_node_creates_nothing",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        if nodename in self.get_available_nodes():
            super().spawn(instance, nodename)
            return
        inv = self._oracle().inventory()
        moref, _, uuid = nodename.partition(".")
        cluster = inv.clusters.get(moref)
        if cluster is None or uuid != inv.vcenter_uuid:
            raise NodeNotFound(nodename)
        ds = max((d for d in cluster.datastores if d.usable), key=lambda d: d.free)
        self._oracle().create_vm(cluster, instance.uuid, instance.uuid, ds.name, memory_mb=instance.memory_mb)


class FallsBackToRootPool(Peeks):
    """Spawns into the root pool when the configured resource pool is missing in the node's cluster."""

    targets = ("SPAWN-04",)
    proves = ("test_spawn_without_the_configured_pool_fails_cleanly",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        try:
            super().spawn(instance, nodename)
        except SpawnFailed:
            pool = self.config.resource_pool
            if pool is None:
                raise
            inv, cluster = self._cluster(nodename)
            if f"{cluster.path}/Resources/{pool.strip('/')}" in inv.pools.values():
                raise
            _with_config(self, replace(self.config, resource_pool=None), super().spawn, instance, nodename)


class RacyInstance(Mutant):
    """Keeps the instance being spawned on the driver object, where concurrent spawns overwrite it."""

    targets = ("SPAWN-05",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        self._building = instance
        time.sleep(0.3)  # the window a real driver has while it, say, looks up an image
        super().spawn(self._building, nodename)


class AlwaysRunning(Mutant):
    """Reports every instance it finds as running, whatever its VM's power state."""

    targets = ("SPAWN-06",)
    proves = ("test_instance_is_found_again_by_uuid",)

    def get_info(self, instance: Instance) -> InstanceInfo:
        return replace(super().get_info(instance), state="running")


class ResolvesPathsAtStartup(Peeks):
    """Resolves configured paths to clusters once, at start-up: a cluster created later is never found."""

    targets = ("CHURN-01", "CHURN-03")

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        known: dict[str, str] | None = self.__dict__.get("_startup")
        if known is None:
            inv = self._oracle().inventory()
            known = self._startup = {**{c.path: c.moref for c in inv.clusters.values()},
                                     **{c.moref: c.moref for c in inv.clusters.values()}}
        uuid = self._oracle().vcenter_uuid
        resolved = {node_name(m, uuid) for e in self.config.clusters
                    if (m := known.get(e) or known.get("/" + e.strip("/")))}
        return [n for n in nodes if n in resolved]


class ReconfigureAddsOnly(Mutant):
    """Merges a new cluster list into the old one: clusters are added, never removed."""

    targets = ("CHURN-02",)

    def reconfigure(self, config: DriverConfig) -> None:
        merged = tuple(dict.fromkeys((*self.config.clusters, *config.clusters)))
        super().reconfigure(replace(config, clusters=merged))


class RemembersSpawnNode(Mutant):
    """Answers get_info with the node it spawned an instance on, as long as that node exists."""

    targets = ("CHURN-04",)
    proves = ("test_instances_follow_their_host_to_another_cluster",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        super().spawn(instance, nodename)
        self.__dict__.setdefault("_spawned_on", {})[instance.uuid] = nodename

    def get_info(self, instance: Instance) -> InstanceInfo:
        info = super().get_info(instance)
        node = self.__dict__.get("_spawned_on", {}).get(instance.uuid)
        return replace(info, nodename=node) if node in self.get_available_nodes() else info


class ListsEveryVm(Peeks):
    """Lists the instance uuid of every VM of vCenter, in its clusters or not."""

    targets = ("CHURN-05",)

    def list_instances(self) -> list[str]:
        return sorted({vm.instance_uuid for vm in self._oracle().vms()})


class InfoForAnyVm(Peeks):
    """Reports state and node of an instance's VM wherever it is, in its clusters or not."""

    targets = ("CHURN-05",)

    def get_info(self, instance: Instance) -> InstanceInfo:
        for vm in self._oracle().find_vms(instance.uuid):
            state = {"poweredOn": "running", "poweredOff": "shutdown"}.get(vm.power_state, "nostate")
            return InstanceInfo(state=state, nodename=node_name(vm.pool_owner, self._oracle().vcenter_uuid))
        raise InstanceNotFound(instance.uuid)


class DestroysAnyVm(Peeks):
    """Destroys every VM carrying the instance's uuid, in its clusters or not."""

    targets = ("CHURN-05",)
    proves = ("test_giving_a_cluster_away_keeps_its_instances",)

    def destroy(self, instance: Instance) -> None:
        for vm in self._oracle().find_vms(instance.uuid):
            self._oracle().destroy(vm.moref, vim.VirtualMachine)


class InstanceScopeFromFirstRefresh(Peeks):
    """Takes as its own the instances of every cluster it managed at its first refresh, and still does
    after a cluster left its configuration."""

    targets = ("CHURN-05",)
    proves = ("test_giving_a_cluster_away_keeps_its_instances",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        self.__dict__.setdefault("_first_scope", set(nodes))
        return nodes

    def _scope(self) -> set[str]:
        return set(self.__dict__.get("_first_scope", set())) | set(self.get_available_nodes())

    def list_instances(self) -> list[str]:
        uuid = self._oracle().vcenter_uuid
        return sorted({vm.instance_uuid for vm in self._oracle().vms()
                       if node_name(vm.pool_owner, uuid) in self._scope()})

    def get_info(self, instance: Instance) -> InstanceInfo:
        uuid = self._oracle().vcenter_uuid
        for vm in self._oracle().find_vms(instance.uuid):
            if node_name(vm.pool_owner, uuid) in self._scope():
                state = {"poweredOn": "running", "poweredOff": "shutdown"}.get(vm.power_state, "nostate")
                return InstanceInfo(state=state, nodename=node_name(vm.pool_owner, uuid))
        raise InstanceNotFound(instance.uuid)


class WakesOnAnyChange(Peeks):
    """Returns from wait_for_changes on any change vCenter reports, in its clusters or elsewhere."""

    targets = ("CHURN-06",)
    proves = ("test_wait_for_changes_stays_asleep_on_unmanaged_changes",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        nodes = super().get_available_nodes(refresh)
        if refresh or "_reported" not in self.__dict__:  # what the caller was told at its last refresh
            self._reported = {n: super(WakesOnAnyChange, self).get_available_resource(n) for n in nodes}
        return nodes

    def _figures(self) -> dict[str, Resources]:
        self.get_available_nodes()
        return dict(self._reported)

    def wait_for_changes(self, timeout: float) -> bool:
        before = self._figures()
        content = self._oracle().content
        pc_type = vmodl.query.PropertyCollector
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem, vim.ComputeResource],
                                                       True)
        pc = content.propertyCollector.CreatePropertyCollector()
        try:
            pc.CreateFilter(pc_type.FilterSpec(
                objectSet=[pc_type.ObjectSpec(obj=view, skip=True, selectSet=[pc_type.TraversalSpec(
                    name="v", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[pc_type.PropertySpec(type=vim.HostSystem, pathSet=["runtime.connectionState"]),
                         pc_type.PropertySpec(type=vim.ComputeResource, pathSet=["host"])]), partialUpdates=True)
            update = pc.WaitForUpdatesEx("", pc_type.WaitOptions(maxWaitSeconds=0))
            while update is not None and update.truncated:
                update = pc.WaitForUpdatesEx(update.version, pc_type.WaitOptions(maxWaitSeconds=0))
            version = update.version if update is not None else ""
            self.get_available_nodes(refresh=True)  # what changed before the watch existed
            if self._reported != before:
                return True
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                wait = max(1, math.ceil(deadline - time.monotonic()))
                if pc.WaitForUpdatesEx(version, pc_type.WaitOptions(maxWaitSeconds=wait)) is not None:
                    self.get_available_nodes(refresh=True)
                    return True
            return False
        finally:
            pc.DestroyPropertyCollector()
            view.DestroyView()


class ReloginOnlyOnce(Mutant):
    """Logs in again after its session ended the first time; the second time, it gives up."""

    targets = ("FAULT-01",)
    proves = ("test_expired_session_is_replaced",)

    def _relogin(self, seen: int) -> None:
        if self.__dict__.get("_logged_in_again"):
            raise VCenterUnavailable("the vCenter session has ended again")
        self._logged_in_again = True
        super()._relogin(seen)


class KeepsFiguresAcrossRelogin(Mutant):
    """After a new login, answers with the figures it had before ("a new session changes no inventory")."""

    targets = ("FAULT-04",)
    proves = ("test_driver_recovers_from_a_vcenter_restart",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        held: dict[str, Resources] = self.__dict__.setdefault("_held", {})
        if self.__dict__.get("_logged_in_again"):
            return held.get(nodename, res)
        held[nodename] = res
        return res

    def _relogin(self, seen: int) -> None:
        super()._relogin(seen)
        self._logged_in_again = True


class RawErrorWhenUnreachable(Mutant):
    """Lets the socket error out when vCenter cannot be reached, instead of VCenterUnavailable."""

    targets = ("FAULT-02",)
    proves = ("test_unreachable_vcenter_is_vcenter_unavailable",)

    def __init__(self, config: DriverConfig) -> None:
        try:
            super().__init__(config)
        except VCenterUnavailable:
            u = urllib.parse.urlsplit(config.url)
            with socket.create_connection((str(u.hostname), u.port or 443), timeout=10):
                pass  # reachable: the reference's error stands
            raise


class ImpatientSpawn(Mutant):
    """Gives a spawn one second, then removes the VM and fails it (an over-tight build time-out)."""

    targets = ("FAULT-03",)
    proves = ("test_latency_is_tolerated",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        started = time.monotonic()
        super().spawn(instance, nodename)
        if time.monotonic() - started > 1.0:
            self.destroy(instance)
            raise SpawnFailed(f"spawn of {instance.uuid} timed out after 1 s")


class SkipsHostNameCheck(Mutant):
    """Verifies vCenter's certificate chain but not that it was issued to vCenter's host name."""

    targets = ("SEC-01",)
    proves = ("test_certificate_for_another_host_name_is_refused",)

    def __init__(self, config: DriverConfig) -> None:
        def lax(original: Callable[..., ssl.SSLContext], kwargs: dict[str, Any]) -> ssl.SSLContext:
            context = original(**kwargs)
            context.check_hostname = False
            return context
        with _tls_contexts(lax):
            super().__init__(config)


class AlwaysVerifies(Mutant):
    """Ignores insecure=True: a vCenter with a self-signed certificate cannot be used without its CA."""

    targets = ("SEC-01",)
    proves = ("test_insecure_accepts_a_certificate_without_a_ca_bundle",)

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(replace(config, insecure=False))


class CaBundleAsDirectory(Mutant):
    """Hands ca_file to OpenSSL as a CA directory (its folder), where the bundle is never looked up."""

    targets = ("SEC-02",)

    def __init__(self, config: DriverConfig) -> None:
        def as_directory(original: Callable[..., ssl.SSLContext], kwargs: dict[str, Any]) -> ssl.SSLContext:
            cafile = kwargs.pop("cafile", None)
            return original(**kwargs, capath=os.path.dirname(cafile)) if cafile else original(**kwargs)
        with _tls_contexts(as_directory):
            super().__init__(config)


class AuthFailureAsUnavailable(Mutant):
    """Reports refused credentials as vCenter being unavailable (so the operator looks in the wrong place)."""

    targets = ("SEC-04",)
    proves = ("test_wrong_credentials_fail_after_bounded_attempts",)

    def __init__(self, config: DriverConfig) -> None:
        try:
            super().__init__(config)
        except AuthenticationFailed as e:
            raise VCenterUnavailable(str(e)) from None


class LogsPasswordOnRelogin(Mutant):
    """Logs the password when it logs in again after its session ended (a debug line left in)."""

    targets = ("SEC-03",)
    runs = ("FAULT-01", "FAULT-04", "NODE-03")
    proves = ("test_expired_session_is_replaced::credential-scan",
              "test_driver_recovers_from_a_vcenter_restart::credential-scan",
              "test_names_survive_a_vcenter_restart::credential-scan")

    def _relogin(self, seen: int) -> None:
        LOG.debug("session ended; logging in again as %s/%s", self.config.username, self.config.password)
        super()._relogin(seen)


class PasswordInSpawnErrors(Mutant):
    """Puts its connection settings, password included, into the error of a failed spawn."""

    targets = ("SEC-03",)
    runs = ("SPAWN-04",)
    proves = ("test_failed_spawn_leaves_no_vm::credential-scan",
              "test_spawn_without_the_configured_pool_fails_cleanly::credential-scan")

    def spawn(self, instance: Instance, nodename: str) -> None:
        try:
            super().spawn(instance, nodename)
        except SpawnFailed as e:
            settings = {k: v for k, v in vars(self.config).items() if k != "clusters"}
            raise SpawnFailed(f"{e} (settings {settings})") from None


class LogsConfigOnReconfigure(Mutant):
    """Logs every field of a new configuration, the password too (the dataclass repr hides it; vars does not)."""

    targets = ("SEC-03",)
    runs = ("CHURN-01", "CHURN-02", "CHURN-05", "SPAWN-03")
    proves = ("test_added_cluster_appears_after_refresh::credential-scan",
              "test_removed_cluster_disappears_after_refresh::credential-scan",
              "test_giving_a_cluster_away_keeps_its_instances::credential-scan",
              "test_unknown_or_removed_node_creates_nothing::credential-scan")

    def reconfigure(self, config: DriverConfig) -> None:
        LOG.info("new configuration: %s", vars(config))
        super().reconfigure(config)


class ReadsWholeHostSummaries(Mutant):
    """Reads each host's whole summary at every refresh, where the figures need five of its leaves."""

    targets = ("EFF-02",)
    host_properties = (*ReferenceDriver.host_properties, "summary")


# -- issue 13: requirements Nova's driver made precise (RES-06, FAULT-05, NODE-03) ------------------------

class DiskMaxUnitFromCapacity(Mutant):
    """Takes DISK_GB's max_unit from the largest datastore capacity, not the most free space on one."""

    targets = ("RES-06",)
    proves = ("test_placement_inventory_matches", "test_placement_inventory_on_the_heterogeneous_topology")

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        stores = self._usable_datastores(self._node(nodename))
        res["inventory"]["DISK_GB"]["max_unit"] = max((d.capacity // (1 << 30) for d in stores), default=0)
        return res


class InventoryNeedsADatastore(Mutant):
    """Computes DISK_GB's max_unit as max() over the usable datastores, and fails for a cluster with none
    (as Nova's update_provider_tree does)."""

    targets = ("RES-06",)
    proves = ("test_placement_inventory_without_usable_datastore",
              "test_placement_inventory_on_the_heterogeneous_topology")

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        res["inventory"]["DISK_GB"]["max_unit"] = max(d.freeSpace // (1 << 30)
                                                      for d in self._usable_datastores(self._node(nodename)))
        return res


class IgnoresMorefClusters(Mutant):
    """Understands clusters configured by inventory path only; a moref names no cluster."""

    targets = ("NODE-03",)
    proves = ("test_names_survive_a_driver_restart_and_a_cluster_rename",)

    def _managed_clusters(self) -> tuple[str, ...]:
        return tuple(c for c in self.config.clusters if "/" in c)


class StaleFiguresOnConnectionErrors(Mutant):
    """When vCenter's connection fails, keeps answering with the figures it read last (as Nova's VCState
    does on VimConnectionException); a vSphere fault is still raised."""

    targets = ("FAULT-05",)
    proves = ("test_connection_errors_never_give_old_figures", "test_a_silent_vcenter_is_reported_in_bounded_time")

    def _call(self, doing: str, fn: Any, *, idempotent: bool = True) -> Any:
        def watched() -> Any:
            try:
                return fn()
            except (OSError, http.client.HTTPException):
                self._connection_failed = True
                raise
        return super()._call(doing, watched, idempotent=idempotent)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        self._connection_failed = False
        try:
            nodes = super().get_available_nodes(refresh)
        except VCenterUnavailable:
            if not self._connection_failed:
                raise
            return list(self.__dict__.get("_good_nodes", []))
        self._good_nodes = nodes
        self._good = {n: super(StaleFiguresOnConnectionErrors, self).get_available_resource(n) for n in nodes}
        return nodes

    def get_available_resource(self, nodename: str) -> Resources:
        try:
            return super().get_available_resource(nodename)
        except VCenterUnavailable:
            if not self.__dict__.get("_connection_failed") or nodename not in self.__dict__.get("_good", {}):
                raise
            return self._good[nodename]


class WaitsForeverForAnswers(Mutant):
    """Ignores vcenter_timeout_s and sets no socket timeout (as Nova does): a vCenter that accepts a call and
    never answers holds the driver for ever."""

    targets = ("FAULT-05",)
    proves = ("test_a_silent_vcenter_is_reported_in_bounded_time",)

    def _socket_timeout(self) -> float | None:
        return None


class RetriesUnreachableForever(Mutant):
    """Retries the first connection until vCenter answers (as oslo.vmware's login does on connection
    errors)."""

    targets = ("FAULT-05",)
    proves = ("test_an_unreachable_vcenter_at_start_is_reported",)

    def __init__(self, config: DriverConfig) -> None:
        while True:
            try:
                super().__init__(config)
                return
            except VCenterUnavailable:
                time.sleep(1)


class RefreshesBeforeEachSpawn(Mutant):
    """Takes a full refresh before every spawn ("place on fresh figures"): each spawn costs a refresh."""

    targets = ("EFF-02",)

    def spawn(self, instance: Instance, nodename: str) -> None:
        self.get_available_nodes(refresh=True)
        super().spawn(instance, nodename)


def _mutants(cls: type[Mutant]) -> Iterator[type[Mutant]]:
    for sub in cls.__subclasses__():
        if sub.targets:
            yield sub
        yield from _mutants(sub)


MUTANTS: dict[str, type[Mutant]] = {cls.__name__: cls for cls in _mutants(Mutant)}

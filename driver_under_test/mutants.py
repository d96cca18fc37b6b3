"""Deliberately broken variants of the reference driver: each one must be caught by the checks it targets.

``make selftest`` (part of ``make test``) runs the suite against every mutant here and fails unless each
is caught by the requirements in its ``targets``, so no check can silently stop being able to fail.
Each mutant changes one thing and stands for a mistake a real driver makes; most change the reference
through its small seams (``_managed_clusters``, ``_is_cluster``, ``_host_vcpus``, ``_placement``), the
rest only through the contract's public methods, so they keep working as the reference evolves.
"""

from __future__ import annotations

import http.client
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from pyVmomi import vim, vmodl

from conformance.contract import (
    AuthenticationFailed,
    DriverConfig,
    Instance,
    InstanceNotFound,
    NodeNotFound,
    Resources,
    VCenterUnavailable,
)
from driver_under_test.reference import Node, ReferenceDriver

__all__ = ["MUTANTS"]

LOG = logging.getLogger(__name__)


class Mutant(ReferenceDriver):
    #: The requirement ids whose checks must fail against this mutant.
    targets: ClassVar[tuple[str, ...]] = ()


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


class ReadsWholeHostSummaries(Mutant):
    """Reads each host's whole summary at every refresh, where the figures need five of its leaves."""

    targets = ("EFF-02",)
    host_properties = (*ReferenceDriver.host_properties, "summary")


# -- issue 13: requirements Nova's driver made precise (RES-06, RES-07, FAULT-02, FAULT-05, NODE-03) ---------

class DiskMaxUnitFromCapacity(Mutant):
    """Takes DISK_GB's max_unit from the largest datastore capacity, not the most free space on one."""

    targets = ("RES-06",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        stores = self._usable_datastores(self._node(nodename))
        res["inventory"]["DISK_GB"]["max_unit"] = max((d.capacity // (1 << 30) for d in stores), default=0)
        return res


class InventoryNeedsADatastore(Mutant):
    """Computes DISK_GB's max_unit as max() over the usable datastores, and fails for a cluster with none
    (as Nova's update_provider_tree does)."""

    targets = ("RES-06",)

    def get_available_resource(self, nodename: str) -> Resources:
        res = super().get_available_resource(nodename)
        res["inventory"]["DISK_GB"]["max_unit"] = max(d.freeSpace // (1 << 30)
                                                      for d in self._usable_datastores(self._node(nodename)))
        return res


class PrefixDatastoreRegex(Mutant):
    """Matches datastore_regex at the start of a name (re.match, as Nova does), not the whole name."""

    targets = ("RES-07",)

    def _usable_datastores(self, node: Node) -> list[Any]:
        pattern = self.config.datastore_regex
        return [d for d in node.datastores
                if d.accessible and d.maintenanceMode in (None, "normal")
                and (pattern is None or re.match(pattern, d.name))]


class IgnoresMorefClusters(Mutant):
    """Understands clusters configured by inventory path only; a moref names no cluster."""

    targets = ("NODE-03",)

    def _managed_clusters(self) -> tuple[str, ...]:
        return tuple(c for c in self.config.clusters if "/" in c)


class StaleFiguresOnConnectionErrors(Mutant):
    """When vCenter's connection fails, keeps answering with the figures it read last (as Nova's VCState
    does on VimConnectionException); a vSphere fault is still raised."""

    targets = ("FAULT-05",)

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

    def _socket_timeout(self) -> float | None:
        return None


class RetriesUnreachableForever(Mutant):
    """Retries the first connection until vCenter answers (as oslo.vmware's login does on connection
    errors)."""

    targets = ("FAULT-05",)

    def __init__(self, config: DriverConfig) -> None:
        while True:
            try:
                super().__init__(config)
                return
            except VCenterUnavailable:
                time.sleep(1)


MUTANTS: dict[str, type[Mutant]] = {cls.__name__: cls for cls in Mutant.__subclasses__()}

"""The oracle: reads vCenter's inventory on its own (never through the driver) and says what is expected.

Expected values in every check come from here. The oracle also performs the vCenter-side changes that
checks need (creating a cluster, adding a host), so a check never relies on the driver to set up its own
examination. Its reads are bulk PropertyCollector queries, so it is as cheap on a large inventory as on a
small one.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from conformance.contract import node_name

__all__ = ["ClusterFacts", "HostFacts", "Inventory", "Oracle", "OracleError", "VmFacts"]

MIB = 1024 * 1024
GIB = 1024 * MIB


class OracleError(RuntimeError):
    """The oracle could not read or change vCenter; the message is one line."""


@dataclass(frozen=True)
class HostFacts:
    moref: str
    name: str
    parent: str  # moref of the ClusterComputeResource or (standalone) ComputeResource
    parent_path: str  # inventory path of that parent
    threads: int
    memory_bytes: int
    connection_state: str
    maintenance: bool
    datastores: tuple[str, ...]

    @property
    def schedulable(self) -> bool:
        """Connected and not in maintenance mode: the hosts whose capacity a node reports."""
        return self.connection_state == "connected" and not self.maintenance


@dataclass(frozen=True)
class ClusterFacts:
    moref: str
    name: str
    path: str  # inventory path, e.g. /DC0/host/DC0_C0
    datacenter: str  # moref
    resource_pool: str  # moref of the root pool
    hosts: tuple[HostFacts, ...]


@dataclass(frozen=True)
class VmFacts:
    moref: str
    name: str
    instance_uuid: str
    power_state: str
    resource_pool: str
    pool_owner: str  # moref of the compute resource that owns the VM's pool
    host: str
    host_parent: str  # moref of the host's cluster (or standalone compute resource)
    datastores: tuple[str, ...]


@dataclass
class Inventory:
    """One consistent snapshot of the parts of the inventory the checks compare against."""

    vcenter_uuid: str
    clusters: dict[str, ClusterFacts] = field(default_factory=dict)  # by moref
    standalone_hosts: dict[str, HostFacts] = field(default_factory=dict)  # by moref
    datastores: dict[str, str] = field(default_factory=dict)  # moref -> name

    def cluster(self, ref: str) -> ClusterFacts | None:
        """The cluster a configuration entry names: a moref or an inventory path."""
        if ref in self.clusters:
            return self.clusters[ref]
        want = "/" + ref.strip("/")
        return next((c for c in self.clusters.values() if c.path == want), None)

    def expected_nodes(self, configured: Iterable[str]) -> dict[str, ClusterFacts]:
        """Node name -> cluster, for every configured cluster that exists (NODE-01)."""
        out = {}
        for ref in configured:
            c = self.cluster(ref)
            if c is not None:
                out[node_name(c.moref, self.vcenter_uuid)] = c
        return out

    @staticmethod
    def expected_resources(cluster: ClusterFacts) -> dict[str, int]:
        """What a node must report (RES-01): the sum over connected hosts not in maintenance mode of
        their hardware threads (vcpus) and memory (memory_mb, MiB)."""
        hosts = [h for h in cluster.hosts if h.schedulable]
        return {"vcpus": sum(h.threads for h in hosts),
                "memory_mb": sum(h.memory_bytes for h in hosts) // MIB}


def wait_for_task(task: Any, timeout: float = 60.0) -> Any:
    """The task's result once it succeeds; its fault raised if it fails.

    (pyVim.task.WaitForTask trips over vcsim's task names while a task is running.)
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise info.error
        if time.monotonic() > deadline:
            raise OracleError(f"oracle: task {task._moId} still {info.state} after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _props(obj: Any) -> dict[str, Any]:
    return {p.name: p.val for p in obj.propSet}


class Oracle:
    """An independent pyvmomi session to vCenter (its own login, its own queries)."""

    def __init__(self, host: str, port: int, username: str, password: str, ca_file: str | None) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        try:
            self.si = SmartConnect(host=host, port=port, user=username, pwd=password, sslContext=context,
                                   connectionPoolTimeout=-1)
        except vim.fault.InvalidLogin:
            raise OracleError(f"oracle: vCenter at {host}:{port} refused the credentials") from None
        except (OSError, ssl.SSLError) as e:
            raise OracleError(f"oracle: cannot reach vCenter at {host}:{port}: {e}") from None
        self.content = self.si.RetrieveContent()
        self.vcenter_uuid: str = self.content.about.instanceUuid

    def close(self) -> None:
        with contextlib.suppress(Exception):
            Disconnect(self.si)

    # -- reads -----------------------------------------------------------------------------------------

    def _retrieve(self, types: Sequence[type], props: dict[type, list[str]]) -> list[Any]:
        """All objects of the given types under the root folder, with the given properties, in one query."""
        content = self.content
        view = content.viewManager.CreateContainerView(content.rootFolder, list(types), True)
        try:
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view, skip=True,
                    selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                        name="view", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=t, pathSet=p) for t, p in props.items()])
            pc = content.propertyCollector
            result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
            objects = []
            while result is not None:
                objects.extend(result.objects)
                result = pc.ContinueRetrievePropertiesEx(result.token) if result.token else None
            return objects
        finally:
            view.DestroyView()

    def inventory(self) -> Inventory:
        """A fresh snapshot of datacenters, folders, clusters, hosts and datastores."""
        objs = self._retrieve(
            [vim.Datacenter, vim.Folder, vim.ComputeResource, vim.HostSystem, vim.Datastore],
            {vim.ManagedEntity: ["name", "parent"],
             vim.ClusterComputeResource: ["resourcePool"],
             vim.HostSystem: ["summary.hardware.numCpuThreads", "summary.hardware.memorySize",
                              "runtime.connectionState", "runtime.inMaintenanceMode", "datastore"]})
        by_ref = {o.obj._moId: (o.obj, _props(o)) for o in objs}

        def path(ref: str) -> tuple[str, str]:
            """(inventory path, datacenter moref) of an entity."""
            parts, dc = [], ""
            while ref in by_ref:
                obj, p = by_ref[ref]
                parts.append(p["name"])
                if isinstance(obj, vim.Datacenter):
                    dc = ref
                parent = p.get("parent")
                if parent is None or parent._moId == self.content.rootFolder._moId:
                    break
                ref = parent._moId
            return "/" + "/".join(reversed(parts)), dc

        inv = Inventory(self.vcenter_uuid)
        hosts: dict[str, list[HostFacts]] = {}
        for ref, (obj, p) in by_ref.items():
            if isinstance(obj, vim.HostSystem):
                parent = p["parent"]
                h = HostFacts(
                    moref=ref, name=p["name"], parent=parent._moId, parent_path=path(parent._moId)[0],
                    threads=int(p["summary.hardware.numCpuThreads"]),
                    memory_bytes=int(p["summary.hardware.memorySize"]),
                    connection_state=str(p["runtime.connectionState"]),
                    maintenance=bool(p["runtime.inMaintenanceMode"]),
                    datastores=tuple(d._moId for d in p.get("datastore", [])))
                if isinstance(parent, vim.ClusterComputeResource):
                    hosts.setdefault(h.parent, []).append(h)
                else:
                    inv.standalone_hosts[ref] = h
            elif isinstance(obj, vim.Datastore):
                inv.datastores[ref] = p["name"]
        for ref, (obj, p) in by_ref.items():
            if isinstance(obj, vim.ClusterComputeResource):
                cpath, dc = path(ref)
                inv.clusters[ref] = ClusterFacts(ref, p["name"], cpath, dc, p["resourcePool"]._moId,
                                                 tuple(sorted(hosts.get(ref, []), key=lambda h: h.name)))
        return inv

    def find_vms(self, instance_uuid: str) -> list[VmFacts]:
        """Every VM whose instanceUuid is the given uuid (a correct spawn makes exactly one)."""
        found = self.content.searchIndex.FindAllByUuid(uuid=instance_uuid, vmSearch=True, instanceUuid=True)
        out = []
        for vm in found:
            pool = vm.resourcePool
            host = vm.runtime.host
            out.append(VmFacts(
                moref=vm._moId, name=vm.name, instance_uuid=vm.config.instanceUuid,
                power_state=str(vm.runtime.powerState),
                resource_pool=pool._moId if pool else "", pool_owner=pool.owner._moId if pool else "",
                host=host._moId if host else "", host_parent=host.parent._moId if host else "",
                datastores=tuple(d._moId for d in vm.datastore)))
        return out

    # -- changes (set-up for checks, never through the driver) ------------------------------------------

    def _datacenter(self, moref: str) -> Any:
        return vim.Datacenter(moref, self.si._stub)

    def create_cluster(self, datacenter: str, name: str) -> str:
        """Create an empty cluster in the datacenter's host folder; return its moref."""
        dc = self._datacenter(datacenter)
        cluster = dc.hostFolder.CreateClusterEx(name=name, spec=vim.cluster.ConfigSpecEx())
        return str(cluster._moId)

    def add_host(self, cluster: str, host_name: str) -> str:
        """Add a (simulated) host to a cluster; return the host's moref."""
        spec = vim.host.ConnectSpec(hostName=host_name, force=True)
        task = vim.ClusterComputeResource(cluster, self.si._stub).AddHost_Task(spec=spec, asConnected=True)
        return str(wait_for_task(task)._moId)

    def destroy(self, moref: str, kind: type) -> None:
        """Destroy a managed entity (VM, cluster...), powering a VM off first. Missing is fine."""
        obj = kind(moref, self.si._stub)
        try:
            if isinstance(obj, vim.VirtualMachine) and obj.runtime.powerState == "poweredOn":
                wait_for_task(obj.PowerOffVM_Task())
            wait_for_task(obj.Destroy_Task())
        except vmodl.fault.ManagedObjectNotFound:
            pass

"""The reference multi-cluster compute driver: one service, several vCenter clusters, one node per cluster.

What a driver author should take from it:
- the node name is ``<cluster moref>.<vCenter instanceUuid>`` (conformance.contract.node_name);
- one refresh is one PropertyCollector query over a ContainerView that the driver keeps open, whatever the
  number of clusters (never one query per cluster);
- a node reports the capacity of its connected hosts that are not in maintenance mode;
- a spawn goes to the node's own cluster, into its root resource pool, and tags the VM with the instance
  uuid (``config.instanceUuid``) so the VM is found again wherever it is;
- every vCenter failure becomes a typed error from conformance.contract, without credentials in it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from conformance.contract import (
    AuthenticationFailed,
    ComputeDriver,
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

__all__ = ["ReferenceDriver"]

LOG = logging.getLogger(__name__)
MIB = 1024 * 1024
GIB = 1024 * MIB
POWER_STATES = {"poweredOn": "running", "poweredOff": "shutdown", "suspended": "suspended"}
PC = vmodl.query.PropertyCollector

#: What one refresh reads, by type. Names, parents and folders give inventory paths.
REFRESH_PROPERTIES: dict[Any, list[str]] = {
    vim.ManagedEntity: ["name", "parent"],
    vim.Datacenter: ["vmFolder"],
    vim.ComputeResource: ["host", "datastore", "resourcePool"],
    vim.HostSystem: ["summary.hardware", "runtime.connectionState", "runtime.inMaintenanceMode",
                     "summary.quickStats"],
    vim.Datastore: ["summary"],
}


def _wait(task: Any, timeout: float = 600.0) -> Any:
    """A task's result, or its fault raised. Polls with backoff: one call per poll, none wasted."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise info.error
        if time.monotonic() > deadline:
            raise VCenterUnavailable(f"task {info.descriptionId} still {info.state} after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _version_int(version: str) -> int:
    """'6.5.0' -> 6005000, the integer form Nova reports."""
    parts = [int(x) for x in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    return parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]


@dataclass(frozen=True)
class Node:
    """A managed cluster as of the last refresh."""

    name: str
    configured_as: str  # the configuration entry (path or moref) that names this cluster
    cluster: Any  # vim.ClusterComputeResource
    pool: Any  # its root vim.ResourcePool
    vm_folder: Any  # the datacenter's vim.Folder for VMs
    host_refs: tuple[str, ...]  # morefs of the cluster's hosts
    hosts: tuple[dict[str, Any], ...]  # per host: the REFRESH_PROPERTIES of HostSystem
    datastores: tuple[Any, ...]  # per datastore: its vim.Datastore.Summary


class ReferenceDriver(ComputeDriver):
    """Correct and efficient; see the module docstring."""

    version = "0.1.0"
    capabilities: ClassVar[Mapping[str, bool]] = {"placement_inventory": False}

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(config)
        self._nodes: dict[str, Node] | None = None
        self._refresh_error: str | None = None
        self._si: Any = None
        self._view: Any = None
        self._connect()

    # -- connection ------------------------------------------------------------------------------------

    def _connect(self) -> None:
        u = urllib.parse.urlsplit(self.config.url)
        if u.scheme != "https" or not u.hostname:
            raise VCenterUnavailable(f"vCenter URL must be https://host[:port]/sdk, got {u.scheme}://...")
        where = f"{u.hostname}:{u.port or 443}"
        if self.config.insecure:
            context = ssl._create_unverified_context()
        else:
            context = ssl.create_default_context(cafile=self.config.ca_file)
        try:
            self._si = SmartConnect(host=u.hostname, port=u.port or 443, user=self.config.username,
                                    pwd=self.config.password, sslContext=context, connectionPoolTimeout=-1)
        except vim.fault.InvalidLogin:
            raise AuthenticationFailed(f"vCenter at {where} refused the credentials") from None
        except ssl.SSLCertVerificationError as e:
            raise VCenterUnavailable(f"vCenter at {where} presented an untrusted certificate "
                                     f"({e.verify_message}); give its CA bundle") from None
        except (OSError, vmodl.MethodFault) as e:
            raise VCenterUnavailable(f"cannot reach vCenter at {where}: {type(e).__name__}") from None
        content = self._si.RetrieveContent()
        self._content = content
        self._vcenter_uuid = content.about.instanceUuid
        kinds = [vim.Datacenter, vim.Folder, vim.ComputeResource, vim.HostSystem, vim.Datastore]
        self._view = content.viewManager.CreateContainerView(content.rootFolder, kinds, True)

    def close(self) -> None:
        if self._si is not None:
            with contextlib.suppress(Exception):
                self._view.DestroyView()
            with contextlib.suppress(Exception):
                Disconnect(self._si)
            self._si = None

    @contextlib.contextmanager
    def _vcenter(self, doing: str) -> Iterator[None]:
        """Turn what vCenter or the network raises into the contract's typed errors."""
        try:
            yield
        except vim.fault.NotAuthenticated:
            raise VCenterUnavailable(f"{doing}: the vCenter session is no longer valid") from None
        except (OSError, vmodl.RuntimeFault) as e:
            raise VCenterUnavailable(f"{doing}: {type(e).__name__}: {getattr(e, 'msg', '') or e}") from None

    # -- nodes and resources ---------------------------------------------------------------------------

    def _retrieve(self) -> list[Any]:
        """One RetrievePropertiesEx over the kept ContainerView (continued if the server pages)."""
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=self._view, skip=True, selectSet=[
                PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
            propSet=[PC.PropertySpec(type=t, pathSet=p) for t, p in REFRESH_PROPERTIES.items()])
        pc = self._content.propertyCollector
        result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        objects = []
        while result is not None:
            objects.extend(result.objects)
            result = pc.ContinueRetrievePropertiesEx(result.token) if result.token else None
        return objects

    def _refresh(self) -> None:
        self._nodes, self._refresh_error = None, None
        try:
            with self._vcenter("refresh"):
                objects = self._retrieve()
        except VCenterUnavailable as e:
            self._refresh_error = str(e)
            raise
        props = {o.obj._moId: (o.obj, {p.name: p.val for p in o.propSet}) for o in objects}
        root = self._content.rootFolder._moId

        def path_and_dc(ref: str) -> tuple[str, str]:
            parts, dc = [], ""
            while ref in props and ref != root:
                obj, p = props[ref]
                parts.append(p["name"])
                if isinstance(obj, vim.Datacenter):
                    dc = ref
                ref = p["parent"]._moId if p.get("parent") is not None else root
            return "/" + "/".join(reversed(parts)), dc

        clusters = {}
        for ref, (obj, _) in props.items():
            if self._is_cluster(obj):
                path, dc = path_and_dc(ref)
                clusters[ref] = clusters[path] = (ref, dc)

        nodes: dict[str, Node] = {}
        for wanted in self._managed_clusters():
            key = wanted if wanted in clusters else "/" + wanted.strip("/")
            if key not in clusters:
                LOG.warning("configured cluster %r does not exist in vCenter; it is left out", wanted)
                continue
            ref, dc = clusters[key]
            obj, p = props[ref]
            name = node_name(ref, self._vcenter_uuid)
            nodes[name] = Node(
                name=name, configured_as=wanted, cluster=obj, pool=p["resourcePool"],
                vm_folder=props[dc][1]["vmFolder"],
                host_refs=tuple(h._moId for h in p.get("host", [])),
                hosts=tuple(props[h._moId][1] for h in p.get("host", []) if h._moId in props),
                datastores=tuple(props[d._moId][1]["summary"] for d in p.get("datastore", [])
                                 if d._moId in props))
        self._nodes = nodes

    @staticmethod
    def _is_cluster(obj: Any) -> bool:
        """Only clusters become nodes; a standalone host's ComputeResource never does."""
        return isinstance(obj, vim.ClusterComputeResource)

    def _managed_clusters(self) -> tuple[str, ...]:
        """The configured cluster references (paths or morefs), read at every refresh."""
        return self.config.clusters

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        if refresh or self._nodes is None:
            self._refresh()
        assert self._nodes is not None
        return sorted(self._nodes)

    def _node(self, nodename: str) -> Node:
        if self._nodes is None:
            if self._refresh_error:
                raise VCenterUnavailable(f"no current figures: the last refresh failed ({self._refresh_error})")
            self._refresh()
        assert self._nodes is not None
        node = self._nodes.get(nodename)
        if node is None:
            raise NodeNotFound(f"{nodename!r} is not a node of this driver")
        return node

    @staticmethod
    def _schedulable(host: dict[str, Any]) -> bool:
        return bool(host["runtime.connectionState"] == "connected" and not host["runtime.inMaintenanceMode"])

    def _datastore_ok(self, ds: Any) -> bool:
        pattern = self.config.datastore_regex
        return bool(ds.accessible and ds.maintenanceMode in (None, "normal")
                    and (pattern is None or re.fullmatch(pattern, ds.name)))

    def _host_vcpus(self, host: dict[str, Any]) -> int:
        return int(host["summary.hardware"].numCpuThreads)

    def get_available_resource(self, nodename: str) -> Resources:
        node = self._node(nodename)
        hosts = [h for h in node.hosts if self._schedulable(h)]
        stores = [d for d in node.datastores if self._datastore_ok(d)]
        capacity = sum(d.capacity for d in stores)
        free = sum(d.freeSpace for d in stores)
        return Resources(
            vcpus=sum(self._host_vcpus(h) for h in hosts),
            memory_mb=sum(h["summary.hardware"].memorySize for h in hosts) // MIB,
            local_gb=capacity // GIB,
            vcpus_used=0,
            memory_mb_used=sum(h["summary.quickStats"].overallMemoryUsage or 0 for h in hosts),
            local_gb_used=(capacity - free) // GIB,
            hypervisor_type="VMware vCenter Server",
            hypervisor_version=_version_int(self._content.about.version),
            hypervisor_hostname=nodename,
            cpu_info="",
        )

    # -- instances -------------------------------------------------------------------------------------

    def _choose_datastore(self, node: Node) -> Any:
        """Placement policy: the usable datastore of the cluster with the most free space."""
        stores = [d for d in node.datastores if self._datastore_ok(d)]
        if not stores:
            raise SpawnFailed(f"node {node.name!r} has no usable datastore")
        return max(stores, key=lambda d: (d.freeSpace, d.name))

    def _placement(self, node: Node) -> Node:
        """The node whose cluster a spawn for ``node`` goes to: the node itself."""
        return node

    def spawn(self, instance: Instance, nodename: str) -> None:
        node = self._placement(self._node(nodename))
        if node.configured_as not in self._managed_clusters():
            raise NodeNotFound(f"{nodename!r} is no longer managed by this driver")
        ds = self._choose_datastore(node)
        config = vim.vm.ConfigSpec(
            name=instance.uuid, instanceUuid=instance.uuid, numCPUs=instance.vcpus,
            memoryMB=instance.memory_mb, guestId="otherGuest64",
            annotation=f"vcconform instance {instance.name}",
            files=vim.vm.FileInfo(vmPathName=f"[{ds.name}]"))
        vm = None
        with self._vcenter("spawn"):
            try:
                vm = _wait(node.vm_folder.CreateVM_Task(config=config, pool=node.pool))
                _wait(vm.PowerOnVM_Task())
            except vmodl.MethodFault as e:
                if vm is not None:
                    self._remove_vm(vm)
                raise SpawnFailed(f"spawn of {instance.uuid} on {nodename}: {getattr(e, 'msg', '') or e}") \
                    from None

    def _find_vm(self, instance: Instance) -> Any:
        with self._vcenter("find instance"):
            found = self._content.searchIndex.FindAllByUuid(uuid=instance.uuid, vmSearch=True,
                                                            instanceUuid=True)
        return found[0] if found else None

    @staticmethod
    def _remove_vm(vm: Any) -> None:
        if vm.runtime.powerState != "poweredOff":
            _wait(vm.PowerOffVM_Task())
        _wait(vm.Destroy_Task())

    def destroy(self, instance: Instance) -> None:
        vm = self._find_vm(instance)
        if vm is None:
            return
        # A VM that is gone meanwhile is fine: destroying a missing instance succeeds.
        with self._vcenter("destroy"), contextlib.suppress(vmodl.fault.ManagedObjectNotFound):
            self._remove_vm(vm)

    def _vm_rows(self) -> list[tuple[str, str, str]]:
        """(instance uuid, power state, cluster moref) of every VM, in one query."""
        with self._vcenter("list instances"):
            view = self._content.viewManager.CreateContainerView(
                self._content.rootFolder, [vim.VirtualMachine], True)
            try:
                spec = PC.FilterSpec(
                    objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
                        PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
                    propSet=[PC.PropertySpec(type=vim.VirtualMachine,
                                             pathSet=["config.instanceUuid", "runtime.powerState",
                                                      "runtime.host"])])
                objects = self._content.propertyCollector.RetrieveContents([spec])
            finally:
                view.DestroyView()
        clusters = {h: n.cluster._moId for n in (self._nodes or {}).values() for h in n.host_refs}
        rows = []
        for o in objects:
            p = {x.name: x.val for x in o.propSet}
            host = p.get("runtime.host")
            if p.get("config.instanceUuid") and host is not None and host._moId in clusters:
                rows.append((p["config.instanceUuid"], str(p["runtime.powerState"]), clusters[host._moId]))
        return rows

    def list_instances(self) -> list[str]:
        if self._nodes is None:
            self._refresh()
        return sorted(uuid for uuid, _, _ in self._vm_rows())

    def get_info(self, instance: Instance) -> InstanceInfo:
        if self._nodes is None:
            self._refresh()
        for uuid, power, cluster in self._vm_rows():
            if uuid == instance.uuid:
                return InstanceInfo(state=POWER_STATES.get(power, "nostate"),
                                    nodename=node_name(cluster, self._vcenter_uuid))
        raise InstanceNotFound(f"instance {instance.uuid} has no VM in the managed clusters")

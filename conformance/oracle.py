"""The oracle: reads vCenter's inventory on its own (never through the driver) and says what is expected.

Expected values in every check come from here. The oracle also performs the vCenter-side changes that
checks need (creating a cluster, moving a host, powering a VM on), so a check never relies on the driver
to set up its own examination. Its reads are bulk PropertyCollector queries, so it is as cheap on a large
inventory as on a small one. It logs in again by itself when vCenter ends its session (a reset or restart).
"""

from __future__ import annotations

import contextlib
import functools
import re
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from conformance.contract import node_name

__all__ = ["ClusterFacts", "DatastoreFacts", "HostFacts", "Inventory", "Oracle", "OracleError", "VmFacts"]

#: Socket timeout of every oracle request (connect and each read): generous for a bulk read of a large
#: inventory, yet a simulator that stopped answering ends a check instead of hanging it.
SOCKET_TIMEOUT_S = 60.0
MIB = 1024 * 1024
GIB = 1024 * MIB
T = TypeVar("T")


class OracleError(RuntimeError):
    """The oracle could not read or change vCenter; the message is one line."""


@dataclass(frozen=True)
class HostFacts:
    moref: str
    name: str
    parent: str  # moref of the ClusterComputeResource or (standalone) ComputeResource
    parent_path: str  # inventory path of that parent
    cores: int
    threads: int
    memory_bytes: int
    memory_used_mb: int  # quickStats.overallMemoryUsage
    connection_state: str
    maintenance: bool
    datastores: tuple[str, ...]

    @property
    def schedulable(self) -> bool:
        """Connected and not in maintenance mode: the hosts whose capacity a node reports."""
        return self.connection_state == "connected" and not self.maintenance


@dataclass(frozen=True)
class DatastoreFacts:
    moref: str
    name: str
    capacity: int
    free: int
    accessible: bool
    maintenance: str

    @property
    def usable(self) -> bool:
        return self.accessible and self.maintenance in ("", "normal")


@dataclass(frozen=True)
class ClusterFacts:
    moref: str
    name: str
    path: str  # inventory path, e.g. /DC0/host/DC0_C0
    datacenter: str  # moref
    resource_pool: str  # moref of the root pool
    hosts: tuple[HostFacts, ...]
    datastores: tuple[DatastoreFacts, ...]


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
    datacenters: dict[str, str] = field(default_factory=dict)  # moref -> name
    pools: dict[str, str] = field(default_factory=dict)  # resource pool moref -> inventory path

    def cluster(self, ref: str) -> ClusterFacts | None:
        """The cluster a configuration entry names: a moref or an inventory path."""
        if ref in self.clusters:
            return self.clusters[ref]
        want = "/" + ref.strip("/")
        return next((c for c in self.clusters.values() if c.path == want), None)

    def by_path(self, path: str) -> ClusterFacts:
        c = self.cluster(path)
        if c is None:
            raise OracleError(f"oracle: no cluster at {path}")
        return c

    def expected_nodes(self, configured: Iterable[str]) -> dict[str, ClusterFacts]:
        """Node name -> cluster, for every configured cluster that exists (NODE-01)."""
        out = {}
        for ref in configured:
            c = self.cluster(ref)
            if c is not None:
                out[node_name(c.moref, self.vcenter_uuid)] = c
        return out

    def host(self, moref: str) -> HostFacts:
        for c in self.clusters.values():
            for h in c.hosts:
                if h.moref == moref:
                    return h
        return self.standalone_hosts[moref]

    @staticmethod
    def expected_resources(cluster: ClusterFacts, datastore_regex: str | None = None) -> dict[str, int]:
        """What a node must report.

        RES-01: vcpus and memory_mb are the sums over connected hosts not in maintenance mode of their
        hardware threads and memory (MiB): the hardware, as Nova's vm_util.get_stats_from_cluster reports,
        not the cluster's effectiveMemory (the hardware less each hypervisor's share, which is in use and
        therefore in memory_mb_used). RES-05: memory_mb_used is the sum of those hosts'
        quickStats.overallMemoryUsage: the hypervisor's share plus each running VM's consumed memory (its
        memory and overhead), not the VMs' configured memory. RES-02: local_gb and local_gb_used come from
        the cluster's usable datastores that match the filter, each counted once, summed in bytes and then
        floored to GiB. docs/driver.md says why, figure by figure.
        """
        hosts = [h for h in cluster.hosts if h.schedulable]
        stores = [d for d in cluster.datastores
                  if d.usable and (datastore_regex is None or re.fullmatch(datastore_regex, d.name))]
        capacity = sum(d.capacity for d in stores)
        return {"vcpus": sum(h.threads for h in hosts),
                "memory_mb": sum(h.memory_bytes for h in hosts) // MIB,
                "memory_mb_used": sum(h.memory_used_mb for h in hosts),
                "local_gb": capacity // GIB,
                "local_gb_used": (capacity - sum(d.free for d in stores)) // GIB}

    @staticmethod
    def largest_host(cluster: ClusterFacts, datastore_regex: str | None = None) -> dict[str, int]:
        """The largest single schedulable host's threads and memory, and the largest usable datastore that
        matches the filter (RES-06: placement's max_unit)."""
        hosts = [h for h in cluster.hosts if h.schedulable]
        stores = [d for d in cluster.datastores
                  if d.usable and (datastore_regex is None or re.fullmatch(datastore_regex, d.name))]
        return {"VCPU": max((h.threads for h in hosts), default=0),
                "MEMORY_MB": max((h.memory_bytes // MIB for h in hosts), default=0),
                "DISK_GB": max((d.capacity // GIB for d in stores), default=0)}


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


def _relogin(method: Callable[..., T]) -> Callable[..., T]:
    """Run an oracle method; if vCenter ended the session (reset, restart, expiry), log in and run it again."""
    @functools.wraps(method)
    def run(self: Oracle, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (vim.fault.NotAuthenticated, ConnectionError):
            self._connect()
            return method(self, *args, **kwargs)
    return run


class Oracle:
    """An independent pyvmomi session to vCenter (its own login, its own queries)."""

    def __init__(self, host: str, port: int, username: str, password: str, ca_file: str | None,
                 insecure: bool = False) -> None:
        self._login = (host, port, username, password, ca_file)
        self._insecure = insecure  # only for deliberately broken drivers that read vCenter themselves
        self._connect()

    def __repr__(self) -> str:
        return f"Oracle({self._login[0]}:{self._login[1]})"

    def _connect(self) -> None:
        host, port, username, password, ca_file = self._login
        context = ssl.create_default_context(cafile=ca_file)
        if self._insecure:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            self.si = SmartConnect(host=host, port=port, user=username, pwd=password, sslContext=context,
                                   httpConnectionTimeout=SOCKET_TIMEOUT_S, connectionPoolTimeout=-1)
        except vim.fault.InvalidLogin:
            raise OracleError(f"oracle: vCenter at {host}:{port} refused the credentials") from None
        except (OSError, ssl.SSLError) as e:
            raise OracleError(f"oracle: cannot reach vCenter at {host}:{port}: {e}") from None
        self.content = self.si.RetrieveContent()
        self.vcenter_uuid: str = self.content.about.instanceUuid

    def close(self) -> None:
        with contextlib.suppress(Exception):
            Disconnect(self.si)

    def _obj(self, kind: Any, moref: str) -> Any:
        return kind(moref, self.si._stub)

    # -- reads -----------------------------------------------------------------------------------------

    def _retrieve(self, types: Sequence[type], props: dict[type, list[str]]) -> list[Any]:
        """All objects of the given types under the root folder, with the given properties, in one query."""
        content = self.content
        view = content.viewManager.CreateContainerView(content.rootFolder, list(types), True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[pc.PropertySpec(type=t, pathSet=p) for t, p in props.items()])
            collector = content.propertyCollector
            result = collector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
            objects = []
            while result is not None:
                objects.extend(result.objects)
                result = collector.ContinueRetrievePropertiesEx(result.token) if result.token else None
            return objects
        finally:
            view.DestroyView()

    @_relogin
    def inventory(self) -> Inventory:
        """A fresh snapshot of datacenters, folders, clusters, hosts, pools and datastores."""
        objs = self._retrieve(
            [vim.Datacenter, vim.Folder, vim.ComputeResource, vim.HostSystem, vim.Datastore, vim.ResourcePool],
            {vim.ManagedEntity: ["name", "parent"],
             vim.ComputeResource: ["resourcePool", "datastore"],
             vim.HostSystem: ["summary.hardware.numCpuThreads", "summary.hardware.numCpuCores",
                              "summary.hardware.memorySize", "summary.quickStats.overallMemoryUsage",
                              "runtime.connectionState", "runtime.inMaintenanceMode", "datastore"],
             vim.Datastore: ["summary.capacity", "summary.freeSpace", "summary.accessible",
                             "summary.maintenanceMode"]})
        by_ref = {o.obj._moId: (o.obj, _props(o)) for o in objs}
        root = self.content.rootFolder._moId

        def path(ref: str) -> tuple[str, str]:
            """(inventory path, datacenter moref) of an entity."""
            parts, dc = [], ""
            while ref in by_ref and ref != root:
                obj, p = by_ref[ref]
                parts.append(p["name"])
                if isinstance(obj, vim.Datacenter):
                    dc = ref
                parent = p.get("parent")
                ref = parent._moId if parent is not None else root
            return "/" + "/".join(reversed(parts)), dc

        inv = Inventory(self.vcenter_uuid)
        hosts: dict[str, list[HostFacts]] = {}
        stores: dict[str, DatastoreFacts] = {}
        for ref, (obj, p) in by_ref.items():
            if isinstance(obj, vim.Datastore):
                inv.datastores[ref] = p["name"]
                stores[ref] = DatastoreFacts(ref, p["name"], int(p["summary.capacity"]), int(p["summary.freeSpace"]),
                                             bool(p["summary.accessible"]), str(p.get("summary.maintenanceMode") or ""))
            elif isinstance(obj, vim.Datacenter):
                inv.datacenters[ref] = p["name"]
            elif isinstance(obj, vim.ResourcePool):
                inv.pools[ref] = path(ref)[0]
        for ref, (obj, p) in by_ref.items():
            if isinstance(obj, vim.HostSystem):
                parent = p["parent"]
                h = HostFacts(
                    moref=ref, name=p["name"], parent=parent._moId, parent_path=path(parent._moId)[0],
                    cores=int(p["summary.hardware.numCpuCores"]), threads=int(p["summary.hardware.numCpuThreads"]),
                    memory_bytes=int(p["summary.hardware.memorySize"]),
                    memory_used_mb=int(p.get("summary.quickStats.overallMemoryUsage") or 0),
                    connection_state=str(p["runtime.connectionState"]),
                    maintenance=bool(p["runtime.inMaintenanceMode"]),
                    datastores=tuple(d._moId for d in p.get("datastore", [])))
                if isinstance(parent, vim.ClusterComputeResource):
                    hosts.setdefault(h.parent, []).append(h)
                else:
                    inv.standalone_hosts[ref] = h
        for ref, (obj, p) in by_ref.items():
            if isinstance(obj, vim.ClusterComputeResource):
                cpath, dc = path(ref)
                inv.clusters[ref] = ClusterFacts(
                    ref, p["name"], cpath, dc, p["resourcePool"]._moId,
                    tuple(sorted(hosts.get(ref, []), key=lambda h: h.name)),
                    tuple(stores[d._moId] for d in p.get("datastore", []) if d._moId in stores))
        return inv

    @_relogin
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

    @_relogin
    def vms(self) -> list[VmFacts]:
        """Every VM of the inventory, in one query (the ones a check created and any others)."""
        objs = self._retrieve(
            [vim.VirtualMachine, vim.ResourcePool, vim.HostSystem],
            {vim.VirtualMachine: ["name", "config.instanceUuid", "runtime.powerState", "resourcePool",
                                  "runtime.host", "datastore"],
             vim.ResourcePool: ["owner"], vim.HostSystem: ["parent"]})
        props = {o.obj._moId: (o.obj, _props(o)) for o in objs}

        def ref(value: Any) -> str:
            return str(value._moId) if value is not None else ""

        out = []
        for moref, (obj, p) in props.items():
            if not isinstance(obj, vim.VirtualMachine) or not p.get("config.instanceUuid"):
                continue  # a VM still being created has no configuration yet
            pool, host = ref(p.get("resourcePool")), ref(p.get("runtime.host"))
            out.append(VmFacts(
                moref=moref, name=str(p.get("name", "")), instance_uuid=str(p["config.instanceUuid"]),
                power_state=str(p.get("runtime.powerState", "")), resource_pool=pool,
                pool_owner=ref(props.get(pool, (None, {}))[1].get("owner")), host=host,
                host_parent=ref(props.get(host, (None, {}))[1].get("parent")),
                datastores=tuple(d._moId for d in p.get("datastore", []))))
        return sorted(out, key=lambda v: v.moref)

    # -- changes (set-up for checks, never through the driver) ------------------------------------------

    @_relogin
    def create_datacenter(self, name: str) -> str:
        return str(self.content.rootFolder.CreateDatacenter(name=name)._moId)

    @_relogin
    def create_cluster(self, datacenter: str, name: str) -> str:
        """Create an empty cluster in the datacenter's host folder; return its moref."""
        dc = self._obj(vim.Datacenter, datacenter)
        return str(dc.hostFolder.CreateClusterEx(name=name, spec=vim.cluster.ConfigSpecEx())._moId)

    @_relogin
    def add_host(self, cluster: str, host_name: str) -> str:
        """Add a (simulated) host to a cluster; return the host's moref."""
        spec = vim.host.ConnectSpec(hostName=host_name, force=True)
        task = self._obj(vim.ClusterComputeResource, cluster).AddHost_Task(spec=spec, asConnected=True)
        return str(wait_for_task(task)._moId)

    @_relogin
    def create_vm(self, cluster: ClusterFacts, name: str, instance_uuid: str, datastore: str, *,
                  host: str | None = None, pool: str | None = None, memory_mb: int = 256, power_on: bool = True) -> str:
        """Create (and power on) a VM tagged with an instance uuid in a cluster, on the named datastore, in
        ``pool`` (default: the cluster's root pool), on ``host`` or where vCenter places it; return its
        moref. A VM of another service, or of a deliberately broken driver. The fault is raised as it is."""
        folder = self._obj(vim.Datacenter, cluster.datacenter).vmFolder
        spec = vim.vm.ConfigSpec(name=name, instanceUuid=instance_uuid, numCPUs=1, memoryMB=memory_mb,
                                 guestId="otherGuest64", files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"))
        task = folder.CreateVM_Task(config=spec, pool=self._obj(vim.ResourcePool, pool or cluster.resource_pool),
                                    host=self._obj(vim.HostSystem, host) if host else None)
        vm = wait_for_task(task)
        if power_on:
            wait_for_task(vm.PowerOnVM_Task())
        return str(vm._moId)

    @_relogin
    def rename(self, moref: str, kind: Any, name: str) -> None:
        wait_for_task(self._obj(kind, moref).Rename_Task(newName=name))

    @_relogin
    def move_host(self, host: str, cluster: str) -> None:
        """Move a host into another cluster as an operator does: into maintenance mode (its VMs move to
        the other hosts), MoveInto_Task on the destination, out of maintenance mode."""
        h = self._obj(vim.HostSystem, host)
        was = bool(h.runtime.inMaintenanceMode)
        if not was:
            wait_for_task(h.EnterMaintenanceMode_Task(timeout=0))
        wait_for_task(self._obj(vim.ClusterComputeResource, cluster).MoveInto_Task(host=[h]))
        if not was:
            wait_for_task(h.ExitMaintenanceMode_Task(timeout=0))

    @_relogin
    def remove_host(self, host: str) -> None:
        """Remove a host from the inventory as an operator does: maintenance mode first. Missing is fine."""
        h = self._obj(vim.HostSystem, host)
        try:
            if not h.runtime.inMaintenanceMode:
                wait_for_task(h.EnterMaintenanceMode_Task(timeout=0))
            wait_for_task(h.Destroy_Task())
        except vmodl.fault.ManagedObjectNotFound:
            pass

    @_relogin
    def set_maintenance(self, host: str, on: bool) -> None:
        h = self._obj(vim.HostSystem, host)
        wait_for_task(h.EnterMaintenanceMode_Task(timeout=0) if on else h.ExitMaintenanceMode_Task(timeout=0))

    @_relogin
    def power(self, vm: str, on: bool) -> None:
        v = self._obj(vim.VirtualMachine, vm)
        wait_for_task(v.PowerOnVM_Task() if on else v.PowerOffVM_Task())

    @_relogin
    def destroy(self, moref: str, kind: type) -> None:
        """Destroy a managed entity (VM, cluster...), powering a VM off first. Missing is fine."""
        obj = self._obj(kind, moref)
        try:
            if isinstance(obj, vim.VirtualMachine) and obj.runtime.powerState == "poweredOn":
                wait_for_task(obj.PowerOffVM_Task())
            wait_for_task(obj.Destroy_Task())
        except vmodl.fault.ManagedObjectNotFound:
            pass

"""The reference multi-cluster compute driver: one service, several vCenter clusters, one node per cluster.

What a driver author should take from it (docs/driver.md is the full specification, with the rationale):
- a node is named ``<cluster moref>.<vCenter instanceUuid>`` (conformance.contract.node_name);
- a refresh is one RetrievePropertiesEx over a ContainerView the driver keeps open, whatever the number of
  clusters; the figures are computed from that one snapshot, never read per cluster;
- vcpus and memory are those of the cluster's connected hosts not in maintenance mode; disk is that of the
  usable datastores the cluster mounts, each counted once;
- a spawn goes to the node's own cluster, a usable host and datastore of it, and tags the VM with the
  instance uuid (``config.instanceUuid``) so the VM is found again wherever it is;
- every vCenter call goes through ``_call``: an expired session is replaced, transient faults are retried a
  bounded number of times, and what still fails becomes a typed error without credentials in it.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import math
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from conformance.contract import (
    AuthenticationFailed,
    ComputeDriver,
    DriverConfig,
    DriverError,
    Instance,
    InstanceInfo,
    InstanceNotFound,
    InventoryRecord,
    NodeNotFound,
    Resources,
    SpawnFailed,
    VCenterUnavailable,
    node_name,
)
from driver_under_test.config import ConfigError, check_config

__all__ = ["Node", "ReferenceDriver"]

LOG = logging.getLogger(__name__)
T = TypeVar("T")
PC = vmodl.query.PropertyCollector
MIB = 1024 * 1024
GIB = 1024 * MIB
POWER_STATES = {"poweredOn": "running", "poweredOff": "shutdown", "suspended": "suspended"}

ATTEMPTS = 3  # per vCenter call: the first try and two retries after a transient fault
RENEWALS = 3  # per vCenter call: new logins (or new session objects) after the session ended
BACKOFF_S = 0.2  # before the first retry; doubled before each next one
# A socket that stays silent this long is dead; slow answers are fine (FAULT-03). With ATTEMPTS tries, a
# vCenter that never answers is reported well within FAULT-05's 60 s.
HTTP_TIMEOUT_S = 15
MAX_WAIT_S = 10  # longest single WaitForUpdatesEx, well inside HTTP_TIMEOUT_S
TASK_TIMEOUT_S = 600
#: Nova's initial_{cpu,ram,disk}_allocation_ratio defaults; a production driver takes them from its config.
ALLOCATION_RATIOS = {"VCPU": 4.0, "MEMORY_MB": 1.0, "DISK_GB": 1.0}
#: Faults worth another try: the network, and vCenter saying it could not do it this time.
TRANSIENT = (OSError, http.client.HTTPException, vmodl.fault.HostCommunication, vmodl.fault.SystemError,
             vmodl.fault.RequestCanceled)
#: The driver's session-scoped objects: when vCenter says one is gone, the session it lived in has ended.
SESSION_OBJECTS = (vim.view.View, vmodl.query.PropertyCollector)

#: What one refresh reads: the view holds datacenters, folders and compute resources (names and parents give
#: inventory paths); from each compute resource the query follows ``host`` and ``datastore``, so it reads
#: exactly the hosts and datastores the clusters reference at that moment.
INVENTORY_TYPES = [vim.Datacenter, vim.Folder, vim.ComputeResource]
INVENTORY_PROPERTIES: dict[Any, list[str]] = {
    vim.ManagedEntity: ["name", "parent"],
    vim.Datacenter: ["vmFolder"],
    vim.ComputeResource: ["host", "datastore", "resourcePool"],
    vim.Datastore: ["summary"],
}
#: What instance lookups read: the VM, and (following ``resourcePool``) its pool's owner, the cluster. The
#: owner, not the host, says where a VM is: the cluster list survives hosts added since the last refresh.
VM_PROPERTIES: dict[Any, list[str]] = {vim.VirtualMachine: ["config.instanceUuid", "runtime.powerState",
                                                            "resourcePool"],
                                       vim.ResourcePool: ["owner"]}


@dataclass(frozen=True)
class Node:
    """A managed cluster as of the last refresh."""

    name: str
    configured_as: str  # the configuration entry (path or moref) that names this cluster
    path: str  # its inventory path at the refresh, e.g. /DC0/host/folder/C0
    cluster: Any  # vim.ClusterComputeResource
    pool: Any  # its root vim.ResourcePool
    vm_folder: Any  # the datacenter's vim.Folder for VMs
    host_refs: tuple[str, ...]  # morefs of the cluster's hosts
    hosts: tuple[dict[str, Any], ...]  # per host: its name, ReferenceDriver.host_properties and "ref"
    datastores: tuple[Any, ...]  # per datastore the cluster mounts: its vim.Datastore.Summary


def _fault_text(e: BaseException) -> str:
    """'vmodl.fault.SystemError: msg' for a vCenter fault, 'ConnectionRefusedError: ...' otherwise."""
    msg = getattr(e, "msg", None) if isinstance(e, vmodl.MethodFault) else str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _props(obj: Any) -> dict[str, Any]:
    return {p.name: p.val for p in obj.propSet}


def _version_int(version: str) -> int:
    """'6.5.0' -> 6005000, the integer form Nova reports."""
    parts = [int(x) for x in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    return parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]


def _record(total: int, max_unit: int, resource_class: str) -> InventoryRecord:
    return InventoryRecord(total=total, reserved=0, min_unit=1, max_unit=max_unit, step_size=1,
                           allocation_ratio=ALLOCATION_RATIOS[resource_class])


class ReferenceDriver(ComputeDriver):
    """Correct and cheap; see the module docstring and docs/driver.md."""

    version = "1.0.0"
    capabilities: ClassVar[Mapping[str, bool]] = {"placement_inventory": True, "update_notifications": True}
    #: Socket timeout of every vCenter connection (HTTP_TIMEOUT_S); None waits for ever.
    http_timeout_s: ClassVar[float | None] = HTTP_TIMEOUT_S
    #: What a refresh reads of each host: only what the figures and the placement policy use, since the
    #: time of a refresh is mostly decoding the answer (bench/results/refresh.json).
    host_properties: ClassVar[tuple[str, ...]] = (
        "summary.hardware.numCpuThreads", "summary.hardware.memorySize", "summary.quickStats.overallMemoryUsage",
        "runtime.connectionState", "runtime.inMaintenanceMode", "datastore")
    #: Objects per answer asked of vCenter (None: the server's choice); the rest follows page by page.
    page_size: ClassVar[int | None] = None

    def __init__(self, config: DriverConfig) -> None:
        check_config(config)
        super().__init__(config)
        self._nodes: dict[str, Node] | None = None
        self._refresh_error: str | None = None
        self._lock = threading.Lock()  # guards the session-scoped objects below while logging in again
        self._generation = 0  # bumped at every new login, so concurrent callers log in again only once
        self._views: dict[str, Any] = {}  # ContainerViews by purpose; they die with the session
        self._watch: tuple[Any, str] | None = None  # (PropertyCollector, version) for wait_for_changes
        self._closed = False
        self._si: Any = None
        self._connect()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.service_id} at {self._where}>"

    # -- connection and the one way every call is made -------------------------------------------------

    def _connect(self) -> None:
        u = urllib.parse.urlsplit(self.config.url)
        host, port = u.hostname, u.port or 443
        self._where = f"{host}:{port}"
        if self.config.insecure:
            LOG.warning("%s: TLS verification of vCenter at %s is off (insecure is set)", self.config.service_id,
                        self._where)
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=self.config.ca_file)

        def login() -> Any:
            return SmartConnect(host=host, port=port, path=u.path or "/sdk", user=self.config.username,
                                pwd=self.config.password, sslContext=context,
                                httpConnectionTimeout=self.http_timeout_s,
                                connectionPoolTimeout=-1)
        try:
            self._si = self._call("connect", login)
            self._content = self._call("connect", self._si.RetrieveContent)
        except vim.fault.InvalidLogin:
            raise AuthenticationFailed(f"vCenter at {self._where} refused the credentials") from None
        except ssl.SSLCertVerificationError as e:
            raise VCenterUnavailable(f"vCenter at {self._where} presented an untrusted certificate "
                                     f"({e.verify_message}); give its CA bundle (ca_file)") from None
        except (ssl.SSLError, vmodl.MethodFault) as e:
            raise VCenterUnavailable(f"cannot connect to vCenter at {self._where}: {_fault_text(e)}") from None
        self._vcenter_uuid: str = self._content.about.instanceUuid
        self._hypervisor_version = _version_int(self._content.about.version)

    def _relogin(self, seen: int) -> None:
        """Replace an ended session on the same connection; morefs stay valid, session objects do not."""
        with self._lock:
            if self._generation != seen:
                return  # another thread has logged in again meanwhile
            self._views, self._watch = {}, None
            try:
                self._content.sessionManager.Login(self.config.username, self.config.password)
            except vim.fault.InvalidLogin:
                raise AuthenticationFailed(f"vCenter at {self._where} refused the credentials") from None
            self._generation += 1
            LOG.info("%s: logged in to vCenter at %s again", self.config.service_id, self._where)

    def _forget_session_objects(self, gone: Any) -> None:
        """A view or collector of ours is gone (with its session): make them anew at the next use."""
        with self._lock:
            current = [*self._views.values(), *([self._watch[0]] if self._watch else [])]
            if any(obj._moId == gone._moId for obj in current):
                self._views, self._watch = {}, None

    def _call(self, doing: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run one vCenter call with the session and fault policy of docs/driver.md.

        An ended session (NotAuthenticated, or one of our views gone) is renewed and the call repeated, at
        most RENEWALS times: the call was refused before it ran, so even a mutation is safe to repeat. A
        transient fault repeats an idempotent call after a backoff, ATTEMPTS times in all. What still fails
        is VCenterUnavailable; other vCenter faults go to the caller unchanged.
        """
        if self._closed:
            raise VCenterUnavailable(f"{doing}: the driver is closed")
        attempts, renewals, login_after = 0, 0, None
        while True:
            seen = self._generation
            try:
                if login_after is not None:
                    self._relogin(login_after)
                    login_after = None
                attempts += 1
                return fn()
            except vim.fault.NotAuthenticated:
                why = "the vCenter session has ended"
                if renewals < RENEWALS:
                    renewals, login_after = renewals + 1, seen
                    continue
            except vmodl.fault.ManagedObjectNotFound as e:
                if not isinstance(e.obj, SESSION_OBJECTS):
                    raise
                why = "the vCenter session has ended (a view of the driver is gone)"
                if renewals < RENEWALS:
                    renewals += 1
                    self._forget_session_objects(e.obj)
                    continue
            except ssl.SSLCertVerificationError:
                raise  # not transient: the caller says what to fix
            except TRANSIENT as e:
                why = _fault_text(e)
                if idempotent and attempts < ATTEMPTS:
                    LOG.warning("%s: %s: %s; trying again", self.config.service_id, doing, why)
                    time.sleep(BACKOFF_S * 2 ** (attempts - 1))
                    continue
            raise VCenterUnavailable(f"{doing}: vCenter at {self._where} failed ({why}) after {attempts} "
                                     f"attempt{'s' if attempts > 1 else ''}")

    def _wait(self, doing: str, task: Any) -> Any:
        """A task's result, or its fault raised. Polls at once, then with backoff: one call per poll."""
        deadline = time.monotonic() + TASK_TIMEOUT_S
        delay = 0.0
        while True:
            info = self._call(doing, lambda: task.info)
            if info.state == "success":
                return info.result
            if info.state == "error":
                raise info.error
            if time.monotonic() > deadline:
                raise VCenterUnavailable(f"{doing}: task still {info.state} after {TASK_TIMEOUT_S}s")
            delay = min(max(delay * 2, 0.05), 1.0)
            time.sleep(delay)

    def _view(self, purpose: str, types: list[Any]) -> Any:
        """A ContainerView over the whole inventory, created once per session and kept open."""
        view = self._views.get(purpose)
        if view is None:
            with self._lock:
                view = self._views.get(purpose)
                if view is None:
                    content = self._content
                    view = self._views[purpose] = content.viewManager.CreateContainerView(
                        content.rootFolder, types, True)
        return view

    @staticmethod
    def _view_spec(view: Any, properties: Mapping[Any, list[str]], follow: Mapping[str, Any] | None = None) -> Any:
        """Everything in ``view``, and what its objects reference by the ``follow`` properties (by type)."""
        follow = follow or {}
        return PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
                PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView,
                                 selectSet=[PC.SelectionSpec(name=path) for path in follow]),
                *(PC.TraversalSpec(name=path, path=path, skip=False, type=t) for path, t in follow.items())])],
            propSet=[PC.PropertySpec(type=t, pathSet=p) for t, p in properties.items()])

    def _inventory_spec(self) -> Any:
        return self._view_spec(self._view("inventory", INVENTORY_TYPES),
                               {**INVENTORY_PROPERTIES, vim.HostSystem: list(self.host_properties)},
                               {"host": vim.ComputeResource, "datastore": vim.ComputeResource})

    def _retrieve(self, spec: Any) -> list[Any]:
        """One RetrievePropertiesEx, continued for as long as the server pages."""
        pc = self._content.propertyCollector
        result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=self.page_size))
        objects = []
        while result is not None:
            objects.extend(result.objects)
            result = pc.ContinueRetrievePropertiesEx(result.token) if result.token else None
        return objects

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch[0].DestroyPropertyCollector()
        for view in self._views.values():
            with contextlib.suppress(Exception):
                view.DestroyView()
        with contextlib.suppress(Exception):
            Disconnect(self._si)

    def reconfigure(self, config: DriverConfig) -> None:
        check_config(config)
        old = self.config
        if (config.url, config.ca_file, config.insecure) != (old.url, old.ca_file, old.insecure):
            raise ConfigError("url, ca_file and insecure cannot change on reconfigure; build a new driver")
        super().reconfigure(config)  # credentials apply at the next login, clusters at the next refresh

    # -- nodes and resources ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Take a new snapshot; after a failure there is none, so nothing old is served as fresh."""
        try:
            try:
                objects = self._call("refresh", lambda: self._retrieve(self._inventory_spec()))
            except vmodl.MethodFault as e:
                raise VCenterUnavailable(f"refresh: {_fault_text(e)}") from None
            nodes = self._build_nodes(objects)
        except DriverError as e:
            self._nodes, self._refresh_error = None, str(e)
            raise
        self._nodes, self._refresh_error = nodes, None

    def _build_nodes(self, objects: list[Any]) -> dict[str, Node]:
        props = {o.obj._moId: (o.obj, _props(o)) for o in objects}
        root = self._content.rootFolder._moId

        def path_and_datacenter(ref: str) -> tuple[str, str]:
            parts, dc = [], ""
            while ref in props and ref != root:
                obj, p = props[ref]
                parts.append(p["name"])
                if isinstance(obj, vim.Datacenter):
                    dc = ref
                ref = p["parent"]._moId if p.get("parent") is not None else root
            return "/" + "/".join(reversed(parts)), dc

        clusters: dict[str, tuple[str, str, str]] = {}  # moref and path -> (moref, path, datacenter)
        for ref, (obj, _) in props.items():
            if self._is_cluster(obj):
                path, dc = path_and_datacenter(ref)
                clusters[ref] = clusters[path] = (ref, path, dc)

        nodes: dict[str, Node] = {}
        for wanted in self._managed_clusters():
            found = clusters.get(wanted) or clusters.get("/" + wanted.strip("/"))
            if found is None:
                LOG.warning("%s: configured cluster %r is not a cluster of vCenter at %s (missing, or a "
                            "standalone host or resource pool); it is left out", self.config.service_id, wanted,
                            self._where)
                continue
            ref, path, dc = found
            obj, p = props[ref]
            name = node_name(ref, self._vcenter_uuid)
            host_refs = tuple(h._moId for h in p.get("host", []))
            nodes.setdefault(name, Node(
                name=name, configured_as=wanted, path=path, cluster=obj, pool=p["resourcePool"],
                vm_folder=props[dc][1]["vmFolder"], host_refs=host_refs,
                hosts=tuple({**props[h][1], "ref": props[h][0]} for h in host_refs if h in props),
                datastores=tuple(props[d._moId][1]["summary"] for d in p.get("datastore", [])
                                 if d._moId in props)))
        return nodes

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

    def _current_nodes(self) -> dict[str, Node]:
        """The last snapshot; taken now if there is none yet, refused if the last refresh failed."""
        nodes = self._nodes
        if nodes is None:
            if self._refresh_error:
                raise VCenterUnavailable(f"no current figures: the last refresh failed ({self._refresh_error})")
            self._refresh()
            nodes = self._nodes
            assert nodes is not None
        return nodes

    def _node(self, nodename: str) -> Node:
        node = self._current_nodes().get(nodename)
        if node is None:
            raise NodeNotFound(f"{nodename!r} is not a node of this driver")
        return node

    @staticmethod
    def _schedulable(host: dict[str, Any]) -> bool:
        """Connected and not in maintenance mode: a host that can run a new VM."""
        return bool(host["runtime.connectionState"] == "connected" and not host["runtime.inMaintenanceMode"])

    def _host_vcpus(self, host: dict[str, Any]) -> int:
        return int(host["summary.hardware.numCpuThreads"])

    def _usable_datastores(self, node: Node) -> list[Any]:
        """Accessible, not in (or entering) maintenance, and matching datastore_regex (the whole name)."""
        pattern = self.config.datastore_regex
        return [d for d in node.datastores
                if d.accessible and d.maintenanceMode in (None, "normal")
                and (pattern is None or re.fullmatch(pattern, d.name))]

    def get_available_resource(self, nodename: str) -> Resources:
        node = self._node(nodename)
        hosts = [h for h in node.hosts if self._schedulable(h)]
        stores = self._usable_datastores(node)
        capacity = sum(d.capacity for d in stores)
        vcpus = sum(self._host_vcpus(h) for h in hosts)
        memory_mb = sum(h["summary.hardware.memorySize"] for h in hosts) // MIB
        local_gb = capacity // GIB
        return Resources(
            vcpus=vcpus,
            memory_mb=memory_mb,
            local_gb=local_gb,
            vcpus_used=0,  # as Nova's driver: the resource tracker counts its instances' vCPUs itself
            memory_mb_used=sum(h.get("summary.quickStats.overallMemoryUsage") or 0 for h in hosts),
            local_gb_used=(capacity - sum(d.freeSpace for d in stores)) // GIB,
            hypervisor_type="VMware vCenter Server",
            hypervisor_version=self._hypervisor_version,
            hypervisor_hostname=nodename,
            cpu_info="",
            inventory={
                "VCPU": _record(vcpus, max((self._host_vcpus(h) for h in hosts), default=0), "VCPU"),
                "MEMORY_MB": _record(memory_mb, max((h["summary.hardware.memorySize"] // MIB for h in hosts),
                                                    default=0), "MEMORY_MB"),
                # A disk must fit in one datastore's free space (RES-06).
                "DISK_GB": _record(local_gb, max((d.freeSpace // GIB for d in stores), default=0), "DISK_GB"),
            },
        )

    # -- update notifications --------------------------------------------------------------------------

    def _fingerprint(self) -> dict[str, Any]:
        """What the driver reports, to tell a change that matters from one that does not."""
        return {n: (node.path, self.get_available_resource(n)) for n, node in self._current_nodes().items()}

    def _next_update(self, wait_s: int) -> bool:
        """Wait for vCenter to report a change to the inventory the refresh reads; False when none came.

        A watch set up anew (first use, or the session was replaced) counts as a change: whatever happened
        before it existed was not seen, so the caller refreshes and compares.
        """
        if self._watch is None:
            pc = self._content.propertyCollector.CreatePropertyCollector()
            pc.CreateFilter(self._inventory_spec(), partialUpdates=True)
            # The first answer is the whole current state, which is no change; read it to its end.
            update = pc.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0))
            while update is not None and update.truncated:
                update = pc.WaitForUpdatesEx(update.version, PC.WaitOptions(maxWaitSeconds=0))
            self._watch = (pc, update.version if update is not None else "")
            return True
        pc, version = self._watch
        update = pc.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=wait_s))
        if update is None:
            return False
        while update.truncated:
            update = pc.WaitForUpdatesEx(update.version, PC.WaitOptions(maxWaitSeconds=0))
        self._watch = (pc, update.version)
        return True

    def wait_for_changes(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        before = self._fingerprint()
        while True:
            wait_s = max(0, min(math.ceil(deadline - time.monotonic()), MAX_WAIT_S))
            try:
                changed = self._call("wait for changes", functools.partial(self._next_update, wait_s))
            except vmodl.MethodFault as e:
                raise VCenterUnavailable(f"wait for changes: {_fault_text(e)}") from None
            if changed:
                self._refresh()
                if self._fingerprint() != before:
                    return True
            if time.monotonic() >= deadline:
                return False

    # -- instances -------------------------------------------------------------------------------------

    def _placement(self, node: Node) -> Node:
        """The node whose cluster a spawn for ``node`` goes to: the node itself."""
        return node

    def _choose_host_and_datastore(self, node: Node, instance: Instance) -> tuple[dict[str, Any], Any]:
        """Placement policy (docs/driver.md): the usable datastore with the most free space that has room
        for the root disk and is mounted by a schedulable host; the host among those with the most free
        memory. Ties go to the lower name, so the choice is reproducible."""
        hosts = [h for h in node.hosts if self._schedulable(h)]
        mounted = {d._moId for h in hosts for d in h.get("datastore", [])}
        stores = [d for d in self._usable_datastores(node)
                  if d.datastore._moId in mounted and d.freeSpace >= instance.root_gb * GIB]
        if not stores:
            raise SpawnFailed(f"node {node.name} ({node.path}) has no schedulable host with a usable datastore "
                              f"that has {instance.root_gb} GiB free; nothing was created")
        ds = min(stores, key=lambda d: (-d.freeSpace, d.name))

        def free_mb(h: dict[str, Any]) -> int:
            return int(h["summary.hardware.memorySize"] // MIB - (h.get("summary.quickStats.overallMemoryUsage") or 0))
        host = min((h for h in hosts if ds.datastore._moId in {d._moId for d in h.get("datastore", [])}),
                   key=lambda h: (-free_mb(h), h["name"]))
        return host, ds

    def _pool(self, node: Node) -> Any:
        """The root resource pool, or the configured pool below it (one lookup per spawn)."""
        wanted = self.config.resource_pool
        if wanted is None:
            return node.pool
        path = f"{node.path}/Resources/{wanted.strip('/')}"
        try:
            pool = self._call("find resource pool", lambda: self._content.searchIndex.FindByInventoryPath(path))
        except vmodl.MethodFault as e:
            raise SpawnFailed(f"looking up resource pool {path}: {_fault_text(e)}") from None
        if not isinstance(pool, vim.ResourcePool):
            raise SpawnFailed(f"no resource pool {path} (resource_pool {wanted!r}); nothing was created")
        return pool

    def _vm_spec(self, instance: Instance, ds: Any) -> Any:
        """The VM: named and tagged (instanceUuid) by the instance uuid, with a thick root disk of root_gb."""
        devices = []
        if instance.root_gb > 0:
            controller = vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0, sharedBus="noSharing")
            disk = vim.vm.device.VirtualDisk(
                key=-1, controllerKey=1000, unitNumber=0, capacityInKB=instance.root_gb * GIB // 1024,
                backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    diskMode="persistent", thinProvisioned=False, fileName=f"[{ds.name}]"))
            devices = [vim.vm.device.VirtualDeviceSpec(operation="add", device=controller),
                       vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)]
        return vim.vm.ConfigSpec(
            name=instance.uuid, instanceUuid=instance.uuid, numCPUs=instance.vcpus, memoryMB=instance.memory_mb,
            guestId="otherGuest64", annotation=f"instance {instance.name} (service {self.config.service_id})",
            files=vim.vm.FileInfo(vmPathName=f"[{ds.name}]"), deviceChange=devices)

    def spawn(self, instance: Instance, nodename: str) -> None:
        node = self._placement(self._node(nodename))
        if node.configured_as not in self._managed_clusters():
            raise NodeNotFound(f"{nodename!r} is no longer managed by this driver")
        host, ds = self._choose_host_and_datastore(node, instance)
        pool = self._pool(node)
        spec = self._vm_spec(instance, ds)
        try:
            task = self._call("create VM", lambda: node.vm_folder.CreateVM_Task(config=spec, pool=pool,
                                                                                  host=host["ref"]),
                              idempotent=False)
            vm = self._wait("create VM", task)
            self._wait("power on VM", self._call("power on VM", vm.PowerOnVM_Task, idempotent=False))
        except (DriverError, vmodl.MethodFault) as e:
            # Whatever carries the instance's uuid is this build's VM: remove it, as Nova does after a failed build.
            raise SpawnFailed(f"spawn of {instance.uuid} on {nodename} failed ({_fault_text(e)})"
                              f"{self._undo(instance)}") from None
        LOG.info("%s: instance %s spawned on %s (host %s, datastore %s)", self.config.service_id, instance.uuid,
                 nodename, host["name"], ds.name)

    def _undo(self, instance: Instance) -> str:
        """Remove the VMs of a failed spawn; '' when done, else the reason as a sentence end."""
        try:
            for vm, power, _ in self._instance_vms(instance):
                self._remove(vm, power)
        except (DriverError, vmodl.MethodFault) as e:
            return f"; its VM could not be removed: {_fault_text(e)}"
        return ""

    def _instance_vms(self, instance: Instance) -> list[tuple[Any, str, str | None]]:
        """(VM, power state, node name or None outside the managed clusters) of every VM with the uuid."""
        try:
            found = self._call("find instance", lambda: self._content.searchIndex.FindAllByUuid(
                uuid=instance.uuid, vmSearch=True, instanceUuid=True))
            if not found:
                return []
            follow = [PC.TraversalSpec(name="pool", path="resourcePool", skip=False, type=vim.VirtualMachine)]
            spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm, selectSet=follow) for vm in found],
                                 propSet=[PC.PropertySpec(type=t, pathSet=p) for t, p in VM_PROPERTIES.items()])
            objects = self._call("read instance", lambda: self._retrieve(spec))
        except vmodl.fault.ManagedObjectNotFound:
            return []  # deleted between the two calls
        except vmodl.MethodFault as e:
            raise VCenterUnavailable(f"find instance {instance.uuid}: {_fault_text(e)}") from None
        return [(vm, str(p.get("runtime.powerState")), node) for vm, p, node in self._vms_and_nodes(objects)]

    def _vms_and_nodes(self, objects: list[Any]) -> list[tuple[Any, dict[str, Any], str | None]]:
        """(VM, its properties, its node or None) from a VM_PROPERTIES answer; nodes of the last snapshot."""
        nodes = {node.cluster._moId: node.name for node in self._current_nodes().values()}
        owners = {o.obj._moId: _props(o).get("owner") for o in objects if isinstance(o.obj, vim.ResourcePool)}
        out = []
        for o in objects:
            if isinstance(o.obj, vim.VirtualMachine):
                p = _props(o)
                owner = owners.get(p["resourcePool"]._moId) if p.get("resourcePool") is not None else None
                out.append((o.obj, p, nodes.get(owner._moId) if owner is not None else None))
        return out

    def _remove(self, vm: Any, power: str) -> None:
        with contextlib.suppress(vmodl.fault.ManagedObjectNotFound):  # gone meanwhile: that is success
            if power != "poweredOff":
                with contextlib.suppress(vim.fault.InvalidPowerState):  # already off meanwhile
                    self._wait("power off VM", self._call("power off VM", vm.PowerOffVM_Task))
            self._wait("destroy VM", self._call("destroy VM", vm.Destroy_Task))

    def destroy(self, instance: Instance) -> None:
        for vm, power, nodename in self._instance_vms(instance):
            if nodename is None:
                # Its cluster belongs to another service now (or never was ours): not ours to delete.
                LOG.warning("%s: instance %s has a VM outside the managed clusters; it is left alone",
                            self.config.service_id, instance.uuid)
                continue
            try:
                self._remove(vm, power)
            except vmodl.MethodFault as e:
                raise VCenterUnavailable(f"destroy {instance.uuid}: {_fault_text(e)}") from None

    def list_instances(self) -> list[str]:
        try:
            objects = self._call("list instances", lambda: self._retrieve(self._view_spec(
                self._view("vms", [vim.VirtualMachine]), VM_PROPERTIES, {"resourcePool": vim.VirtualMachine})))
        except vmodl.MethodFault as e:
            raise VCenterUnavailable(f"list instances: {_fault_text(e)}") from None
        return sorted({p["config.instanceUuid"] for _, p, node in self._vms_and_nodes(objects)
                       if node is not None and p.get("config.instanceUuid")})

    def get_info(self, instance: Instance) -> InstanceInfo:
        for _, power, nodename in self._instance_vms(instance):
            if nodename is not None:
                return InstanceInfo(state=POWER_STATES.get(power, "nostate"), nodename=nodename)
        raise InstanceNotFound(f"instance {instance.uuid} has no VM in the managed clusters")

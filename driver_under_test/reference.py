"""The reference multi-cluster compute driver: one service, several vCenter clusters, one node per cluster.

What a driver author should take from it (docs/driver.md is the full specification, with the rationale):
- a node is named ``<cluster moref>.<vCenter instanceUuid>`` (conformance.contract.node_name);
- a full refresh is one RetrievePropertiesEx over a ContainerView the driver keeps open, whatever the number
  of clusters, asking for leaf properties only; the figures are computed from that one snapshot, never read
  per cluster; between full refreshes, WaitForUpdatesEx deltas keep the snapshot current;
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
from dataclasses import dataclass, replace
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

__all__ = ["Datastore", "Node", "ReferenceDriver"]

LOG = logging.getLogger(__name__)
T = TypeVar("T")
PC = vmodl.query.PropertyCollector
MIB = 1024 * 1024
GIB = 1024 * MIB
POWER_STATES = {"poweredOn": "running", "poweredOff": "shutdown", "suspended": "suspended"}

ATTEMPTS = 3  # per vCenter call: the first try and two retries after a transient fault
RENEWALS = 3  # per vCenter call: new logins (or new session objects) after the session ended
BACKOFF_S = 0.2  # before the first retry; doubled before each next one
HTTP_TIMEOUT_S = 300  # a socket that stays silent this long is dead; slow answers are fine (FAULT-03)
MAX_WAIT_S = 60  # longest single WaitForUpdatesEx, well inside HTTP_TIMEOUT_S
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
#: exactly the hosts and datastores the clusters reference at that moment. Leaf properties only, per type:
#: the size of the answer is most of a refresh's cost, on vCenter and in the driver (docs/driver.md, "Cost").
#: The hosts' properties are ``ReferenceDriver.host_properties``.
INVENTORY_TYPES = [vim.Datacenter, vim.Folder, vim.ComputeResource]
INVENTORY_PROPERTIES: dict[Any, list[str]] = {
    vim.Folder: ["name", "parent"],
    vim.Datacenter: ["name", "parent", "vmFolder"],
    vim.ComputeResource: ["name", "parent", "host", "datastore", "resourcePool"],
    vim.Datastore: ["name", "summary.accessible", "summary.maintenanceMode", "summary.capacity",
                    "summary.freeSpace"],
}
#: What a spawn reads of its cluster's hosts, fresh, for the placement: their names (ties) and the datastores
#: they mount. Only a spawn needs them, so a refresh does not carry them for every host.
PLACEMENT_HOST_PROPERTIES = ["name", "datastore"]
#: What instance lookups read: the VM, and (following ``resourcePool``) its pool's owner, the cluster. The
#: owner, not the host, says where a VM is: the cluster list survives hosts added since the last refresh.
VM_PROPERTIES: dict[Any, list[str]] = {vim.VirtualMachine: ["config.instanceUuid", "runtime.powerState",
                                                            "resourcePool"],
                                       vim.ResourcePool: ["owner"]}


@dataclass(frozen=True)
class Datastore:
    """A datastore as a refresh reads it; the attributes are named as those of vim.Datastore.Summary."""

    datastore: Any  # the vim.Datastore
    name: str
    capacity: int
    freeSpace: int  # vSphere's names, so that code written for a Summary reads this alike
    accessible: bool
    maintenanceMode: str | None


@dataclass(frozen=True)
class Node:
    """A managed cluster as of the last refresh (or update)."""

    name: str
    configured_as: str  # the configuration entry (path or moref) that names this cluster
    path: str  # its inventory path at the refresh, e.g. /DC0/host/folder/C0
    cluster: Any  # vim.ClusterComputeResource
    pool: Any  # its root vim.ResourcePool
    vm_folder: Any  # the datacenter's vim.Folder for VMs
    host_refs: tuple[str, ...]  # morefs of the cluster's hosts
    hosts: tuple[dict[str, Any], ...]  # per host: ReferenceDriver.host_properties and "ref" (the vim.HostSystem)
    datastores: tuple[Datastore, ...]  # per datastore the cluster mounts


def _fault_text(e: BaseException) -> str:
    """'vmodl.fault.SystemError: msg' for a vCenter fault, 'ConnectionRefusedError: ...' otherwise."""
    msg = getattr(e, "msg", None) if isinstance(e, vmodl.MethodFault) else str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _props(obj: Any) -> dict[str, Any]:
    return {p.name: p.val for p in obj.propSet}


def _snapshot_entry(content: Any) -> dict[str, Any]:
    """An object of a refresh's answer as the snapshot keeps it: its properties, and itself as "ref"."""
    return {**_props(content), "ref": content.obj}


def _datastore(p: Mapping[str, Any]) -> Datastore:
    return Datastore(datastore=p["ref"], name=p.get("name", ""), capacity=p.get("summary.capacity") or 0,
                     freeSpace=p.get("summary.freeSpace") or 0, accessible=bool(p.get("summary.accessible")),
                     maintenanceMode=p.get("summary.maintenanceMode"))


class _NotAnUpdate(Exception):
    """vCenter sent a change the snapshot cannot apply; a full refresh replaces the snapshot instead."""


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
    #: What a refresh reads of each host, and its updates follow: the leaf properties the figures use, since
    #: a refresh's cost is mostly the size of the answer (bench/results/refresh.json).
    host_properties: ClassVar[tuple[str, ...]] = (
        "summary.hardware.numCpuThreads", "summary.hardware.memorySize", "summary.quickStats.overallMemoryUsage",
        "runtime.connectionState", "runtime.inMaintenanceMode")
    #: Objects per answer asked of vCenter (None: the server's choice); the rest follows page by page.
    page_size: ClassVar[int | None] = None

    def __init__(self, config: DriverConfig) -> None:
        check_config(config)
        super().__init__(config)
        self._nodes: dict[str, Node] | None = None
        self._refresh_error: str | None = None
        # The snapshot: every object the refresh's query reaches, by moref, as _snapshot_entry keeps it; the
        # last full refresh with the updates since applied. Replaced as a whole, never changed in place.
        self._objects: dict[str, dict[str, Any]] = {}
        self._built: tuple[tuple[str, ...], dict[str, Node]] | None = None  # (configured entries, their nodes)
        self._snapshot_lock = threading.RLock()  # one refresh or update of the snapshot at a time
        self._snapshots = 0  # full refreshes so far: an update that waited across one catches up after it
        self._watch_lock = threading.Lock()  # one WaitForUpdatesEx at a time on the watch
        self._lock = threading.Lock()  # guards the session-scoped objects below while logging in again
        self._generation = 0  # bumped at every new login, so concurrent callers log in again only once
        self._views: dict[str, Any] = {}  # ContainerViews by purpose; they die with the session
        self._watch: tuple[Any, str] | None = None  # (PropertyCollector, version) following the snapshot
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
                                pwd=self.config.password, sslContext=context, httpConnectionTimeout=HTTP_TIMEOUT_S,
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
        """One RetrievePropertiesEx, continued for as long as the server pages.

        Without a session vCenter still answers, with each property in the object's missingSet, faulted
        NotAuthenticated: that fault is raised, so the call is repeated after a new login."""
        pc = self._content.propertyCollector
        result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=self.page_size))
        objects = []
        while result is not None:
            objects.extend(result.objects)
            result = pc.ContinueRetrievePropertiesEx(result.token) if result.token else None
        for o in objects:
            for missing in o.missingSet or ():
                if isinstance(missing.fault, vim.fault.NotAuthenticated):  # pyVmomi: the LocalizedMethodFault's fault
                    raise missing.fault
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
        with self._snapshot_lock:
            try:
                try:
                    objects = self._call("refresh", lambda: self._retrieve(self._inventory_spec()))
                except vmodl.MethodFault as e:
                    raise VCenterUnavailable(f"refresh: {_fault_text(e)}") from None
                snapshot = {o.obj._moId: _snapshot_entry(o) for o in objects}
            except DriverError as e:
                self._nodes, self._refresh_error = None, str(e)
                raise
            self._set_snapshot(snapshot)
            self._snapshots += 1

    def _build_nodes(self, objects: Mapping[str, dict[str, Any]]) -> dict[str, Node]:
        """The nodes of the configured clusters, from a snapshot (moref -> properties and "ref")."""
        root = self._content.rootFolder._moId

        def path_and_datacenter(ref: str) -> tuple[str, str]:
            parts, dc = [], ""
            while ref in objects and ref != root:
                p = objects[ref]
                parts.append(p["name"])
                if isinstance(p["ref"], vim.Datacenter):
                    dc = ref
                ref = p["parent"]._moId if p.get("parent") is not None else root
            return "/" + "/".join(reversed(parts)), dc

        clusters: dict[str, tuple[str, str, str]] = {}  # moref and path -> (moref, path, datacenter)
        for ref, p in objects.items():
            if self._is_cluster(p["ref"]):
                path, dc = path_and_datacenter(ref)
                clusters[ref] = clusters[path] = (ref, path, dc)

        datastores: dict[str, Datastore] = {}  # shared datastores are made once
        nodes: dict[str, Node] = {}
        for wanted in self._managed_clusters():
            found = clusters.get(wanted) or clusters.get("/" + wanted.strip("/"))
            if found is None:
                LOG.warning("%s: configured cluster %r is not a cluster of vCenter at %s (missing, or a "
                            "standalone host or resource pool); it is left out", self.config.service_id, wanted,
                            self._where)
                continue
            ref, path, dc = found
            p = objects[ref]
            name = node_name(ref, self._vcenter_uuid)
            host_refs = tuple(h._moId for h in p.get("host") or ())
            stores = []
            for d in p.get("datastore") or ():
                if d._moId in objects:
                    if d._moId not in datastores:
                        datastores[d._moId] = _datastore(objects[d._moId])
                    stores.append(datastores[d._moId])
            nodes.setdefault(name, Node(
                name=name, configured_as=wanted, path=path, cluster=p["ref"], pool=p["resourcePool"],
                vm_folder=objects[dc]["vmFolder"], host_refs=host_refs,
                hosts=tuple(objects[h] for h in host_refs if h in objects), datastores=tuple(stores)))
        return nodes

    @staticmethod
    def _is_cluster(obj: Any) -> bool:
        """Only clusters become nodes; a standalone host's ComputeResource never does."""
        return isinstance(obj, vim.ClusterComputeResource)

    def _managed_clusters(self) -> tuple[str, ...]:
        """The configured cluster references (paths or morefs), read at every refresh."""
        return self.config.clusters

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        """refresh=True: a full refresh. Otherwise the snapshot brought up to date with vCenter's changes since
        (one WaitForUpdatesEx that does not wait), or a full refresh when there is no snapshot."""
        if refresh or self._nodes is None:
            self._refresh()
        else:
            self._catch_up()
        nodes = self._nodes
        if nodes is None:
            raise VCenterUnavailable(f"no current figures: {self._refresh_error or 'the snapshot was dropped'}")
        return sorted(nodes)

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
                "DISK_GB": _record(local_gb, max((d.capacity // GIB for d in stores), default=0), "DISK_GB"),
            },
        )

    # -- update notifications --------------------------------------------------------------------------

    def _fingerprint(self) -> dict[str, Any]:
        """What the driver reports, to tell a change that matters from one that does not."""
        return {n: (node.path, self.get_available_resource(n)) for n, node in self._current_nodes().items()}

    def _start_watch(self) -> None:
        """Set up the watch: a PropertyCollector of the session with a filter equal to the refresh's query.
        Its first answer is the whole current state, read to its end: it becomes the snapshot, so setting up
        the watch is a full refresh too. Caller holds both locks."""
        pc = self._content.propertyCollector.CreatePropertyCollector()
        try:
            # Whole values, not partial ones: a leaf's new value replaces the old, and arrays come whole.
            pc.CreateFilter(self._inventory_spec(), partialUpdates=False)
            objects: dict[str, dict[str, Any]] = {}
            update = pc.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0))
            while True:
                objects = self._apply(objects, update, set())
                if update is None or not update.truncated:
                    break
                update = pc.WaitForUpdatesEx(update.version, PC.WaitOptions(maxWaitSeconds=0))
        except BaseException:
            with contextlib.suppress(Exception):
                pc.DestroyPropertyCollector()
            raise
        self._set_snapshot(objects)
        self._snapshots += 1
        self._watch = (pc, update.version if update is not None else "")

    @staticmethod
    def _apply(objects: dict[str, dict[str, Any]], update: Any, changed: set[str]) -> dict[str, dict[str, Any]]:
        """The snapshot with an UpdateSet applied: a new mapping; entries that change are new dicts, so the
        nodes built from the old snapshot keep what they had. Adds the changed morefs to ``changed`` ("" for
        an object that entered or left, which may change any node)."""
        if update is None:
            return objects
        out = dict(objects)
        for filter_update in update.filterSet or ():
            for change in filter_update.objectSet or ():
                ref = change.obj._moId
                changed.update((ref,) if change.kind == "modify" else (ref, ""))
                if change.kind == "leave":
                    out.pop(ref, None)
                    continue
                entry = {"ref": change.obj} if change.kind == "enter" else dict(out.get(ref) or {"ref": change.obj})
                for c in change.changeSet or ():
                    if c.op == "assign":
                        entry[c.name] = c.val
                    elif c.op in ("remove", "indirectRemove"):
                        entry.pop(c.name, None)
                    else:  # "add": an array element, sent only for partial updates, which the filter declines
                        raise _NotAnUpdate(f"{change.obj._moId}: {c.op} {c.name}")
                out[ref] = entry
        return out

    def _set_snapshot(self, objects: dict[str, dict[str, Any]], changed: set[str] | None = None) -> None:
        """Adopt a new snapshot (caller holds the snapshot lock). After an update that changed only hosts'
        and datastores' figures (``changed``: their morefs), only the nodes holding one of them are made
        anew; anything else (a cluster, folder or datacenter changed, an object came or went, the
        configuration changed) builds every node again."""
        configured = tuple(self._managed_clusters())
        built = self._built
        figures_only = changed is not None and all(
            isinstance(objects.get(r, {}).get("ref"), (vim.HostSystem, vim.Datastore)) for r in changed)
        if changed is None or not figures_only or built is None or built[0] != configured:
            nodes = self._build_nodes(objects)
        else:
            nodes = {}
            for name, node in built[1].items():
                stores = (d.datastore._moId for d in node.datastores)
                if changed.isdisjoint(node.host_refs) and changed.isdisjoint(stores):
                    nodes[name] = node
                else:
                    nodes[name] = replace(node, hosts=tuple(objects[h] for h in node.host_refs if h in objects),
                                          datastores=tuple(_datastore(objects[d.datastore._moId])
                                                           if d.datastore._moId in changed else d
                                                           for d in node.datastores))
        self._built = (configured, nodes)
        self._objects, self._nodes, self._refresh_error = objects, dict(nodes), None

    def _pull(self, wait_s: int) -> bool:
        """Apply vCenter's changes since the watch's version, waiting up to wait_s seconds for the first; True
        when anything came (or the watch was set up anew: what happened before it was not seen).

        The wait holds only the watch lock, so refreshes go on meanwhile; when one did, the changes that came
        are applied to its newer snapshot and those made since are fetched at once, so a change the refresh
        saw is never replaced by an older value of it."""
        if self._watch is None:
            with self._snapshot_lock:
                self._start_watch()
            return True
        pc, version = self._watch
        snapshots = self._snapshots
        update = pc.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=wait_s))
        if update is None:
            return False
        with self._snapshot_lock:
            objects, changed = self._objects, set[str]()
            while True:
                try:
                    objects = self._apply(objects, update, changed)
                except _NotAnUpdate as e:
                    LOG.info("%s: %s; refreshing instead", self.config.service_id, e)
                    self._watch = (pc, update.version)
                    self._refresh()
                    return True
                version = update.version
                if update.truncated or self._snapshots != snapshots:
                    snapshots = self._snapshots
                    update = pc.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=0))
                    if update is not None:
                        continue
                break
            self._watch = (pc, version)
            if self._nodes is None:
                self._refresh()  # the last refresh failed: its snapshot is no base for changes
            else:
                self._set_snapshot(objects, changed)
        return True

    def _catch_up(self) -> None:
        """Bring the snapshot up to date between full refreshes (get_available_nodes without refresh)."""
        if not self._watch_lock.acquire(blocking=False):
            return  # a wait_for_changes is waiting: it applies each change as it comes
        try:
            with self._snapshot_lock:
                try:
                    self._call("update", functools.partial(self._pull, 0))
                except vmodl.MethodFault as e:
                    self._nodes, self._refresh_error = None, f"update: {_fault_text(e)}"
                    raise VCenterUnavailable(f"update: {_fault_text(e)}") from None
                except DriverError as e:
                    self._nodes, self._refresh_error = None, str(e)
                    raise
        finally:
            self._watch_lock.release()

    def wait_for_changes(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        before = self._fingerprint()
        while True:
            wait_s = max(0, min(math.ceil(deadline - time.monotonic()), MAX_WAIT_S))
            with self._watch_lock:
                try:
                    changed = self._call("wait for changes", functools.partial(self._pull, wait_s))
                except vmodl.MethodFault as e:
                    raise VCenterUnavailable(f"wait for changes: {_fault_text(e)}") from None
            if changed and self._fingerprint() != before:
                return True
            if time.monotonic() >= deadline:
                return False

    # -- instances -------------------------------------------------------------------------------------

    def _placement(self, node: Node) -> Node:
        """The node whose cluster a spawn for ``node`` goes to: the node itself."""
        return node

    def _placement_hosts(self, node: Node) -> list[dict[str, Any]]:
        """The node's schedulable hosts with their names and mounted datastores, read now (one query from the
        cluster, so a host that left it since the snapshot is not offered)."""
        schedulable = {h["ref"]._moId: h for h in node.hosts if self._schedulable(h)}
        if not schedulable:
            return []
        # The cluster itself is in the answer (its host list), so an answer without a session is recognised.
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=node.cluster, skip=False, selectSet=[
                PC.TraversalSpec(name="host", path="host", skip=False, type=vim.ComputeResource)])],
            propSet=[PC.PropertySpec(type=vim.ComputeResource, pathSet=["host"]),
                     PC.PropertySpec(type=vim.HostSystem, pathSet=PLACEMENT_HOST_PROPERTIES)])
        try:
            objects = self._call("read hosts", lambda: self._retrieve(spec))
        except vmodl.MethodFault as e:
            raise SpawnFailed(f"reading the hosts of {node.path}: {_fault_text(e)}; nothing was created") from None
        return [{**schedulable[o.obj._moId], **_props(o)} for o in objects if o.obj._moId in schedulable]

    def _choose_host_and_datastore(self, node: Node, instance: Instance) -> tuple[dict[str, Any], Any]:
        """Placement policy (docs/driver.md): the usable datastore with the most free space that has room
        for the root disk and is mounted by a schedulable host; the host among those with the most free
        memory. Ties go to the lower name, so the choice is reproducible."""
        hosts = self._placement_hosts(node)
        mounted = {d._moId for h in hosts for d in h.get("datastore") or ()}
        stores = [d for d in self._usable_datastores(node)
                  if d.datastore._moId in mounted and d.freeSpace >= instance.root_gb * GIB]
        if not stores:
            raise SpawnFailed(f"node {node.name} ({node.path}) has no schedulable host with a usable datastore "
                              f"that has {instance.root_gb} GiB free; nothing was created")
        ds = min(stores, key=lambda d: (-d.freeSpace, d.name))

        def free_mb(h: dict[str, Any]) -> int:
            return int(h["summary.hardware.memorySize"] // MIB - (h.get("summary.quickStats.overallMemoryUsage") or 0))
        host = min((h for h in hosts if ds.datastore._moId in {d._moId for d in h.get("datastore") or ()}),
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

"""fakevc at the edges, through pyvmomi: paging, the hypervisor's share, every property readable, name rules,
one front door, and random calls that must never break the server (issue 10)."""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import random
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import VmomiSupport, vim, vmodl

from conformance.control import Control
from conformance.harness import Endpoint, start_simulator
from conformance.topology import default_overhead, load_topology
from tests.conftest import REPO, STANDARD

PC = vmodl.query.PropertyCollector
TOPOLOGIES = REPO / "fixtures" / "topologies"
MIB = 1 << 20


def connect(e: Endpoint, timeout: float = 60) -> Any:
    """A pyvmomi session whose calls give up after ``timeout`` s (a hung server fails the test, not CI)."""
    return SmartConnect(host=e.host, port=e.port, user=e.username, pwd=e.password, httpConnectionTimeout=timeout,
                        sslContext=ssl.create_default_context(cafile=str(e.ca_file)))


@pytest.fixture(scope="module")
def std() -> Iterator[Endpoint]:
    endpoint = start_simulator(STANDARD)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def si(std: Endpoint) -> Iterator[Any]:
    """A fresh session on the standard inventory, reset to the loaded topology."""
    Control(std).reset()
    s = connect(std)
    yield s
    with contextlib.suppress(Exception):
        Disconnect(s)


def view_of(si: Any, kinds: list[Any]) -> Any:
    content = si.RetrieveContent()
    return content.viewManager.CreateContainerView(content.rootFolder, kinds, True)


def refresh_spec(view: Any) -> Any:
    """What a driver's refresh reads: everything in a view of datacenters, folders and compute resources, and
    the hosts and datastores they reference."""
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView,
                             selectSet=[PC.SelectionSpec(name="host"), PC.SelectionSpec(name="datastore")]),
            PC.TraversalSpec(name="host", path="host", skip=False, type=vim.ComputeResource),
            PC.TraversalSpec(name="datastore", path="datastore", skip=False, type=vim.ComputeResource)])],
        propSet=[PC.PropertySpec(type=vim.ManagedEntity, pathSet=["name"])])


# -- 1. paging -------------------------------------------------------------------------------------------

def test_a_full_refresh_is_paged_at_the_topology_page_size(si: Any, std: Endpoint) -> None:
    pc = si.content.propertyCollector
    spec = refresh_spec(view_of(si, [vim.Datacenter, vim.Folder, vim.ComputeResource]))
    whole = {o.obj._moId for o in pc.RetrieveContents([spec])}  # the deprecated call is not paged
    assert std.topology.page_size == 5 and len(whole) > 3 * 5, len(whole)
    result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    pages, read = 0, []
    while True:
        pages += 1
        assert 1 <= len(result.objects) <= 5, f"a page of {len(result.objects)} objects, not at most 5"
        read += [o.obj._moId for o in result.objects]
        if not result.token:
            break
        result = pc.ContinueRetrievePropertiesEx(result.token)
    assert sorted(read) == sorted(whole) and pages == -(-len(whole) // 5)
    # A smaller maxObjects wins; a token is good once, for its own session and collector.
    first = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=2))
    assert len(first.objects) == 2 and first.token
    pc.ContinueRetrievePropertiesEx(first.token)
    with pytest.raises(vmodl.query.InvalidProperty):
        pc.ContinueRetrievePropertiesEx(first.token)
    other = connect(std)
    try:
        with pytest.raises(vmodl.query.InvalidProperty):
            other.content.propertyCollector.ContinueRetrievePropertiesEx(
                pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()).token)
    finally:
        Disconnect(other)


def test_cancel_retrieve_and_the_page_size_control(si: Any, std: Endpoint) -> None:
    control = Control(std)
    pc = si.content.propertyCollector
    spec = refresh_spec(view_of(si, [vim.Datacenter, vim.Folder, vim.ComputeResource]))
    pending = control.paging()["pending"]
    token = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()).token
    assert control.paging() == {"page_size": 5, "pending": pending + 1}
    pc.CancelRetrievePropertiesEx(token)
    assert control.paging()["pending"] == pending
    with pytest.raises(vmodl.query.InvalidProperty):
        pc.ContinueRetrievePropertiesEx(token)
    control.set_page_size(1000)
    assert pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()).token is None
    control.reset()  # back to the topology's page size
    assert control.paging()["page_size"] == 5


# -- 2. the hypervisor's share --------------------------------------------------------------------------

def test_effective_figures_and_idle_hosts_show_the_hypervisor(si: Any) -> None:
    topo = load_topology(STANDARD)
    specs = {h.name: h for c in topo.datacenters[0].clusters for h in c.hosts}
    for cluster in view_of(si, [vim.ClusterComputeResource]).view:
        s = cluster.summary
        hosts = [specs[h.name] for h in cluster.host]
        share_mhz = sum(h.overhead_cpu_mhz or 0 for h in hosts)
        share_mb = sum(h.overhead_memory_mb or 0 for h in hosts)
        assert share_mhz > 0 and share_mb > 0
        assert s.effectiveCpu == s.totalCpu - share_mhz, cluster.name
        assert s.effectiveMemory == s.totalMemory // MIB - share_mb, cluster.name
    for h in view_of(si, [vim.HostSystem]).view:
        qs, hw = h.summary.quickStats, h.summary.hardware
        want = default_overhead(hw.numCpuCores, hw.cpuMhz, hw.memorySize // MIB)
        assert (qs.overallCpuUsage, qs.overallMemoryUsage) == want, f"idle {h.name}"


def test_a_running_vm_consumes_its_memory_and_overhead(si: Any) -> None:
    host = next(h for h in view_of(si, [vim.HostSystem]).view if h.name == "DC0_C1_H0")
    cluster = host.parent
    dc = si.content.rootFolder.childEntity[0]
    idle = host.summary.quickStats.overallMemoryUsage
    config = vim.vm.ConfigSpec(name="consumer", numCPUs=4, memoryMB=8192, guestId="otherGuest64",
                               files=vim.vm.FileInfo(vmPathName="[shared-c0-c1]"))
    task = dc.vmFolder.CreateVM_Task(config=config, pool=cluster.resourcePool, host=host)
    WaitForTask(task)
    vm = task.info.result
    WaitForTask(vm.PowerOnVM_Task())
    qs = vm.summary.quickStats
    assert qs.hostMemoryUsage > 8192 and qs.consumedOverheadMemory == qs.hostMemoryUsage - 8192
    assert qs.guestMemoryUsage < 8192  # active memory, not the configured size
    assert host.summary.quickStats.overallMemoryUsage == idle + qs.hostMemoryUsage
    assert cluster.summary.usageSummary.memDemandMB == qs.hostMemoryUsage


# -- 3. every property of every object, as pyvmomi reads it ---------------------------------------------

def _refs(value: Any, out: list[Any]) -> None:
    if isinstance(value, VmomiSupport.ManagedObject):
        out.append(value)
    elif isinstance(value, list):
        for v in value:
            _refs(v, out)
    elif isinstance(value, VmomiSupport.DataObject):
        for p in value._GetPropertyList():
            _refs(getattr(value, p.name, None), out)


def read_everything(si: Any, max_hosts: int | None = None) -> tuple[int, list[str]]:
    """Read every property of every object reachable from the ServiceContent, type by type, in bulk; follow
    every reference found. Returns how many objects were read and what went wrong (unreadable properties,
    references to objects that do not exist)."""
    content = si.RetrieveContent()
    pc = content.propertyCollector
    queue: list[Any] = []
    _refs(content, queue)
    queue.append(content.rootFolder)
    referrer: dict[tuple[str, str], str] = {}  # the first property found naming each object
    seen: set[tuple[str, str]] = set()
    problems: list[str] = []
    hosts_read = 0
    while queue:
        batch: dict[type, list[Any]] = collections.defaultdict(list)
        for obj in queue:
            key = (type(obj).__name__, obj._moId)
            if key in seen:
                continue
            if isinstance(obj, vim.HostSystem) and max_hosts is not None:
                if hosts_read >= max_hosts:
                    continue
                hosts_read += 1
            seen.add(key)
            batch[type(obj)].append(obj)
        queue = []
        for kind, objs in batch.items():
            spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o) for o in objs],
                                 propSet=[PC.PropertySpec(type=kind, all=True)], reportMissingObjectsInResults=True)
            try:
                contents = pc.RetrieveContents([spec])
            except Exception as e:  # find the object and property that pyvmomi cannot read
                contents = None
                for o in objs:
                    for p in kind._GetPropertyList():
                        try:
                            pc.RetrieveContents([PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o)],
                                                               propSet=[PC.PropertySpec(type=kind, pathSet=[p.name])])])
                        except Exception as e2:
                            problems.append(f"{kind.__name__}:{o._moId}.{p.name}: {type(e2).__name__}: "
                                            f"{str(getattr(e2, 'msg', e2))[:160]}")
                if not problems:
                    problems.append(f"{kind.__name__}: {type(e).__name__}: {e}")
            if contents is None:
                continue
            returned = {oc.obj._moId for oc in contents}
            problems += [f"{referrer.get((kind.__name__, o._moId), 'the ServiceContent')} names "
                         f"{kind.__name__}:{o._moId}, which does not exist" for o in objs if o._moId not in returned]
            for oc in contents:
                for missing in oc.missingSet or []:
                    problems.append(f"{type(oc.obj).__name__}:{oc.obj._moId}.{missing.path}: "
                                    f"{type(missing.fault.fault).__name__}")
                for prop in oc.propSet:
                    found: list[Any] = []
                    _refs(prop.val, found)
                    where = f"{type(oc.obj).__name__}:{oc.obj._moId}.{prop.name}"
                    for r in found:
                        referrer.setdefault((type(r).__name__, r._moId), where)
                    queue += found
    return len(seen), problems


@pytest.mark.parametrize("name", ["standard", "heterogeneous", "scale-1000x8"])
def test_every_property_of_every_object_reads_with_pyvmomi(name: str) -> None:
    """Every property fakevc sends is one pyvmomi can decode at the API version it negotiates, and every
    reference leads to an object that exists. On scale-1000x8 every object but the hosts is read, and 24
    hosts with their managers: its hosts are three profiles built alike, and reading all 8,000 host
    configurations would take minutes."""
    endpoint = start_simulator(TOPOLOGIES / f"{name}.yaml")
    try:
        s = connect(endpoint, timeout=300)
        read, problems = read_everything(s, max_hosts=24 if name.startswith("scale") else None)
        assert not problems, f"{name}: {len(problems)} unreadable properties or dangling references: " + \
            "; ".join(problems[:20])
        assert read > 100
        Disconnect(s)
    finally:
        endpoint.stop()


# -- 4. names -------------------------------------------------------------------------------------------

def test_name_rules_on_create_and_rename(si: Any) -> None:
    dc = si.content.rootFolder.childEntity[0]
    folder = dc.hostFolder
    for bad in ("", "x" * 81):
        with pytest.raises(vim.fault.InvalidName):
            folder.CreateClusterEx(name=bad, spec=vim.cluster.ConfigSpecEx())
    c0, c1 = (c for c in folder.childEntity if c.name in ("DC0_C0", "DC0_C1"))
    with pytest.raises(vim.fault.DuplicateName):
        WaitForTask(c0.Rename_Task("DC0_C1"))
    with pytest.raises(vim.fault.DuplicateName):
        folder.CreateClusterEx(name="DC0_C1", spec=vim.cluster.ConfigSpecEx())
    assert folder.CreateClusterEx(name="a/b", spec=vim.cluster.ConfigSpecEx()).name == "a%2fb"
    # The sequence that killed vcsim: a nameless cluster, then a rename beside it and a create in its folder.
    with contextlib.suppress(vim.fault.InvalidName):
        folder.CreateClusterEx(name="", spec=vim.cluster.ConfigSpecEx())
    WaitForTask(c1.Rename_Task("DC0_C1-renamed"))
    assert folder.CreateClusterEx(name="after", spec=vim.cluster.ConfigSpecEx()).name == "after"


# A randomised client of the methods drivers and the suite use: every answer must be a result or a vSphere
# fault; the server must stay up and leave no object locked. Bounded in time; the seed is printed on failure.
FUZZ_SECONDS = float(os.environ.get("VCCONFORM_FUZZ_SECONDS", "20"))
STRINGS = ["", " ", "x" * 81, "a/b", "50%", "back\\slash", "DC0_C0", "ünïcödé", "<tag>&amp;", "x" * 5000]
TYPES = [vim.Folder, vim.Datacenter, vim.ClusterComputeResource, vim.ComputeResource, vim.HostSystem,
         vim.ResourcePool, vim.Datastore, vim.VirtualMachine, vim.Network, vim.ManagedEntity]


class RandomClient:
    """One random call at a time, with arguments drawn from the inventory and from edge values."""

    def __init__(self, si: Any, rng: random.Random) -> None:
        self.si, self.rng = si, rng
        self.content = si.RetrieveContent()
        self.refresh()

    def refresh(self) -> None:
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [vim.ManagedEntity], True)
        self.objects: list[Any] = [*view.view, self.content.rootFolder]
        view.DestroyView()

    def pick(self, kind: Any = None) -> Any:
        pool = [o for o in self.objects if kind is None or isinstance(o, kind)]
        if not pool or self.rng.random() < 0.1:  # the moref of an object of another type, or of nothing
            cls = kind or self.rng.choice(TYPES)
            return cls(self.rng.choice([self.rng.choice(self.objects)._moId, "nothing-1"]), self.si._stub)
        return self.rng.choice(pool)

    def name(self) -> str:
        return self.rng.choice(STRINGS) if self.rng.random() < 0.6 else f"n{self.rng.randrange(1000)}"

    def number(self) -> int:
        return self.rng.choice([-1, 0, 1, 2, 7, 1024, 2**31 - 1])

    def task(self, t: Any) -> None:
        WaitForTask(t) if t is not None else None

    def call(self) -> str:
        rng, c = self.rng, self.content
        actions: dict[str, Callable[[], Any]] = {
            "RetrievePropertiesEx": lambda: self.retrieve(),
            "ContinueRetrievePropertiesEx": lambda: c.propertyCollector.ContinueRetrievePropertiesEx(
                str(self.number())),
            "CancelRetrievePropertiesEx": lambda: c.propertyCollector.CancelRetrievePropertiesEx(self.name()),
            "CreateContainerView": lambda: c.viewManager.CreateContainerView(
                self.pick(), rng.sample(TYPES, rng.randrange(1, 3)), rng.random() < 0.5).DestroyView(),
            "CreateClusterEx": lambda: self.pick(vim.Folder).CreateClusterEx(name=self.name(),
                                                                           spec=vim.cluster.ConfigSpecEx()),
            "CreateFolder": lambda: self.pick(vim.Folder).CreateFolder(self.name()),
            "Rename_Task": lambda: self.task(self.pick().Rename_Task(self.name())),
            "CreateVM_Task": lambda: self.task(self.pick(vim.Folder).CreateVM_Task(
                config=vim.vm.ConfigSpec(name=self.name(), numCPUs=self.number(), memoryMB=self.number(),
                                         files=vim.vm.FileInfo(vmPathName=rng.choice(
                                             ["[shared-c0-c1]", "[c2-private]", "[nowhere]", "", "no-brackets"]))),
                pool=self.pick(vim.ResourcePool), host=self.pick(vim.HostSystem) if rng.random() < 0.5 else None)),
            "PowerOnVM_Task": lambda: self.task(self.pick(vim.VirtualMachine).PowerOnVM_Task()),
            "Destroy_Task": lambda: self.task(self.pick().Destroy_Task()),
            "EnterMaintenanceMode_Task": lambda: self.task(self.pick(vim.HostSystem).EnterMaintenanceMode_Task(0)),
            "ExitMaintenanceMode_Task": lambda: self.task(self.pick(vim.HostSystem).ExitMaintenanceMode_Task(0)),
            "DisconnectHost_Task": lambda: self.task(self.pick(vim.HostSystem).DisconnectHost_Task()),
            "ReconnectHost_Task": lambda: self.task(self.pick(vim.HostSystem).ReconnectHost_Task()),
            "MoveInto_Task": lambda: self.task(self.pick(vim.ClusterComputeResource).MoveInto_Task(
                [self.pick(vim.HostSystem) for _ in range(rng.randrange(3))])),
            "MoveIntoFolder_Task": lambda: self.task(self.pick(vim.Folder).MoveIntoFolder_Task(
                [self.pick() for _ in range(rng.randrange(1, 3))])),
            "CreateResourcePool": lambda: self.pick(vim.ResourcePool).CreateResourcePool(
                self.name(), vim.ResourceConfigSpec(
                    cpuAllocation=vim.ResourceAllocationInfo(reservation=self.number(), limit=self.number(),
                                                             expandableReservation=True,
                                                             shares=vim.SharesInfo(level="normal", shares=0)),
                    memoryAllocation=vim.ResourceAllocationInfo(reservation=self.number(), limit=-1,
                                                                expandableReservation=False,
                                                                shares=vim.SharesInfo(level="normal", shares=0)))),
            "FindAllByUuid": lambda: c.searchIndex.FindAllByUuid(uuid=self.name(), vmSearch=rng.random() < 0.5,
                                                                 instanceUuid=rng.random() < 0.5),
            "FindByInventoryPath": lambda: c.searchIndex.FindByInventoryPath(
                rng.choice(["/DC0/host/DC0_C0", "/", "", "//", "/DC0/host/../x"]) + self.name()),
        }
        method = rng.choice(sorted(actions))
        actions[method]()
        return method

    def retrieve(self) -> Any:
        rng = self.rng
        kind = rng.choice(TYPES)
        paths = rng.sample(["name", "parent", "summary", "runtime", "host", "datastore", "nope", "summary.nope",
                            "config.hardware", ""], rng.randrange(1, 3))
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=self.pick(), skip=rng.random() < 0.3, selectSet=[
            PC.TraversalSpec(name="t", path=rng.choice(["childEntity", "host", "view", "vm", "x"]), skip=False,
                             type=rng.choice(TYPES), selectSet=[PC.SelectionSpec(name=rng.choice(["t", "u"]))])])],
            propSet=[PC.PropertySpec(type=kind, pathSet=paths, all=rng.random() < 0.1)])
        max_objects = rng.choice([None, 1, 3])
        result = self.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=max_objects))
        while result is not None and result.token and rng.random() < 0.7:
            result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)


def test_random_calls_never_break_the_server() -> None:
    seed = int(os.environ.get("VCCONFORM_FUZZ_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    endpoint = start_simulator(STANDARD)
    try:
        s = connect(endpoint, timeout=30)
        client = RandomClient(s, rng)
        log: list[str] = []
        deadline = time.monotonic() + FUZZ_SECONDS
        while time.monotonic() < deadline:
            try:
                log.append(client.call())
            except (vmodl.MethodFault, TypeError, ValueError):
                pass  # a vSphere fault is a fine answer; TypeError/ValueError: pyvmomi refused to send it
            except (OSError, http.client.HTTPException) as e:  # a timeout is an OSError too
                pytest.fail(f"seed {seed}: after {log[-5:]}: the server broke: {type(e).__name__}: {e}\n"
                            f"{endpoint.log_tail(30)}", pytrace=False)
            if len(log) % 25 == 0:
                client.refresh()  # also proves every object can still be listed
        # Nothing is left locked: a bulk read of every entity's name and a write in every folder still work.
        _, problems = read_everything(s)  # (tasks and events name objects destroyed since: that is fine)
        assert not [p for p in problems if "does not exist" not in p and "ManagedObjectNotFound" not in p], problems
        for f in [o for o in client.objects if isinstance(o, vim.Folder)][:20]:
            with contextlib.suppress(vmodl.MethodFault):
                f.CreateFolder(f"probe-{rng.randrange(1 << 20)}")
        assert "panic" not in endpoint.log_tail(10_000), endpoint.log_tail(40)
        print(f"seed {seed}: {len(log)} random calls: {collections.Counter(log).most_common()}")
        Disconnect(s)
    finally:
        endpoint.stop()


# -- 5. one front door ----------------------------------------------------------------------------------

def listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].split(":")[1], 16))
    return ports


def test_one_front_door(si: Any, std: Endpoint) -> None:
    pid = int(__import__("json").loads((std.state_dir / "ready.json").read_text())["pid"])
    assert listening_ports(pid) == {std.port}
    with pytest.raises(vim.fault.InvalidName):  # vcsim advertised its second, plain-HTTP listener here
        si.content.setting.QueryOptions("vcsim.server.url")
    base = f"https://127.0.0.1:{std.port}"
    verify = str(std.ca_file)
    file = "/folder/probe.txt?dcPath=DC0&dsName=shared-c0-c1"
    assert requests.put(base + file, data=b"x", verify=verify, timeout=30).status_code == 401
    assert requests.get(base + "/folder/?dcPath=DC0&dsName=shared-c0-c1", verify=verify, timeout=30).status_code == 401
    cookie = {"vmware_soap_session": si._stub.cookie.split("=", 1)[1].split(";")[0].strip('"')}
    assert requests.put(base + file, data=b"hello", cookies=cookie, verify=verify, timeout=30).status_code == 200
    assert requests.get(base + file, cookies=cookie, verify=verify, timeout=30).text == "hello"
    for path in ("/guestFile?id=1", "/nfc/x"):
        assert requests.get(base + path, cookies=cookie, verify=verify, timeout=30).status_code == 404
    big = requests.post(base + "/sdk", data=b"x" * (17 * MIB), verify=verify, timeout=60)
    assert big.status_code == 413
    anonymous = ('<?xml version="1.0"?><Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>'
                 '<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this>'
                 '<specSet><propSet><type>Folder</type><pathSet>name</pathSet></propSet><objectSet>'
                 '<obj type="Folder">group-d1</obj></objectSet></specSet><options/></RetrievePropertiesEx>'
                 '</Body></Envelope>')
    r = requests.post(base + "/sdk", data=anonymous, verify=verify, timeout=30)
    assert r.status_code == 500 and "NotAuthenticated" in r.text


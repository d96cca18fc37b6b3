"""Fidelity of the fake vCenter through pyvmomi: topology, host life cycle, usage, placement, the control API."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from conformance.control import Control, ControlError
from conformance.harness import Endpoint, start_simulator
from conformance.topology import default_overhead, load_topology
from tests.conftest import REPO

HETEROGENEOUS = REPO / "fixtures" / "topologies" / "heterogeneous.yaml"
SCALE = REPO / "fixtures" / "topologies" / "scale-1000x8.yaml"
GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def hetero() -> Iterator[Endpoint]:
    endpoint = start_simulator(HETEROGENEOUS)
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def control(hetero: Endpoint) -> Iterator[Control]:
    c = Control(hetero)
    yield c
    c.close()


def connect(e: Endpoint) -> Any:
    return SmartConnect(host=e.host, port=e.port, user=e.username, pwd=e.password,
                        sslContext=ssl.create_default_context(cafile=str(e.ca_file)))


@pytest.fixture
def si(hetero: Endpoint, control: Control) -> Iterator[Any]:
    """A fresh session on an inventory just reset to the loaded topology."""
    control.reset()
    s = connect(hetero)
    yield s
    with contextlib.suppress(Exception):  # the test may have ended the session
        Disconnect(s)


def objects(si: Any, kind: type) -> dict[str, Any]:
    """Every object of a type by name (names of the heterogeneous topology are unique per type, but "prod")."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return {o.name: o for o in view.view}
    finally:
        view.DestroyView()


def cluster(si: Any, path: str) -> Any:
    obj = si.RetrieveContent().searchIndex.FindByInventoryPath(path)
    assert isinstance(obj, vim.ClusterComputeResource), path
    return obj


def host(si: Any, name: str) -> Any:
    return objects(si, vim.HostSystem)[name]


def fault_of(task: Any) -> Any:
    with pytest.raises(vmodl.MethodFault) as err:
        WaitForTask(task)
    return err.value


EU_PROD = "/europe/DC-EU/host/prod/east/prod"
EU_BATCH = "/europe/DC-EU/host/prod/west/batch"
US_PROD = "/DC-US/host/prod"


# -- topology --------------------------------------------------------------------------------------------

def test_heterogeneous_topology_is_built_as_written(si: Any, hetero: Endpoint) -> None:
    topo = load_topology(HETEROGENEOUS)
    content = si.RetrieveContent()
    clusters = {p: cluster(si, p) for p in topo.cluster_paths()}
    assert EU_PROD in clusters and US_PROD in clusters and clusters[EU_PROD] != clusters[US_PROD]
    hosts = objects(si, vim.HostSystem)
    sizes = {(h.summary.hardware.numCpuThreads, h.summary.hardware.memorySize) for h in hosts.values()}
    assert len(sizes) >= 3
    assert hosts["eu-prod-h3"].runtime.inMaintenanceMode
    assert hosts["eu-prod-h4"].runtime.connectionState == "disconnected"
    assert hosts["us-prod-h2"].runtime.connectionState == "notResponding"
    assert hosts["eu-batch-h0"].summary.hardware.numCpuThreads == hosts["eu-batch-h0"].summary.hardware.numCpuCores
    types = {d.name: d.summary.type for d in objects(si, vim.Datastore).values()}
    assert types["eu-prod-vsan"] == "vsan" and types["eu-batch-nfs"] == "NFS" and types["us-shared"] == "NFS41"
    # One bulk read of every cluster's summary parses (an empty cluster used to send overallStatus="").
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ClusterComputeResource], True)
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
            pc.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[pc.PropertySpec(type=vim.ClusterComputeResource, pathSet=["summary"])])
    summaries = content.propertyCollector.RetrieveContents([spec])
    assert len(summaries) == 6
    spare = cluster(si, "/europe/DC-EU/host/spare").summary
    assert spare.numHosts == 0 and spare.overallStatus == "green"
    prod = clusters[EU_PROD].summary  # 5 hosts; only h0-h2 are connected and outside maintenance mode
    assert (prod.numHosts, prod.numEffectiveHosts) == (5, 3)
    shares = [default_overhead(c, mhz, gib * 1024) for c, mhz, gib in ((28, 2600, 768), (16, 2400, 256), (8, 2100, 64))]
    assert prod.effectiveMemory == (768 + 256 + 64) * 1024 - sum(mb for _, mb in shares)  # less the hypervisor's
    assert prod.totalCpu == 2600 * 28 + 2400 * 16 * 2 + 2100 * 8 * 2


def test_a_restart_keeps_morefs_and_instance_uuid(si: Any, hetero: Endpoint) -> None:
    again = start_simulator(HETEROGENEOUS)
    try:
        other = connect(again)
        first = {h.name: h._moId for h in objects(si, vim.HostSystem).values()}
        second = {h.name: h._moId for h in objects(other, vim.HostSystem).values()}
        assert first == second
        assert other.content.about.instanceUuid == si.content.about.instanceUuid == hetero.instance_uuid
        Disconnect(other)
    finally:
        again.stop()


def test_scale_topology_serves_8000_hosts() -> None:
    e = start_simulator(SCALE)
    try:
        s = connect(e)
        content = s.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ClusterComputeResource], True)
        assert len(view.view) == 1000
        assert len(view.view[0].host) == 8
        Disconnect(s)
    finally:
        e.stop()


# -- host life cycle ---------------------------------------------------------------------------------------

def test_cluster_summary_follows_the_host_life_cycle(si: Any) -> None:
    prod = cluster(si, EU_PROD)
    h1 = host(si, "eu-prod-h1")  # medium: 16 cores at 2,400 MHz, 256 GiB
    before = prod.summary
    share_mhz, share_mb = default_overhead(16, 2400, 256 * 1024)  # the hypervisor's, not in the effective figures
    WaitForTask(h1.EnterMaintenanceMode_Task(timeout=0))  # pyVim's own wait: task names are method names
    s = prod.summary
    assert s.numEffectiveHosts == before.numEffectiveHosts - 1
    assert s.effectiveCpu == before.effectiveCpu - (2400 * 16 - share_mhz)
    assert s.effectiveMemory == before.effectiveMemory - (256 * 1024 - share_mb)
    assert s.totalMemory == before.totalMemory and s.numHosts == before.numHosts
    assert isinstance(fault_of(h1.EnterMaintenanceMode_Task(timeout=0)), vim.fault.InvalidState)
    WaitForTask(h1.ExitMaintenanceMode_Task(timeout=0))
    assert prod.summary.numEffectiveHosts == before.numEffectiveHosts

    WaitForTask(h1.DisconnectHost_Task())
    assert prod.summary.numEffectiveHosts == before.numEffectiveHosts - 1
    WaitForTask(h1.ReconnectHost_Task())
    assert prod.summary.effectiveCpu == before.effectiveCpu

    h3 = host(si, "eu-prod-h3")  # in maintenance mode: may be removed
    assert isinstance(fault_of(h1.Destroy_Task()), vim.fault.InvalidState)
    WaitForTask(h3.Destroy_Task())
    s = prod.summary
    assert (s.numHosts, s.totalMemory) == (before.numHosts - 1, before.totalMemory - 256 * GIB)
    assert s.numCpuThreads == before.numCpuThreads - 32


def test_host_moves_between_clusters(si: Any) -> None:
    src, dst = cluster(si, EU_PROD), cluster(si, EU_BATCH)
    h2 = host(si, "eu-prod-h2")  # small: 8 cores at 2,100 MHz, 64 GiB
    s0, d0 = src.summary, dst.summary
    assert isinstance(fault_of(dst.MoveInto_Task(host=[h2])), vim.fault.InvalidState)
    WaitForTask(h2.EnterMaintenanceMode_Task(timeout=0))
    WaitForTask(dst.MoveInto_Task(host=[h2]))
    WaitForTask(h2.ExitMaintenanceMode_Task(timeout=0))
    assert h2.parent == dst
    s1, d1 = src.summary, dst.summary
    share_mhz, share_mb = default_overhead(8, 2100, 64 * 1024)
    assert (s1.numHosts, s1.effectiveMemory) == (s0.numHosts - 1, s0.effectiveMemory - (64 * 1024 - share_mb))
    assert (d1.numHosts, d1.effectiveCpu) == (d0.numHosts + 1, d0.effectiveCpu + 2100 * 8 - share_mhz)
    assert h2 not in src.host and h2 in dst.host


def test_changes_reach_every_waiting_session(si: Any, hetero: Endpoint, control: Control) -> None:
    prod = cluster(si, EU_PROD)
    sessions = [connect(hetero) for _ in range(2)]
    seen: list[int] = []
    started = threading.Barrier(3)

    def watch(s: Any) -> None:
        pc = s.content.propertyCollector
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vim.ClusterComputeResource(prod._moId, s._stub))],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.ClusterComputeResource,
                                                               pathSet=["summary.numEffectiveHosts"])])
        pc.CreateFilter(spec, partialUpdates=False)
        update = pc.WaitForUpdatesEx("", vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=0))
        started.wait()
        update = pc.WaitForUpdatesEx(update.version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=20))
        if update is not None:
            for fs in update.filterSet:
                for obj in fs.objectSet:
                    seen.extend(int(c.val) for c in obj.changeSet)

    threads = [threading.Thread(target=watch, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    started.wait()
    control.set_host("eu-prod-h0", connection_state="notResponding")
    for t in threads:
        t.join(30)
    assert seen == [2, 2], f"each waiting session sees numEffectiveHosts drop from 3 to 2, saw {seen}"
    for s in sessions:
        Disconnect(s)


# -- usage --------------------------------------------------------------------------------------------------

def vm_spec(name: str, datastore: str, cpus: int, memory_mb: int, thick_gb: int, thin_gb: int) -> Any:
    controller = vim.vm.device.VirtualDeviceSpec(
        operation="add", device=vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0, sharedBus="noSharing"))
    changes = [controller]
    for unit, (gb, thin) in enumerate(((thick_gb, False), (thin_gb, True))):
        disk = vim.vm.device.VirtualDisk(
            key=-(unit + 1), controllerKey=1000, unitNumber=unit, capacityInKB=gb * 1024 * 1024,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=f"[{datastore}] {name}/disk{unit}.vmdk", diskMode="persistent", thinProvisioned=thin))
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk))
    return vim.vm.ConfigSpec(name=name, numCPUs=cpus, memoryMB=memory_mb, deviceChange=changes,
                             files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
                             memoryAllocation=vim.ResourceAllocationInfo(reservation=1024))


def test_usage_follows_the_vm_life_cycle(si: Any) -> None:
    batch = cluster(si, EU_BATCH)
    dc = objects(si, vim.Datacenter)["DC-EU"]
    h0 = host(si, "eu-batch-h0")  # nosmt: 12 cores at 3,000 MHz
    ds = objects(si, vim.Datastore)["eu-batch-nfs"]
    free0, uncommitted0 = ds.summary.freeSpace, ds.summary.uncommitted or 0
    idle_mhz, idle_mb = default_overhead(12, 3000, 96 * 1024)  # an idle host runs its hypervisor
    consumed = 8192 + 32 + 8 * 4 + 8192 // 128  # a running VM consumes its memory and its overhead

    vm = WaitForTask(dc.vmFolder.CreateVM_Task(config=vm_spec("usage", "eu-batch-nfs", 4, 8192, 10, 30),
                                               pool=batch.resourcePool, host=h0)) and None
    vm = objects(si, vim.VirtualMachine)["usage"]
    assert ds.summary.freeSpace == free0 - 10 * GIB
    assert ds.summary.uncommitted == uncommitted0 + 30 * GIB
    assert (h0.summary.quickStats.overallCpuUsage, h0.summary.quickStats.overallMemoryUsage) == (idle_mhz, idle_mb)

    WaitForTask(vm.PowerOnVM_Task())
    assert h0.summary.quickStats.overallCpuUsage == idle_mhz + 4 * 3000
    assert h0.summary.quickStats.overallMemoryUsage == idle_mb + consumed
    assert vm.summary.quickStats.overallCpuUsage == 4 * 3000
    assert vm.summary.quickStats.hostMemoryUsage == consumed
    usage = batch.summary.usageSummary
    assert (usage.cpuDemandMhz, usage.memDemandMB, usage.memReservationMB) == (12000, consumed, 1024)
    pool = batch.resourcePool.runtime
    assert (pool.cpu.overallUsage, pool.memory.overallUsage) == (12000, consumed * MIB)
    assert pool.memory.reservationUsed == 1024 * MIB
    assert ds.summary.freeSpace == free0 - 10 * GIB - (8192 - 1024) * MIB  # the swap file

    WaitForTask(vm.PowerOffVM_Task())
    assert h0.summary.quickStats.overallMemoryUsage == idle_mb
    assert ds.summary.freeSpace == free0 - 10 * GIB
    WaitForTask(vm.Destroy_Task())
    assert (ds.summary.freeSpace, ds.summary.uncommitted or 0) == (free0, uncommitted0)
    assert (batch.summary.usageSummary.totalVmCount or 0) == 0


# -- placement ----------------------------------------------------------------------------------------------

def create(si: Any, path: str, config: Any, host_name: str | None = None) -> Any:
    dc_name = "DC-EU" if path.startswith("/europe") else "DC-US"
    dc = objects(si, vim.Datacenter)[dc_name]
    return dc.vmFolder.CreateVM_Task(config=config, pool=cluster(si, path).resourcePool,
                                      host=host(si, host_name) if host_name else None)


def small(name: str, path: str) -> Any:
    return vim.vm.ConfigSpec(name=name, numCPUs=1, memoryMB=256, files=vim.vm.FileInfo(vmPathName=path))


def test_placement_avoids_hosts_that_cannot_run_the_vm(si: Any) -> None:
    # h3 is in maintenance mode, h4 disconnected. Each VM goes to the host with the most memory left:
    # h0 (768 GiB) three times, then h1 (256), h0, h2 (64).
    for i in range(6):
        config = small(f"p{i}", "[eu-shared]")
        config.memoryMB = 200 * 1024
        WaitForTask(create(si, EU_PROD, config))
    placed = [objects(si, vim.VirtualMachine)[f"p{i}"].runtime.host.name for i in range(6)]
    assert placed == ["eu-prod-h0"] * 3 + ["eu-prod-h1", "eu-prod-h0", "eu-prod-h2"]


@pytest.mark.parametrize(("path", "config", "host_name", "fault"), [
    (EU_PROD, small("x", "[nowhere]"), None, vim.fault.InvalidDatastorePath),
    (EU_PROD, small("x", "no-brackets"), None, vim.fault.InvalidDatastorePath),
    (EU_PROD, small("x", "[us-shared]"), None, vim.fault.InvalidDatastorePath),  # a datastore of DC-US
    (EU_PROD, small("x", "[eu-batch-nfs]"), None, vim.fault.InvalidDatastore),  # no prod host mounts it
    (EU_PROD, small("x", "[eu-shared]"), "eu-batch-h0", vmodl.fault.InvalidArgument),  # host of another cluster
    (EU_PROD, small("x", "[eu-shared]"), "eu-prod-h3", vim.fault.InvalidHostState),  # maintenance mode
    (EU_PROD, small("x", "[eu-shared]"), "eu-prod-h4", vim.fault.InvalidHostConnectionState),
    ("/europe/DC-EU/host/spare", small("x", "[eu-shared]"), None, vim.fault.NoActiveHostInCluster),
    (EU_PROD, vim.vm.ConfigSpec(name="x", numCPUs=1, memoryMB=256), None, vim.fault.InvalidVmConfig),
])
def test_bad_create_vm_arguments_get_faults(si: Any, path: str, config: Any, host_name: str | None,
                                            fault: Any) -> None:
    before = len(objects(si, vim.VirtualMachine))
    err: Any = fault_of(create(si, path, config, host_name))
    assert isinstance(err, fault), err
    assert err.msg and "\n" not in err.msg and not err.msg.startswith("*types.")
    assert len(objects(si, vim.VirtualMachine)) == before, "a failed CreateVM left a VM behind"
    content = si.RetrieveContent()
    assert all(t.info.state in ("success", "error") for t in content.taskManager.recentTask), "a task is stuck"
    WaitForTask(create(si, EU_PROD, small("still-serving", "[eu-shared]")))


# -- control API ----------------------------------------------------------------------------------------------

def test_reset_puts_the_loaded_inventory_back(si: Any, control: Control, hetero: Endpoint) -> None:
    refs = {h.name: h._moId for h in objects(si, vim.HostSystem).values()}
    WaitForTask(create(si, EU_PROD, small("doomed", "[eu-shared]")))
    WaitForTask(cluster(si, "/europe/DC-EU/host/spare").Destroy_Task())
    control.add_fault("CreateVM_Task", "SystemError")
    generation = control.status()["generation"]
    result = control.reset()
    assert result["generation"] == generation + 1 and result["took_ms"] >= 0
    with pytest.raises(vim.fault.NotAuthenticated):
        si.RetrieveContent().rootFolder.childEntity  # noqa: B018 - the read is the test
    fresh = connect(hetero)
    assert {h.name: h._moId for h in objects(fresh, vim.HostSystem).values()} == refs
    assert "doomed" not in objects(fresh, vim.VirtualMachine)
    assert control.faults() == []
    WaitForTask(create(fresh, EU_PROD, small("after-reset", "[eu-shared]")))
    Disconnect(fresh)


def test_response_bytes_are_counted_per_session_as_the_client_received_them(si: Any, control: Control,
                                                                           hetero: Endpoint) -> None:
    """The byte counter agrees with what pyvmomi read off the socket, and names sessions by session_id."""
    from conformance.control import session_id
    from driver_under_test.callcount import count_received

    other = connect(hetero)
    try:
        with count_received(si) as received:
            control.reset_calls()
            objects(si, vim.HostSystem)
        objects(other, vim.Datastore)
        calls = control.calls()
    finally:
        Disconnect(other)
    mine, theirs = calls["sessions"][session_id(si)], calls["sessions"][session_id(other)]
    assert mine["bytes"] == received.total > 0
    assert mine["calls"] + theirs["calls"] == calls["total"]
    assert calls["bytes"] == mine["bytes"] + theirs["bytes"]
    assert sum(m["bytes"] for m in calls["methods"].values()) == calls["bytes"]
    assert si._stub.GetSessionId() not in str(calls)


def test_control_api_drives_what_the_vsphere_api_cannot(si: Any, control: Control) -> None:
    control.reset_calls()
    si.RetrieveContent()
    assert control.calls()["by_method"].get("RetrieveServiceContent", 0) >= 1

    control.add_fault("CreateVM_Task", "HostCommunication", count=1)
    with pytest.raises(vmodl.fault.HostCommunication):
        create(si, EU_PROD, small("x", "[eu-shared]"))
    WaitForTask(create(si, EU_PROD, small("x", "[eu-shared]")))
    assert [f["hits"] for f in control.faults()] == [1]

    control.set_host("eu-prod-h1", connection_state="notResponding")
    assert host(si, "eu-prod-h1").runtime.connectionState == "notResponding"
    assert cluster(si, EU_PROD).summary.numEffectiveHosts == 2

    control.set_task_delay("PowerOnVM_Task", 1500)
    vm = objects(si, vim.VirtualMachine)["x"]
    task = vm.PowerOnVM_Task()
    assert task.info.state == "running" and task.info.name.info.wsdlName == "PowerOnVM_Task"
    WaitForTask(task)
    control.clear_task_delays()

    assert control.expire_sessions() >= 1
    with pytest.raises(vim.fault.NotAuthenticated):
        si.RetrieveContent().rootFolder.childEntity  # noqa: B018 - the read is the test


def test_control_errors_are_one_line(control: Control, hetero: Endpoint) -> None:
    for call in (lambda: control.set_host("no-such-host", maintenance=True),
                 lambda: control.set_host("eu-prod-h0", connection_state="sleeping"),
                 lambda: control.add_fault("CreateVM_Task", "NoSuchFault"),
                 lambda: control.add_fault("CreateVM_Task", "SystemError", probability=1.5),
                 lambda: control.set_latency("*", -5),
                 lambda: control.set_task_delay("Login", 10)):
        with pytest.raises(ControlError) as err:
            call()
        assert "\n" not in str(err.value) and "control API" in str(err.value)
    wrong = Control(Endpoint(**{**hetero.__dict__, "password": "wrong"}))
    with pytest.raises(ControlError, match="HTTP 401"):
        wrong.status()

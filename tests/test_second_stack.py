"""fakevc through a second SOAP client stack: oslo.vmware over suds (what Nova uses), not pyvmomi.

Login with the WSDL fetched from the server, oslo.vmware's recursive traversal (VM and resource pool specs
that select each other) once a VM exists, paging with continue_retrieval and cancel_retrieval, a connected
idle host's zero usage, and RegisterExtension with the zone-less timestamp oslo.vmware sends. They run when
the [nova] extra is installed (it brings oslo.vmware and suds) and skip, saying so, otherwise.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from conformance.contract import DriverConfig, Instance
from conformance.control import Control
from conformance.harness import Endpoint, start_simulator
from conformance.oracle import Oracle
from driver_under_test.reference import ReferenceDriver
from tests.conftest import STANDARD

with warnings.catch_warnings():  # oslo's own deprecation warnings about eventlet, at import
    warnings.simplefilter("ignore")
    pytest.importorskip("oslo_vmware", reason="the [nova] extra is not installed (make test EXTRAS=dev,nova)")
    pytest.importorskip("suds", reason="the [nova] extra is not installed (make test EXTRAS=dev,nova)")
    from oslo_vmware import api, vim_util


@pytest.fixture(scope="module")
def fake() -> Iterator[Endpoint]:
    """A fake vCenter of the module's own: the tests create a VM and change the page size."""
    endpoint = start_simulator(STANDARD)
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def session(fake: Endpoint) -> Iterator[Any]:
    """An oslo.vmware session as Nova makes one: the WSDL read from https://host:port/sdk/vimService.wsdl."""
    s = api.VMwareAPISession(fake.host, fake.username, fake.password, api_retry_count=1, task_poll_interval=0.1,
                             port=fake.port, cacert=str(fake.ca_file), insecure=False)
    yield s
    s.logout()


def _names(session: Any, kind: str) -> list[str]:
    """Every object of a type with oslo.vmware's recursive traversal, read to the end page by page."""
    result = session.invoke_api(vim_util, "get_objects", session.vim, kind, 100, ["name"])
    names: list[str] = []
    with vim_util.WithRetrieval(session.vim, result) as objects:
        for obj in objects:
            names += [p.val for p in obj.propSet]
    return sorted(names)


def test_the_wsdl_is_served_without_a_session(fake: Endpoint) -> None:
    for name in ("vimService.wsdl", "vim.wsdl"):
        r = requests.get(f"https://{fake.host}:{fake.port}/sdk/{name}", verify=str(fake.ca_file), timeout=30)
        assert r.status_code == 200 and b"<definitions" in r.content[:500], name


def test_login_reads_the_service_content(session: Any, fake: Endpoint) -> None:
    about = session.vim.service_content.about
    assert about.apiType == "VirtualCenter"
    assert about.instanceUuid == Control(fake).status()["instance_uuid"]


def test_the_recursive_traversal_ends_and_finds_every_object(session: Any, fake: Endpoint) -> None:
    oracle = Oracle(fake.host, fake.port, fake.username, fake.password, str(fake.ca_file))
    try:
        inv = oracle.inventory()
        hosts = sorted([h.name for c in inv.clusters.values() for h in c.hosts]
                       + [h.name for h in inv.standalone_hosts.values()])
        cluster = inv.by_path("/DC0/host/DC0_C0")
    finally:
        oracle.close()
    config = DriverConfig(url=fake.url, username=fake.username, password=fake.password,
                          clusters=(cluster.path,), ca_file=str(fake.ca_file))
    driver = ReferenceDriver(config)
    instance = Instance(uuid=str(uuid.uuid4()), name="second-stack")
    try:
        # A VM makes the traversal loop in vcsim: VM -> resource pool -> VMs -> ...
        driver.spawn(instance, driver.get_available_nodes(refresh=True)[0])
        assert _names(session, "HostSystem") == hosts
        assert instance.uuid in " ".join(_names(session, "VirtualMachine"))
        assert "DC0_C0" in _names(session, "ClusterComputeResource")
    finally:
        driver.destroy(instance)
        driver.close()


def test_paging_with_continue_and_cancel(session: Any, fake: Endpoint) -> None:
    control = Control(fake)
    control.set_page_size(2)
    try:
        first = session.invoke_api(vim_util, "get_objects", session.vim, "HostSystem", 100, ["name"])
        assert len(first.objects) == 2 and vim_util._get_token(first)
        seen = len(first.objects)
        page = session.invoke_api(vim_util, "continue_retrieval", session.vim, first)
        seen += len(page.objects)
        session.invoke_api(vim_util, "cancel_retrieval", session.vim, page)  # the rest is dropped
        assert control.paging()["pending"] == 0
        assert seen == 4
        whole = _names(session, "HostSystem")  # read to the end: every host once
        assert len(whole) == len(set(whole)) == 7
    finally:
        control.set_page_size(5)


def test_an_idle_connected_host_reports_zero_usage(session: Any) -> None:
    result = session.invoke_api(vim_util, "get_objects", session.vim, "HostSystem", 100,
                                ["summary.quickStats", "runtime.connectionState"])
    with vim_util.WithRetrieval(session.vim, result) as objects:
        for obj in objects:
            props = {p.name: p.val for p in obj.propSet}
            if props["runtime.connectionState"] == "connected":
                stats = props["summary.quickStats"]  # Nova's vm_util.get_stats_from_cluster reads these
                assert stats.overallMemoryUsage >= 0 and stats.overallCpuUsage >= 0


def test_register_extension_with_a_zoneless_timestamp(session: Any) -> None:
    key = f"org.vcconform.{uuid.uuid4().hex[:8]}"
    # oslo.vmware sends lastHeartbeatTime as timeutils.utcnow().isoformat(): no time zone.
    session.invoke_api(vim_util, "register_extension", session.vim, key, "vcconform-test")
    found = session.invoke_api(vim_util, "find_extension", session.vim, key)
    assert found is not None and found.key == key
    assert found.lastHeartbeatTime.utcoffset() is not None  # read back with a zone: UTC

"""Sessions and faults: expired sessions, transient and persistent faults, latency and a vCenter restart,
driven through the fake vCenter's control API."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks.common import (
    FAULT_TIMEOUT_S,
    answers_under_fault,
    assert_figures,
    change_figures,
    figure_problems,
    read_every_node,
    within,
)
from conformance.contract import (
    ComputeDriver,
    DriverConfig,
    DriverError,
    Instance,
    VCenterUnavailable,
    fault_report_bound,
)
from conformance.fixtures import Cleanup
from conformance.oracle import Oracle

Make = Callable[..., ComputeDriver]

pytestmark = pytest.mark.needs_control


@pytest.mark.requirement("FAULT-01")
@pytest.mark.resets
@pytest.mark.covers("vcenter:session-expired")
def test_expired_session_is_replaced(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    """The session ends twice: a driver must log in again every time, not once per lifetime."""
    before = sorted(driver.get_available_nodes(refresh=True))
    for time_ in ("once", "a second time"):
        expired = control.expire_sessions()
        assert expired >= 1, "the control API ended no session: nothing to test"
        try:
            after = sorted(driver.get_available_nodes(refresh=True))
        except Exception as e:
            pytest.fail(f"after its session expired {time_}, refresh raised {type(e).__name__}: {e}; required a "
                        "transparent re-login", pytrace=False)
        assert after == before, f"after re-login ({time_}) the nodes are {after}; required {before}"
        assert_figures(driver, oracle, when=f"after re-login ({time_})")


@pytest.mark.requirement("FAULT-02")
@pytest.mark.resets
@pytest.mark.covers("vcenter:transient-fault", "vcenter:persistent-fault")
def test_faults_never_give_wrong_figures(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    read_every_node(driver)
    changed = change_figures(oracle, driver.config.clusters)
    inv = oracle.inventory()  # faults hit every session: the oracle reads before they are injected
    # A persistent fault: every read fails. Nothing the driver answers may be wrong: not the node set, and
    # no figures from its last good read (vCenter changed since).
    for method in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "RetrieveProperties"):
        control.add_fault(method, "SystemError", message="injected: persistent")
    problems = answers_under_fault(driver, inv, f"while vCenter fails every read with SystemError ({changed})")
    control.clear_faults()
    assert not problems, "; ".join(problems)
    # A transient fault: the next read fails once. Retried (then right) or raised as VCenterUnavailable.
    control.add_fault("RetrievePropertiesEx", "SystemError", count=1, message="injected: transient")
    with contextlib.suppress(VCenterUnavailable):
        problems = figure_problems(driver, inv)
        assert not problems, f"after one transient fault ({changed}): " + "; ".join(problems)
    assert_figures(driver, oracle, when="once vCenter answers again")


@pytest.mark.requirement("FAULT-03")
@pytest.mark.resets
@pytest.mark.covers("vcenter:slow")
def test_latency_is_tolerated(driver: ComputeDriver, oracle: Oracle, control: Any, cleanup: Cleanup,
                              new_uuid: Any) -> None:
    control.set_latency("*", 300)
    assert_figures(driver, oracle, when="with 300 ms added to every vCenter call")
    node = driver.get_available_nodes()[0]
    instance = Instance(uuid=new_uuid(), name="fault-03")
    cleanup.instance(oracle, instance.uuid)
    driver.spawn(instance, node)
    control.clear_latency()
    assert len(oracle.find_vms(instance.uuid)) == 1, "the spawn under latency did not make exactly one VM"


@pytest.mark.requirement("FAULT-04")
@pytest.mark.resets
@pytest.mark.covers("vcenter:restarted")
def test_driver_recovers_from_a_vcenter_restart(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    """Before the restart a host is in maintenance mode; the restart brings the inventory back as loaded (the
    host out of maintenance), so figures kept from before the restart are wrong figures."""
    before = sorted(driver.get_available_nodes(refresh=True))
    inv = oracle.inventory()
    host = next((h for p in driver.config.clusters if (c := inv.cluster(p)) for h in c.hosts if h.schedulable), None)
    if host is not None:
        control.set_host(host.moref, maintenance=True)
        assert_figures(driver, oracle, when=f"with {host.name} in maintenance mode, before the restart")
    control.reset()  # a restart: every session ends, the inventory is as loaded
    try:
        after = sorted(driver.get_available_nodes(refresh=True))
    except Exception as e:
        pytest.fail(f"after a vCenter restart, refresh raised {type(e).__name__}: {e}; required recovery",
                    pytrace=False)
    assert after == before, f"after a vCenter restart the nodes are {after}; required {before}"
    assert_figures(driver, oracle, when="after a vCenter restart" + (
        f" (which brought {host.name} back out of maintenance mode)" if host is not None else ""))


@pytest.mark.requirement("FAULT-05")
@pytest.mark.resets
@pytest.mark.covers("vcenter:connection-dropped", "config.vcenter_timeout_s:short")
def test_connection_errors_never_give_old_figures(make_driver: Callable[..., ComputeDriver], oracle: Oracle,
                                                  control: Any) -> None:
    """Reads whose connection is reset or closed unanswered: VCenterUnavailable or right figures, each call
    within FAULT-05's bound."""
    driver = make_driver(vcenter_timeout_s=FAULT_TIMEOUT_S)
    limit = fault_report_bound(driver.config)
    read_every_node(driver)
    changed = change_figures(oracle, driver.config.clusters)
    inv = oracle.inventory()
    for mode, words in (("reset", "reset (TCP RST)"), ("refuse", "closed unanswered")):
        control.set_connection_fault(mode, method="RetrievePropertiesEx")
        try:
            problems = answers_under_fault(driver, inv, f"with every RetrievePropertiesEx connection {words} "
                                                        f"({changed})", limit)
            hits = control.connection_fault().get("hits", 0)
        finally:
            control.clear_connection_fault()
        assert not problems, "; ".join(problems)
        assert hits, ("the driver read no figures with RetrievePropertiesEx while the connection fault was on, so "
                      "this check proved nothing; required a read (the check injects its faults there)")
    assert_figures(driver, oracle, when="once vCenter answers again")


@pytest.mark.requirement("FAULT-05")
@pytest.mark.resets
@pytest.mark.covers("vcenter:silent", "config.vcenter_timeout_s:short")
def test_a_silent_vcenter_is_reported_in_bounded_time(make_driver: Callable[..., ComputeDriver], oracle: Oracle,
                                                      control: Any) -> None:
    """Every SOAP call is left unanswered (the connection stays open): each driver call must give up within
    FAULT-05's bound for the vcenter_timeout_s it was given."""
    driver = make_driver(vcenter_timeout_s=FAULT_TIMEOUT_S)
    read_every_node(driver)
    changed = change_figures(oracle, driver.config.clusters)
    inv = oracle.inventory()
    control.set_connection_fault("stall")
    try:
        problems = answers_under_fault(driver, inv, f"with vCenter never answering ({changed})",
                                       fault_report_bound(driver.config))
        hits = control.connection_fault().get("hits", 0)
    finally:
        control.clear_connection_fault()
    assert not problems, "; ".join(problems)
    if not hits:
        pytest.skip("the driver called vCenter for none of its answers while vCenter was silent (it answers "
                    "from what it read, rightly): nothing to bound")


@pytest.mark.requirement("FAULT-05")
@pytest.mark.covers("vcenter:unreachable", "method.__init__:refused", "config.vcenter_timeout_s:short")
def test_an_unreachable_vcenter_at_start_is_reported(make_driver: Callable[..., ComputeDriver]) -> None:
    """vCenter refuses the TCP connection (a closed port on 127.0.0.1) when the driver starts: its
    constructor or its first refresh raises VCenterUnavailable, each in time (no node set is right: the
    configured clusters exist, in a vCenter the driver cannot reach)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused
    url = f"https://127.0.0.1:{port}/sdk"
    when = f"with vCenter refusing connections ({url})"
    limit = fault_report_bound(DriverConfig(url=url, username="", password="", vcenter_timeout_s=FAULT_TIMEOUT_S))
    try:
        d = within(f"{when}, the driver's constructor",
                   lambda: make_driver(url=url, vcenter_timeout_s=FAULT_TIMEOUT_S), limit)
    except VCenterUnavailable:
        return
    try:
        got = within(f"{when}, the first refresh", lambda: d.get_available_nodes(refresh=True), limit)
    except VCenterUnavailable:
        return
    pytest.fail(f"{when}: refresh returned {got}; required VCenterUnavailable", pytrace=False)


@pytest.mark.requirement("FAULT-02")
@pytest.mark.covers("vcenter:unreachable", "method.__init__:refused")
def test_unreachable_vcenter_is_vcenter_unavailable(make_driver: Make) -> None:
    """Nothing listens at the URL (127.0.0.1, a closed port): VCenterUnavailable from the constructor or the
    first refresh; never nodes, never a raw socket error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: a port nothing listens on
    url = f"https://127.0.0.1:{port}/sdk"
    try:
        got = make_driver(url=url).get_available_nodes(refresh=True)
    except VCenterUnavailable:
        return
    except DriverError as e:
        pytest.fail(f"with nothing listening at {url} the driver raised {type(e).__name__} ({e}); required "
                    "VCenterUnavailable", pytrace=False)
    pytest.fail(f"with nothing listening at {url} the driver reported nodes {got}; required VCenterUnavailable",
                pytrace=False)
